// Pieces of the online (streaming) softmax: the running-max / running-sum update of one row.
// Scores are kept in the log2 domain (the caller folds log2(e) into the scale), so every
// exponential is simd::exp2_bounded (math.hpp).
#pragma once

#include <algorithm>
#include <limits>
#include <type_traits>

#include "batch.hpp"
#include "math.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

/// Online-softmax state of one row: the running maximum m (log2 domain) and the running sum,
/// kept as one vector of partial sums so that no horizontal add is needed until the end.
///
/// Lazy rescaling: m only moves when a new score exceeds it by more than `slack` (log2 units),
/// so p = 2^(s - m) <= 2^slack never overflows and most tiles skip the horizontal maximum and
/// the rescaling of the output row (alpha = 1). The result is the same softmax: any m works as
/// long as numerator and denominator use the same one.
template <class T>
struct online_row {
  static constexpr T slack = T(8);
  /// Score of a masked key: finite (so s - m never becomes inf - inf), far below any real one.
  static constexpr T masked = std::numeric_limits<T>::lowest();
  /// Start value of m: far above `masked`, so masked keys get p = 0 even before any real score.
  static constexpr T initial_max = std::is_same_v<T, float> ? T(-1e30) : T(-1e300);
};

/// Updates row statistics for the scores s[0..NV) of one row (log2 domain, masked = `masked`) and
/// writes p = 2^(s - m) to `p`. `m` is the running max, `l` the running partial sums (one vector);
/// returns alpha, the factor the row's earlier accumulators must be multiplied by (1 when m did
/// not move).
template <index_t NV, class T>
inline T online_softmax_update(batch<T> (&s)[NV], T& m, T* l, T* p) {
  constexpr index_t L = lanes<T>;
  batch<T> top = s[0];
  SEQMIX_UNROLL for (index_t v = 1; v < NV; ++v) top = xsimd::max(top, s[v]);
  T alpha = T(1);
  batch<T> lsum = load(l);
  if (xsimd::any(top > batch<T>(m + online_row<T>::slack))) {
    const T m_new = std::max(m, reduce_max(top));
    // alpha on a vector: a libm call (scalar exp2f) here, even on this rare path, made GCC keep the
    // caller's score accumulators on the stack (every vector register is call-clobbered).
    // m - m_new <= 0; the first m - m_new is about -1e30, which gives 0.
    const batch<T> a = exp2_bounded(batch<T>(m - m_new));
    alpha = a.get(0);
    m = m_new;
    lsum *= a;
  }
  const batch<T> mv(m);
  SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) {
    const batch<T> e = exp2_bounded(s[v] - mv);
    store(p + v * L, e);
    lsum += e;
  }
  store(l, lsum);
  return alpha;
}

}  // namespace seqmix::simd
