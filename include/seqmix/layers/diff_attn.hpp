// MultiheadDiffAttn: the DIFF Transformer attention module (microsoft/unilm Diff-Transformer,
// latest version; spec/diff_attn.md) on the softmax-attention kernels.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../kernels/attention/differential.hpp"
#include "sequence_rows.hpp"
#include "attention.hpp"

namespace seqmix::layers {

/// Differential attention layer: q/k/v projections into 2H component heads of head_dim d
/// (values: Hkv heads of 2d), interleaved RoPE, two softmax maps per head subtracted with the
/// learned λ, per-head RMSNorm (subln) times (1 − λ_init), out_proj. State: the KV cache.
template <class T = float>
class MultiheadDiffAttn {
 public:
  static constexpr const char* name = "MultiheadDiffAttn";

  struct config {
    index_t embed_dim = 0;
    index_t num_heads = 0;     ///< differential heads H (2H component heads)
    index_t num_kv_heads = 0;  ///< 0: num_heads
    index_t depth = 0;         ///< layer index, for lambda_init
    double lambda_init = std::numeric_limits<double>::quiet_NaN();  ///< NaN: 0.8 − 0.6·exp(−0.3·depth)
    double rope_theta = 10000;
    double subln_eps = 1e-5;
    index_t max_length = 4096;  ///< KV-cache capacity make_state() uses by default

    index_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
    index_t head_dim() const { return embed_dim / std::max<index_t>(num_heads, 1) / 2; }
    index_t n_rep() const { return num_heads / std::max<index_t>(kv_heads(), 1); }
    double init() const { return std::isnan(lambda_init) ? kernels::attention::diff_lambda_init(depth) : lambda_init; }
  };

  /// Upstream state_dict entries (names in comments).
  struct weights {
    nn::linear<T> q_proj, k_proj, v_proj, out_proj;         // {q,k,v,out}_proj.weight
    tensor<T, 1> lambda_q1, lambda_k1, lambda_q2, lambda_k2;  // lambda_{q,k}{1,2} [d]
    tensor<T, 1> subln;                                       // subln.weight [2d]
  };

  /// KV cache: 2·Hkv key heads of d (rotated), Hkv value heads of 2d.
  using State = kernels::attention::kv_cache<T>;

  MultiheadDiffAttn(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    validate();
    rope_ = {cfg_.head_dim(), cfg_.rope_theta, nn::rope_layout::interleaved};
  }

  static MultiheadDiffAttn load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    const io::weight_source src(file, prefix, name);
    const index_t E = cfg.embed_dim, kvd = E / std::max<index_t>(cfg.n_rep(), 1), d = cfg.head_dim();
    weights w{{src.load<T, 2>("q_proj.weight", {E, E}), std::nullopt},
              {src.load<T, 2>("k_proj.weight", {kvd, E}), std::nullopt},
              {src.load<T, 2>("v_proj.weight", {kvd, E}), std::nullopt},
              {src.load<T, 2>("out_proj.weight", {E, 2 * cfg.num_heads * d}), std::nullopt},
              src.load<T, 1>("lambda_q1", {d}),
              src.load<T, 1>("lambda_k1", {d}),
              src.load<T, 1>("lambda_q2", {d}),
              src.load<T, 1>("lambda_k2", {d}),
              src.load<T, 1>("subln.weight", {2 * d})};
    return MultiheadDiffAttn(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// The learned λ of this layer.
  double lambda() const { return params().lambda(); }

  State make_state(index_t batch, index_t capacity = 0) const {
    const index_t d = cfg_.head_dim(), Hkv = cfg_.kv_heads();
    return State({batch, 2 * Hkv, d, Hkv, 2 * d}, capacity > 0 ? capacity : cfg_.max_length);
  }

  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), N = B * L, E = cfg_.embed_dim, d = cfg_.head_dim();
    const index_t H = cfg_.num_heads, Hkv = cfg_.kv_heads();
    check_shape(name, "x", x.extents(), {B, L, E});
    check_shape(name, "y", y.extents(), {B, L, E});
    const auto& s = state.dims();
    check_shape(name, "state (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{s.batch, s.key_heads, s.key_dim, s.value_heads, s.value_dim},
                {B, 2 * Hkv, d, Hkv, 2 * d});
    state.check_room(name, L);

