// NGPTBlock: one block of the normalized Transformer (nGPT, arXiv 2410.01131) as NVIDIA/ngpt's
// model.py `Block` with use_nGPT = 1 (spec/ngpt.md): every hidden state on the unit sphere, q/k
// normalized per head and scaled by sqk, softmax scale √head_dim, the u ⊙ silu(v) MLP scaled by
// suv, and two normalized residual updates (kernels/ngpt). See docs/ngpt.md.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/attention/attention.hpp"
#include "../kernels/ngpt/ngpt.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// nGPT block: x [B,T,C] (unit-norm rows) → h [B,T,C].
///   q, k, v = x Wqᵀ, x Wkᵀ, x Wvᵀ (heads of head_dim); q, k ← model.py's RoPE (not a rotation);
///   q, k ← sqk_eff ⊙ norm(·) per head; causal softmax attention with scale softmax_scale over the
///   KV cache (its State: k after the scaling, raw v); h_att = y Wattᵀ; h ← update(x, h_att, attn_alpha);
///   uv = suv_eff ⊙ (h W_fcᵀ); h_mlp = (u ⊙ silu(v)) W_projᵀ; h ← update(h, h_mlp, mlp_alpha).
/// Folded at construction (raw weights are kept for save()): suv_eff into the rows of c_fc, the
/// softmax scale into the query's sqk, the alphas' scale and abs() into per-channel learning rates.
template <class T = float, class WeightT = T>
class NGPTBlock : public mixer<NGPTBlock<T, WeightT>, T> {
 public:
  static constexpr const char* name = "NGPTBlock";

  struct config {
    index_t hidden_size = 0;            ///< n_embd (C)
    index_t num_heads = 0;              ///< n_head (H)
    index_t head_dim = 0;               ///< 0: C / H (upstream fixes C / H; another value is an error)
    double base_scale = 0.03125;        ///< upstream GPTConfig default 1/√1024
    double alpha_init_value = 0.05;
    double alpha_init_scaling = 0;      ///< 0: base_scale
    double sqk_init_value = 1;
    double sqk_init_scaling = 0;        ///< 0: base_scale
    double suv_init_value = 1;
    double suv_init_scaling = 1;
    double softmax_scale = 0;           ///< 0: √head_dim (multiplies the logits)
    double rope_base = 10000;
    bool bias = false;                  ///< upstream config.bias; nGPT has none (true is an error)
    index_t max_length = 4096;          ///< KV-cache capacity make_state() uses by default

    index_t dim() const { return head_dim > 0 ? head_dim : hidden_size / std::max<index_t>(num_heads, 1); }
    double alpha_scaling() const { return alpha_init_scaling != 0 ? alpha_init_scaling : base_scale; }
    double sqk_scaling() const { return sqk_init_scaling != 0 ? sqk_init_scaling : base_scale; }
    double attention_scale() const { return softmax_scale != 0 ? softmax_scale : std::sqrt(double(dim())); }

    void validate() const {
      require_positive(name, "hidden_size", hidden_size, "num_heads", num_heads, "base_scale", base_scale,
                       "max_length", max_length, "rope_base", rope_base);
      require(head_dim >= 0 && dim() > 0 && dim() * num_heads == hidden_size, name,
              "config head_dim must be hidden_size / num_heads (n_embd / n_head)");
      require(dim() % 2 == 0, name, "config head_dim must be even for the position table");
      require(std::isfinite(alpha_init_value) && std::isfinite(alpha_init_scaling) && alpha_scaling() != 0, name,
              "config alpha_init_value and alpha_init_scaling must be finite, the scaling non-zero");
      require(std::isfinite(sqk_init_value) && std::isfinite(sqk_init_scaling) && sqk_scaling() != 0, name,
              "config sqk_init_value and sqk_init_scaling must be finite, the scaling non-zero");
      require(std::isfinite(suv_init_value) && std::isfinite(suv_init_scaling) && suv_init_scaling != 0, name,
              "config suv_init_value and suv_init_scaling must be finite, the scaling non-zero");
      require(std::isfinite(softmax_scale) && softmax_scale >= 0, name, "config softmax_scale must be finite and >= 0");
      require(!bias, name, "config bias is not supported (nGPT's linears have no bias)");
    }
    static auto fields() {
      return std::tuple{config_field{"n_embd", &config::hidden_size}, config_field{"n_head", &config::num_heads},
                        config_field{"head_dim", &config::head_dim}, config_field{"base_scale", &config::base_scale},
                        config_field{"alpha_init_value", &config::alpha_init_value},
                        config_field{"alpha_init_scaling", &config::alpha_init_scaling},
                        config_field{"sqk_init_value", &config::sqk_init_value},
                        config_field{"sqk_init_scaling", &config::sqk_init_scaling},
                        config_field{"suv_init_value", &config::suv_init_value},
                        config_field{"suv_init_scaling", &config::suv_init_scaling},
                        config_field{"softmax_scale", &config::softmax_scale},
                        config_field{"rope_base", &config::rope_base}, config_field{"bias", &config::bias},
                        config_field{"max_length", &config::max_length}};
    }
  };

