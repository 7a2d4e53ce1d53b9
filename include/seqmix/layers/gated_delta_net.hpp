// GatedDeltaNet: the fla `GatedDeltaNet` module (spec/gated_delta_net.md) around the gated
// delta-rule op, with grouped value heads (num_v_heads a multiple of num_heads).
#pragma once

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/delta_rule/delta_rule.hpp"
#include "delta_rule_parts.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// Gated DeltaNet layer: q/k/v projections with short causal convolutions and SiLU, L2-normalised
/// q and k, beta = sigmoid(b_proj x), log decay g = -exp(A_log) · softplus(a_proj x + dt_bias),
/// the gated delta rule, a per-head RMSNorm gated by silu(g_proj x) and the output projection.
template <class T = float, class WeightT = T>
class GatedDeltaNet : public mixer<GatedDeltaNet<T, WeightT>, T> {
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

    void validate() const {
      require_positive(name, "hidden_size", hidden_size, "num_heads", num_heads, "head_dim", head_dim, "conv_size",
                       conv_size);
      require(num_v_heads >= 0 && v_heads() % num_heads == 0, name, "config num_v_heads must be a multiple of num_heads");
      require(head_v_dim() > 0, name, "config head_dim·expand_v must be at least 1");
    }
    static auto fields() {
      return std::tuple{config_field{"hidden_size", &config::hidden_size}, config_field{"head_dim", &config::head_dim},
                        config_field{"num_heads", &config::num_heads}, config_field{"num_v_heads", &config::num_v_heads},
                        config_field{"expand_v", &config::expand_v}, config_field{"conv_size", &config::conv_size},
                        config_field{"conv_bias", &config::conv_bias}, config_field{"use_gate", &config::use_gate},
                        config_field{"allow_neg_eigval", &config::allow_neg_eigval},
                        config_field{"norm_eps", &config::norm_eps}, config_field{"l2norm_eps", &config::l2norm_eps}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> q_proj, k_proj, v_proj, a_proj, b_proj;
    tensor<T, 1> A_log, dt_bias;  // [HV]
    nn::causal_conv1d<T> q_conv1d, k_conv1d, v_conv1d;
    nn::linear<T, WeightT> g_proj;  // empty without use_gate
    tensor<T, 1> o_norm;   // [head_v_dim]
    nn::linear<T, WeightT> o_proj;
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks. A_log
  /// and dt_bias follow fla's init: A uniform in [1, 16), dt log-uniform in [1e-3, 0.1] stored as
  /// its inverse softplus.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t HV = c.v_heads();
    detail::qkv_projection_weights(c, w, f);
    linear_weights(f, "a_proj", w.a_proj, HV, c.hidden_size);
    linear_weights(f, "b_proj", w.b_proj, HV, c.hidden_size);
    f(weight_spec<1>{"A_log", {HV}, init_rule::values([](index_t, double u) { return std::log(1 + 15 * u); })}, w.A_log);
    f(weight_spec<1>{"dt_bias", {HV}, init_rule::dt_bias()}, w.dt_bias);
    detail::conv_and_output_weights(c, w, f);
  }

  /// Recurrent state [B, HV, head_k_dim, head_v_dim] (K-major; fla's cache is V-major), the conv
  /// tails [B, C, W-1] and forward()'s temporaries (not copied).
  struct State : detail::delta_state<T> {};

  GatedDeltaNet(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
  }

  using mixer<GatedDeltaNet<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    return detail::make_delta_state<State, T>(cfg_, w_, batch, cfg_.v_heads());
  }

  /// y [B,T,hidden] for x [B,T,hidden]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y);
    detail::check_delta_state(name, cfg_, x.extent(0), state, cfg_.v_heads());
    if (N == 0) return;
    const index_t B = x.extent(0), L = x.extent(1), H = cfg_.num_heads, HV = cfg_.v_heads();
    const index_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim();
    const detail::sequence_rows<T> x2(x);
    const int th = policy.threads;

    const auto b = detail::delta_work(name, cfg_, state, N, HV, true);
    detail::delta_qkv(name, cfg_, w_, x2.view, B, L, state, b, th);
    w_.b_proj(x2.view, b.beta, name, th);
    nn::beta_activation(b.beta, cfg_.allow_neg_eigval);
    // g = -exp(A_log) · softplus(a_proj x + dt_bias): the log decay per token and value head.
    const auto& g = b.g;
    w_.a_proj(x2.view, g, name, th);
    for (index_t n = 0; n < N; ++n)
      for (index_t j = 0; j < HV; ++j)
        g(n, j) = -std::exp(w_.A_log(j)) * simd::softplus(g(n, j) + w_.dt_bias(j));

    kernels::delta_rule::forward(policy, b.q.template reshape<4>({B, L, H, K}), b.k.template reshape<4>({B, L, H, K}),
                                 b.v.template reshape<4>({B, L, HV, V}), g.template reshape<3>({B, L, HV}),
                                 b.beta.template reshape<3>({B, L, HV}), b.o.template reshape<4>({B, L, HV, V}),
                                 state.h, {T(1) / std::sqrt(T(K))});
    detail::delta_output(name, cfg_, w_, x2.view, b, y, th);
  }

 private:
  config cfg_;
  weights w_;
};

static_assert(sequence_mixer<GatedDeltaNet<float>>);
static_assert(sequence_mixer<GatedDeltaNet<float, bf16>>);

}  // namespace seqmix::layers
