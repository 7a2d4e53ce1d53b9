// What DeltaNet and Gated DeltaNet share around their own gates (spec/delta_net.md,
// spec/gated_delta_net.md): the weight-table entries before and after them, the recurrent state
// with the conv tails, the shape checks, and the output tail (per-head RMSNorm, gated by
// silu(g_proj x) when use_gate, then o_proj). The branch math is nn/delta_branch.hpp.
#pragma once

#include <algorithm>

#include "../nn/delta_branch.hpp"
#include "mixer.hpp"
#include "sequence_rows.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers::detail {

/// Recurrent state [B, heads, head_k_dim, head_v_dim] (K-major; fla's cache is V-major), the
/// conv tails [B, C, W-1] of q, k and v, and forward()'s temporaries (scratch: not copied). Each
/// layer derives its own State from it, so the two layers' states stay distinct types.
template <class T>
struct delta_state {
  tensor<T, 4> h;
  tensor<T, 3> conv_q, conv_k, conv_v;
  scratch<T> work;
  index_t batch() const { return h.extent(0); }
};

/// forward()'s buffers for N tokens, carved from the state's scratch (fresh tensors would be
/// zero-filled by the kernel on every call; each is written in full before it is read): q, k
/// [N, key_dim], v, o [N, value_dim], beta and g [N, heads] (g only when `gates`), and tmp, room
/// for N rows of max(key_dim, value_dim): the projections before their convs, then the output gate.
template <class T>
struct delta_buffers {
  tensor_view<T, 2> q, k, v, o, beta, g;
  tensor_view<T, 1> tmp;
};

template <class T, class C>
delta_buffers<T> delta_work(const char* name, const C& c, delta_state<T>& s, index_t N, index_t heads, bool gates) {
  const index_t kd = c.key_dim(), vd = c.value_dim(), hg = gates ? 2 * heads : heads, wide = std::max(kd, vd);
  T* p = s.work.get(checked_mul(N, 2 * kd + 2 * vd + hg + wide, name));
  auto take = [&](index_t width) {
    const tensor_view<T, 2> t(p, {N, width});
    p += N * width;
    return t;
  };
  delta_buffers<T> b;
  b.q = take(kd), b.k = take(kd), b.v = take(vd), b.o = take(vd), b.beta = take(heads);
  if (gates) b.g = take(heads);
  b.tmp = tensor_view<T, 1>(p, {N * wide});
  return b;
}

/// The entries that open both weight tables: the q, k and v projections.
template <class C, class W, class F>
void qkv_projection_weights(const C& c, W& w, F&& f) {
  linear_weights(f, "q_proj", w.q_proj, c.key_dim(), c.hidden_size);
  linear_weights(f, "k_proj", w.k_proj, c.key_dim(), c.hidden_size);
  linear_weights(f, "v_proj", w.v_proj, c.value_dim(), c.hidden_size);
}

/// The entries that close both tables: the short convs, g_proj (fla has no bias: a given one is an
/// error), o_norm and o_proj.
template <class C, class W, class F>
void conv_and_output_weights(const C& c, W& w, F&& f) {
  const index_t h = c.hidden_size, kd = c.key_dim(), vd = c.value_dim();
  conv_weights(f, "q_conv1d", w.q_conv1d, kd, c.conv_size, c.conv_bias);
  conv_weights(f, "k_conv1d", w.k_conv1d, kd, c.conv_size, c.conv_bias);
  conv_weights(f, "v_conv1d", w.v_conv1d, vd, c.conv_size, c.conv_bias);
  f(weight_spec<2>{"g_proj.weight", {vd, h}, {}, c.use_gate}, w.g_proj.weight);
  f(weight_spec<1>{"g_proj.bias", {vd}, {}, false}, w.g_proj.bias);
  f(weight_spec<1>{"o_norm.weight", {c.head_v_dim()}, init_rule::ones()}, w.o_norm);
  linear_weights(f, "o_proj", w.o_proj, h, vd);
}

/// A zero state for `batch` sequences and `heads` value heads.
template <class State, class T, class C, class W>
State make_delta_state(const C& c, const W& w, index_t batch, index_t heads) {
  State s;
  s.h = tensor<T, 4>({batch, heads, c.head_k_dim(), c.head_v_dim()});
  s.conv_q = w.q_conv1d.make_state(batch), s.conv_k = w.k_conv1d.make_state(batch);
  s.conv_v = w.v_conv1d.make_state(batch);
  return s;
}

/// Checks the state of B sequences for `heads` value heads.
template <class T, class C>
void check_delta_state(const char* name, const C& c, index_t B, const delta_state<T>& s, index_t heads) {
  const index_t P1 = c.conv_size - 1;
  check_shape(name, "state.h", s.h.extents(), {B, heads, c.head_k_dim(), c.head_v_dim()});
  check_shape(name, "state.conv_q", s.conv_q.extents(), {B, c.key_dim(), P1});
  check_shape(name, "state.conv_k", s.conv_k.extents(), {B, c.key_dim(), P1});
  check_shape(name, "state.conv_v", s.conv_v.extents(), {B, c.value_dim(), P1});
}

/// b.q, b.k [B·L, key_dim] and b.v [B·L, value_dim] from the token rows x: projections (into
/// b.tmp), short convs with SiLU (the conv tails carried in s), L2-normalised q and k per head.
template <class T, class C, class W>
void delta_qkv(const char* name, const C& c, const W& w, tensor_view<const T, 2> x, index_t B, index_t L,
               delta_state<T>& s, const delta_buffers<T>& b, int threads) {
  using weight_type = typename std::remove_cvref_t<decltype(w.q_proj)>::weight_type;
  const nn::qkv_branch<T, weight_type> qkv{&w.q_proj,   &w.k_proj,   &w.v_proj,       &w.q_conv1d,
                                           &w.k_conv1d, &w.v_conv1d, c.head_k_dim(), T(c.l2norm_eps)};
  qkv(x, B, L, s.conv_q, s.conv_k, s.conv_v, b.q, b.k, b.v, b.tmp, name, threads);
}

/// y = o_proj(norm(o)): b.o [B·L, value_dim] normed per head in place (gated by silu(g_proj x),
/// formed in b.tmp, when use_gate), then projected into y [B, L, hidden].
template <class T, class C, class W>
void delta_output(const char* name, const C& c, const W& w, tensor_view<const T, 2> x, const delta_buffers<T>& b,
                  tensor_view<T, 3> y, int threads) {
  const T* gate = nullptr;
  if (c.use_gate) {
    const tensor_view<T, 2> g(b.tmp.data(), {x.extent(0), c.value_dim()});
    w.g_proj(x, g, name, threads);
    gate = g.data();
  }
  nn::output_norm<T>(b.o, gate, w.o_norm, c.head_v_dim(), T(c.norm_eps));
  project_to_sequence<T>(w.o_proj, b.o, y, name, threads);
}

}  // namespace seqmix::layers::detail
