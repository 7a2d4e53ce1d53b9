// GatedLinearAttention: the fla `GatedLinearAttention` module (spec/gla.md) around the GLA op.
#pragma once

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/gla/gla.hpp"
#include "../nn/rmsnorm.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// Gated Linear Attention layer: q/k/v/g projections, low-rank log-sigmoid key gates, the GLA op,
/// a per-head RMSNorm fused with a swish output gate, and the output projection. No short conv,
/// no feature map, num_kv_heads = num_heads (the configuration of the reference cases).
template <class T = float, class WeightT = T>
class GatedLinearAttention : public mixer<GatedLinearAttention<T, WeightT>, T> {
 public:
  static constexpr const char* name = "GatedLinearAttention";

  struct config {
    index_t hidden_size = 0;
    index_t num_heads = 0;
    double expand_k = 0.5;
    double expand_v = 1.0;
    index_t gate_low_rank_dim = 16;
    double gate_logit_normalizer = 16;
    double norm_eps = 1e-5;

    index_t key_dim() const { return static_cast<index_t>(double(hidden_size) * expand_k); }
    index_t value_dim() const { return static_cast<index_t>(double(hidden_size) * expand_v); }
    index_t head_k_dim() const { return key_dim() / num_heads; }
    index_t head_v_dim() const { return value_dim() / num_heads; }

    void validate() const {
      require_positive(name, "hidden_size", hidden_size, "num_heads", num_heads, "expand_k", expand_k, "expand_v",
                       expand_v, "gate_low_rank_dim", gate_low_rank_dim, "gate_logit_normalizer", gate_logit_normalizer);
      require_head_split(name, key_dim(), value_dim(), num_heads);
    }
    static auto fields() {
      return std::tuple{config_field{"hidden_size", &config::hidden_size}, config_field{"num_heads", &config::num_heads},
                        config_field{"expand_k", &config::expand_k}, config_field{"expand_v", &config::expand_v},
                        config_field{"gate_low_rank_dim", &config::gate_low_rank_dim},
                        config_field{"gate_logit_normalizer", &config::gate_logit_normalizer},
                        config_field{"norm_eps", &config::norm_eps}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> q_proj, k_proj, v_proj, g_proj;
    nn::linear<T, WeightT> gk_down, gk_up;  // gk_proj.0 (low rank), gk_proj.1 (with bias)
    tensor<T, 1> g_norm;           // g_norm_swish_gate.weight [head_v_dim]
    nn::linear<T, WeightT> o_proj;
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t h = c.hidden_size, kd = c.key_dim(), vd = c.value_dim(), r = c.gate_low_rank_dim;
    linear_weights(f, "q_proj", w.q_proj, kd, h);
    linear_weights(f, "k_proj", w.k_proj, kd, h);
    linear_weights(f, "v_proj", w.v_proj, vd, h);
    linear_weights(f, "g_proj", w.g_proj, vd, h);
    linear_weights(f, "gk_proj.0", w.gk_down, r, h);
    linear_weights(f, "gk_proj.1", w.gk_up, kd, r, /*bias=*/true);
    f(weight_spec<1>{"g_norm_swish_gate.weight", {c.head_v_dim()}, init_rule::ones()}, w.g_norm);
    linear_weights(f, "o_proj", w.o_proj, h, vd);
  }

  /// Recurrent state [B, H, head_k_dim, head_v_dim] (K-major; fla's layer cache is V-major).
  struct State {
    tensor<T, 4> h;
    scratch<T> work;  // forward()'s temporaries: 3·key_dim + 3·value_dim + gate_low_rank_dim floats a token
    index_t batch() const { return h.extent(0); }
  };

  GatedLinearAttention(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) { this->check_weights(cfg_, w_); }

  using mixer<GatedLinearAttention<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    State s;
    s.h = tensor<T, 4>({batch, cfg_.num_heads, cfg_.head_k_dim(), cfg_.head_v_dim()});
    return s;
  }

  /// y [B,T,hidden] for x [B,T,hidden]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y), B = x.extent(0), L = x.extent(1), H = cfg_.num_heads;
    const index_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim(), kd = cfg_.key_dim(), vd = cfg_.value_dim();
    check_shape(name, "state.h", state.h.extents(), {B, H, K, V});
    if (N == 0) return;
    const detail::sequence_rows<T> rows(x);
    const tensor_view<const T, 2> x2 = rows.view;

    // q, k, gk [N, kd], v, g, o [N, vd] and gk_low [N, r] from the state's scratch (fresh buffers
    // would be zero-filled by the kernel on every call); each is written in full before it is read.
    const index_t r = cfg_.gate_low_rank_dim;
    T* ws = state.work.get(checked_mul(N, 3 * kd + 3 * vd + r, name));
    const tensor_view<T, 2> q(ws, {N, kd}), k(ws + N * kd, {N, kd}), gk(ws + 2 * N * kd, {N, kd});
    const tensor_view<T, 2> v(ws + 3 * N * kd, {N, vd}), g(ws + 3 * N * kd + N * vd, {N, vd}),
        o(ws + 3 * N * kd + 2 * N * vd, {N, vd}), gk_low(ws + 3 * N * (kd + vd), {N, r});
    const int th = policy.threads;
    w_.q_proj(x2, q, name, th), w_.k_proj(x2, k, name, th), w_.v_proj(x2, v, name, th), w_.g_proj(x2, g, name, th);
    w_.gk_down(x2, gk_low, name, th), w_.gk_up(gk_low, gk, name, th);
    const T inv_norm = T(1 / cfg_.gate_logit_normalizer);
    simd::transform(gk.data(), gk.data(), gk.size(), [inv_norm](auto z) { return simd::logsigmoid(z) * inv_norm; });

    auto heads = [&](const tensor_view<T, 2>& t, index_t d) { return t.template reshape<4>({B, L, H, d}); };
    kernels::gla::forward(policy, heads(q, K), heads(k, K), heads(v, V), heads(gk, K),
                                o.template reshape<4>({B, L, H, V}), state.h,
                                {T(1) / std::sqrt(T(K))});

    for (index_t n = 0; n < N * H; ++n)  // rows of head_v_dim: token n / H, head n % H
      nn::rmsnorm_gated_row(o.data() + n * V, g.data() + n * V, w_.g_norm.data(), o.data() + n * V, V,
                            T(cfg_.norm_eps));
    detail::project_to_sequence<T>(w_.o_proj, o, y, name, policy.threads);
  }

 private:
  config cfg_;
  weights w_;
};

static_assert(sequence_mixer<GatedLinearAttention<float>>);
static_assert(sequence_mixer<GatedLinearAttention<float, bf16>>);

}  // namespace seqmix::layers
