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
inline void gemm_nt_bf16_packed(tensor_view<const float, 2> X, tensor_view<const bf16, 2> W, tensor_view<float, 2> Y,
                                bool accumulate) {
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
  std::vector<std::uint32_t> bp(static_cast<std::size_t>(kmax * round_up(std::min(NC, N), NR))),
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
      for (index_t j0 = 0; j0 < nc; j0 += NR) {
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
              gemm_nt_bf16_tile<MR>(kp, ap.data() + i0 * kp, bp.data() + j0 * kp, c, ldy, acc);
            } else {
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) edge[i * NR + j] = acc ? c[i * ldy + j] : 0.0f;
              gemm_nt_bf16_tile<MR>(kp, ap.data() + i0 * kp, bp.data() + j0 * kp, edge, NR, true);
              for (index_t i = 0; i < mr; ++i)
                for (index_t j = 0; j < nr; ++j) c[i * ldy + j] = edge[i * NR + j];
            }
          }
        }
      }
    }
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
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (index_t i = 0; i < M; ++i) std::fill_n(Y.data() + i * Y.stride(0), N, 0.0f);
    return;
  }
#if defined(SEQMIX_SIMD_BF16)
  detail::gemm_nt_bf16_packed(X, W, Y, accumulate);
#else
  detail::gemm_nt_widening<float, bf16>(X, W, Y, accumulate);
#endif
}

}  // namespace seqmix::simd
