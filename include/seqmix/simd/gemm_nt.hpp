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
//
// `stored`: W already in the panel layout of pack_panels (then W's data is not read, only its
// shape): the panels are the B operand as they are, and nothing of W is packed per call.
template <class T, class WT>
void gemm_nt_widening(tensor_view<const T, 2> X, tensor_view<const WT, 2> W, tensor_view<T, 2> Y, bool accumulate,
                      const T* stored = nullptr) {
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
  require((K <= 1 || (X.stride(1) == 1 && (stored || W.stride(1) == 1))) && (N <= 1 || Y.stride(1) == 1), "gemm_nt",
          "X, W and Y need unit column stride");
  const index_t ldx = X.stride(0), ldw = W.stride(0), ldy = Y.stride(0);
  const T* x = X.data();
  const WT* w = W.data();
  T* y = Y.data();
  if (empty_product(M, N, K, Y, accumulate)) return;
  auto round_up = [](index_t v, index_t to) { return (v + to - 1) / to * to; };
  const index_t kmax = std::min(KC, K);
  std::vector<T, xsimd::aligned_allocator<T, 64>> bp(stored ? 0 : static_cast<std::size_t>(kmax * round_up(std::min(NC, N), NR))),
      ap(static_cast<std::size_t>(round_up(std::min(MC, M), MR) * kmax));
  alignas(64) T edge[MR * NR];
  for (index_t jc = 0; jc < N; jc += NC) {
    const index_t nc = std::min(NC, N - jc);
    for (index_t pc = 0; pc < K; pc += KC) {
      const index_t kc = std::min(KC, K - pc);
      const bool acc = accumulate || pc > 0;
      // The B panel of columns jc + j0: b + j0 · step (stored: panel (jc + j0) / NR, from row pc).
      const T* b = stored ? stored + jc * K + pc * NR : bp.data();
      const index_t step = stored ? K : kc;
      // Wᵀ[pc.., jc..] as panels [nc/NR][kc][NR], zero-padded past N.
      for (index_t j0 = 0; !stored && j0 < nc; j0 += NR) {
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
              detail::gemm_nt_tile<T, MR>(kc, ap.data() + i0 * kc, b + j0 * step, c, ldy, acc);
            } else {
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) edge[i * NR + j] = acc ? c[i * ldy + j] : T(0);
              detail::gemm_nt_tile<T, MR>(kc, ap.data() + i0 * kc, b + j0 * step, edge, NR, true);
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) c[i * ldy + j] = edge[i * NR + j];
            }
          }
        }
      }
    }
  }
}

// y[NR·p0 .. min(NR·p1, N)) (+)= W · x over the stored panels p0..p1 (pack_panels). Each panel
// is one sequential stream of K × NR values, so a decode step reads its weights in one pass with
// no horizontal sums; four k per step, each into its own accumulators, hide the FMA latency.
template <class T>
void gemv_panels(index_t p0, index_t p1, index_t N, index_t K, const T* wp, const T* x, T* y, bool accumulate) {
  constexpr index_t L = lanes<T>, NR = 2 * L, U = 4;
  alignas(64) T part[NR];
  for (index_t panel = p0; panel < p1; ++panel) {
    const T* b = wp + panel * K * NR;
    batch<T> a0[U], a1[U];
    for (index_t u = 0; u < U; ++u) a0[u] = a1[u] = batch<T>(T(0));
    index_t k = 0;
    for (; k + U <= K; k += U)
      SEQMIX_UNROLL for (index_t u = 0; u < U; ++u) {
        const batch<T> xv(x[k + u]);
        a0[u] = xsimd::fma(xv, load(b + (k + u) * NR), a0[u]);
        a1[u] = xsimd::fma(xv, load(b + (k + u) * NR + L), a1[u]);
      }
    for (; k < K; ++k) {
      const batch<T> xv(x[k]);
      a0[0] = xsimd::fma(xv, load(b + k * NR), a0[0]);
      a1[0] = xsimd::fma(xv, load(b + k * NR + L), a1[0]);
    }
    const index_t n0 = panel * NR, live = std::min(NR, N - n0);
    T* out = live == NR ? y + n0 : part;
    store(out, (a0[0] + a0[1]) + (a0[2] + a0[3]) + (accumulate && live == NR ? load(out) : batch<T>(T(0))));
    store(out + L, (a1[0] + a1[1]) + (a1[2] + a1[3]) + (accumulate && live == NR ? load(out + L) : batch<T>(T(0))));
    if (live < NR)
      for (index_t j = 0; j < live; ++j) y[n0 + j] = accumulate ? y[n0 + j] + part[j] : part[j];
  }
}

}  // namespace detail

