// GatedDeltaNet: the fla `GatedDeltaNet` module (spec/gated_delta_net.md) around the gated
// delta-rule op, with grouped value heads (num_v_heads a multiple of num_heads).
#pragma once

#include "delta_net.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

/// Gated DeltaNet layer: q/k/v projections with short causal convolutions and SiLU, L2-normalised
/// q and k, beta = sigmoid(b_proj x), log decay g = -exp(A_log) · softplus(a_proj x + dt_bias),
/// the gated delta rule, a per-head RMSNorm gated by silu(g_proj x) and the output projection.
template <class T = float>
class GatedDeltaNet {
 public:
  static constexpr const char* name = "GatedDeltaNet";

  struct config {
    index_t hidden_size = 0;
    index_t head_dim = 0;     ///< head_k_dim
    index_t num_heads = 0;    ///< q/k heads H
    index_t num_v_heads = 0;  ///< value heads HV (a multiple of H); 0 means num_heads
    double expand_v = 2.0;    ///< head_v_dim = int(head_dim · expand_v)
    index_t conv_size = 4;
    bool conv_bias = false;
    bool use_gate = true;           ///< g_proj and a swish-gated output norm
    bool allow_neg_eigval = false;  ///< beta in (0, 2) instead of (0, 1)
    double norm_eps = 1e-5;
    double l2norm_eps = 1e-6;

    index_t v_heads() const { return num_v_heads > 0 ? num_v_heads : num_heads; }
    index_t head_k_dim() const { return head_dim; }
    index_t head_v_dim() const { return static_cast<index_t>(double(head_dim) * expand_v); }
    index_t key_dim() const { return num_heads * head_dim; }
    index_t value_dim() const { return v_heads() * head_v_dim(); }
  };

  /// Upstream state_dict entries (names in comments).
  struct weights {
    nn::linear<T> q_proj, k_proj, v_proj;              // {q,k,v}_proj.weight
    nn::linear<T> a_proj, b_proj;                      // {a,b}_proj.weight [HV, hidden]
    tensor<T, 1> A_log, dt_bias;                       // A_log, dt_bias [HV]
    nn::causal_conv1d<T> q_conv1d, k_conv1d, v_conv1d;  // {q,k,v}_conv1d.weight [C, 1, W] (+ .bias)
    std::optional<nn::linear<T>> g_proj;               // g_proj.weight (use_gate only)
    tensor<T, 1> o_norm;                               // o_norm.weight [head_v_dim]
    nn::linear<T> o_proj;                              // o_proj.weight
  };

  /// Recurrent state [B, HV, head_k_dim, head_v_dim] (K-major; fla's cache is V-major) and the
  /// conv tails [B, C, W-1].
  struct State {
    tensor<T, 4> h;
    tensor<T, 3> conv_q, conv_k, conv_v;
    index_t batch() const { return h.extent(0); }
  };

  GatedDeltaNet(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) { validate(); }

  /// Loads weights by their upstream names, each prefixed with `prefix` (e.g. "model.layers.3.attn.").
  static GatedDeltaNet load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    require(cfg.hidden_size > 0 && cfg.num_heads > 0 && cfg.head_dim > 0, name,
            "hidden_size, num_heads and head_dim must be positive");
    const io::weight_source src(file, prefix, name);
    const index_t h = cfg.hidden_size, kd = cfg.key_dim(), vd = cfg.value_dim(), W = cfg.conv_size, HV = cfg.v_heads();
    using conv = nn::causal_conv1d<T>;
    weights w{{src.load<T, 2>("q_proj.weight", {kd, h}), {}},
              {src.load<T, 2>("k_proj.weight", {kd, h}), {}},
              {src.load<T, 2>("v_proj.weight", {vd, h}), {}},
              {src.load<T, 2>("a_proj.weight", {HV, h}), {}},
              {src.load<T, 2>("b_proj.weight", {HV, h}), {}},
              src.load<T, 1>("A_log", {HV}),
              src.load<T, 1>("dt_bias", {HV}),
              conv::load(src, "q_conv1d", kd, W, cfg.conv_bias),
              conv::load(src, "k_conv1d", kd, W, cfg.conv_bias),
              conv::load(src, "v_conv1d", vd, W, cfg.conv_bias),
              std::nullopt,
              src.load<T, 1>("o_norm.weight", {cfg.head_v_dim()}),
              {src.load<T, 2>("o_proj.weight", {h, vd}), {}}};
    if (cfg.use_gate) w.g_proj = nn::linear<T>{src.load<T, 2>("g_proj.weight", {vd, h}), {}};
    return GatedDeltaNet(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch) const {
    return {tensor<T, 4>({batch, cfg_.v_heads(), cfg_.head_k_dim(), cfg_.head_v_dim()}),
            w_.q_conv1d.make_state(batch), w_.k_conv1d.make_state(batch), w_.v_conv1d.make_state(batch)};
  }

