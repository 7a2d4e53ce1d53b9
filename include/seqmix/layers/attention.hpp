// Attention: the fla `Attention` module (spec/attention.md), Llama-style causal softmax attention
// with q/k/v/o projections, rotary embeddings, grouped KV heads and an optional sliding window.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../io/weights.hpp"
#include "../kernels/attention/attention.hpp"
#include "../nn/linear.hpp"
#include "../nn/rotary.hpp"
#include "../policy/execution.hpp"
#include "../tensor/tensor.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

/// Causal softmax attention layer (fla `Attention`): q = x Wqᵀ, k = x Wkᵀ, v = x Wvᵀ, RoPE on q and
/// k at absolute positions, attention with scale head_dim^-1/2 over the KV cache (its State), then
/// o_proj. No qk-norm.
template <class T = float>
class Attention {
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
  };

  /// Upstream state_dict entries: {q,k,v,o}_proj.weight (and {q,k,v}_proj.bias with qkv_bias).
  struct weights {
    nn::linear<T> q_proj, k_proj, v_proj, o_proj;
  };

  /// The KV cache (rotated keys, raw values); a windowed layer's cache is a ring of O(window).
  using State = kernels::attention::kv_cache<T>;

  Attention(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    validate();
    rope_ = {cfg_.dim(), cfg_.rope_theta, cfg_.rope_interleaved ? nn::rope_layout::interleaved : nn::rope_layout::half_split};
  }

  /// Loads weights by their upstream names, each prefixed with `prefix` (e.g. "model.layers.3.attn.").
  static Attention load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    const io::weight_source src(file, prefix, name);
    const index_t C = cfg.hidden_size, qd = cfg.num_heads * cfg.dim(), kd = cfg.kv_heads() * cfg.dim();
    auto bias = [&](const char* n, index_t d) {
      return cfg.qkv_bias ? std::optional<tensor<T, 1>>(src.load<T, 1>(n, {d})) : std::nullopt;
    };
    weights w{{src.load<T, 2>("q_proj.weight", {qd, C}), bias("q_proj.bias", qd)},
              {src.load<T, 2>("k_proj.weight", {kd, C}), bias("k_proj.bias", kd)},
              {src.load<T, 2>("v_proj.weight", {kd, C}), bias("v_proj.bias", kd)},
              {src.load<T, 2>("o_proj.weight", {C, qd}), std::nullopt}};
    return Attention(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// An empty cache for `batch` sequences of up to `capacity` tokens (default cfg().max_length).
  State make_state(index_t batch, index_t capacity = 0) const {
    return State({batch, cfg_.kv_heads(), cfg_.dim(), cfg_.kv_heads(), cfg_.dim()},
                 capacity > 0 ? capacity : cfg_.max_length, {cfg_.window, 0});
  }

  /// y [B,T,hidden] for x [B,T,hidden]; the tokens continue the sequences in `state`.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), N = B * L, D = cfg_.dim(), H = cfg_.num_heads,
                  Hk = cfg_.kv_heads();
    check_shape(name, "x", x.extents(), {B, L, cfg_.hidden_size});
    check_shape(name, "y", y.extents(), {B, L, cfg_.hidden_size});
    const auto& s = state.dims();
    check_shape(name, "state (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{s.batch, s.key_heads, s.key_dim, s.value_heads, s.value_dim}, {B, Hk, D, Hk, D});
    require(state.visibility().window == cfg_.window, name, "state was made for another window");
    state.check_room(name, L);

    const detail::sequence_rows<T> xr(x);
    const int th = policy.threads;
    tensor<T, 2> q({N, H * D}), k({N, Hk * D}), v({N, Hk * D}), o({N, H * D});
    w_.q_proj(xr.view, q, name, th), w_.k_proj(xr.view, k, name, th), w_.v_proj(xr.view, v, name, th);
    auto heads = [&](tensor<T, 2>& t, index_t h) { return t.view().template reshape<4>({B, L, h, D}); };
    std::vector<T> cos, sin;  // one table for q and k
    rope_.tables(state.length(), L, cos, sin);
    rope_.apply(heads(q, H), cos, sin, name, th);
    rope_.apply(heads(k, Hk), cos, sin, name, th);
    kernels::attention::forward(policy, heads(q, H), heads(k, Hk), heads(v, Hk), heads(o, H), state,
                                      {T(1) / std::sqrt(T(D))});
    detail::project_to_sequence<T>(w_.o_proj, o.view(), y, name, th);
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
    require(cfg_.hidden_size > 0 && cfg_.num_heads > 0 && cfg_.dim() > 0, name,
            "hidden_size, num_heads and head_dim must be positive");
    require(cfg_.num_heads % cfg_.kv_heads() == 0, name, "num_heads must be a multiple of num_kv_heads");
    require(cfg_.dim() % 2 == 0, name, "head_dim must be even for rotary embeddings");
    require(cfg_.window >= 0, name, "window must be non-negative");
    const index_t C = cfg_.hidden_size, qd = cfg_.num_heads * cfg_.dim(), kd = cfg_.kv_heads() * cfg_.dim();
    check_shape(name, "q_proj.weight", w_.q_proj.weight.extents(), {qd, C});
    check_shape(name, "k_proj.weight", w_.k_proj.weight.extents(), {kd, C});
    check_shape(name, "v_proj.weight", w_.v_proj.weight.extents(), {kd, C});
    check_shape(name, "o_proj.weight", w_.o_proj.weight.extents(), {C, qd});
  }

  config cfg_;
  weights w_;
  nn::rotary<T> rope_;
};

}  // namespace seqmix::layers