    const detail::sequence_rows<T> xr(x);
    const int th = policy.threads;
    tensor<T, 2> q({N, 2 * H * d}), k({N, 2 * Hkv * d}), v({N, 2 * Hkv * d}), o({N, 2 * H * d});
    w_.q_proj(xr.view, q, name, th), w_.k_proj(xr.view, k, name, th), w_.v_proj(xr.view, v, name, th);
    const auto q4 = q.view().template reshape<4>({B, L, 2 * H, d});
    const auto k4 = k.view().template reshape<4>({B, L, 2 * Hkv, d});
    std::vector<T> cos, sin;  // one table for q and k
    rope_.tables(state.length(), L, cos, sin);
    rope_.apply(q4, cos, sin, name, th);
    rope_.apply(k4, cos, sin, name, th);
    kernels::attention::differential<P, T>(policy, q4, k4, v.view().template reshape<4>({B, L, Hkv, 2 * d}),
                                           o.view().template reshape<4>({B, L, H, 2 * d}), state, params(),
                                           {T(1) / std::sqrt(T(d))});
    detail::project_to_sequence<T>(w_.out_proj, o.view(), y, name, th);
  }

  template <exec::policy P>
  tensor<T, 3> forward(const P& policy, tensor_view<const T, 3> x, State& state) const {
    tensor<T, 3> y(x.extents());
    forward(policy, x, y.view(), state);
    return y;
  }

  /// One decoding step: x, y [B, embed_dim].
  void step(tensor_view<const T, 2> x, tensor_view<T, 2> y, State& state) const {
    check_shape(name, "x", x.extents(), {x.extent(0), cfg_.embed_dim});
    check_shape(name, "y", y.extents(), {x.extent(0), cfg_.embed_dim});
    forward(exec::recurrent{}, detail::as_sequence(x), detail::as_sequence(y), state);
  }

 private:
  kernels::attention::diff_params<T> params() const {
    return {w_.lambda_q1, w_.lambda_k1, w_.lambda_q2, w_.lambda_k2, w_.subln, cfg_.init(), cfg_.subln_eps};
  }

  void validate() const {
    require(cfg_.embed_dim > 0 && cfg_.num_heads > 0, name, "embed_dim and num_heads must be positive");
    require(cfg_.embed_dim % (2 * cfg_.num_heads) == 0, name, "embed_dim must be a multiple of 2·num_heads");
    require(cfg_.num_heads % cfg_.kv_heads() == 0, name, "num_heads must be a multiple of num_kv_heads");
    require(cfg_.head_dim() % 2 == 0, name, "head_dim must be even for rotary embeddings");
    const index_t E = cfg_.embed_dim, d = cfg_.head_dim(), kvd = 2 * cfg_.kv_heads() * d;
    check_shape(name, "q_proj.weight", w_.q_proj.weight.extents(), {E, E});
    check_shape(name, "k_proj.weight", w_.k_proj.weight.extents(), {kvd, E});
    check_shape(name, "v_proj.weight", w_.v_proj.weight.extents(), {kvd, E});
    check_shape(name, "out_proj.weight", w_.out_proj.weight.extents(), {E, 2 * cfg_.num_heads * d});
    for (const auto& [n, t] : {std::pair{"lambda_q1", &w_.lambda_q1}, std::pair{"lambda_k1", &w_.lambda_k1},
                               std::pair{"lambda_q2", &w_.lambda_q2}, std::pair{"lambda_k2", &w_.lambda_k2}})
      check_shape(name, n, t->extents(), {d});
    check_shape(name, "subln.weight", w_.subln.extents(), {2 * d});
  }

  config cfg_;
  weights w_;
  nn::rotary<T> rope_;
};

}  // namespace seqmix::layers
