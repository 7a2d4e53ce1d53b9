// Packed-bit kernels of the 1-bit linear op (nn/binary_linear.hpp, docs/bitlinear.md): lookup
// tables over 4-bit groups of the scaled activations, indexed by the weight bits themselves.
//
// Layout ("blocks"): the output rows are taken 16 at a time; block ob, word w holds 16 uint32,
// lane r being columns 32w..32w+31 of row 16·ob + r, bit b = column 32w + b (the little-endian
// concatenation of the spec's bytes 4w..4w+3, so nibble k of a word is column group 8w + k).
// For one activation row u, table g holds the 16 signed sums of its group of four columns:
//   table[g][n] = ((±u[4g] ± u[4g+1]) ± u[4g+2]) ± u[4g+3],  sign of u[4g+b] = + iff bit b of n.
// One output row's Σ_i s_oi u_i is then Σ_g table[g][nibble g of row o]: with 16 rows in the 16
// lanes of a vector, one permute (AVX-512 vpermps; AVX2 two 8-lane permutes and a blend) applies
// 64 weights. The portable path does the same sums in the same order per lane, so every target
// gives the same bits.
#pragma once

#include "batch.hpp"

#include <cstdint>

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd::bits {

inline constexpr index_t block_rows = 16;       ///< output rows per block (lanes of one table lookup)
inline constexpr index_t word_bits = 32;        ///< columns per word of a row
inline constexpr index_t groups_per_word = 8;   ///< 4-bit groups per word
inline constexpr index_t table_entries = 16;    ///< entries of one group's table

/// Name of the lookup path this target compiles ("avx512", "avx2" or "portable").
inline const char* lut_path() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "portable";
#endif
}

/// The tables of one activation row: u [4·groups] (zero past the input width) -> table
/// [groups][16]. The same on every target (each entry is three rounded additions of ±u).
inline void build_tables(const float* u, index_t groups, float* table) {
  // sign[b][n] = +1 iff bit b of n.
  alignas(64) static constexpr float sign[4][16] = {
      {-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1},
      {-1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1},
      {-1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1},
      {-1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1}};
  using V = batch<float>;
  constexpr index_t L = lanes<float>;
  if constexpr (L <= 16 && 16 % L == 0) {
    for (index_t g = 0; g < groups; ++g) {
      const float* ug = u + 4 * g;
      const V u0(ug[0]), u1(ug[1]), u2(ug[2]), u3(ug[3]);
      SEQMIX_UNROLL for (index_t c = 0; c < 16; c += L) {
        // ±u exactly, then one rounding per addition (an FMA by ±1 rounds as the addition does).
        V t = u0 * load(sign[0] + c);
        t = xsimd::fma(u1, load(sign[1] + c), t);
        t = xsimd::fma(u2, load(sign[2] + c), t);
        t = xsimd::fma(u3, load(sign[3] + c), t);
        store(table + g * 16 + c, t);
      }
    }
  } else {
    for (index_t g = 0; g < groups; ++g)
      for (index_t n = 0; n < 16; ++n) {
        float t = sign[0][n] * u[4 * g];
        for (int b = 1; b < 4; ++b) t = t + sign[b][n] * u[4 * g + b];
        table[g * 16 + n] = t;
      }
  }
}

/// Partial sums per lane of a tile of MR activation rows: a one-row tile would otherwise wait on
/// the latency of one running addition. MR · partials is at most 8 (16 lanes: 8 vectors of 16
/// floats with AVX-512, 8 of 8 with AVX2 and four partials at most).
inline constexpr int lut_partial_budget = sizeof(batch<float>) >= 64 ? 8 : 4;
template <int MR>
inline constexpr int lut_partials = MR == 1   ? lut_partial_budget
                                    : MR == 2 ? lut_partial_budget / 2
                                    : MR <= 4 ? (lut_partial_budget / 4 > 0 ? lut_partial_budget / 4 : 1)
                                              : 1;

/// The portable lookup: for m < MR and lane r < 16,
///   acc[16m + r] += Σ_{w < nw} Σ_{k < 8} tables[m·ts + 16·(8w + k) + nibble k of words[16w + r]],
/// summed as lut_partials<MR> running sums (nibble k into sum k mod P, w by w), added pairwise
/// (sum i += sum i + s for s = 1, 2, 4) and then to acc.
template <int MR>
inline void lut_accumulate_portable(const std::uint32_t* words, index_t nw, const float* tables, index_t ts,
                                    float* acc) {
  constexpr int P = lut_partials<MR>;
  for (int m = 0; m < MR; ++m)
    for (index_t r = 0; r < block_rows; ++r) {
      float part[P] = {};
      const float* t = tables + m * ts;
      for (index_t w = 0; w < nw; ++w) {
        std::uint32_t v = words[16 * w + r];
        for (index_t k = 0; k < groups_per_word; ++k, v >>= 4) part[k % P] = part[k % P] + t[16 * (8 * w + k) + (v & 15u)];
      }
      for (int s = 1; s < P; s *= 2)
        for (int i = 0; i + s < P; i += 2 * s) part[i] = part[i] + part[i + s];
      acc[m * 16 + r] = acc[m * 16 + r] + part[0];
    }
}