  /// y [B,T,hidden] for x [B,T,hidden]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), H = cfg_.num_heads, HV = cfg_.v_heads(), N = B * L;
    const index_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim(), kd = cfg_.key_dim(), vd = cfg_.value_dim();
    const index_t P1 = cfg_.conv_size - 1;
    check_shape(name, "x", x.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "y", y.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "state.h", state.h.extents(), {B, HV, K, V});
    check_shape(name, "state.conv_q", state.conv_q.extents(), {B, kd, P1});
    check_shape(name, "state.conv_k", state.conv_k.extents(), {B, kd, P1});
    check_shape(name, "state.conv_v", state.conv_v.extents(), {B, vd, P1});
    const detail::sequence_rows<T> x2(x);
    const int th = policy.threads;

    tensor<T, 2> q, k, v, beta({N, HV}), g({N, HV}), o({N, vd});
    const delta_detail::qkv_branch<T> qkv{&w_.q_proj, &w_.k_proj, &w_.v_proj, &w_.q_conv1d,
                                          &w_.k_conv1d, &w_.v_conv1d, K, T(cfg_.l2norm_eps)};
    qkv(x2.view, B, L, state.conv_q, state.conv_k, state.conv_v, q, k, v, name, th);
    w_.b_proj(x2.view, beta, name, th);
    delta_detail::beta_activation(beta, cfg_.allow_neg_eigval);
    // g = -exp(A_log) · softplus(a_proj x + dt_bias): the log decay per token and value head.
    w_.a_proj(x2.view, g, name, th);
    for (index_t n = 0; n < N; ++n)
      for (index_t j = 0; j < HV; ++j)
        g(n, j) = -std::exp(w_.A_log(j)) * simd::softplus(g(n, j) + w_.dt_bias(j));

    kernels::delta_rule::forward(policy, q.view().template reshape<4>({B, L, H, K}),
                                       k.view().template reshape<4>({B, L, H, K}),
                                       v.view().template reshape<4>({B, L, HV, V}),
                                       g.view().template reshape<3>({B, L, HV}),
                                       beta.view().template reshape<3>({B, L, HV}),
                                       o.view().template reshape<4>({B, L, HV, V}), state.h, {T(1) / std::sqrt(T(K))});

    if (w_.g_proj) {
      tensor<T, 2> gate({N, vd});
      (*w_.g_proj)(x2.view, gate, name, th);
      delta_detail::output_norm(o, &gate, w_.o_norm, V, T(cfg_.norm_eps));
    } else {
      delta_detail::output_norm<T>(o, nullptr, w_.o_norm, V, T(cfg_.norm_eps));
    }
    detail::project_to_sequence<T>(w_.o_proj, o, y, name, th);
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
    require(cfg_.hidden_size > 0 && cfg_.num_heads > 0 && cfg_.head_dim > 0, name,
            "hidden_size, num_heads and head_dim must be positive");
    require(cfg_.v_heads() % cfg_.num_heads == 0, name, "num_v_heads must be a multiple of num_heads");
    require(cfg_.head_v_dim() > 0, name, "head_dim · expand_v must be at least 1");
    require(cfg_.conv_size >= 1, name, "conv_size must be at least 1");
    const index_t h = cfg_.hidden_size, kd = cfg_.key_dim(), vd = cfg_.value_dim(), W = cfg_.conv_size;
    const index_t HV = cfg_.v_heads();
    check_shape(name, "q_proj.weight", w_.q_proj.weight.extents(), {kd, h});
    check_shape(name, "k_proj.weight", w_.k_proj.weight.extents(), {kd, h});
    check_shape(name, "v_proj.weight", w_.v_proj.weight.extents(), {vd, h});
    check_shape(name, "a_proj.weight", w_.a_proj.weight.extents(), {HV, h});
    check_shape(name, "b_proj.weight", w_.b_proj.weight.extents(), {HV, h});
    check_shape(name, "A_log", w_.A_log.extents(), {HV});
    check_shape(name, "dt_bias", w_.dt_bias.extents(), {HV});
    check_shape(name, "q_conv1d.weight", w_.q_conv1d.weight.extents(), {kd, W});
    check_shape(name, "k_conv1d.weight", w_.k_conv1d.weight.extents(), {kd, W});
    check_shape(name, "v_conv1d.weight", w_.v_conv1d.weight.extents(), {vd, W});
    require(w_.g_proj.has_value() == cfg_.use_gate, name, "g_proj.weight must be given exactly when use_gate is set");
    if (w_.g_proj) check_shape(name, "g_proj.weight", w_.g_proj->weight.extents(), {vd, h});
    check_shape(name, "o_norm.weight", w_.o_norm.extents(), {cfg_.head_v_dim()});
    check_shape(name, "o_proj.weight", w_.o_proj.weight.extents(), {h, vd});
  }

  config cfg_;
  weights w_;
};

}  // namespace seqmix::layers
