// Blocked out-of-place transposes with a scale: dst[j * lds + i] = f · src[i * rs + j * cs]. Used
// to turn time-major rows into feature-major blocks (the SSD's Bᵀ and states, the KV cache's
// key blocks). Tiles of 16 x 16 walk both sides a cache line at a time; float tiles with unit
// column stride are transposed in registers with AVX-512.
#pragma once

#include <algorithm>
#include <type_traits>

#include "batch.hpp"  // through config.hpp: the intrinsics

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

namespace detail {
#if defined(__AVX512F__)
// dst[j * lds + i] = f · src[i * rs + j] for a 16 x 16 float tile, in registers (64 shuffles).
inline void transpose_tile16(const float* src, index_t rs, float* dst, index_t lds, float f) {
  __m512 r[16], t[16];
  const __m512 vf = _mm512_set1_ps(f);
  SEQMIX_UNROLL for (int i = 0; i < 16; ++i) r[i] = _mm512_mul_ps(_mm512_loadu_ps(src + i * rs), vf);
  SEQMIX_UNROLL for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  auto lo = [](__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
  };
  auto hi = [](__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
  };
  SEQMIX_UNROLL for (int i = 0; i < 16; i += 4) {
    r[i] = lo(t[i], t[i + 2]), r[i + 1] = hi(t[i], t[i + 2]);
    r[i + 2] = lo(t[i + 1], t[i + 3]), r[i + 3] = hi(t[i + 1], t[i + 3]);
  }
  SEQMIX_UNROLL for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88), t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  SEQMIX_UNROLL for (int i = 0; i < 8; ++i) {
    _mm512_storeu_ps(dst + i * lds, _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88));
    _mm512_storeu_ps(dst + (i + 8) * lds, _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd));
  }
}
#endif
}  // namespace detail

/// dst[j * lds + i] = f · src[i * rs + j * cs] for i < rows, j < cols (src and dst must not
/// overlap).
template <class T>
void transpose(const T* src, index_t rs, index_t cs, T* dst, index_t lds, index_t rows, index_t cols, T f = T(1)) {
  constexpr index_t tile = 16;
  for (index_t i0 = 0; i0 < rows; i0 += tile)
    for (index_t j0 = 0; j0 < cols; j0 += tile) {
      const index_t i1 = std::min(rows, i0 + tile), j1 = std::min(cols, j0 + tile);
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>)
        if (cs == 1 && i1 - i0 == tile && j1 - j0 == tile) {
          detail::transpose_tile16(src + i0 * rs + j0, rs, dst + j0 * lds + i0, lds, f);
          continue;
        }
#endif
      for (index_t j = j0; j < j1; ++j)
        for (index_t i = i0; i < i1; ++i) dst[j * lds + i] = f * src[i * rs + j * cs];
    }
}

}  // namespace seqmix::simd
