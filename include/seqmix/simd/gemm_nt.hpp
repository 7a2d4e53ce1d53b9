// Large dense products Y (+)= X · Wᵀ for the layers' projections (X [M, K] activations, W [N, K]
// weights as torch stores them, Y [M, N]), blocked and packed in the manner of GotoBLAS / BLIS:
// a KC × NC slice of Wᵀ is packed into column panels of NR columns (kept in L3, one panel in L1
// while it is used), a MC × KC block of X into row panels of MR rows, and an MR × NR register
// tile accumulates over KC. The tile is 12 × 2 vectors with 32 vector registers (24
// accumulators), 6 × 2 with 16, so each step loads 2 vectors of Wᵀ and broadcasts MR values of X
// for 2·MR FMAs. Edges are padded with zeros in the packed copies; partial tiles go through a
// small buffer.
#pragma once

#include <algorithm>
#include <vector>

#include "../error.hpp"
#include "../tensor/view.hpp"
#include "batch.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

namespace detail {

// The products with nothing to multiply: true (and Y zeroed unless accumulating, when K = 0) when
// M, N or K is 0, so the packed kernels below only see non-empty operands.
template <class T>
bool empty_product(index_t M, index_t N, index_t K, tensor_view<T, 2> Y, bool accumulate) {
  if (M == 0 || N == 0) return true;
  if (K != 0) return false;
  if (!accumulate)
    for (index_t i = 0; i < M; ++i) std::fill_n(Y.data() + i * Y.stride(0), N, T(0));
  return true;
}

// One MR × NR tile: c (row stride ldc) = (accumulate ? c : 0) + Σ_p a[p][0..MR) ⊗ b[p][0..NR),
// with a packed [kc][MR] and b packed [kc][NR].
template <class T, index_t MR>
[[gnu::noinline]] void gemm_nt_tile(index_t kc, const T* a, const T* b, T* c, index_t ldc, bool accumulate) {
  constexpr index_t L = lanes<T>;
  batch<T> acc0[MR], acc1[MR];
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
    acc0[r] = accumulate ? load(c + r * ldc) : batch<T>(T(0));
    acc1[r] = accumulate ? load(c + r * ldc + L) : batch<T>(T(0));
  }
  for (index_t p = 0; p < kc; ++p, a += MR, b += 2 * L) {
    const batch<T> b0 = load(b), b1 = load(b + L);
    SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
      const batch<T> av(a[r]);
      acc0[r] = xsimd::fma(av, b0, acc0[r]);
      acc1[r] = xsimd::fma(av, b1, acc1[r]);
    }
  }
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
    store(c + r * ldc, acc0[r]);
    store(c + r * ldc + L, acc1[r]);
  }
}

