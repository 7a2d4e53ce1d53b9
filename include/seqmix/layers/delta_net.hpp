// DeltaNet: the fla `DeltaNet` module (spec/delta_net.md) around the delta-rule op.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "../io/weights.hpp"
#include "../kernels/delta_rule/delta_rule.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/linear.hpp"
#include "../nn/rmsnorm.hpp"
#include "../policy/execution.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

namespace delta_detail {

// The q, k, v branch shared by DeltaNet and Gated DeltaNet: projection, short causal conv with
// SiLU (conv state carried), and the L2 norm of q and k per head (eps inside the square root).
// Leaves q, k [B·L, key_dim] and v [B·L, value_dim].
template <class T>
struct qkv_branch {
  const nn::linear<T>*proj_q, *proj_k, *proj_v;
  const nn::causal_conv1d<T>*conv_q, *conv_k, *conv_v;
  index_t head_k_dim;
  T l2norm_eps;

  void operator()(tensor_view<const T, 2> x, index_t B, index_t L, tensor<T, 3>& state_q, tensor<T, 3>& state_k,
                  tensor<T, 3>& state_v, tensor<T, 2>& q, tensor<T, 2>& k, tensor<T, 2>& v, const char* who,
                  int threads) const {
    const index_t N = B * L;
    auto branch = [&](const nn::linear<T>& proj, const nn::causal_conv1d<T>& conv, tensor<T, 3>& st, tensor<T, 2>& out) {
      const index_t C = proj.out_features();
      tensor<T, 2> lin({N, C});
      proj(x, lin, who, threads);
      out = tensor<T, 2>({N, C});
      conv(lin.view().template reshape<3>({B, L, C}), out.view().template reshape<3>({B, L, C}), st, who, threads);
    };
    branch(*proj_q, *conv_q, state_q, q);
    branch(*proj_k, *conv_k, state_k, k);
    branch(*proj_v, *conv_v, state_v, v);
    const index_t heads = q.extent(1) / head_k_dim;
    kernels::delta_rule::l2_normalize_rows(q.data(), N * heads, head_k_dim, head_k_dim, l2norm_eps);
    kernels::delta_rule::l2_normalize_rows(k.data(), N * heads, head_k_dim, head_k_dim, l2norm_eps);
  }
};

// beta = sigmoid(b) (times 2 when negative eigenvalues are allowed), in place.
template <class T>
void beta_activation(tensor<T, 2>& b, bool allow_neg_eigval) {
  const T f = allow_neg_eigval ? T(2) : T(1);
  simd::transform(b.data(), b.data(), b.size(), [f](auto z) { return simd::sigmoid(z) * f; });
}

// Per-(token, head) RMSNorm of o [N, heads·V] with weight w [V], gated by silu(gate) when given.
template <class T>
void output_norm(tensor<T, 2>& o, const tensor<T, 2>* gate, const tensor<T, 1>& w, index_t V, T eps) {
  for (index_t n = 0, rows = o.size() / V; n < rows; ++n) {
    T* row = o.data() + n * V;
    if (gate) nn::rmsnorm_gated_row(row, gate->data() + n * V, w.data(), row, V, eps);
    else nn::rmsnorm_row(row, w.data(), row, V, eps);
  }
}

}  // namespace delta_detail

/// DeltaNet layer: q/k/v projections with short causal convolutions and SiLU, L2-normalised q and
/// k, beta = sigmoid(b_proj x), the delta rule, a per-head RMSNorm (gated by silu(g_proj x) when
/// use_gate) and the output projection. Defaults are fla's.
template <class T = float>
class DeltaNet {
 public:
  static constexpr const char* name = "DeltaNet";

  struct config {
    index_t hidden_size = 0;
    index_t num_heads = 0;
    double expand_k = 1.0;
    double expand_v = 1.0;
    index_t conv_size = 4;
    bool conv_bias = false;
    bool use_gate = false;          ///< g_proj and a swish-gated output norm
    bool allow_neg_eigval = false;  ///< beta in (0, 2) instead of (0, 1)
    double norm_eps = 1e-5;
    double l2norm_eps = 1e-6;

    index_t key_dim() const { return static_cast<index_t>(double(hidden_size) * expand_k); }
    index_t value_dim() const { return static_cast<index_t>(double(hidden_size) * expand_v); }
    index_t head_k_dim() const { return key_dim() / num_heads; }
    index_t head_v_dim() const { return value_dim() / num_heads; }
  };

  /// Upstream state_dict entries (names in comments).
  struct weights {
    nn::linear<T> q_proj, k_proj, v_proj;              // {q,k,v}_proj.weight
    nn::linear<T> b_proj;                              // b_proj.weight [H, hidden]
    nn::causal_conv1d<T> q_conv1d, k_conv1d, v_conv1d;  // {q,k,v}_conv1d.weight [C, 1, W] (+ .bias)
    std::optional<nn::linear<T>> g_proj;               // g_proj.weight (use_gate only)
    tensor<T, 1> o_norm;                               // o_norm.weight [head_v_dim]
    nn::linear<T> o_proj;                              // o_proj.weight
  };

