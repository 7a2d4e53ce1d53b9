// Top-m selection without sorting the n candidates: threshold, then collect (a SIMD pass of group
// maxima gives a value the m best all reach, one vector compare per lanes collects the few
// candidates at or above it, which are partially sorted); a heap of the m best seen so far for the
// small cases.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
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

/// The m best of x[0 .. n) (1 <= m <= n) by a heap of the m best seen so far (the fallback of
/// top_m below for small n, m close to n, or fewer than m finite values): the first m fill a heap
/// whose root is the worst kept; a later candidate, having a larger index, enters only when its
/// value is strictly above the root's, which one vector compare tests for `lanes` candidates at
/// once.
template <class T>
void top_m_heap(const T* x, index_t n, index_t m, candidate<T>* out) {
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

/// Scratch of top_m: the group maxima and the surviving candidates.
template <class T>
struct top_m_scratch {
  std::vector<T> maxima, values;
  std::vector<candidate<T>> kept;
};

/// The m best of x[0 .. n) (1 <= m <= n) in the selection order, best first, into out[0 .. m)
/// (out holds m candidates), without sorting the n candidates: threshold, then collect.
///  1. The full vectors of x, taken R at a time, give `lanes` group maxima each (lane-wise, NaN
///     skipped): G ≈ 4m maxima of disjoint groups.
///  2. τ = a value that at least m maxima reach (bisection between their least and greatest by
///     vector counts, stopped once at most m + m/4 reach it). Then at least m elements are >= τ
///     (the maxima of m groups), so the m-th best value is >= τ and every one of the m best is.
///  3. One vector compare per `lanes` candidates collects the x[i] >= τ (NaN never is), in index
///     order (no NaN among them). With at most 4m survivors each one's rank in the order is counted
///     by vector compares against all of them, branch-free (larger value, or equal value and
///     earlier position); the ranks below m place the answer. More survivors are partially
///     sorted by value, then index.
/// When G < 2m, or τ = -inf (fewer than m finite values: NaN and -inf ties need the index rule
/// among the non-finite), top_m_heap answers instead. Cost O(n + G + k log k) for k survivors.
///
/// With `in_index_order` set, writes only the m indices, in increasing index order, there (out is
/// then scratch).
template <class T>
void top_m(const T* x, index_t n, index_t m, candidate<T>* out, top_m_scratch<T>& s, index_t* in_index_order = nullptr) {
  auto heap = [&] {
    top_m_heap(x, n, m, out);
    if (in_index_order) {
      for (index_t k = 0; k < m; ++k) in_index_order[k] = out[k].index;
      std::sort(in_index_order, in_index_order + m);
    }
  };
  constexpr index_t L = simd::lanes<T>;
  const index_t rows = n / L;
  const index_t R = std::max<index_t>(1, rows * L / (4 * m)), blocks = rows / R, G = blocks * L;
  if (G < 2 * m) return heap();
  using B = simd::batch<T>;
  const T ninf = -std::numeric_limits<T>::infinity();
  s.maxima.resize(std::size_t(G));
  for (index_t b = 0; b < blocks; ++b) {
    B acc(ninf);
    for (index_t k = 0; k < R; ++k) {
      const B v = simd::load(x + (b * R + k) * L);
      acc = simd::select(v > acc, v, acc);
    }
    simd::store(s.maxima.data() + b * L, acc);
  }
  // τ: a value at least m maxima reach. Bisection on [min, max] of the finite maxima by vector
  // counts (the lower end always keeps >= m), stopped once at most m + m/4 maxima reach it; with a
  // non-finite end, the m-th largest maximum itself.
  const T* g = s.maxima.data();
  B lo_v = simd::load(g), hi_v = lo_v;
  for (index_t b = 1; b < blocks; ++b) {
    const B v = simd::load(g + b * L);
    lo_v = simd::select(v < lo_v, v, lo_v), hi_v = simd::select(v > hi_v, v, hi_v);
  }
  T lo = -simd::reduce_max(B(-lo_v)), hi = simd::reduce_max(hi_v);
  if (std::isfinite(lo) && std::isfinite(hi)) {
    const B one(T(1)), zero(T(0));
    for (int it = 0; it < 12 && lo < hi; ++it) {
      const T mid = lo + (hi - lo) / 2;
      if (!(mid > lo && mid < hi)) break;
      B cnt = zero;
      const B vm(mid);
      for (index_t b = 0; b < blocks; ++b) cnt += simd::select(simd::load(g + b * L) >= vm, one, zero);
      const T c = simd::reduce_add(cnt);
      if (c >= T(m)) lo = mid;
      else hi = mid;
      if (c >= T(m) && c <= T(m + m / 4)) break;
    }
  } else {
    std::nth_element(s.maxima.begin(), s.maxima.begin() + (m - 1), s.maxima.end(), std::greater<T>());
    lo = s.maxima[std::size_t(m - 1)];
  }
  const T tau = lo;
  if (!(tau > ninf)) return heap();
  s.kept.resize(std::size_t(n));
  candidate<T>* kept = s.kept.data();
  index_t k = 0;
  const B vt(tau);
  index_t i = 0;
  for (; i + L <= n; i += L) {
    if (!simd::any(simd::load(x + i) >= vt)) continue;
    for (index_t j = i; j < i + L; ++j) {  // branch-free append
      kept[k] = {x[j], j};
      k += x[j] >= tau ? 1 : 0;
    }
  }
  for (; i < n; ++i) {
    kept[k] = {x[i], i};
    k += x[i] >= tau ? 1 : 0;
  }
  if (k <= 4 * m && k < (index_t(1) << 24)) {
    // Each survivor's rank by vector counts, branch-free: rank_i = #{j : x_j > x_i} + #{j < i :
    // x_j = x_i} (survivors are in index order), a permutation of 0 .. k−1; ranks below m are
    // the answer, best first. Positions as T are exact below 2^24.
    const index_t kp = (k + L - 1) / L * L;
    s.values.resize(std::size_t(kp));
    T* v = s.values.data();
    for (index_t j = 0; j < k; ++j) v[j] = kept[j].value;
    for (index_t j = k; j < kp; ++j) v[j] = ninf;  // never above nor equal to a survivor (>= τ > −inf)
    alignas(64) T iota[L];
    for (index_t j = 0; j < L; ++j) iota[j] = T(j);
    const B lane = simd::load(iota), one(T(1)), zero(T(0));
    index_t placed = 0;  // survivors are in index order: those ranked below m, in that order
    for (index_t i = 0; i < k; ++i) {
      const B vi(v[i]), pi = B(static_cast<T>(i));
      B cnt = zero;
      for (index_t c = 0; c < kp; c += L) {
        const B x = simd::load(v + c);
        cnt += simd::select(x > vi, one, zero) + simd::select((x == vi) && (lane + B(T(c)) < pi), one, zero);
      }
      const auto rank = static_cast<index_t>(simd::reduce_add(cnt));
      if (rank < m) {
        if (in_index_order) in_index_order[placed++] = kept[i].index;
        else out[rank] = kept[i];
      }
    }
    return;
  }
  auto plain = [](const candidate<T>& a, const candidate<T>& b) {
    return a.value > b.value || (a.value == b.value && a.index < b.index);
  };
  if (k > m) std::nth_element(kept, kept + (m - 1), kept + k, plain);
  std::sort(kept, kept + m, plain);
  std::copy(kept, kept + m, out);
  if (in_index_order) {
    for (index_t j = 0; j < m; ++j) in_index_order[j] = kept[j].index;
    std::sort(in_index_order, in_index_order + m);
  }
}

/// top_m with its own scratch.
template <class T>
void top_m(const T* x, index_t n, index_t m, candidate<T>* out) {
  top_m_scratch<T> s;
  top_m(x, n, m, out, s);
}

/// Reusable scratch of top_m for one thread.
template <class T>
struct selection_scratch {
  std::vector<candidate<T>> rows, cols, grid;
  std::vector<T> approx_row, approx_col, grid_scores, scol;
  top_m_scratch<T> top;
};

}  // namespace seqmix::kernels::ultramem
