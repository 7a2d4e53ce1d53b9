// Group normalisation of one group (e.g. one head's channels): y = (x - mean) / sqrt(var + eps) · w + b
// with the biased variance, as torch.nn.GroupNorm applies it to each group.
#pragma once

#include <cmath>

#include "../simd/math.hpp"
#include "../simd/vec.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

/// One group of n elements; w and b are the group's slices of the per-channel affine parameters.
/// y may alias x.
template <class T>
void group_norm_row(const T* x, const T* w, const T* b, T* y, index_t n, T eps) {
  const T mean = simd::sum(x, n) / T(n);
  T var = 0;
  for (index_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const T inv = T(1) / std::sqrt(var / T(n) + eps);
  simd::transform(x, w, y, n, [mean, inv](auto xi, auto wi) { return (xi - mean) * inv * wi; });
  simd::transform(y, b, y, n, [](auto yi, auto bi) { return yi + bi; });
}

}  // namespace seqmix::nn
