// The layers' view of a sequence x [B, L, C] as the matrix of its B·L token rows (the shape their
// projections take), and of a one-token step x [B, C] as a sequence of length one.
#pragma once

#include <string_view>

#include "../nn/linear.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers::detail {

/// x [B, L, C] as a contiguous [B·L, C] matrix (copied only when x is strided).
template <class T>
struct sequence_rows {
  tensor<T, 3> copy;
  tensor_view<const T, 2> view;
  explicit sequence_rows(tensor_view<const T, 3> x)
      : copy(x.is_contiguous() ? tensor<T, 3>() : tensor<T, 3>(x)),
        view((x.is_contiguous() ? x : copy.view()).template reshape<2>({x.extent(0) * x.extent(1), x.extent(2)})) {}
};

/// y [B, L, C] = rows [B·L, K] · projᵀ, through a temporary when y is strided. `proj` is any
/// projection called as proj(x [N, K], y [N, C], who, threads) (nn::linear, nn::binary_linear).
template <class T, class Proj>
void project_to_sequence(const Proj& proj, tensor_view<const T, 2> rows, tensor_view<T, 3> y, std::string_view who,
                         int threads) {
  const index_t B = y.extent(0), L = y.extent(1), C = y.extent(2);
  if (y.is_contiguous()) return proj(rows, y.template reshape<2>({B * L, C}), who, threads);
  tensor<T, 3> tmp({B, L, C});
  proj(rows, tmp.view().template reshape<2>({B * L, C}), who, threads);
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t c = 0; c < C; ++c) y(b, t, c) = tmp(b, t, c);
}

/// A one-token step x [B, C] as a [B, 1, C] sequence (no copy).
template <class T>
tensor_view<T, 3> as_sequence(tensor_view<T, 2> x) {
  return {x.data(), {x.extent(0), 1, x.extent(1)}, {x.stride(0), 0, x.stride(1)}};
}

}  // namespace seqmix::layers::detail
