// MultiheadDiffAttn: the DIFF Transformer attention module (microsoft/unilm Diff-Transformer,
// latest version; spec/diff_attn.md) on the softmax-attention kernels.
#pragma once

#include <array>
#include <limits>
#include <vector>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/attention/differential.hpp"
#include "../nn/rotary.hpp"
#include "attention.hpp"  // detail::attention_state

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// Differential attention layer: q/k/v projections into 2H component heads of head_dim d
/// (values: Hkv heads of 2d), interleaved RoPE, two softmax maps per head subtracted with the
/// learned λ, per-head RMSNorm (subln) times (1 − λ_init), out_proj. State: the KV cache.
template <class T = float, class WeightT = T>
class MultiheadDiffAttn : public mixer<MultiheadDiffAttn<T, WeightT>, T> {
 public:
  static constexpr const char* name = "MultiheadDiffAttn";

  struct config {
    index_t hidden_size = 0;  ///< upstream embed_dim
    index_t num_heads = 0;     ///< differential heads H (2H component heads)
    index_t num_kv_heads = 0;  ///< 0: num_heads
    index_t depth = 0;         ///< layer index, for lambda_init
    double lambda_init = std::numeric_limits<double>::quiet_NaN();  ///< NaN: 0.8 − 0.6·exp(−0.3·depth)
    double rope_theta = 10000;
    double subln_eps = 1e-5;
    index_t max_length = 4096;  ///< KV-cache capacity make_state() uses by default

    index_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
    index_t head_dim() const { return hidden_size / std::max<index_t>(num_heads, 1) / 2; }
    index_t n_rep() const { return num_heads / std::max<index_t>(kv_heads(), 1); }
    double init() const { return std::isnan(lambda_init) ? kernels::attention::diff_lambda_init(depth) : lambda_init; }

    void validate() const {
      require_positive(name, "hidden_size (embed_dim)", hidden_size, "num_heads", num_heads, "rope_theta", rope_theta,
                       "max_length", max_length);
      require(hidden_size % (2 * num_heads) == 0, name, "config hidden_size (embed_dim) must be a multiple of 2·num_heads");
      require(num_kv_heads >= 0 && num_heads % kv_heads() == 0, name, "config num_heads must be a multiple of num_kv_heads");
      require(head_dim() % 2 == 0, name, "config head_dim (embed_dim / num_heads / 2) must be even for rotary embeddings");
      require(depth >= 0, name, "config depth must not be negative");
    }
    static auto fields() {
      return std::tuple{config_field{"embed_dim", &config::hidden_size}, config_field{"num_heads", &config::num_heads},
                        config_field{"num_kv_heads", &config::num_kv_heads}, config_field{"depth", &config::depth},
                        config_field{"lambda_init", &config::lambda_init}, config_field{"rope_theta", &config::rope_theta},
                        config_field{"subln_eps", &config::subln_eps}, config_field{"max_length", &config::max_length}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> q_proj, k_proj, v_proj, out_proj;
    tensor<T, 1> lambda_q1, lambda_k1, lambda_q2, lambda_k2;  // [d]
    tensor<T, 1> subln;                                       // subln.weight [2d]
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks. The
  /// λ vectors start as upstream's, normal(0, 0.1) (here uniform with the same deviation).
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t E = c.hidden_size, d = c.head_dim(), kvd = 2 * c.kv_heads() * d;
    linear_weights(f, "q_proj", w.q_proj, E, E);
    linear_weights(f, "k_proj", w.k_proj, kvd, E);
    linear_weights(f, "v_proj", w.v_proj, kvd, E);
    linear_weights(f, "out_proj", w.out_proj, E, 2 * c.num_heads * d);
    const init_rule lambda = init_rule::uniform(-0.1 * std::sqrt(3.0), 0.1 * std::sqrt(3.0));
    f(weight_spec<1>{"lambda_q1", {d}, lambda}, w.lambda_q1);
    f(weight_spec<1>{"lambda_k1", {d}, lambda}, w.lambda_k1);
    f(weight_spec<1>{"lambda_q2", {d}, lambda}, w.lambda_q2);
    f(weight_spec<1>{"lambda_k2", {d}, lambda}, w.lambda_k2);
    f(weight_spec<1>{"subln.weight", {2 * d}, init_rule::ones()}, w.subln);
  }

  /// KV cache (2·Hkv key heads of d, rotated; Hkv value heads of 2d) and forward()'s
  /// temporaries (not copied).
  using State = detail::attention_state<T>;

  MultiheadDiffAttn(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    rope_ = {cfg_.head_dim(), cfg_.rope_theta, nn::rope_layout::interleaved};
  }

  using mixer<MultiheadDiffAttn<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// The learned λ of this layer.
  double lambda() const { return lambda_params().lambda(); }

  /// An empty cache for `batch` sequences of up to `options.capacity` tokens (default
  /// cfg().max_length).
  State make_state(index_t batch, const state_options<T>& options = {}) const {
    const index_t d = cfg_.head_dim(), Hkv = cfg_.kv_heads();
    return State({batch, 2 * Hkv, d, Hkv, 2 * d}, options.capacity > 0 ? options.capacity : cfg_.max_length);
  }

  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y), B = x.extent(0), L = x.extent(1), d = cfg_.head_dim();
    const index_t H = cfg_.num_heads, Hkv = cfg_.kv_heads();
    const auto& s = state.dims();
    check_shape(name, "state (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{s.batch, s.key_heads, s.key_dim, s.value_heads, s.value_dim},
                {B, 2 * Hkv, d, Hkv, 2 * d});
    state.check_room(name, L);
    if (N == 0) return;

    const detail::sequence_rows<T> xr(x);
    const int th = policy.threads;
    // q, o [N, 2H·d] and k, v [N, 2Hkv·d] from the state's scratch (each written before read).
    const index_t qd = 2 * H * d, kd = 2 * Hkv * d;
    T* ws = state.work.get(checked_mul(N, 2 * (qd + kd), name));
    const tensor_view<T, 2> q(ws, {N, qd}), o(ws + N * qd, {N, qd}), k(ws + 2 * N * qd, {N, kd}),
        v(ws + N * (2 * qd + kd), {N, kd});
    w_.q_proj(xr.view, q, name, th), w_.k_proj(xr.view, k, name, th), w_.v_proj(xr.view, v, name, th);
    const auto q4 = q.template reshape<4>({B, L, 2 * H, d});
    const auto k4 = k.template reshape<4>({B, L, 2 * Hkv, d});
    std::vector<T> cos, sin;  // one table for q and k
    rope_.tables(state.length(), L, cos, sin);
    rope_.apply(q4, cos, sin, name, th);
    rope_.apply(k4, cos, sin, name, th);
    kernels::attention::differential<P, T>(policy, q4, k4, v.template reshape<4>({B, L, Hkv, 2 * d}),
                                           o.template reshape<4>({B, L, H, 2 * d}), state, lambda_params(),
                                           {T(1) / std::sqrt(T(d))});
    detail::project_to_sequence<T>(w_.out_proj, o, y, name, th);
  }

 private:
  kernels::attention::diff_params<T> lambda_params() const {
    return {w_.lambda_q1, w_.lambda_k1, w_.lambda_q2, w_.lambda_k2, w_.subln, cfg_.init(), cfg_.subln_eps};
  }

  config cfg_;
  weights w_;
  nn::rotary<T> rope_;
};

static_assert(sequence_mixer<MultiheadDiffAttn<float>>);
static_assert(sequence_mixer<MultiheadDiffAttn<float, bf16>>);

}  // namespace seqmix::layers
