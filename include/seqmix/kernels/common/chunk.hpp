// Chunk math shared by the linear-attention families with one scalar decay per head and token
// (Gated DeltaNet, DeltaNet with no decay, and the same form serves Mamba-2's SSD and GLA with a
// head-wise gate): cumulative decays, the causal decay mask of a chunk's score block, and the
// chunk's state step. Every exponent used is G_t - G_j with t ≥ j, or G_t itself, both ≤ 0, so
// nothing can overflow; an underflow only drops a term that is truly below the smallest normal.
#pragma once

#include <algorithm>
#include <cmath>

#include "../../config.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::common {

/// G[t] = Σ_{s ≤ t} g[s · gs] for t < L (the cumulative log decay of a chunk), accumulated in
/// double: differences G_t - G_j of nearby tokens must stay exact after a huge step (one decay of
/// e^-1e4 among decays near 1 would otherwise lose the latter to cancellation in float). Steps
/// below -1e4 count as -1e4 (e^-1e4 is 0 in any precision), so g = -inf cannot turn G_t - G_j
/// into inf - inf.
template <class T>
void cumsum(const T* g, index_t gs, index_t L, double* G) {
  double acc = 0;
  for (index_t t = 0; t < L; ++t) G[t] = acc += std::max(double(g[t * gs]), -1e4);
}

/// The causal scalar-decay mask of an [L, L] block A (row stride lda), in place:
///   A[t][j] <- c · f[t] · e^{G_t - G_j} · A[t][j]   for j < t (j ≤ t when `diagonal`), 0 above.
/// f == nullptr means f = 1; G == nullptr means no decay (all factors 1).
template <class T>
void decay_mask(T* A, index_t lda, const double* G, const T* f, T c, index_t L, bool diagonal) {
  constexpr index_t block = 64;
  alignas(64) T d[block];
  for (index_t t = 0; t < L; ++t) {
    T* row = A + t * lda;
    const index_t n = std::min(L, t + (diagonal ? 1 : 0));
    const T ft = c * (f ? f[t] : T(1));
    if (G) {
      for (index_t j0 = 0; j0 < n; j0 += block) {
        const index_t m = std::min(block, n - j0);
        for (index_t j = 0; j < m; ++j) d[j] = static_cast<T>(G[t] - G[j0 + j]);  // ≤ 0
        simd::transform(d, row + j0, row + j0, m, [ft](auto x, auto a) { return a * (simd::exp(x) * ft); });
      }
    } else if (ft != T(1)) {
      simd::scale(ft, row, n);
    }
    std::fill(row + n, row + L, T(0));
  }
}

/// The state step of a chunk: S [K,V] <- e^{G_last} · S + kdᵀ · U, with kd [L,K] the keys already
/// scaled by e^{G_last - G_j} (≤ 1) and U [L,V] the chunk's values (or delta-rule corrections).
template <class T>
void chunk_state_step(tensor_view<T, 2> S, T decay, tensor_view<const T, 2> kd, tensor_view<const T, 2> U) {
  if (decay != T(1))
    for (index_t i = 0; i < S.extent(0); ++i) simd::scale(decay, S.ptr(i), S.extent(1));
  simd::gemm<T>(transposed(kd), U, S, simd::gemm_mode::accumulate);
}

}  // namespace seqmix::kernels::common
