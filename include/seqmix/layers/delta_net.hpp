// DeltaNet: the fla `DeltaNet` module (spec/delta_net.md) around the delta-rule op.
#pragma once

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/delta_rule/delta_rule.hpp"
#include "delta_rule_parts.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// DeltaNet layer: q/k/v projections with short causal convolutions and SiLU, L2-normalised q and
/// k, beta = sigmoid(b_proj x), the delta rule, a per-head RMSNorm (gated by silu(g_proj x) when
/// use_gate) and the output projection. Defaults are fla's.
template <class T = float, class WeightT = T>
class DeltaNet : public mixer<DeltaNet<T, WeightT>, T> {
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

    void validate() const {
      require_positive(name, "hidden_size", hidden_size, "num_heads", num_heads, "expand_k", expand_k, "expand_v",
                       expand_v, "conv_size", conv_size);
      require_head_split(name, key_dim(), value_dim(), num_heads);
    }
    static auto fields() {
      return std::tuple{config_field{"hidden_size", &config::hidden_size}, config_field{"num_heads", &config::num_heads},
                        config_field{"expand_k", &config::expand_k}, config_field{"expand_v", &config::expand_v},
                        config_field{"conv_size", &config::conv_size}, config_field{"conv_bias", &config::conv_bias},
                        config_field{"use_gate", &config::use_gate},
                        config_field{"allow_neg_eigval", &config::allow_neg_eigval},
                        config_field{"norm_eps", &config::norm_eps}, config_field{"l2norm_eps", &config::l2norm_eps}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> q_proj, k_proj, v_proj, b_proj;
    nn::causal_conv1d<T> q_conv1d, k_conv1d, v_conv1d;
    nn::linear<T, WeightT> g_proj;  // empty without use_gate
    tensor<T, 1> o_norm;   // [head_v_dim]
    nn::linear<T, WeightT> o_proj;
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    detail::qkv_projection_weights(c, w, f);
    linear_weights(f, "b_proj", w.b_proj, c.num_heads, c.hidden_size);
    detail::conv_and_output_weights(c, w, f);
  }

  /// Recurrent state [B, H, head_k_dim, head_v_dim] (K-major), the conv tails [B, C, W-1] and
  /// forward()'s temporaries (not copied).
  struct State : detail::delta_state<T> {};

  DeltaNet(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
  }

  using mixer<DeltaNet<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    return detail::make_delta_state<State, T>(cfg_, w_, batch, cfg_.num_heads);
  }

  /// y [B,T,hidden] for x [B,T,hidden]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y);
    detail::check_delta_state(name, cfg_, x.extent(0), state, cfg_.num_heads);
    if (N == 0) return;
    const index_t B = x.extent(0), L = x.extent(1), H = cfg_.num_heads;
    const index_t K = cfg_.head_k_dim(), V = cfg_.head_v_dim();
    const detail::sequence_rows<T> x2(x);
    const int th = policy.threads;

    const auto b = detail::delta_work(name, cfg_, state, N, H, false);
    detail::delta_qkv(name, cfg_, w_, x2.view, B, L, state, b, th);
    w_.b_proj(x2.view, b.beta, name, th);
    nn::beta_activation(b.beta, cfg_.allow_neg_eigval);

    kernels::delta_rule::forward(policy, b.q.template reshape<4>({B, L, H, K}), b.k.template reshape<4>({B, L, H, K}),
                                 b.v.template reshape<4>({B, L, H, V}), b.beta.template reshape<3>({B, L, H}),
                                 b.o.template reshape<4>({B, L, H, V}), state.h, {T(1) / std::sqrt(T(K))});
    detail::delta_output(name, cfg_, w_, x2.view, b, y, th);
  }

 private:
  config cfg_;
  weights w_;
};

static_assert(sequence_mixer<DeltaNet<float>>);
static_assert(sequence_mixer<DeltaNet<float, bf16>>);

}  // namespace seqmix::layers
