// Argument checks shared by every GLA policy.
#pragma once

#include "../../error.hpp"
#include "../../tensor/view.hpp"
#include "../common/args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::gla {

/// Options of the GLA op: the scale of q (0 means K^-1/2).
template <class T>
using options = common::options<T>;

namespace detail {
using common::head_rows;
}  // namespace detail

/// Validates shapes q, k, g [B,T,H,K], v, o [B,T,H,V], state [B,H,K,V] and unit last-axis
/// strides; returns the scale to use.
template <class T>
T check_args(const tensor_view<const T, 4>& q, const tensor_view<const T, 4>& k,
             const tensor_view<const T, 4>& v, const tensor_view<const T, 4>& g,
             const tensor_view<T, 4>& o, const tensor_view<T, 4>& state, const options<T>& opt) {
  const index_t B = q.extent(0), T_ = q.extent(1), H = q.extent(2), K = q.extent(3), V = v.extent(3);
  check_shape("gla", "k", k.extents(), q.extents());
  check_shape("gla", "g", g.extents(), q.extents());
  check_shape("gla", "v", v.extents(), {B, T_, H, V});
  check_shape("gla", "o", o.extents(), {B, T_, H, V});
  check_shape("gla", "state", state.extents(), {B, H, K, V});
  const bool unit = (K <= 1 || (q.stride(3) == 1 && k.stride(3) == 1 && g.stride(3) == 1 && state.stride(2) >= V)) &&
                    (V <= 1 || (v.stride(3) == 1 && o.stride(3) == 1 && state.stride(3) == 1));
  require(unit, "gla", "q, k, g, v, o and state need unit stride along their last axis");
  return common::scale_of(opt, K);
}

}  // namespace seqmix::kernels::gla