  /// Recurrent state [B, H, head_k_dim, head_v_dim] (K-major) and the conv tails [B, C, W-1].
  struct State {
    tensor<T, 4> h;
    tensor<T, 3> conv_q, conv_k, conv_v;
    index_t batch() const { return h.extent(0); }
  };

  DeltaNet(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) { validate(); }

  /// Loads weights by their upstream names, each prefixed with `prefix` (e.g. "model.layers.3.attn.").
  static DeltaNet load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    require(cfg.hidden_size > 0 && cfg.num_heads > 0, name, "hidden_size and num_heads must be positive");
    const io::weight_source src(file, prefix, name);
    const index_t h = cfg.hidden_size, kd = cfg.key_dim(), vd = cfg.value_dim(), W = cfg.conv_size;
    using conv = nn::causal_conv1d<T>;
    weights w{{src.load<T, 2>("q_proj.weight", {kd, h}), {}},
              {src.load<T, 2>("k_proj.weight", {kd, h}), {}},
              {src.load<T, 2>("v_proj.weight", {vd, h}), {}},
              {src.load<T, 2>("b_proj.weight", {cfg.num_heads, h}), {}},
              conv::load(src, "q_conv1d", kd, W, cfg.conv_bias),
              conv::load(src, "k_conv1d", kd, W, cfg.conv_bias),
              conv::load(src, "v_conv1d", vd, W, cfg.conv_bias),
              std::nullopt,
              src.load<T, 1>("o_norm.weight", {cfg.head_v_dim()}),
              {src.load<T, 2>("o_proj.weight", {h, vd}), {}}};
    if (cfg.use_gate) w.g_proj = nn::linear<T>{src.load<T, 2>("g_proj.weight", {vd, h}), {}};
    return DeltaNet(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch) const {
    return {tensor<T, 4>({batch, cfg_.num_heads, cfg_.head_k_dim(), cfg_.head_v_dim()}),
            w_.q_conv1d.make_state(batch), w_.k_conv1d.make_state(batch), w_.v_conv1d.make_state(batch)};
  }

  /// y [B,T,hidden] for x [B,T,hidden]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), H = cfg_.num_heads, N = B * L;
    const index_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim(), kd = cfg_.key_dim(), vd = cfg_.value_dim();
    const index_t P1 = cfg_.conv_size - 1;
    check_shape(name, "x", x.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "y", y.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "state.h", state.h.extents(), {B, H, K, V});
    check_shape(name, "state.conv_q", state.conv_q.extents(), {B, kd, P1});
    check_shape(name, "state.conv_k", state.conv_k.extents(), {B, kd, P1});
    check_shape(name, "state.conv_v", state.conv_v.extents(), {B, vd, P1});
    const detail::sequence_rows<T> x2(x);
    const int th = policy.threads;

    tensor<T, 2> q, k, v, beta({N, H}), o({N, vd});
    const delta_detail::qkv_branch<T> qkv{&w_.q_proj, &w_.k_proj, &w_.v_proj, &w_.q_conv1d,
                                          &w_.k_conv1d, &w_.v_conv1d, K, T(cfg_.l2norm_eps)};
    qkv(x2.view, B, L, state.conv_q, state.conv_k, state.conv_v, q, k, v, name, th);
    w_.b_proj(x2.view, beta, name, th);
    delta_detail::beta_activation(beta, cfg_.allow_neg_eigval);

    kernels::delta_rule::forward(policy, q.view().template reshape<4>({B, L, H, K}),
                                       k.view().template reshape<4>({B, L, H, K}),
                                       v.view().template reshape<4>({B, L, H, V}),
                                       beta.view().template reshape<3>({B, L, H}),
                                       o.view().template reshape<4>({B, L, H, V}), state.h, {T(1) / std::sqrt(T(K))});

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
    require(cfg_.hidden_size > 0 && cfg_.num_heads > 0, name, "hidden_size and num_heads must be positive");
    require(cfg_.key_dim() % cfg_.num_heads == 0 && cfg_.value_dim() % cfg_.num_heads == 0, name,
            "key_dim and value_dim must be multiples of num_heads");
    require(cfg_.conv_size >= 1, name, "conv_size must be at least 1");
    const index_t h = cfg_.hidden_size, kd = cfg_.key_dim(), vd = cfg_.value_dim(), W = cfg_.conv_size;
    check_shape(name, "q_proj.weight", w_.q_proj.weight.extents(), {kd, h});
    check_shape(name, "k_proj.weight", w_.k_proj.weight.extents(), {kd, h});
    check_shape(name, "v_proj.weight", w_.v_proj.weight.extents(), {vd, h});
    check_shape(name, "b_proj.weight", w_.b_proj.weight.extents(), {cfg_.num_heads, h});
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
