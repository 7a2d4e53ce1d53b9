// Products with bf16 weights: y = x · Wᵀ with x float32 and W [N, K] bfloat16 as checkpoints
// store it. On AVX512_BF16 targets the activations are rounded to bf16 once per call and
// vdpbf16ps multiplies pairs of bf16 and accumulates in float32: two products per lane per
// instruction, twice the float32 FMA rate, and half the weight bytes of float32 to read. Other
// targets widen the weights to float32 (exact) and keep the activations in float32, so their
// results differ from the AVX512_BF16 ones by the activations' bf16 rounding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../error.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/view.hpp"
#include "batch.hpp"
#include "gemm_nt.hpp"

// vdpbf16ps and the masked bf16 loads and stores: AVX512_BF16 with AVX512BW and AVX512VL.
#if defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define SEQMIX_SIMD_BF16 1
#endif

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

/// True where the bf16 products run on vdpbf16ps (activations rounded to bf16), false where the
/// weights are widened to float32.
inline constexpr bool native_bf16 =
#if defined(SEQMIX_SIMD_BF16)
    true;
#else
    false;
#endif

/// out[i] = bf16(x[i]) for i < n, rounded to nearest even. On AVX512_BF16 targets
/// vcvtneps2bf16 converts 16 at a time; it flushes subnormal inputs to zero (bf16(float) does not).
inline void to_bf16(const float* x, bf16* out, index_t n) {
  index_t i = 0;
#if defined(SEQMIX_SIMD_BF16)
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), reinterpret_cast<const __m256i&>(h));
  }
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
    _mm256_mask_storeu_epi16(out + i, m, reinterpret_cast<const __m256i&>(h));
  }
#else
  for (; i < n; ++i) out[i] = bf16(x[i]);
#endif
}

/// lanes<float> bf16 values at p widened to a float batch, exactly: a bf16 is the upper half of a
/// float, so each 16-bit value is zero-extended to 32 bits and shifted left by 16 (two integer
/// instructions; no AVX512_BF16 needed). For kernels that stream bf16 data (the bf16 KV cache).
inline batch<float> load_widen(const bf16* p) {
#if defined(__AVX512F__)
  static_assert(sizeof(batch<float>) == 64);
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
#elif defined(__AVX2__)
  static_assert(sizeof(batch<float>) == 32);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#elif defined(__SSE2__)
  static_assert(sizeof(batch<float>) == 16);
  // Interleaving zeros below each 16-bit value puts it in the upper half of a 32-bit lane.
  const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
#else
  alignas(64) float f[lanes<float>];
  for (index_t i = 0; i < lanes<float>; ++i) f[i] = to_float(p[i]);
  return load(f);
#endif
}

/// A batch<T> from lanes<T> elements of S at p: a plain load when S is T, widened from bf16
/// (T = float) otherwise. Lets one kernel read float or bf16 storage.
template <class T, class S>
[[gnu::always_inline]] inline batch<T> load_as(const S* p) {
  if constexpr (std::is_same_v<S, T>) return load(p);
  else {
    static_assert(std::is_same_v<T, float> && std::is_same_v<S, bf16>, "load_as: float from bf16 only");
    return load_widen(p);
  }
}

