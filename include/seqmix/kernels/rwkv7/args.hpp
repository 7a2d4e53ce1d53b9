// Argument checks shared by every RWKV-7 policy.
#pragma once

#include "../../error.hpp"
#include "../../tensor/view.hpp"
#include "../common/args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

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

/// Validates shapes in.r, w, k, a, b [B,T,H,K], in.v, o [B,T,H,V], state [B,H,K,V] and unit
/// last-axis strides.
template <class T>
void check_args(const inputs<T>& in, const tensor_view<T, 4>& o, const tensor_view<T, 4>& state) {
  const index_t B = in.r.extent(0), T_ = in.r.extent(1), H = in.r.extent(2), K = in.r.extent(3), V = in.v.extent(3);
  check_shape("rwkv7", "w", in.w.extents(), in.r.extents());
  check_shape("rwkv7", "k", in.k.extents(), in.r.extents());
  check_shape("rwkv7", "a", in.a.extents(), in.r.extents());
  check_shape("rwkv7", "b", in.b.extents(), in.r.extents());
  check_shape("rwkv7", "v", in.v.extents(), {B, T_, H, V});
  check_shape("rwkv7", "o", o.extents(), {B, T_, H, V});
  check_shape("rwkv7", "state", state.extents(), {B, H, K, V});
  auto unit_keys = [&] {
    for (const auto* x : {&in.r, &in.w, &in.k, &in.a, &in.b})
      if (x->stride(3) != 1) return false;
    return state.stride(2) >= V;
  };
  const bool unit = (K <= 1 || unit_keys()) &&
                    (V <= 1 || (in.v.stride(3) == 1 && o.stride(3) == 1 && state.stride(3) == 1));
  require(unit, "rwkv7", "r, w, k, a, b, v, o and state need unit stride along their last axis");
}

namespace detail {

using common::head_rows;

// The rows of one head (inputs and output) and its state [K,V].
template <class T>
struct head_io {
  head_rows<const T> r, w, k, v, a, b;
  head_rows<T> o;
  T* S;
  // The same head from token t on.
  head_io from(index_t t) const { return {r.from(t), w.from(t), k.from(t), v.from(t), a.from(t), b.from(t), o.from(t), S}; }
};

// Head h of batch element bi, from token 0.
template <class T>
head_io<T> head_of(const inputs<T>& in, const tensor_view<T, 4>& o, const tensor_view<T, 4>& state, index_t bi,
                   index_t h) {
  auto rows = [&]<class U>(const tensor_view<U, 4>& x) { return head_rows<U>{x.ptr(bi, 0, h), x.stride(1)}; };
  return {rows(in.r), rows(in.w), rows(in.k), rows(in.v), rows(in.a), rows(in.b), rows(o), state.ptr(bi, h)};
}

}  // namespace detail

}  // namespace seqmix::kernels::rwkv7
