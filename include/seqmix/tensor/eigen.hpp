// Eigen interop: a rank-2 view as an Eigen::Map (no copy), and an Eigen matrix as a view.
#pragma once

#include <Eigen/Core>
#include <string>
#include <type_traits>

#include "../error.hpp"

#include "view.hpp"

namespace seqmix {

template <class T>
using row_major_matrix = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A rank-2 view [rows, cols] as an Eigen::Map with the view's strides (any strides).
template <class T>
auto as_matrix(tensor_view<T, 2> v) {
  using matrix = std::conditional_t<std::is_const_v<T>, const row_major_matrix<T>, row_major_matrix<T>>;
  using stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  return Eigen::Map<matrix, Eigen::Unaligned, stride>(v.data(), v.extent(0), v.extent(1),
                                                      stride(v.stride(0), v.stride(1)));
}

/// A rank-2 view with unit column stride as an Eigen::Map with only a runtime row stride, which
/// keeps Eigen's vectorised GEMM/GEMV paths (a runtime inner stride disables them).
template <class T>
auto as_row_major(tensor_view<T, 2> v) {
  using matrix = std::conditional_t<std::is_const_v<T>, const row_major_matrix<T>, row_major_matrix<T>>;
  if (v.extent(1) > 1 && v.stride(1) != 1)
    throw error("as_row_major: view " + shape_string(v.extents()) + " has column stride " + std::to_string(v.stride(1)));
  return Eigen::Map<matrix, Eigen::Unaligned, Eigen::OuterStride<>>(v.data(), v.extent(0), v.extent(1),
                                                                    Eigen::OuterStride<>(v.stride(0)));
}

/// A view of an Eigen Matrix (row- or column-major), keeping its strides.
template <class Derived>
auto as_view(Eigen::PlainObjectBase<Derived>& m) {
  using T = typename Derived::Scalar;
  return tensor_view<T, 2>(m.data(), {m.rows(), m.cols()}, {m.rowStride(), m.colStride()});
}
template <class Derived>
auto as_view(const Eigen::PlainObjectBase<Derived>& m) {
  using T = const typename Derived::Scalar;
  return tensor_view<T, 2>(m.data(), {m.rows(), m.cols()}, {m.rowStride(), m.colStride()});
}

}  // namespace seqmix