namespace detail {

#if defined(SEQMIX_SIMD_BF16)

inline __m512bh as_bh(__m512i v) { return reinterpret_cast<const __m512bh&>(v); }

// y[n] (+)= W[n, :] · x for n in [0, N): x already bf16, zero-padded to a multiple of 32.
// Eight rows at a time: eight independent vdpbf16ps chains hide its latency and x is loaded once
// for the eight. Decode streams W from memory once; each load prefetches the same column of the
// next block of rows (an address hint only, never dereferenced). Rows of a model are short (768 to
// 3072 bf16), so the earlier 1 KiB-ahead hint fell in rows already being read: the next block ran
// 8-35% faster on the model's shapes and 4096 x 4096 (Zen 4, weights streamed from DRAM).
inline void gemv_bf16_rows(index_t N, index_t K, const bf16* w, index_t ldw, const bf16* x, float* y,
                           index_t ystride, bool accumulate) {
  const index_t full = K / 32 * 32;
  const __mmask32 tail = static_cast<__mmask32>((std::uint64_t(1) << (K - full)) - 1);
  auto row_block = [&]<int R>(index_t n) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    const bf16* wr = w + n * ldw;
    for (index_t k = 0; k < full; k += 32) {
      const __m512bh xv = as_bh(_mm512_loadu_si512(x + k));
      for (int r = 0; r < R; ++r) {
        const bf16* p = wr + r * ldw + k;
        _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p + R * ldw)), _MM_HINT_T0);
        acc[r] = _mm512_dpbf16_ps(acc[r], as_bh(_mm512_loadu_si512(p)), xv);
      }
    }
    if (full < K) {
      const __m512bh xv = as_bh(_mm512_loadu_si512(x + full));
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], as_bh(_mm512_maskz_loadu_epi16(tail, wr + r * ldw + full)), xv);
    }
    for (int r = 0; r < R; ++r) {
      const float s = _mm512_reduce_add_ps(acc[r]);
      y[(n + r) * ystride] = accumulate ? y[(n + r) * ystride] + s : s;
    }
  };
  index_t n = 0;
  for (; n + 8 <= N; n += 8) row_block.template operator()<8>(n);
  for (; n + 4 <= N; n += 4) row_block.template operator()<4>(n);
  for (; n < N; ++n) row_block.template operator()<1>(n);
}

// One MR x 32 tile of Y from packed operands: a [kp][MR] pairs of bf16 of X (one 32-bit word
// each), b [kp][32] pairs of bf16 of Wᵀ; each step broadcasts a pair of X and multiplies it with
// 16 column pairs in each of the two vectors of b.
template <index_t MR>
[[gnu::noinline]] void gemm_nt_bf16_tile(index_t kp, const std::uint32_t* a, const std::uint32_t* b, float* c,
                                         index_t ldc, bool accumulate) {
  __m512 acc0[MR], acc1[MR];
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
    acc0[r] = accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    acc1[r] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (index_t p = 0; p < kp; ++p, a += MR, b += 32) {
    const __m512bh b0 = as_bh(_mm512_loadu_si512(b)), b1 = as_bh(_mm512_loadu_si512(b + 16));
    SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
      const __m512bh av = as_bh(_mm512_set1_epi32(static_cast<int>(a[r])));
      acc0[r] = _mm512_dpbf16_ps(acc0[r], av, b0);
      acc1[r] = _mm512_dpbf16_ps(acc1[r], av, b1);
    }
  }
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc0[r]);
    _mm512_storeu_ps(c + r * ldc + 16, acc1[r]);
  }
}