// gemm_nt with weights of storage type WT, converted to T as they are packed (bf16 -> float on
// targets without bf16 products).
template <class T, class WT>
void gemm_nt_widening(tensor_view<const T, 2> X, tensor_view<const WT, 2> W, tensor_view<T, 2> Y, bool accumulate) {
  constexpr index_t MR = sizeof(batch<T>) >= 64 ? 12 : 6;  // 32 or 16 vector registers
  constexpr index_t NR = 2 * lanes<T>;
  // A B panel KC x NR (64 KB of floats with AVX-512) serves the MC / MR A panels of a block in
  // turn. KC = 512 ran 5-7% faster than 256 on Zen 4 (half the C-tile reloads; 2048 rows, 1024
  // and 4096 in and out); the k-sum runs in the same order for any KC, so results do not change.
  constexpr index_t KC = 512;
  constexpr index_t MC = 8 * MR;   // an A block MC x KC: 192 KB, in L2
  // A B slice KC x NC: 4 MB, in L3 — each B panel is read from it once per A block, while a
  // smaller slice would repack the A block for every slice (NC = 512 cost 7-10%).
  constexpr index_t NC = 2048;
  const index_t M = X.extent(0), K = X.extent(1), N = W.extent(0);
  check_shape("gemm_nt", "W", W.extents(), {N, K});
  check_shape("gemm_nt", "Y", Y.extents(), {M, N});
  require((K <= 1 || (X.stride(1) == 1 && W.stride(1) == 1)) && (N <= 1 || Y.stride(1) == 1), "gemm_nt",
          "X, W and Y need unit column stride");
  const index_t ldx = X.stride(0), ldw = W.stride(0), ldy = Y.stride(0);
  const T* x = X.data();
  const WT* w = W.data();
  T* y = Y.data();
  if (empty_product(M, N, K, Y, accumulate)) return;
  auto round_up = [](index_t v, index_t to) { return (v + to - 1) / to * to; };
  const index_t kmax = std::min(KC, K);
  std::vector<T, xsimd::aligned_allocator<T, 64>> bp(static_cast<std::size_t>(kmax * round_up(std::min(NC, N), NR))),
      ap(static_cast<std::size_t>(round_up(std::min(MC, M), MR) * kmax));
  alignas(64) T edge[MR * NR];
  for (index_t jc = 0; jc < N; jc += NC) {
    const index_t nc = std::min(NC, N - jc);
    for (index_t pc = 0; pc < K; pc += KC) {
      const index_t kc = std::min(KC, K - pc);
      const bool acc = accumulate || pc > 0;
      // Wᵀ[pc.., jc..] as panels [nc/NR][kc][NR], zero-padded past N.
      for (index_t j0 = 0; j0 < nc; j0 += NR) {
        T* dst = bp.data() + j0 * kc;
        const index_t nr = std::min(NR, nc - j0);
        for (index_t j = 0; j < NR; ++j) {
          if (j < nr) {
            const WT* src = w + (jc + j0 + j) * ldw + pc;
            for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = static_cast<T>(src[p]);
          } else {
            for (index_t p = 0; p < kc; ++p) dst[p * NR + j] = T(0);
          }
        }
      }
      for (index_t ic = 0; ic < M; ic += MC) {
        const index_t mc = std::min(MC, M - ic);
        // X[ic.., pc..] as panels [mc/MR][kc][MR], zero-padded past M.
        for (index_t i0 = 0; i0 < mc; i0 += MR) {
          T* dst = ap.data() + i0 * kc;
          const index_t mr = std::min(MR, mc - i0);
          for (index_t p = 0; p < kc; ++p)
            for (index_t i = 0; i < MR; ++i) dst[p * MR + i] = i < mr ? x[(ic + i0 + i) * ldx + pc + p] : T(0);
        }
        for (index_t j0 = 0; j0 < nc; j0 += NR) {
          const index_t nr = std::min(NR, nc - j0);
          for (index_t i0 = 0; i0 < mc; i0 += MR) {
            const index_t mr = std::min(MR, mc - i0);
            T* c = y + (ic + i0) * ldy + jc + j0;
            if (mr == MR && nr == NR) {
              detail::gemm_nt_tile<T, MR>(kc, ap.data() + i0 * kc, bp.data() + j0 * kc, c, ldy, acc);
            } else {
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) edge[i * NR + j] = acc ? c[i * ldy + j] : T(0);
              detail::gemm_nt_tile<T, MR>(kc, ap.data() + i0 * kc, bp.data() + j0 * kc, edge, NR, true);
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) c[i * ldy + j] = edge[i * NR + j];
            }
          }
        }
      }
    }
  }
}

}  // namespace detail

/// Y (+)= X · Wᵀ: X [M, K], W [N, K], Y [M, N], each with unit column stride (rows may be
/// strided). Y must not overlap X or W.
template <class T>
void gemm_nt(tensor_view<const T, 2> X, tensor_view<const T, 2> W, tensor_view<T, 2> Y, bool accumulate = false) {
  detail::gemm_nt_widening<T, T>(X, W, Y, accumulate);
}

}  // namespace seqmix::simd
