// RWKV7TimeMix: the RWKV-7 "Goose" time-mixing block (RWKV-LM `RWKV_Tmix_x070`, spec/rwkv7.md)
// around the RWKV-7 op.
#pragma once

#include <string>
#include <utility>

#include "../io/weights.hpp"
#include "../kernels/rwkv7/rwkv7.hpp"
#include "../nn/group_norm.hpp"
#include "../nn/linear.hpp"
#include "../policy/execution.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

/// RWKV-7 time mixing for one block (its input already ln1-normalised): token shift with lerp mixes,
/// receptance/key/value projections, low-rank decay (w), in-context learning rate (a), value
/// residual (v) and gate (g) paths, the normalised removal key kk, the RWKV-7 op, a per-head
/// GroupNorm, the r·k bonus term and the output projection. Layer 0 produces `v_first` (its v);
/// later layers mix their v towards it.
template <class T = float>
class RWKV7TimeMix {
 public:
  static constexpr const char* name = "RWKV7TimeMix";

  struct config {
    index_t n_embd = 0;  ///< C (= dim_att)
    index_t head_size = 64;
    index_t layer_id = 0;
    index_t decay_lora = 64;  ///< D_DECAY_LORA
    index_t aaa_lora = 64;    ///< D_AAA_LORA
    index_t mv_lora = 32;     ///< D_MV_LORA (layers > 0)
    index_t gate_lora = 128;  ///< D_GATE_LORA
    double ln_x_eps = 64e-5;
    double kk_normalize_eps = 1e-12;

    index_t n_head() const { return head_size > 0 ? n_embd / head_size : 0; }
  };

  /// Checkpoint entries `blocks.{layer_id}.att.<name>` (names in comments). The LoRA factors are
  /// stored [in, out] in the checkpoint and used as x @ w1; they are kept here transposed as
  /// torch-layout linears.
  struct weights {
    tensor<T, 1> x_r, x_w, x_k, x_v, x_a, x_g;  // x_r ... x_g [1,1,C]
    tensor<T, 1> w0, a0, v0;                    // w0, a0, v0 [1,1,C] (v0 absent at layer 0)
    nn::linear<T> w1, w2, a1, a2, v1, v2, g1, g2;
    tensor<T, 1> k_k, k_a;  // [1,1,C]
    tensor<T, 2> r_k;       // [H, N]
    nn::linear<T> receptance, key, value, output;  // <name>.weight [C, C]
    tensor<T, 1> ln_w, ln_b;                       // ln_x.weight, ln_x.bias [C]
  };

  /// The token-shift vector (last input token) and the op state [B, H, N, N] (K-major; RWKV-LM's
  /// own state is [H, V, K]).
  struct State {
    tensor<T, 2> shift;
    tensor<T, 4> wkv;
    index_t batch() const { return shift.extent(0); }
  };

  RWKV7TimeMix(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) { validate(); }

  /// Loads weights by their checkpoint names, each prefixed with `prefix` (e.g. "blocks.3.att.").
  static RWKV7TimeMix load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    const io::weight_source src(file, prefix, name);
    const index_t C = cfg.n_embd;
    auto vec = [&](const char* n) { return tensor<T, 1>(src.load<T, 3>(n, {1, 1, C}).view().template reshape<1>({C})); };
    auto lora = [&](const char* n, index_t in, index_t out) {
      const auto m = src.load<T, 2>(n, {in, out});
      return nn::linear<T>{tensor<T, 2>(transposed(m.view())), {}};
    };
    auto lin = [&](const char* n) { return nn::linear<T>{src.load<T, 2>(n, {C, C}), {}}; };
    weights w;
    w.x_r = vec("x_r"), w.x_w = vec("x_w"), w.x_k = vec("x_k"), w.x_v = vec("x_v"), w.x_a = vec("x_a"), w.x_g = vec("x_g");
    w.w0 = vec("w0"), w.a0 = vec("a0");
    w.w1 = lora("w1", C, cfg.decay_lora), w.w2 = lora("w2", cfg.decay_lora, C);
    w.a1 = lora("a1", C, cfg.aaa_lora), w.a2 = lora("a2", cfg.aaa_lora, C);
    if (cfg.layer_id > 0) w.v0 = vec("v0"), w.v1 = lora("v1", C, cfg.mv_lora), w.v2 = lora("v2", cfg.mv_lora, C);
    w.g1 = lora("g1", C, cfg.gate_lora), w.g2 = lora("g2", cfg.gate_lora, C);
    w.k_k = vec("k_k"), w.k_a = vec("k_a");
    w.r_k = src.load<T, 2>("r_k", {cfg.n_head(), cfg.head_size});
    w.receptance = lin("receptance.weight"), w.key = lin("key.weight"), w.value = lin("value.weight");
    w.output = lin("output.weight");
    w.ln_w = src.load<T, 1>("ln_x.weight", {C}), w.ln_b = src.load<T, 1>("ln_x.bias", {C});
    return RWKV7TimeMix(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch) const {
    return {tensor<T, 2>({batch, cfg_.n_embd}), tensor<T, 4>({batch, cfg_.n_head(), cfg_.head_size, cfg_.head_size})};
  }

