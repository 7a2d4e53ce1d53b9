// linear: y = x · Wᵀ (+ b) with W stored [out, in] as in torch checkpoints; the product runs in Eigen.
#pragma once

#include <optional>
#include <string>

#include "../error.hpp"
#include "../tensor/eigen.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::nn {

/// A dense projection with weight [out, in] and an optional bias [out].
template <class T>
struct linear {
  tensor<T, 2> weight;
  std::optional<tensor<T, 1>> bias;

  index_t in_features() const { return weight.extent(1); }
  index_t out_features() const { return weight.extent(0); }

  /// y [N, out] = x [N, in] · Wᵀ + b. x and y need unit column stride (rows may be strided).
  void operator()(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who = "linear") const {
    check_shape(who, "input", x.extents(), {x.extent(0), in_features()});
    check_shape(who, "output", y.extents(), {x.extent(0), out_features()});
    auto Y = as_row_major(y);
    Y.noalias() = as_row_major(x) * as_row_major(weight.view()).transpose();
    if (bias) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data(), out_features());
  }
};

}  // namespace seqmix::nn
