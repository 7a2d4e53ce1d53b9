// RWKV7TimeMix: the RWKV-7 "Goose" time-mixing block (RWKV-LM `RWKV_Tmix_x070`, spec/rwkv7.md)
// around the RWKV-7 op.
#pragma once

#include <algorithm>
#include <array>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/rwkv7/rwkv7.hpp"
#include "../nn/group_norm.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// RWKV-7 time mixing for one block (its input already ln1-normalised): token shift with lerp mixes,
/// receptance/key/value projections, low-rank decay (w), in-context learning rate (a), value
/// residual (v) and gate (g) paths, the normalised removal key kk, the RWKV-7 op, a per-head
/// GroupNorm, the r·k bonus term and the output projection. Layer 0 produces `v_first` (its v);
/// later layers mix their v towards it; both through the model's cross_layer values (docs/layers.md).
template <class T = float, class WeightT = T>
class RWKV7TimeMix : public mixer<RWKV7TimeMix<T, WeightT>, T> {
 public:
  static constexpr const char* name = "RWKV7TimeMix";

  struct config {
    index_t hidden_size = 0;  ///< C: upstream n_embd (= dim_att)
    index_t head_size = 64;
    index_t layer_id = 0;
    index_t decay_lora = 64;  ///< D_DECAY_LORA
    index_t aaa_lora = 64;    ///< D_AAA_LORA
    index_t mv_lora = 32;     ///< D_MV_LORA (layers > 0)
    index_t gate_lora = 128;  ///< D_GATE_LORA
    double ln_x_eps = 64e-5;
    double kk_normalize_eps = 1e-12;

    index_t n_head() const { return head_size > 0 ? hidden_size / head_size : 0; }

    void validate() const {
      require_positive(name, "hidden_size (n_embd)", hidden_size, "head_size", head_size);
      require(hidden_size % head_size == 0, name, "config hidden_size (n_embd) must be a multiple of head_size");
      require(layer_id >= 0, name, "config layer_id must not be negative");
      require(decay_lora > 0 && aaa_lora > 0 && gate_lora > 0 && (layer_id == 0 || mv_lora > 0), name,
              "config LoRA ranks (D_DECAY_LORA, D_AAA_LORA, D_MV_LORA, D_GATE_LORA) must be positive");
    }
    static auto fields() {
      return std::tuple{config_field{"n_embd", &config::hidden_size}, config_field{"head_size", &config::head_size},
                        config_field{"layer_id", &config::layer_id}, config_field{"D_DECAY_LORA", &config::decay_lora},
                        config_field{"D_AAA_LORA", &config::aaa_lora}, config_field{"D_MV_LORA", &config::mv_lora},
                        config_field{"D_GATE_LORA", &config::gate_lora}, config_field{"ln_x_eps", &config::ln_x_eps},
                        config_field{"kk_normalize_eps", &config::kk_normalize_eps}};
    }
  };