  /// y [B,T,C] for x [B,T,C]; `state` enters as the state before x and leaves as the state after it,
  /// so consecutive calls continue one sequence. `v_first` [B,T,C]: layer 0 writes its v there (an
  /// empty view skips that); later layers read layer 0's v from it (required).
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state,
               tensor_view<T, 3> v_first = {}) const {
    const index_t B = x.extent(0), L = x.extent(1), C = cfg_.n_embd, H = cfg_.n_head(), N = cfg_.head_size;
    const index_t M = B * L;
    check_shape(name, "x", x.extents(), {B, L, C});
    check_shape(name, "y", y.extents(), {B, L, C});
    check_shape(name, "state.shift", state.shift.extents(), {B, C});
    check_shape(name, "state.wkv", state.wkv.extents(), {B, H, N, N});
    const bool first = cfg_.layer_id == 0;
    require(first || v_first.data() != nullptr, name, "layers after layer 0 need v_first (layer 0's v)");
    if (v_first.data() != nullptr) check_shape(name, "v_first", v_first.extents(), {B, L, C});
    if (L == 0) return;
    const int th = policy.threads;

    // 1. Token shift and the six lerp mixes: x_mix = x + (x_{t-1} - x_t) * x_mix_coef.
    tensor<T, 2> xr({M, C}), xw({M, C}), xk({M, C}), xv({M, C}), xa({M, C}), xg({M, C});
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
    tensor<T, 2> r({M, C}), k({M, C}), v({M, C}), w({M, C}), a({M, C}), g({M, C});
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
      tensor<T, 2> vg({M, C});
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
    tensor<T, 2> aa({M, C}), bb({M, C});
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
    auto heads = [&](const tensor<T, 2>& t) { return t.view().template reshape<4>({B, L, H, N}); };
    tensor<T, 2> o({M, C});
    kernels::rwkv7::forward(policy,
                            kernels::rwkv7::inputs<T>{.r = heads(r), .w = heads(w), .k = heads(k), .v = heads(v),
                                                      .a = heads(aa), .b = heads(bb)},
                            o.view().template reshape<4>({B, L, H, N}), state.wkv);

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

  /// Allocating form of forward().
  template <exec::policy P>
  tensor<T, 3> forward(const P& policy, tensor_view<const T, 3> x, State& state, tensor_view<T, 3> v_first = {}) const {
    tensor<T, 3> y(x.extents());
    forward(policy, x, y.view(), state, v_first);
    return y;
  }

  /// One decoding step: x, y [B, C]; v_first [B, C] as in forward().
  void step(tensor_view<const T, 2> x, tensor_view<T, 2> y, State& state, tensor_view<T, 2> v_first = {}) const {
    check_shape(name, "x", x.extents(), {x.extent(0), cfg_.n_embd});
    check_shape(name, "y", y.extents(), {x.extent(0), cfg_.n_embd});
    const auto x3 = detail::as_sequence(x);
    const auto y3 = detail::as_sequence(y);
    tensor_view<T, 3> vf3;
    if (v_first.data() != nullptr) {
      check_shape(name, "v_first", v_first.extents(), {x.extent(0), cfg_.n_embd});
      vf3 = tensor_view<T, 3>(v_first.data(), {v_first.extent(0), 1, v_first.extent(1)},
                              {v_first.stride(0), 0, v_first.stride(1)});
    }
    forward(exec::recurrent{}, x3, y3, state, vf3);
  }

 private:
  // out = up(f(down(x))): a low-rank path (LoRA factors stored as torch-layout linears).
  template <class F>
  static void lora(const nn::linear<T>& down, const nn::linear<T>& up, const tensor<T, 2>& x, tensor<T, 2>& out,
                   int threads, F f) {
    tensor<T, 2> low({x.extent(0), down.out_features()});
    down(x, low, name, threads);
    simd::transform(low.data(), low.data(), low.size(), f);
    up(low, out, name, threads);
  }

  void validate() const {
    const index_t C = cfg_.n_embd, H = cfg_.n_head(), N = cfg_.head_size;
    require(C > 0 && N > 0 && C % N == 0, name, "n_embd must be a positive multiple of head_size");
    auto vec = [&](const char* n, const tensor<T, 1>& t) { check_shape(name, n, t.extents(), {C}); };
    vec("x_r", w_.x_r), vec("x_w", w_.x_w), vec("x_k", w_.x_k), vec("x_v", w_.x_v), vec("x_a", w_.x_a), vec("x_g", w_.x_g);
    vec("w0", w_.w0), vec("a0", w_.a0), vec("k_k", w_.k_k), vec("k_a", w_.k_a);
    vec("ln_x.weight", w_.ln_w), vec("ln_x.bias", w_.ln_b);
    auto lin = [&](const char* n, const nn::linear<T>& l, index_t in, index_t out) {
      check_shape(name, n, l.weight.extents(), {out, in});  // kept transposed / torch layout
    };
    lin("w1 (transposed)", w_.w1, C, cfg_.decay_lora), lin("w2 (transposed)", w_.w2, cfg_.decay_lora, C);
    lin("a1 (transposed)", w_.a1, C, cfg_.aaa_lora), lin("a2 (transposed)", w_.a2, cfg_.aaa_lora, C);
    lin("g1 (transposed)", w_.g1, C, cfg_.gate_lora), lin("g2 (transposed)", w_.g2, cfg_.gate_lora, C);
    if (cfg_.layer_id > 0) {
      vec("v0", w_.v0);
      lin("v1 (transposed)", w_.v1, C, cfg_.mv_lora), lin("v2 (transposed)", w_.v2, cfg_.mv_lora, C);
    }
    check_shape(name, "r_k", w_.r_k.extents(), {H, N});
    lin("receptance.weight", w_.receptance, C, C), lin("key.weight", w_.key, C, C);
    lin("value.weight", w_.value, C, C), lin("output.weight", w_.output, C, C);
  }

  config cfg_;
  weights w_;
};

}  // namespace seqmix::layers