// Blocked and packed as gemm_nt (GotoBLAS order), over pairs of k: each packed element is a
// 32-bit word holding the pair (k even, k odd), zero past K. X is rounded to bf16 as its blocks are
// packed (again for each slice of NC outputs: a vector conversion costs far less than a bf16 copy
// of all of X, whose fresh pages the kernel would fault in and clear on every call).
//
// `stored`: W already in the panel layout of pack_bf16_panels (then W's data is not read, only its
// shape): the panels are the B operand as they are, and nothing of W is packed per call.
inline void gemm_nt_bf16_packed(tensor_view<const float, 2> X, tensor_view<const bf16, 2> W, tensor_view<float, 2> Y,
                                bool accumulate, const std::uint32_t* stored = nullptr) {
  constexpr index_t MR = 12, NR = 32;
  // Pairs of k per block: a B panel KP x NR words is 64 KB. KP = 512 with MC = 4·MR ran 8-15%
  // faster than 192 with 8·MR on Zen 4 (2048 rows, 1024/4096 in and out: half the C-tile reloads
  // or fewer); each output's sum runs in the same order for any KP, so results do not change.
  constexpr index_t KP = 512;
  constexpr index_t MC = 4 * MR;  // an A block MC x KP words: 96 KB, in L2
  constexpr index_t NC = 2048;    // a B slice KP x NC words: 4 MB, in L3 (as gemm_nt)
  const index_t M = X.extent(0), K = X.extent(1), N = W.extent(0), pairs = (K + 1) / 2;
  const index_t ldw = W.stride(0), ldy = Y.stride(0);
  auto round_up = [](index_t v, index_t to) { return (v + to - 1) / to * to; };
  const index_t kmax = std::min(KP, pairs);
  std::vector<std::uint32_t> bp(stored ? 0 : static_cast<std::size_t>(kmax * round_up(std::min(NC, N), NR))),
      ap(static_cast<std::size_t>(round_up(std::min(MC, M), MR) * kmax));
  alignas(64) float edge[MR * NR];
  alignas(64) bf16 row[2 * KP];  // one row of an A block
  const bf16* w = W.data();
  float* y = Y.data();
  for (index_t jc = 0; jc < N; jc += NC) {
    const index_t nc = std::min(NC, N - jc);
    for (index_t pc = 0; pc < pairs; pc += KP) {
      const index_t kp = std::min(KP, pairs - pc);
      const bool acc = accumulate || pc > 0;
      // The B panel of columns jc + j0: b + j0 · step words (stored: panel (jc + j0) / NR, from pair pc).
      const std::uint32_t* b = stored ? stored + jc * pairs + pc * NR : bp.data();
      const index_t step = stored ? pairs : kp;
      for (index_t j0 = 0; !stored && j0 < nc; j0 += NR) {
        std::uint32_t* dst = bp.data() + j0 * kp;
        const index_t nr = std::min(NR, nc - j0);
        for (index_t j = 0; j < NR; ++j) {
          const bf16* src = j < nr ? w + (jc + j0 + j) * ldw : nullptr;
          for (index_t p = 0; p < kp; ++p) {
            const index_t k = 2 * (pc + p);
            const std::uint32_t lo = src ? src[k].bits : 0u, hi = src && k + 1 < K ? src[k + 1].bits : 0u;
            dst[p * NR + j] = lo | hi << 16;
          }
        }
      }
      for (index_t ic = 0; ic < M; ic += MC) {
        const index_t mc = std::min(MC, M - ic);
        for (index_t i0 = 0; i0 < mc; i0 += MR) {
          std::uint32_t* dst = ap.data() + i0 * kp;
          const index_t mr = std::min(MR, mc - i0);
          for (index_t i = 0; i < MR; ++i) {
            if (i >= mr) {
              for (index_t p = 0; p < kp; ++p) dst[p * MR + i] = 0u;
              continue;
            }
            const index_t k0 = 2 * pc, n = std::min(2 * kp, K - k0);
            row[2 * kp - 1] = bf16();  // the pad of an odd K
            to_bf16(X.data() + (ic + i0 + i) * X.stride(0) + k0, row, n);
            for (index_t p = 0; p < kp; ++p) std::memcpy(dst + p * MR + i, row + 2 * p, 4);  // a pair as one word
          }
        }
        for (index_t j0 = 0; j0 < nc; j0 += NR) {
          const index_t nr = std::min(NR, nc - j0);
          for (index_t i0 = 0; i0 < mc; i0 += MR) {
            const index_t mr = std::min(MR, mc - i0);
            float* c = y + (ic + i0) * ldy + jc + j0;
            if (mr == MR && nr == NR) {
              gemm_nt_bf16_tile<MR>(kp, ap.data() + i0 * kp, b + j0 * step, c, ldy, acc);
            } else {
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) edge[i * NR + j] = acc ? c[i * ldy + j] : 0.0f;
              gemm_nt_bf16_tile<MR>(kp, ap.data() + i0 * kp, b + j0 * step, edge, NR, true);
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) c[i * ldy + j] = edge[i * NR + j];
            }
          }
        }
      }
    }
  }
}

