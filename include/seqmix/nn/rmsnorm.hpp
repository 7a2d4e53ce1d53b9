// RMS normalisation over the last axis, plain or fused with a swish output gate (fla's
// FusedRMSNormGated): y = x · rsqrt(mean(x²) + eps) · w [· silu(g)]; and Mamba-2's gated RMSNorm
// over groups of channels (mamba_ssm's RMSNormGated).
#pragma once

#include <cmath>

#include "../simd/math.hpp"
#include "../simd/vec.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

/// y[i] = x[i] / sqrt(mean(x²) + eps) * w[i] over one row of n elements (y may alias x).
template <class T>
void rmsnorm_row(const T* x, const T* w, T* y, index_t n, T eps) {
  const T r = T(1) / std::sqrt(simd::dot(x, x, n) / T(n) + eps);
  simd::transform(x, w, y, n, [r](auto a, auto b) { return a * r * b; });
}

/// y[i] = x[i] / sqrt(mean(x²) + eps) * w[i] * silu(g[i]) over one row (y may alias x or g).
template <class T>
void rmsnorm_gated_row(const T* x, const T* g, const T* w, T* y, index_t n, T eps) {
  rmsnorm_row(x, w, y, n, eps);
  simd::transform(y, g, y, n, [](auto a, auto b) { return a * simd::silu(b); });
}

/// Mamba-2's gated RMSNorm over one row of n channels in groups of `group_size` (n a multiple of
/// it). With the gate first (norm_before_gate = false, Mamba-2's default):
///   g = x ⊙ silu(z);  y = g / sqrt(mean_group(g²) + eps) ⊙ w        (mean over each group)
/// with norm_before_gate = true:  y = x / sqrt(mean_group(x²) + eps) ⊙ w ⊙ silu(z).
/// y may alias x or z.
template <class T>
void group_rmsnorm_gated_row(const T* x, const T* z, const T* w, T* y, index_t n, index_t group_size, T eps,
                             bool norm_before_gate = false) {
  for (index_t g0 = 0; g0 < n; g0 += group_size) {
    const index_t m = group_size < n - g0 ? group_size : n - g0;
    if (norm_before_gate) {
      rmsnorm_gated_row(x + g0, z + g0, w + g0, y + g0, m, eps);
    } else {
      simd::transform(x + g0, z + g0, y + g0, m, [](auto a, auto b) { return a * simd::silu(b); });
      rmsnorm_row(y + g0, w + g0, y + g0, m, eps);
    }
  }
}

}  // namespace seqmix::nn