/// Y (+)= X · Wᵀ: X [M, K], W [N, K], Y [M, N], each with unit column stride (rows may be
/// strided). Y must not overlap X or W.
template <class T>
void gemm_nt(tensor_view<const T, 2> X, tensor_view<const T, 2> W, tensor_view<T, 2> Y, bool accumulate = false) {
  detail::gemm_nt_widening<T, T>(X, W, Y, accumulate);
}

/// Output rows per panel of gemm_nt's stored weight layout: a weight [N, K] is kept as ⌈N/NR⌉
/// panels of [K][NR] values, element (k, j) of a panel holding W[NR·panel + j][k], zero past N.
/// That is gemm_nt's packed B operand (NR = the tile's two vectors), stored whole: prefill
/// multiplies it without repacking and decode streams it once. The layout depends on the target.
template <class T>
inline constexpr index_t panel_rows = 2 * lanes<T>;

/// Elements of the panel layout of a [N, K] weight.
template <class T>
index_t panel_elements(index_t N, index_t K) {
  return (N + panel_rows<T> - 1) / panel_rows<T> * K * panel_rows<T>;
}

/// out [panel_elements(N, K)] = W [N, K] in the panel layout (W any strides).
template <class T>
void pack_panels(tensor_view<const T, 2> W, T* out) {
  constexpr index_t NR = panel_rows<T>;
  const index_t N = W.extent(0), K = W.extent(1);
  for (index_t panel = 0; panel < (N + NR - 1) / NR; ++panel)
    for (index_t j = 0; j < NR; ++j) {
      const index_t n = panel * NR + j;
      T* dst = out + panel * K * NR + j;
      for (index_t k = 0; k < K; ++k) dst[k * NR] = n < N ? W(n, k) : T(0);
    }
}

/// W [N, K] = the weight held in the panel layout `in` (the inverse of pack_panels).
template <class T>
void unpack_panels(const T* in, tensor_view<T, 2> W) {
  constexpr index_t NR = panel_rows<T>;
  const index_t N = W.extent(0), K = W.extent(1);
  for (index_t n = 0; n < N; ++n)
    for (index_t k = 0; k < K; ++k) W(n, k) = in[(n / NR * K + k) * NR + n % NR];
}

/// Y (+)= X · Wᵀ with W [N, K] in the panel layout `wp`: gemm_nt without packing W.
template <class T>
void gemm_nt_panels(tensor_view<const T, 2> X, const T* wp, index_t N, tensor_view<T, 2> Y, bool accumulate = false) {
  // W's view supplies the shape only; its data is never read with `stored` set.
  detail::gemm_nt_widening<T, T>(X, tensor_view<const T, 2>(nullptr, {N, X.extent(1)}), Y, accumulate, wp);
}

/// Y[:, begin, end) (+)= X · W[begin, end)ᵀ with W [N, K] in the panel layout `wp` (begin a
/// multiple of panel_rows<T>): each panel read once per row of X.
template <class T>
void gemv_panels(tensor_view<const T, 2> X, const T* wp, index_t N, tensor_view<T, 2> Y, index_t begin, index_t end,
                 bool accumulate = false) {
  constexpr index_t NR = panel_rows<T>;
  const index_t M = X.extent(0), K = X.extent(1);
  check_shape("gemv_panels", "Y", Y.extents(), {M, N});
  require(begin % NR == 0 && 0 <= begin && begin <= end && end <= N && (K <= 1 || X.stride(1) == 1) &&
              (N <= 1 || Y.stride(1) == 1),
          "gemv_panels", "outputs from a multiple of the panel rows, X and Y with unit column stride");
  for (index_t i = 0; i < M && begin < end; ++i)
    detail::gemv_panels(begin / NR, (end + NR - 1) / NR, end, K, wp, X.data() + i * X.stride(0),
                        Y.data() + i * Y.stride(0), accumulate);
}

}  // namespace seqmix::simd