// y[32·p0 .. min(32·p1, N)) (+)= W · x over the stored panels p0..p1 (pack_bf16_panels), x as
// pairs of bf16 (one word each). Each panel is one sequential stream of pairs × 128 bytes: the
// weights of a decode step are read in one pass with no horizontal sums, which ran at the DRAM
// read speed (25-27 GB/s on Zen 4) where the row-major kernel above reached 12-21 GB/s (rows of
// 768-4096). Four pairs per step, each into its own accumulators, hide vdpbf16ps's latency.
inline void gemv_bf16_panels(index_t p0, index_t p1, index_t N, index_t pairs, const std::uint32_t* wp,
                             const std::uint32_t* x, float* y, bool accumulate) {
  constexpr int U = 4;
  for (index_t panel = p0; panel < p1; ++panel) {
    const std::uint32_t* b = wp + panel * pairs * 32;
    __m512 a0[U], a1[U];
    for (int u = 0; u < U; ++u) a0[u] = a1[u] = _mm512_setzero_ps();
    index_t p = 0;
    for (; p + U <= pairs; p += U)
      for (int u = 0; u < U; ++u) {
        const __m512bh xv = as_bh(_mm512_set1_epi32(static_cast<int>(x[p + u])));
        a0[u] = _mm512_dpbf16_ps(a0[u], xv, as_bh(_mm512_loadu_si512(b + (p + u) * 32)));
        a1[u] = _mm512_dpbf16_ps(a1[u], xv, as_bh(_mm512_loadu_si512(b + (p + u) * 32 + 16)));
      }
    for (; p < pairs; ++p) {
      const __m512bh xv = as_bh(_mm512_set1_epi32(static_cast<int>(x[p])));
      a0[0] = _mm512_dpbf16_ps(a0[0], xv, as_bh(_mm512_loadu_si512(b + p * 32)));
      a1[0] = _mm512_dpbf16_ps(a1[0], xv, as_bh(_mm512_loadu_si512(b + p * 32 + 16)));
    }
    __m512 lo = _mm512_add_ps(_mm512_add_ps(a0[0], a0[1]), _mm512_add_ps(a0[2], a0[3]));
    __m512 hi = _mm512_add_ps(_mm512_add_ps(a1[0], a1[1]), _mm512_add_ps(a1[2], a1[3]));
    const index_t n0 = panel * 32, live = std::min<index_t>(32, N - n0);
    const __mmask16 m0 = static_cast<__mmask16>(live >= 16 ? 0xffff : (1u << live) - 1),
                    m1 = static_cast<__mmask16>(live >= 32 ? 0xffff : live > 16 ? (1u << (live - 16)) - 1 : 0);
    if (accumulate) {
      lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(m0, y + n0));
      hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(m1, y + n0 + 16));
    }
    _mm512_mask_storeu_ps(y + n0, m0, lo);
    _mm512_mask_storeu_ps(y + n0 + 16, m1, hi);
  }
}

#else

// y[n] (+)= W[n, :] · x with W widened to float 256 columns at a time.
inline void gemv_widening_rows(index_t N, index_t K, const bf16* w, index_t ldw, const float* x, float* y,
                               index_t ystride, bool accumulate) {
  constexpr index_t L = lanes<float>, chunk = 256;
  alignas(64) float wf[chunk];
  for (index_t n = 0; n < N; ++n) {
    batch<float> acc(0.0f);
    float tail = 0.0f;
    for (index_t k0 = 0; k0 < K; k0 += chunk) {
      const index_t kc = std::min(chunk, K - k0);
      for (index_t k = 0; k < kc; ++k) wf[k] = to_float(w[n * ldw + k0 + k]);
      index_t k = 0;
      for (; k + L <= kc; k += L) acc = xsimd::fma(load(wf + k), load(x + k0 + k), acc);
      for (; k < kc; ++k) tail += wf[k] * x[k0 + k];
    }
    const float s = reduce_add(acc) + tail;
    y[n * ystride] = accumulate ? y[n * ystride] + s : s;
  }
}