  /// Checkpoint entries `blocks.{layer_id}.att.<name>` (names in comments). The LoRA factors are
  /// stored [in, out] in the checkpoint and used as x @ w1; they are kept here transposed as
  /// Checkpoint entries `blocks.{layer_id}.att.<name>`: see each_weight. The [1, 1, C] vectors
  /// are kept as [C]; the LoRA factors, stored [in, out] and used as x @ w1, are kept transposed
  /// as torch-layout linears.
  struct weights {
    tensor<T, 1> x_r, x_w, x_k, x_v, x_a, x_g;
    tensor<T, 1> w0, a0, v0;  // v0 absent at layer 0
    nn::linear<T, WeightT> w1, w2, a1, a2, v1, v2, g1, g2;
    tensor<T, 1> k_k, k_a;
    tensor<T, 2> r_k;  // [H, N]
    nn::linear<T, WeightT> receptance, key, value, output;
    tensor<T, 1> ln_w, ln_b;  // ln_x.weight, ln_x.bias [C]
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks. The
  /// init follows RWKV-LM's scales (mixes in [0, 1), w0 a ramp over [-6.5, -1.5], k_k = 0.85,
  /// k_a = v0 = 1, a0 = 0), with small random LoRA factors, r_k and output instead of zeros so
  /// that every path is exercised.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t C = c.hidden_size;
    const bool later = c.layer_id > 0;
    auto vec = [&](const char* n, auto& m, init_rule r, bool present = true) {
      f(weight_spec<3>{n, {1, 1, C}, std::move(r), present}, m);
    };
    auto lora = [&](const char* n, auto& m, index_t in, index_t out, bool present = true) {
      f(weight_spec<2>{n, {in, out}, {}, present, /*transposed=*/true}, m.weight);
    };
    const init_rule mix = init_rule::uniform(0, 1);
    vec("x_r", w.x_r, mix), vec("x_w", w.x_w, mix), vec("x_k", w.x_k, mix);
    vec("x_v", w.x_v, mix), vec("x_a", w.x_a, mix), vec("x_g", w.x_g, mix);
    vec("w0", w.w0, init_rule::values([C](index_t i, double) { return -6.5 + 5.0 * double(i) / double(std::max<index_t>(C - 1, 1)); }));
    lora("w1", w.w1, C, c.decay_lora), lora("w2", w.w2, c.decay_lora, C);
    vec("a0", w.a0, init_rule::zeros());
    lora("a1", w.a1, C, c.aaa_lora), lora("a2", w.a2, c.aaa_lora, C);
    vec("v0", w.v0, init_rule::ones(), later);
    lora("v1", w.v1, C, c.mv_lora, later), lora("v2", w.v2, c.mv_lora, C, later);
    lora("g1", w.g1, C, c.gate_lora), lora("g2", w.g2, c.gate_lora, C);
    vec("k_k", w.k_k, init_rule::constant(0.85)), vec("k_a", w.k_a, init_rule::ones());
    f(weight_spec<2>{"r_k", {c.n_head(), c.head_size}, init_rule::uniform(-0.1, 0.1)}, w.r_k);
    linear_weights(f, "receptance", w.receptance, C, C);
    linear_weights(f, "key", w.key, C, C);
    linear_weights(f, "value", w.value, C, C);
    linear_weights(f, "output", w.output, C, C);
    f(weight_spec<1>{"ln_x.weight", {C}, init_rule::ones()}, w.ln_w);
    f(weight_spec<1>{"ln_x.bias", {C}, init_rule::zeros()}, w.ln_b);
  }

  /// The token-shift vector (last input token), the op state [B, H, N, N] (K-major; RWKV-LM's own
  /// state is [H, V, K]) and the model's cross-layer values, where layer 0 leaves v_first and later
  /// layers read it.
  struct State {
    tensor<T, 2> shift;
    tensor<T, 4> wkv;
    cross_layer<T>* cross = nullptr;
    scratch<T> work;  // forward()'s temporaries: 16·C floats a token
    index_t batch() const { return shift.extent(0); }
  };

  RWKV7TimeMix(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
  }

