// Attention: the fla `Attention` module (spec/attention.md), Llama-style causal softmax attention
// with q/k/v/o projections, rotary embeddings, grouped KV heads and an optional sliding window.
#pragma once

#include <algorithm>
#include <array>
#include <vector>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/attention/attention.hpp"
#include "../nn/rotary.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

namespace detail {
/// The softmax-attention layers' State (Attention's, MultiheadDiffAttn's: one type, as when it was
/// the bare cache): the KV cache in CacheT and forward()'s temporaries in T (scratch: not copied).
template <class T, class CacheT = T>
struct attention_state : kernels::attention::kv_cache<CacheT> {
  using kernels::attention::kv_cache<CacheT>::kv_cache;
  scratch<T> work;
};
}  // namespace detail

/// Causal softmax attention layer (fla `Attention`): q = x Wqᵀ, k = x Wkᵀ, v = x Wvᵀ, RoPE on q and
/// k at absolute positions, attention with scale head_dim^-1/2 over the KV cache (its State), then
/// o_proj. No qk-norm. CacheT: the KV cache's storage (T, or bf16 for T = float: half the bytes a
/// decode step reads, 1.9x the float cache's speed at 32k tokens; docs/attention.md).
template <class T = float, class WeightT = T, class CacheT = T>
class Attention : public mixer<Attention<T, WeightT, CacheT>, T> {
 public:
  static constexpr const char* name = "Attention";

  struct config {
    index_t hidden_size = 0;
    index_t num_heads = 0;
    index_t num_kv_heads = 0;  ///< 0: num_heads
    index_t head_dim = 0;      ///< 0: hidden_size / num_heads
    index_t window = 0;        ///< sliding window in keys (0: none); W keys (t−W, t]
    double rope_theta = 10000;
    bool rope_interleaved = false;
    bool qkv_bias = false;
    index_t max_length = 4096;  ///< KV-cache capacity make_state() uses by default

    index_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
    index_t dim() const { return head_dim > 0 ? head_dim : hidden_size / std::max<index_t>(num_heads, 1); }

    void validate() const {
      require_positive(name, "hidden_size", hidden_size, "num_heads", num_heads, "rope_theta", rope_theta, "max_length",
                       max_length);
      require(num_kv_heads >= 0 && num_heads % kv_heads() == 0, name, "config num_heads must be a multiple of num_kv_heads");
      require(head_dim >= 0 && dim() > 0, name, "config head_dim must be positive (or 0 with hidden_size ≥ num_heads)");
      require(dim() % 2 == 0, name, "config head_dim must be even for rotary embeddings");
      require(window >= 0, name, "config window must not be negative");
    }
    static auto fields() {
      return std::tuple{config_field{"hidden_size", &config::hidden_size}, config_field{"num_heads", &config::num_heads},
                        config_field{"num_kv_heads", &config::num_kv_heads}, config_field{"head_dim", &config::head_dim},
                        config_field{"window", &config::window}, config_field{"rope_theta", &config::rope_theta},
                        config_field{"rope_interleaved", &config::rope_interleaved},
                        config_field{"qkv_bias", &config::qkv_bias}, config_field{"max_length", &config::max_length}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> q_proj, k_proj, v_proj, o_proj;
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t C = c.hidden_size, qd = c.num_heads * c.dim(), kd = c.kv_heads() * c.dim();
    linear_weights(f, "q_proj", w.q_proj, qd, C, c.qkv_bias);
    linear_weights(f, "k_proj", w.k_proj, kd, C, c.qkv_bias);
    linear_weights(f, "v_proj", w.v_proj, kd, C, c.qkv_bias);
    linear_weights(f, "o_proj", w.o_proj, C, qd);
  }

  /// The KV cache (rotated keys, raw values; a windowed layer's is a ring of O(window)) and
  /// forward()'s temporaries (not copied).
  using State = detail::attention_state<T, CacheT>;

  Attention(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    rope_ = {cfg_.dim(), cfg_.rope_theta, cfg_.rope_interleaved ? nn::rope_layout::interleaved : nn::rope_layout::half_split};
  }

  using mixer<Attention<T, WeightT, CacheT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// An empty cache for `batch` sequences of up to `options.capacity` tokens (default
  /// cfg().max_length; a windowed layer's cache holds O(window) of them).
  State make_state(index_t batch, const state_options<T>& options = {}) const {
    return State({batch, cfg_.kv_heads(), cfg_.dim(), cfg_.kv_heads(), cfg_.dim()},
                 options.capacity > 0 ? options.capacity : cfg_.max_length, {cfg_.window, 0});
  }

  /// y [B,T,hidden] for x [B,T,hidden]; the tokens continue the sequences in `state`.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y), B = x.extent(0), L = x.extent(1), D = cfg_.dim(), H = cfg_.num_heads,
                  Hk = cfg_.kv_heads();
    const auto& s = state.dims();
    check_shape(name, "state (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{s.batch, s.key_heads, s.key_dim, s.value_heads, s.value_dim}, {B, Hk, D, Hk, D});
    require(state.visibility().window == cfg_.window, name, "state was made for another window");
    state.check_room(name, L);
    if (N == 0) return;

    const detail::sequence_rows<T> xr(x);
    const int th = policy.threads;
    // q, o [N, H·D] and k, v [N, Hk·D] from the state's scratch (each written before read).
    T* ws = state.work.get(checked_mul(N, 2 * (H + Hk) * D, name));
    const tensor_view<T, 2> q(ws, {N, H * D}), o(ws + N * H * D, {N, H * D}), k(ws + 2 * N * H * D, {N, Hk * D}),
        v(ws + N * (2 * H + Hk) * D, {N, Hk * D});
    w_.q_proj(xr.view, q, name, th), w_.k_proj(xr.view, k, name, th), w_.v_proj(xr.view, v, name, th);
    auto heads = [&](const tensor_view<T, 2>& t, index_t h) { return t.template reshape<4>({B, L, h, D}); };
    std::vector<T> cos, sin;  // one table for q and k
    rope_.tables(state.length(), L, cos, sin);
    rope_.apply(heads(q, H), cos, sin, name, th);
    rope_.apply(heads(k, Hk), cos, sin, name, th);
    kernels::attention::forward(policy, heads(q, H), heads(k, Hk), heads(v, Hk), heads(o, H), state,
                                      {T(1) / std::sqrt(T(D))});
    detail::project_to_sequence<T>(w_.o_proj, o, y, name, th);
  }

 private:
  config cfg_;
  weights w_;
  nn::rotary<T> rope_;
};

static_assert(sequence_mixer<Attention<float>>);
static_assert(sequence_mixer<Attention<float, bf16>>);
static_assert(sequence_mixer<Attention<float, float, bf16>>);

}  // namespace seqmix::layers