#endif

}  // namespace detail

/// Y (+)= X · Wᵀ for few rows of X (decode): X [M, K] float, W [N, K] bf16, Y [M, N] float, each
/// with unit column stride. Reads W once per row of X, without packing it.
inline void gemv_bf16(tensor_view<const float, 2> X, tensor_view<const bf16, 2> W, tensor_view<float, 2> Y,
                      bool accumulate = false) {
  const index_t M = X.extent(0), K = X.extent(1), N = W.extent(0);
  check_shape("gemv_bf16", "W", W.extents(), {N, K});
  check_shape("gemv_bf16", "Y", Y.extents(), {M, N});
  require((K <= 1 || (X.stride(1) == 1 && W.stride(1) == 1)), "gemv_bf16", "X and W need unit column stride");
  if (M == 0 || N == 0) return;
#if defined(SEQMIX_SIMD_BF16)
  std::vector<bf16> xb(static_cast<std::size_t>((K + 31) / 32 * 32));  // zero-padded for the last block
  for (index_t i = 0; i < M; ++i) {
    to_bf16(X.data() + i * X.stride(0), xb.data(), K);
    detail::gemv_bf16_rows(N, K, W.data(), W.stride(0), xb.data(), Y.data() + i * Y.stride(0), Y.stride(1), accumulate);
  }
#else
  for (index_t i = 0; i < M; ++i)
    detail::gemv_widening_rows(N, K, W.data(), W.stride(0), X.data() + i * X.stride(0), Y.data() + i * Y.stride(0),
                               Y.stride(1), accumulate);
#endif
}

/// Y (+)= X · Wᵀ for many rows of X (prefill): shapes and strides as gemv_bf16 (rows of Y need unit
/// column stride too). Packs W into panels on each call, which pays from a few dozen rows on.
inline void gemm_nt_bf16(tensor_view<const float, 2> X, tensor_view<const bf16, 2> W, tensor_view<float, 2> Y,
                         bool accumulate = false) {
  const index_t M = X.extent(0), K = X.extent(1), N = W.extent(0);
  check_shape("gemm_nt_bf16", "W", W.extents(), {N, K});
  check_shape("gemm_nt_bf16", "Y", Y.extents(), {M, N});
  require((K <= 1 || (X.stride(1) == 1 && W.stride(1) == 1)) && (N <= 1 || Y.stride(1) == 1), "gemm_nt_bf16",
          "X, W and Y need unit column stride");
  if (detail::empty_product(M, N, K, Y, accumulate)) return;
#if defined(SEQMIX_SIMD_BF16)
  detail::gemm_nt_bf16_packed(X, W, Y, accumulate);
#else
  detail::gemm_nt_widening<float, bf16>(X, W, Y, accumulate);
#endif
}

/// Output rows per panel of the stored bf16 layout: on AVX512_BF16 targets a bf16 weight [N, K]
/// is kept as ⌈N/32⌉ panels of [⌈K/2⌉][32] 32-bit words, word (p, j) holding W[32·panel + j][2p]
/// in its low half and W[..][2p + 1] in its high half, zero past N and K. That is gemm_nt_bf16's
/// packed B operand, stored whole: prefill multiplies it without repacking and decode streams it
/// once. Other targets keep W row-major (their kernels widen it row by row).
inline constexpr index_t bf16_panel_rows = native_bf16 ? 32 : 1;

/// Words of the panel layout of a [N, K] weight.
inline index_t bf16_panel_words(index_t N, index_t K) { return (N + 31) / 32 * ((K + 1) / 2) * 32; }

