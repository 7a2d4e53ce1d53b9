// Top-m selection without sorting the n candidates: a heap of the m best seen so far, and a SIMD
// threshold test that skips a whole vector of candidates when none beats the heap's worst.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../config.hpp"
#include "../../simd/batch.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ultramem {

/// One candidate: its value and its position.
template <class T>
struct candidate {
  T value;
  index_t index;
};

/// The selection order: larger value first, then smaller index; NaN counts as -inf. A strict
/// total order on distinct indices, so the m best are unique (std::partial_sort with it gives the
/// same list).
template <class T>
inline bool better(const candidate<T>& a, const candidate<T>& b) {
  const T x = std::isnan(a.value) ? -std::numeric_limits<T>::infinity() : a.value;
  const T y = std::isnan(b.value) ? -std::numeric_limits<T>::infinity() : b.value;
  return x > y || (x == y && a.index < b.index);
}

/// The m best of x[0 .. n) (1 <= m <= n) in the selection order, best first, into out[0 .. m)
/// (out holds m candidates). Cost O(n + k·log m) for k accepted candidates: the first m fill a
/// heap whose root is the worst kept; a later candidate, having a larger index, enters only when
/// its value is strictly above the root's, which one vector compare tests for `lanes` candidates
/// at once (a random order accepts about m·ln(n/m) of them).
template <class T>
void top_m(const T* x, index_t n, index_t m, candidate<T>* out) {
  auto cmp = [](const candidate<T>& a, const candidate<T>& b) { return better(a, b); };
  for (index_t i = 0; i < m; ++i) out[i] = {x[i], i};
  std::make_heap(out, out + m, cmp);  // out[0]: the worst kept
  auto threshold = [&] {
    const T v = out[0].value;
    return std::isnan(v) ? -std::numeric_limits<T>::infinity() : v;
  };
  T thr = threshold();
  auto offer = [&](index_t i) {
    if (x[i] > thr) {  // false for NaN: it ranks as -inf, and the kept root has a smaller index
      std::pop_heap(out, out + m, cmp);
      out[m - 1] = {x[i], i};
      std::push_heap(out, out + m, cmp);
      thr = threshold();
    }
  };
  constexpr index_t L = simd::lanes<T>;
  index_t i = m;
  for (; i < n && i % L != 0; ++i) offer(i);
  for (; i + L <= n; i += L) {
    if (!simd::any(simd::load(x + i) > simd::batch<T>(thr))) continue;
    for (index_t j = i; j < i + L; ++j) offer(j);
  }
  for (; i < n; ++i) offer(i);
  std::sort_heap(out, out + m, cmp);  // best first
}

/// Reusable scratch of top_m for one thread.
template <class T>
struct selection_scratch {
  std::vector<candidate<T>> rows, cols, grid;
  std::vector<T> approx_row, approx_col, grid_scores, scol;
};

}  // namespace seqmix::kernels::ultramem
