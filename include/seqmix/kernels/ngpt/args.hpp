// Arguments of the nGPT normalized residual update (spec/ngpt.md, "op"): the learning-rate scale
// of the raw alpha parameter, the report of zero rows, and the shape checks.
#pragma once

#include <cmath>
#include <string>

#include "../../config.hpp"
#include "../../error.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ngpt {

/// Options of the update h ← norm(norm(h) + lr ⊙ (norm(h_m) − norm(h))), lr = |alpha · alpha_scale|.
template <class T>
struct options {
  /// Multiplies the raw parameter alpha: upstream's alpha_init_value / alpha_init_scaling
  /// (0.05 / base_scale). 1 when alpha already is the learning rate.
  T alpha_scale = T(1);
  /// Outputs of at least this many bytes are written with streaming stores (they would not stay in
  /// the caches anyway); smaller ones with plain stores, so the next op finds them cached.
  index_t stream_min_bytes = index_t(4) << 20;
};

/// What one call met: rows where norm() saw a zero vector (h, h_m or the sum before the final
/// normalization had a sum of squares of exactly 0, including underflow). norm(0) is defined as 0
/// (upstream divides 0 by 0); such rows are finite, and this count tells a caller they occurred.
struct report {
  index_t zero_rows = 0;
};

/// 1/‖x‖ for a sum of squares s: 0 for s = 0 (norm(0) = 0), NaN stays NaN, an overflowed s gives 0.
template <class T>
inline T inverse_norm(T s) {
  return s > T(0) ? T(1) / std::sqrt(s) : (s == T(0) ? T(0) : s);
}

/// Checks h, h_m, out [B,T,C] (and `normalized` when given), alpha [C], unit stride along C.
/// Returns B·T.
template <class T>
index_t check_args(const char* who, const tensor_view<const T, 3>& h, const tensor_view<const T, 3>& hm,
                   const tensor_view<const T, 1>& alpha, const tensor_view<T, 3>& out,
                   const tensor_view<T, 3>* normalized) {
  const index_t B = h.extent(0), L = h.extent(1), C = h.extent(2);
  check_shape(who, "h_m", hm.extents(), h.extents());
  check_shape(who, "out", out.extents(), h.extents());
  if (normalized) check_shape(who, "h_normalized", normalized->extents(), h.extents());
  check_shape(who, "alpha", alpha.extents(), {C});
  const bool unit = C <= 1 || (h.stride(2) == 1 && hm.stride(2) == 1 && out.stride(2) == 1 && alpha.stride(0) == 1 &&
                               (!normalized || normalized->stride(2) == 1));
  require(unit, who, "h, h_m, out, h_normalized and alpha need unit stride along the channel axis");
  return checked_mul(B, L, who);
}

}  // namespace seqmix::kernels::ngpt
