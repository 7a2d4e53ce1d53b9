// GatedLinearAttention: the fla `GatedLinearAttention` module (spec/gla.md) around the GLA op.
#pragma once

#include <string>
#include <utility>

#include "../io/weights.hpp"
#include "../kernels/gla/gla.hpp"
#include "../nn/linear.hpp"
#include "../nn/rmsnorm.hpp"
#include "../policy/execution.hpp"
#include "../tensor/tensor.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

/// Gated Linear Attention layer: q/k/v/g projections, low-rank log-sigmoid key gates, the GLA op,
/// a per-head RMSNorm fused with a swish output gate, and the output projection. No short conv,
/// no feature map, num_kv_heads = num_heads (the configuration of the reference cases).
template <class T = float>
class GatedLinearAttention {
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
  };

  /// Upstream state_dict entries (names in comments).
  struct weights {
    nn::linear<T> q_proj, k_proj, v_proj, g_proj;  // {q,k,v,g}_proj.weight
    nn::linear<T> gk_down, gk_up;                  // gk_proj.0.weight; gk_proj.1.weight / .bias
    tensor<T, 1> g_norm;                           // g_norm_swish_gate.weight [head_v_dim]
    nn::linear<T> o_proj;                          // o_proj.weight
  };

  /// Recurrent state [B, H, head_k_dim, head_v_dim] (K-major; fla's layer cache is V-major).
  struct State {
    tensor<T, 4> h;
    index_t batch() const { return h.extent(0); }
  };

  GatedLinearAttention(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) { validate(); }

  /// Loads weights by their upstream names, each prefixed with `prefix` (e.g. "model.layers.3.attn.").
  static GatedLinearAttention load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    const io::weight_source src(file, prefix, name);
    const index_t h = cfg.hidden_size, kd = cfg.key_dim(), vd = cfg.value_dim(), r = cfg.gate_low_rank_dim;
    weights w{{src.load<T, 2>("q_proj.weight", {kd, h}), {}},
              {src.load<T, 2>("k_proj.weight", {kd, h}), {}},
              {src.load<T, 2>("v_proj.weight", {vd, h}), {}},
              {src.load<T, 2>("g_proj.weight", {vd, h}), {}},
              {src.load<T, 2>("gk_proj.0.weight", {r, h}), {}},
              {src.load<T, 2>("gk_proj.1.weight", {kd, r}), src.load<T, 1>("gk_proj.1.bias", {kd})},
              src.load<T, 1>("g_norm_swish_gate.weight", {cfg.head_v_dim()}),
              {src.load<T, 2>("o_proj.weight", {h, vd}), {}}};
    return GatedLinearAttention(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch) const {
    return {tensor<T, 4>({batch, cfg_.num_heads, cfg_.head_k_dim(), cfg_.head_v_dim()})};
  }

  /// y [B,T,hidden] for x [B,T,hidden]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), H = cfg_.num_heads, N = B * L;
    const index_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim(), kd = cfg_.key_dim(), vd = cfg_.value_dim();
    check_shape(name, "x", x.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "y", y.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "state.h", state.h.extents(), {B, H, K, V});
    const detail::sequence_rows<T> rows(x);
    const tensor_view<const T, 2> x2 = rows.view;

    tensor<T, 2> q({N, kd}), k({N, kd}), gk({N, kd}), v({N, vd}), g({N, vd}), o({N, vd});
    tensor<T, 2> gk_low({N, cfg_.gate_low_rank_dim});
    const int th = policy.threads;
    w_.q_proj(x2, q, name, th), w_.k_proj(x2, k, name, th), w_.v_proj(x2, v, name, th), w_.g_proj(x2, g, name, th);
    w_.gk_down(x2, gk_low, name, th), w_.gk_up(gk_low, gk, name, th);
    const T inv_norm = T(1 / cfg_.gate_logit_normalizer);
    simd::transform(gk.data(), gk.data(), gk.size(), [inv_norm](auto z) { return simd::logsigmoid(z) * inv_norm; });

    auto heads = [&](const tensor<T, 2>& t, index_t d) { return t.view().template reshape<4>({B, L, H, d}); };
    kernels::gla::forward(policy, heads(q, K), heads(k, K), heads(v, V), heads(gk, K),
                                o.view().template reshape<4>({B, L, H, V}), state.h,
                                {T(1) / std::sqrt(T(K))});

    for (index_t n = 0; n < N * H; ++n)  // rows of head_v_dim: token n / H, head n % H
      nn::rmsnorm_gated_row(o.data() + n * V, g.data() + n * V, w_.g_norm.data(), o.data() + n * V, V,
                            T(cfg_.norm_eps));
    detail::project_to_sequence<T>(w_.o_proj, o, y, name, policy.threads);
  }

  /// Allocating form of forward().
  template <exec::policy P>
  tensor<T, 3> forward(const P& policy, tensor_view<const T, 3> x, State& state) const {
    tensor<T, 3> y(x.extents());
    forward(policy, x, y.view(), state);
    return y;
  }

  /// One decoding step: x, y [B, hidden].
  void step(tensor_view<const T, 2> x, tensor_view<T, 2> y, State& state) const {
    check_shape(name, "x", x.extents(), {x.extent(0), cfg_.hidden_size});
    check_shape(name, "y", y.extents(), {x.extent(0), cfg_.hidden_size});
    forward(exec::recurrent{}, detail::as_sequence(x), detail::as_sequence(y), state);
  }

 private:
  void validate() const {
    require(cfg_.hidden_size > 0 && cfg_.num_heads > 0, name, "hidden_size and num_heads must be positive");
    require(cfg_.key_dim() % cfg_.num_heads == 0 && cfg_.value_dim() % cfg_.num_heads == 0, name,
            "key_dim and value_dim must be multiples of num_heads");
    const index_t h = cfg_.hidden_size, kd = cfg_.key_dim(), vd = cfg_.value_dim(), r = cfg_.gate_low_rank_dim;
    check_shape(name, "q_proj.weight", w_.q_proj.weight.extents(), {kd, h});
    check_shape(name, "k_proj.weight", w_.k_proj.weight.extents(), {kd, h});
    check_shape(name, "v_proj.weight", w_.v_proj.weight.extents(), {vd, h});
    check_shape(name, "g_proj.weight", w_.g_proj.weight.extents(), {vd, h});
    check_shape(name, "gk_proj.0.weight", w_.gk_down.weight.extents(), {r, h});
    check_shape(name, "gk_proj.1.weight", w_.gk_up.weight.extents(), {kd, r});
    require(w_.gk_up.bias.has_value(), name, "gk_proj.1.bias is required");
    check_shape(name, "gk_proj.1.bias", w_.gk_up.bias->extents(), {kd});
    check_shape(name, "g_norm_swish_gate.weight", w_.g_norm.extents(), {cfg_.head_v_dim()});
    check_shape(name, "o_proj.weight", w_.o_proj.weight.extents(), {h, vd});
  }

  config cfg_;
  weights w_;
};

}  // namespace seqmix::layers