  using mixer<RWKV7TimeMix<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& options = {}) const {
    State s;
    s.shift = tensor<T, 2>({batch, cfg_.hidden_size});
    s.wkv = tensor<T, 4>({batch, cfg_.n_head(), cfg_.head_size, cfg_.head_size});
    s.cross = options.cross;
    return s;
  }

  /// y [B,T,C] for x [B,T,C]; `state` enters as the state before x and leaves as the state after it,
  /// so consecutive calls continue one sequence. Layer 0 writes its v to state.cross->v_first (if
  /// the state has cross-layer values); later layers read layer 0's v [B,T,C] from there (required).
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t M = this->check_io(x, y), B = x.extent(0), L = x.extent(1), C = cfg_.hidden_size;
    const index_t H = cfg_.n_head(), N = cfg_.head_size;
    check_shape(name, "state.shift", state.shift.extents(), {B, C});
    check_shape(name, "state.wkv", state.wkv.extents(), {B, H, N, N});
    const bool first = cfg_.layer_id == 0;
    tensor_view<T, 3> v_first;
    if (first && state.cross) {
      if (!std::ranges::equal(state.cross->v_first.extents(), std::array<index_t, 3>{B, L, C}))
        state.cross->v_first = tensor<T, 3>({B, L, C});
      v_first = state.cross->v_first.view();
    } else if (!first) {
      require(state.cross != nullptr, name, "layers after layer 0 need v_first: make the state with state_options::cross");
      check_shape(name, "cross_layer v_first", state.cross->v_first.extents(), {B, L, C});
      v_first = state.cross->v_first.view();
    }
    if (M == 0) return;
    const int th = policy.threads;

    // Sixteen [M, C] temporaries from the state's scratch (fresh buffers would be zero-filled by the
    // kernel on every call); each is written in full before it is read.
    T* ws = state.work.get(checked_mul(M, 16 * C, name));
    auto buffer = [&, i = index_t(0)]() mutable { return tensor_view<T, 2>(ws + (i++) * M * C, {M, C}); };

    // 1. Token shift and the six lerp mixes: x_mix = x + (x_{t-1} - x_t) * x_mix_coef.
    const auto xr = buffer(), xw = buffer(), xk = buffer(), xv = buffer(), xa = buffer(), xg = buffer();
    for (index_t bi = 0; bi < B; ++bi)
      for (index_t t = 0; t < L; ++t) {
        const index_t m = bi * L + t;
        const T* cur = x.ptr(bi, t);
        const T* prev = t > 0 ? x.ptr(bi, t - 1) : state.shift.view().ptr(bi);
        const index_t xs = x.stride(2), ps = t > 0 ? x.stride(2) : 1;
        for (index_t c = 0; c < C; ++c) {
          const T xc = cur[c * xs], dx = prev[c * ps] - xc;
          xr(m, c) = xc + dx * w_.x_r(c), xw(m, c) = xc + dx * w_.x_w(c), xk(m, c) = xc + dx * w_.x_k(c);
          xv(m, c) = xc + dx * w_.x_v(c), xa(m, c) = xc + dx * w_.x_a(c), xg(m, c) = xc + dx * w_.x_g(c);
        }
      }
    for (index_t bi = 0; bi < B; ++bi)
      for (index_t c = 0; c < C; ++c) state.shift(bi, c) = x(bi, L - 1, c);

    // 2-5. Projections and the low-rank paths.
    const auto r = buffer(), k = buffer(), v = buffer(), w = buffer(), a = buffer(), g = buffer();
    w_.receptance(xr, r, name, th), w_.key(xk, k, name, th), w_.value(xv, v, name, th);
    lora(w_.w1, w_.w2, xw, w, th, [](auto z) { using std::tanh; return tanh(z); });
    const T* w0 = w_.w0.data();
    const T dscale = T(std::exp(-0.5));
    for (index_t m = 0; m < M; ++m)
      simd::transform(w.data() + m * C, w0, w.data() + m * C, C,
                      [dscale](auto z, auto b0) { return -dscale * simd::sigmoid(b0 + z); });
    if (first) {
      if (v_first.data() != nullptr)
        for (index_t bi = 0; bi < B; ++bi)
          for (index_t t = 0; t < L; ++t)
            for (index_t c = 0; c < C; ++c) v_first(bi, t, c) = v(bi * L + t, c);
    } else {
      const auto vg = buffer();
      lora(w_.v1, w_.v2, xv, vg, th, [](auto z) { return z; });
      for (index_t bi = 0; bi < B; ++bi)
        for (index_t t = 0; t < L; ++t) {
          T* vr = v.data() + (bi * L + t) * C;
          const T* gr = vg.data() + (bi * L + t) * C;
          for (index_t c = 0; c < C; ++c) {
            const T gate = T(1) / (T(1) + std::exp(-(w_.v0(c) + gr[c])));
            vr[c] += (v_first(bi, t, c) - vr[c]) * gate;
          }
        }
    }
    lora(w_.a1, w_.a2, xa, a, th, [](auto z) { return z; });
    for (index_t m = 0; m < M; ++m)
      simd::transform(a.data() + m * C, w_.a0.data(), a.data() + m * C, C,
                      [](auto z, auto b0) { return simd::sigmoid(b0 + z); });
    lora(w_.g1, w_.g2, xg, g, th, [](auto z) { return simd::sigmoid(z); });

    // 6-7. kk = normalise_per_head(k * k_k); the op's a = -kk, b = kk * a; k = k * (1 + (a-1) * k_a).
    const auto aa = buffer(), bb = buffer();
    const T kk_eps = T(cfg_.kk_normalize_eps);
    for (index_t m = 0; m < M; ++m) {
      T *km = k.data() + m * C, *am = a.data() + m * C, *aam = aa.data() + m * C, *bbm = bb.data() + m * C;
      for (index_t c = 0; c < C; ++c) aam[c] = km[c] * w_.k_k(c);
      for (index_t h = 0; h < H; ++h) {
        T* kk = aam + h * N;
        const T inv = T(1) / std::max(std::sqrt(simd::dot(kk, kk, N)), kk_eps);
        for (index_t n = 0; n < N; ++n) kk[n] *= inv;
      }
      for (index_t c = 0; c < C; ++c) {
        bbm[c] = aam[c] * am[c], aam[c] = -aam[c];
        km[c] *= T(1) + (am[c] - T(1)) * w_.k_a(c);
      }
    }

    // 8. The op.
    auto heads = [&](const tensor_view<T, 2>& t) { return t.template reshape<4>({B, L, H, N}); };
    const auto o = buffer();
    kernels::rwkv7::forward(policy,
                            kernels::rwkv7::inputs<T>{.r = heads(r), .w = heads(w), .k = heads(k), .v = heads(v),
                                                      .a = heads(aa), .b = heads(bb)},
                            o.template reshape<4>({B, L, H, N}), state.wkv);

    // 9-11. Per-head GroupNorm, the bonus (Σ_n r·k·r_k) v, the gate and the output projection.
    const T ln_eps = T(cfg_.ln_x_eps);
    for (index_t m = 0; m < M; ++m)
      for (index_t h = 0; h < H; ++h) {
        const index_t off = m * C + h * N;
        T* oh = o.data() + off;
        nn::group_norm_row(oh, w_.ln_w.data() + h * N, w_.ln_b.data() + h * N, oh, N, ln_eps);
        T bonus = 0;
        for (index_t n = 0; n < N; ++n) bonus += r.data()[off + n] * k.data()[off + n] * w_.r_k(h, n);
        for (index_t n = 0; n < N; ++n) oh[n] = (oh[n] + bonus * v.data()[off + n]) * g.data()[off + n];
      }
    detail::project_to_sequence<T>(w_.output, o, y, name, th);
  }

 private:
  // out = up(f(down(x))): a low-rank path (LoRA factors stored as torch-layout linears).
  template <class F>
  static void lora(const nn::linear<T, WeightT>& down, const nn::linear<T, WeightT>& up, tensor_view<const T, 2> x,
                   tensor_view<T, 2> out, int threads, F f) {
    tensor<T, 2> low({x.extent(0), down.out_features()});
    down(x, low, name, threads);
    simd::transform(low.data(), low.data(), low.size(), f);
    up(low, out, name, threads);
  }

  config cfg_;
  weights w_;
};

static_assert(sequence_mixer<RWKV7TimeMix<float>>);
static_assert(sequence_mixer<RWKV7TimeMix<float, bf16>>);

}  // namespace seqmix::layers