/// out [bf16_panel_words(N, K)] = W [N, K] in the panel layout (W any strides).
inline void pack_bf16_panels(tensor_view<const bf16, 2> W, std::uint32_t* out) {
  const index_t N = W.extent(0), K = W.extent(1), pairs = (K + 1) / 2;
  for (index_t panel = 0; panel < (N + 31) / 32; ++panel)
    for (index_t j = 0; j < 32; ++j) {
      const index_t n = panel * 32 + j;
      std::uint32_t* dst = out + panel * pairs * 32 + j;
      for (index_t p = 0; p < pairs; ++p) {
        const std::uint32_t lo = n < N ? W(n, 2 * p).bits : 0u, hi = n < N && 2 * p + 1 < K ? W(n, 2 * p + 1).bits : 0u;
        dst[p * 32] = lo | hi << 16;
      }
    }
}

/// W [N, K] = the weight held in the panel layout `in` (the inverse of pack_bf16_panels).
inline void unpack_bf16_panels(const std::uint32_t* in, tensor_view<bf16, 2> W) {
  const index_t N = W.extent(0), K = W.extent(1), pairs = (K + 1) / 2;
  for (index_t n = 0; n < N; ++n)
    for (index_t k = 0; k < K; ++k) {
      const std::uint32_t word = in[(n / 32 * pairs + k / 2) * 32 + n % 32];
      W(n, k).bits = static_cast<std::uint16_t>(k % 2 ? word >> 16 : word & 0xffffu);
    }
}

#if defined(SEQMIX_SIMD_BF16)
/// Y[:, begin, end) (+)= X · W[begin, end)ᵀ with W [N, K] in the panel layout `wp` (begin a multiple
/// of 32): each row of X rounded to bf16 once, each panel read once per row.
inline void gemv_bf16_panels(tensor_view<const float, 2> X, const std::uint32_t* wp, index_t N, tensor_view<float, 2> Y,
                             index_t begin, index_t end, bool accumulate = false) {
  const index_t M = X.extent(0), K = X.extent(1), pairs = (K + 1) / 2;
  check_shape("gemv_bf16_panels", "Y", Y.extents(), {M, N});
  require(begin % 32 == 0 && 0 <= begin && begin <= end && end <= N && (K <= 1 || X.stride(1) == 1) &&
              (N <= 1 || Y.stride(1) == 1),
          "gemv_bf16_panels", "outputs from a multiple of 32, X and Y with unit column stride");
  if (M == 0 || begin == end) return;
  std::vector<std::uint32_t> xw(static_cast<std::size_t>(pairs), 0u);
  for (index_t i = 0; i < M; ++i) {
    to_bf16(X.data() + i * X.stride(0), reinterpret_cast<bf16*>(xw.data()), K);
    detail::gemv_bf16_panels(begin / 32, (end + 31) / 32, end, pairs, wp, xw.data(), Y.data() + i * Y.stride(0),
                             accumulate);
  }
}

/// Y (+)= X · Wᵀ with W [N, K] in the panel layout `wp`: gemm_nt_bf16 without packing W.
inline void gemm_nt_bf16_panels(tensor_view<const float, 2> X, const std::uint32_t* wp, index_t N,
                                tensor_view<float, 2> Y, bool accumulate = false) {
  const index_t M = X.extent(0), K = X.extent(1);
  check_shape("gemm_nt_bf16_panels", "Y", Y.extents(), {M, N});
  require((K <= 1 || X.stride(1) == 1) && (N <= 1 || Y.stride(1) == 1), "gemm_nt_bf16_panels",
          "X and Y need unit column stride");
  if (detail::empty_product(M, N, K, Y, accumulate)) return;
  // W's view supplies the shape only; its data is never read with `stored` set.
  detail::gemm_nt_bf16_packed(X, tensor_view<const bf16, 2>(nullptr, {N, K}), Y, accumulate, wp);
}
#endif

}  // namespace seqmix::simd