/// lut_accumulate_portable on the target's vectors (the same sums in the same order per lane).
template <int MR>
inline void lut_accumulate(const std::uint32_t* words, index_t nw, const float* tables, index_t ts, float* acc) {
#if defined(__AVX512F__)
  constexpr int P = lut_partials<MR>;
  __m512 a[MR][P];
  SEQMIX_UNROLL for (int m = 0; m < MR; ++m) SEQMIX_UNROLL for (int p = 0; p < P; ++p) a[m][p] = _mm512_setzero_ps();
  for (index_t w = 0; w < nw; ++w) {
    __m512i idx = _mm512_loadu_si512(static_cast<const void*>(words + 16 * w));
    const float* t = tables + 16 * 8 * w;
    SEQMIX_UNROLL for (int k = 0; k < 8; ++k) {
      SEQMIX_UNROLL for (int m = 0; m < MR; ++m)
        a[m][k % P] = _mm512_add_ps(a[m][k % P], _mm512_permutexvar_ps(idx, _mm512_loadu_ps(t + m * ts + 16 * k)));
      idx = _mm512_srli_epi32(idx, 4);  // vpermps reads the low 4 bits of each lane
    }
  }
  SEQMIX_UNROLL for (int m = 0; m < MR; ++m) {
    SEQMIX_UNROLL for (int s = 1; s < P; s *= 2)
      SEQMIX_UNROLL for (int i = 0; i + s < P; i += 2 * s) a[m][i] = _mm512_add_ps(a[m][i], a[m][i + s]);
    _mm512_storeu_ps(acc + 16 * m, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * m), a[m][0]));
  }
#elif defined(__AVX2__)
  constexpr int P = lut_partials<MR>;
  __m256 a[MR][2][P];
  SEQMIX_UNROLL for (int m = 0; m < MR; ++m) SEQMIX_UNROLL for (int h = 0; h < 2; ++h)
    SEQMIX_UNROLL for (int p = 0; p < P; ++p) a[m][h][p] = _mm256_setzero_ps();
  for (index_t w = 0; w < nw; ++w) {
    __m256i idx[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + 16 * w)),
                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + 16 * w + 8))};
    const float* t = tables + 16 * 8 * w;
    SEQMIX_UNROLL for (int k = 0; k < 8; ++k) {
      SEQMIX_UNROLL for (int h = 0; h < 2; ++h) {
        // vpermps reads the low 3 bits; bit 3 moved to the sign picks the upper half of the table.
        const __m256 hi_half = _mm256_castsi256_ps(_mm256_slli_epi32(idx[h], 28));
        SEQMIX_UNROLL for (int m = 0; m < MR; ++m) {
          const float* tk = t + m * ts + 16 * k;
          const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(tk), idx[h]),
                                            _mm256_permutevar8x32_ps(_mm256_loadu_ps(tk + 8), idx[h]), hi_half);
          a[m][h][k % P] = _mm256_add_ps(a[m][h][k % P], v);
        }
      }
      idx[0] = _mm256_srli_epi32(idx[0], 4), idx[1] = _mm256_srli_epi32(idx[1], 4);
    }
  }
  SEQMIX_UNROLL for (int m = 0; m < MR; ++m) SEQMIX_UNROLL for (int h = 0; h < 2; ++h) {
    SEQMIX_UNROLL for (int s = 1; s < P; s *= 2)
      SEQMIX_UNROLL for (int i = 0; i + s < P; i += 2 * s) a[m][h][i] = _mm256_add_ps(a[m][h][i], a[m][h][i + s]);
    _mm256_storeu_ps(acc + 16 * m + 8 * h, _mm256_add_ps(_mm256_loadu_ps(acc + 16 * m + 8 * h), a[m][h][0]));
  }
#else
  lut_accumulate_portable<MR>(words, nw, tables, ts, acc);
#endif
}

/// Rows of activations the target's lookup takes at once (accumulators in registers).
inline constexpr int lut_rows = sizeof(batch<float>) >= 64 ? 8 : 4;

}  // namespace seqmix::simd::bits
