// RMS normalisation over the last axis, plain or fused with a swish output gate (fla's
// FusedRMSNormGated): y = x · rsqrt(mean(x²) + eps) · w [· silu(g)].
#pragma once

#include <cmath>

#include "../simd/math.hpp"
#include "../simd/vec.hpp"

namespace seqmix::nn {

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

}  // namespace seqmix::nn
