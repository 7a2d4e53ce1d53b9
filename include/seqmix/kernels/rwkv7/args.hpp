// Argument checks shared by every RWKV-7 policy.
#pragma once

#include "../../error.hpp"
#include "../../tensor/view.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

namespace detail {

// Token-major pointers of one head: element (t, i) at p[t * ts + i].
template <class T>
struct head_rows {
  T* p;
  index_t ts;
  T* row(index_t t) const { return p + t * ts; }
};

}  // namespace detail

/// The op's inputs by name (spec/rwkv7.md), so that swapping two of the six same-typed views is a
/// visible edit rather than a silent one: build with designated initialisers,
/// `inputs<float>{.r = r, .w = w, .k = k, .v = v, .a = a, .b = b}`.
template <class T>
struct inputs {
  tensor_view<const T, 4> r;  ///< [B,T,H,K] receptance
  tensor_view<const T, 4> w;  ///< [B,T,H,K] log decay (≤ 0)
  tensor_view<const T, 4> k;  ///< [B,T,H,K] key
  tensor_view<const T, 4> v;  ///< [B,T,H,V] value
  tensor_view<const T, 4> a;  ///< [B,T,H,K] in-context learning rate direction (upstream -kk)
  tensor_view<const T, 4> b;  ///< [B,T,H,K] (upstream kk·a)
};

/// Validates shapes r, w, k, a, b [B,T,H,K], v, o [B,T,H,V], state [B,H,K,V] and unit last-axis
/// strides.
template <class T>
void check_args(const tensor_view<const T, 4>& r, const tensor_view<const T, 4>& w, const tensor_view<const T, 4>& k,
                const tensor_view<const T, 4>& v, const tensor_view<const T, 4>& a, const tensor_view<const T, 4>& b,
                const tensor_view<T, 4>& o, const tensor_view<T, 4>& state) {
  const index_t B = r.extent(0), T_ = r.extent(1), H = r.extent(2), K = r.extent(3), V = v.extent(3);
  check_shape("rwkv7", "w", w.extents(), r.extents());
  check_shape("rwkv7", "k", k.extents(), r.extents());
  check_shape("rwkv7", "a", a.extents(), r.extents());
  check_shape("rwkv7", "b", b.extents(), r.extents());
  check_shape("rwkv7", "v", v.extents(), {B, T_, H, V});
  check_shape("rwkv7", "o", o.extents(), {B, T_, H, V});
  check_shape("rwkv7", "state", state.extents(), {B, H, K, V});
  const bool unit = (K <= 1 || (r.stride(3) == 1 && w.stride(3) == 1 && k.stride(3) == 1 && a.stride(3) == 1 &&
                                b.stride(3) == 1 && state.stride(2) >= V)) &&
                    (V <= 1 || (v.stride(3) == 1 && o.stride(3) == 1 && state.stride(3) == 1));
  require(unit, "rwkv7", "r, w, k, a, b, v, o and state need unit stride along their last axis");
}

}  // namespace seqmix::kernels::rwkv7
