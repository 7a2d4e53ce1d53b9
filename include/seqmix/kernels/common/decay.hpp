// Decay bounds shared by the kernels (docs/common.md explains each): the largest log-decay span a
// factorisation e^{G_t - G_j} = e^{G_t} · e^{-G_j} may carry, and the thresholds of the four
// "deferred decay, fold before it underflows" schemes: GLA's recurrent runs, RWKV-7's recurrent
// runs, the delta rule's column tiles and Mamba-2 SSD's chunked state. Each kernel keeps its own
// form of the deferred state and of the fold; what they share is the reasoning and the check.
#pragma once

#include <cmath>
#include <limits>

#include "../../config.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::common {

/// Largest decay span (log space) factorised as e^{-G} · e^{G} (the diagonal tiles of the GLA and
/// RWKV-7 chunk kernels): e^{span} times a coefficient stays far from overflow and e^{-span} is a
/// normal number. ln(FLT_MAX)/2 ≈ 44.4 for float.
template <class T>
inline const T span_limit = std::log(std::numeric_limits<T>::max()) / 2;

/// Deferred decay: a state held as S = scale · S~ with the decay accumulated in `scale` (a
/// scalar, or one value per key channel) instead of multiplied into S~ every token; the new terms
/// are divided by the scale. The scale is folded back into S~ before 1/scale could overflow or
/// lose precision. The thresholds, by the form each scheme keeps its scale in:
namespace deferred {

/// GLA recurrent (a float sum of log decays G per channel): a run ends before min G < -8. e^{G}
/// inherits a relative error of about |G|·eps from the sum, so the span is chosen for precision,
/// far inside span_limit; a fold costs about an eighth of a token.
template <class T>
inline constexpr T log_span = T(8);

/// RWKV-7 recurrent (a stored product E of the blocks' decays per channel, exact up to one
/// rounding per block however long the run): a run ends before min E < e^{-16}. The floor only
/// bounds S~ ≤ e^{16} S and the coefficients 1/E.
template <class T>
inline const T product_floor = std::exp(T(-16));

/// RWKV-7 recurrent: smallest E for which the intra-block products are formed as ratios
/// (ã_j · b̃_l with b̃ = b / E): every factor a normal number, b̃ ≤ e^{40} b. Below it the kernel
/// forms them from explicit products of factors ≤ 1.
template <class T>
inline const T ratio_floor = std::exp(T(-40));

/// Delta rule recurrent (a scalar σ per value head, a product of e^{g} within a block): a group's
/// update stays deferred while σ ≥ sqrt(FLT_MIN) ≈ 1e-19 (1.5e-154 in double), so 1/σ ≤ 1e19
/// scales keys and S~ stays far from overflow.
template <class T>
inline const T scale_floor = std::sqrt(std::numeric_limits<T>::min());

/// Mamba-2 SSD chunk (a double scale per head, a product of the chunks' e^{cs_L}): folded before
/// it falls below 2^-40, so 1/scale ≤ 2^40 keeps the float terms divided by it in range.
inline constexpr double state_scale_floor = 0x1p-40;

/// Whether a deferred scale (or the smallest of a vector's) must be folded back: below its floor,
/// or NaN (a NaN decay then reaches the state at once instead of hiding in the scale).
template <class T>
constexpr bool must_fold(T scale, T floor) {
  return !(scale >= floor);
}

}  // namespace deferred

}  // namespace seqmix::kernels::common