  /// Upstream state_dict entries (model.py names): see each_weight.
  struct weights {
    nn::linear<T, WeightT> query, key, value, att_c_proj, c_fc, mlp_c_proj;
    tensor<T, 1> attn_alpha, mlp_alpha, sqk, suv;
  };

  /// The weight table. init(): linears as torch's default; the vectors as upstream's
  /// (alpha_init_scaling, sqk_init_scaling, suv_init_scaling times ones).
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t C = c.hidden_size;
    linear_weights(f, "query", w.query, C, C);
    linear_weights(f, "key", w.key, C, C);
    linear_weights(f, "value", w.value, C, C);
    linear_weights(f, "att_c_proj", w.att_c_proj, C, C);
    linear_weights(f, "c_fc", w.c_fc, 8 * C, C);
    linear_weights(f, "mlp_c_proj", w.mlp_c_proj, C, 4 * C);
    f(weight_spec<1>{"attn_alpha", {C}, init_rule::constant(c.alpha_scaling())}, w.attn_alpha);
    f(weight_spec<1>{"mlp_alpha", {C}, init_rule::constant(c.alpha_scaling())}, w.mlp_alpha);
    f(weight_spec<1>{"sqk", {C}, init_rule::constant(c.sqk_scaling())}, w.sqk);
    f(weight_spec<1>{"suv", {8 * C}, init_rule::constant(c.suv_init_scaling)}, w.suv);
  }

  /// The KV cache (keys after RoPE, normalization and sqk; raw values) and forward()'s
  /// temporaries (12·C floats a token: 100 MB for a 2048-token prefill at C = 1024, not copied).
  struct State : kernels::attention::kv_cache<T> {
    using kernels::attention::kv_cache<T>::kv_cache;
    scratch<T> work;
  };

  NGPTBlock(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    const index_t C = cfg_.hidden_size;
    // suv_eff = suv · (suv_init_value / suv_init_scaling) · √C into the rows of c_fc: one rounding
    // of each product (formed in double).
    const double su = cfg_.suv_init_value / cfg_.suv_init_scaling * std::sqrt(double(C));
    const auto& c_fc = nn::unpacked(w_.c_fc.weight);
    tensor<WeightT, 2> fc({8 * C, C});
    for (index_t j = 0; j < 8 * C; ++j) {
      const double s = double(w_.suv(j)) * su;
      for (index_t i = 0; i < C; ++i) fc(j, i) = static_cast<WeightT>(static_cast<T>(s * double(static_cast<T>(c_fc(j, i)))));
    }
    fc_.weight = std::move(fc);
    const double sa = cfg_.alpha_init_value / cfg_.alpha_scaling(), sq = cfg_.sqk_init_value / cfg_.sqk_scaling(),
                 ss = cfg_.attention_scale();
    lr_attn_.resize(std::size_t(C)), lr_mlp_.resize(std::size_t(C)), sqk_q_.resize(std::size_t(C)),
        sqk_k_.resize(std::size_t(C));
    for (index_t i = 0; i < C; ++i) {
      const auto u = std::size_t(i);
      lr_attn_[u] = static_cast<T>(std::abs(double(w_.attn_alpha(i)) * sa));
      lr_mlp_[u] = static_cast<T>(std::abs(double(w_.mlp_alpha(i)) * sa));
      sqk_k_[u] = static_cast<T>(double(w_.sqk(i)) * sq);
      sqk_q_[u] = static_cast<T>(double(w_.sqk(i)) * sq * ss);
    }
  }

  using mixer<NGPTBlock<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// An empty cache for `batch` sequences of up to `options.capacity` tokens (default
  /// cfg().max_length).
  State make_state(index_t batch, const state_options<T>& options = {}) const {
    const index_t H = cfg_.num_heads, D = cfg_.dim();
    return State({batch, H, D, H, D}, options.capacity > 0 ? options.capacity : cfg_.max_length);
  }

  /// h [B,T,C] for x [B,T,C]; the tokens continue the sequences in `state` (positions continue
  /// from its length; upstream restarts them at 0 per call and has no cache).
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy's pool runs every parallel part of the layer
    const index_t N = this->check_io(x, y), B = x.extent(0), L = x.extent(1), C = cfg_.hidden_size, D = cfg_.dim(),
                  H = cfg_.num_heads;
    const auto& s = state.dims();
    check_shape(name, "state (batch, key heads, key dim, value heads, value dim)",
                std::array<index_t, 5>{s.batch, s.key_heads, s.key_dim, s.value_heads, s.value_dim}, {B, H, D, H, D});
    require(state.visibility().window == 0, name, "state was made with a window");
    state.check_room(name, L);
    if (N == 0) return;

    const detail::sequence_rows<T> xr(x);
    const int th = policy.threads;
    // q, k, v, o [N, C] and uv [N, 8C], carved from the state's scratch (each written before read).
    T* ws = state.work.get(checked_mul(N, 12 * C, name));
    const tensor_view<T, 2> q(ws, {N, C}), k(ws + N * C, {N, C}), v(ws + 2 * N * C, {N, C}), o(ws + 3 * N * C, {N, C});
    w_.query(xr.view, q, name, th), w_.key(xr.view, k, name, th), w_.value(xr.view, v, name, th);

    // RoPE (model.py's table), per-head norm and sqk (with the softmax scale folded into q's).
    const auto mult = kernels::ngpt::rope_table<T>(state.length(), L, D, cfg_.rope_base);
    parallel_for(th, N, [&](index_t n) {
      const T* m = mult.data() + (n % L) * D;
      T *qr = q.data() + n * C, *kr = k.data() + n * C;
      for (index_t h = 0; h < H; ++h) {
        kernels::ngpt::rope_norm_head(qr + h * D, m, sqk_q_.data() + h * D, D);
        kernels::ngpt::rope_norm_head(kr + h * D, m, sqk_k_.data() + h * D, D);
      }
    });
    auto heads = [&](const tensor_view<T, 2>& t) { return t.template reshape<4>({B, L, H, D}); };
    kernels::attention::forward(policy, heads(q), heads(k), heads(v), heads(o), state, {T(1)});

    auto seq = [&](tensor_view<T, 2> t, index_t width) { return t.template reshape<3>({B, L, width}); };
    // h_att into q's storage, then h ← update(x, h_att).
    w_.att_c_proj(o, q, name, th);
    const auto x3 = xr.view.template reshape<3>({B, L, C});
    kernels::ngpt::update<T>(th, x3, seq(q, C), lr_attn_.data(), seq(k, C), nullptr,
                             index_t(1) << 62, name);  // h in k's storage, kept cached for c_fc

    // MLP: uv = h W_fc'ᵀ (suv folded), u ⊙ silu(v) into u's columns, then mlp_c_proj.
    const tensor_view<T, 2> uv(ws + 4 * N * C, {N, 8 * C});
    fc_(k, uv, name, th);
    const index_t F = 4 * C;
    parallel_for(th, N, [&](index_t n) {
      T* r = uv.data() + n * 8 * C;
      simd::transform(r, r + F, r, F, [](auto a, auto b) { return a * simd::silu(b); });
    });
    const tensor_view<const T, 2> xm(uv.data(), {N, F}, {8 * C, 1});
    w_.mlp_c_proj(xm, o, name, th);

    // h ← update(h, h_mlp) into y (a temporary when y is not unit-stride along C).
    if (C <= 1 || y.stride(2) == 1) {
      kernels::ngpt::update<T>(th, seq(k, C), seq(o, C), lr_mlp_.data(), y, nullptr,
                               kernels::ngpt::options<T>{}.stream_min_bytes, name);
    } else {
      kernels::ngpt::update<T>(th, seq(k, C), seq(o, C), lr_mlp_.data(), seq(v, C), nullptr,
                               index_t(1) << 62, name);
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t < L; ++t)
          for (index_t c = 0; c < C; ++c) y(b, t, c) = v(b * L + t, c);
    }
  }

 private:
  config cfg_;
  weights w_;
  nn::linear<T, WeightT> fc_;            // c_fc with suv_eff folded into its rows
  std::vector<T> lr_attn_, lr_mlp_;      // |alpha · alpha_init_value / alpha_init_scaling|
  std::vector<T> sqk_q_, sqk_k_;         // sqk · sqk_init_value / sqk_init_scaling (· softmax scale for q)
};

static_assert(sequence_mixer<NGPTBlock<float>>);
static_assert(sequence_mixer<NGPTBlock<float, bf16>>);

}  // namespace seqmix::layers
