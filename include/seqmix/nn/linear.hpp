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

  /// y [N, out] = x [N, in] · Wᵀ + b. x may have any strides; y needs unit column stride.
  void operator()(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who = "linear") const {
    check_shape(who, "input", x.extents(), {x.extent(0), in_features()});
    check_shape(who, "output", y.extents(), {x.extent(0), out_features()});
    auto Y = as_matrix(y);
    Y.noalias() = as_matrix(x) * as_matrix(weight.view()).transpose();
    if (bias) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data(), out_features());
  }
};

}  // namespace seqmix::nn
