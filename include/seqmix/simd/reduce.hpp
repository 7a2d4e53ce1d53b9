// Lane sums of many vectors at once: the sums of `lanes` vectors land in the lanes of one vector,
// at a fraction of the cost of `lanes` separate horizontal sums. One tree per target, hidden here:
// AVX-512 float uses its own shuffle tree; other targets xsimd's haddp, whose lane order is not
// the same in every xsimd version (measured once, see row_slots).
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "batch.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

namespace detail {

/// True where the AVX-512 float tree below is used.
template <class T>
inline constexpr bool lane_tree_v =
#if defined(__AVX512F__)
    std::is_same_v<T, float> && lanes<T> == 16 && sizeof(batch<T>) == 64;
#else
    false;
#endif

/// Sum of the lanes of 16 float vectors, x in slot order: the vector of source row s sits at slot
/// tree_slot(s) = 4(s % 4) + s / 4, and lane s of the result is the sum of source row s. 45
/// instructions (15 adds, 30 shuffles) instead of 16 horizontal sums.
inline constexpr index_t tree_slot(index_t s) { return (s % 4) * 4 + s / 4; }

#if defined(__AVX512F__)
[[gnu::always_inline]] inline batch<float> lane_tree(const batch<float>* x) {
  __m512 c[8], e[4], g[2];
  // 128-bit units: c = (a0+a2, a1+a3, b0+b2, b1+b3); e = one unit per source, 4 lanes each.
  SEQMIX_UNROLL for (index_t m = 0; m < 8; ++m)
    c[m] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * m], x[2 * m + 1], 0x44),
                         _mm512_shuffle_f32x4(x[2 * m], x[2 * m + 1], 0xEE));
  SEQMIX_UNROLL for (index_t m = 0; m < 4; ++m)
    e[m] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * m], c[2 * m + 1], 0x88),
                         _mm512_shuffle_f32x4(c[2 * m], c[2 * m + 1], 0xDD));
  // Within units: pairs of lanes, then the remaining pairs.
  SEQMIX_UNROLL for (index_t m = 0; m < 2; ++m)
    g[m] = _mm512_add_ps(_mm512_unpacklo_ps(e[2 * m], e[2 * m + 1]), _mm512_unpackhi_ps(e[2 * m], e[2 * m + 1]));
  return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(g[0]), _mm512_castps_pd(g[1]))),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(g[0]), _mm512_castps_pd(g[1]))));
}
#endif

/// The lane sums of lanes<T> vectors given in slot order.
template <class T>
[[gnu::always_inline]] inline batch<T> lane_sums(const batch<T>* slots) {
#if defined(__AVX512F__)
  if constexpr (lane_tree_v<T>) return lane_tree(slots);
#endif
  return xsimd::haddp(slots);
}

}  // namespace detail

/// Slot of each row for detail::lane_sums: slot[r] is where the vector of row r goes so that its
/// sum lands in lane r. xsimd 8.1's AVX-512 haddp permutes its outputs (lanes 2..5 and 10..13 come
/// out as rows 4, 5, 2, 3 and 12, 13, 10, 11), later versions do not; so the order is measured
/// once, by summing rows r of constant value r, and the same code is right with either.
template <class T>
inline const index_t* row_slots() {
  static const auto slots = [] {
    constexpr index_t W = lanes<T>;
    std::array<index_t, std::size_t(W)> s{};
    alignas(64) batch<T> rows[W];
    for (index_t r = 0; r < W; ++r) rows[r] = batch<T>(T(r));
    alignas(64) T out[W];
    store(out, detail::lane_sums<T>(rows));
    for (index_t lane = 0; lane < W; ++lane) s[std::size_t(lane)] = index_t(std::lround(double(out[lane]) / double(W)));
    return s;  // the sum of slot s[r] lands in lane r
  }();
  return slots.data();
}

/// Collects vectors whose lane sums are wanted, lanes<T> at a time and in any order: put(r, v) for
/// r < lanes<T>, then sums() returns the vector whose lane r is the sum of the lanes of the vector
/// put at r.
template <class T>
struct row_sums {
  alignas(64) batch<T> rows[lanes<T>];
  const index_t* slot = row_slots<T>();
  void put(index_t r, const batch<T>& v) { rows[slot[r]] = v; }
  batch<T> sums() const { return detail::lane_sums<T>(rows); }
};

/// out[p] = the sum of the lanes of v[p], p < N. The tree of row_sums where N is a multiple of
/// lanes<T> on AVX-512 float (its slot order is known at compile time there); elsewhere one
/// horizontal sum per vector.
template <index_t N, class T>
inline void sum_lanes(const batch<T>* v, T* out) {
#if defined(__AVX512F__)
  if constexpr (detail::lane_tree_v<T> && N % 16 == 0) {
    for (index_t p0 = 0; p0 < N; p0 += 16) {
      batch<T> x[16];
      SEQMIX_UNROLL for (index_t i = 0; i < 16; ++i) x[i] = v[p0 + detail::tree_slot(i)];
      store(out + p0, detail::lane_tree(x));
    }
    return;
  }
#endif
  for (index_t p = 0; p < N; ++p) out[p] = reduce_add(v[p]);
}

}  // namespace seqmix::simd
