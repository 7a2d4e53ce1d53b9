// Mamba: the mamba_ssm `Mamba` block (mamba_simple.py, spec/mamba.md) around the selective scan.
#pragma once

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/ssm/selective_scan.hpp"
#include "../nn/conv1d.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// Mamba-1 layer: in_proj to (x, z), causal depthwise conv + silu on x, x_proj to (dt, B, C),
/// the low-rank dt_proj, the selective scan with D skip and z gate, and out_proj.
template <class T = float, class WeightT = T>
class Mamba : public mixer<Mamba<T, WeightT>, T> {
 public:
  static constexpr const char* name = "Mamba";

  struct config {
    index_t hidden_size = 0;  ///< upstream d_model
    index_t d_state = 16;
    index_t d_conv = 4;
    index_t expand = 2;
    index_t dt_rank = 0;     ///< 0: ceil(d_model / 16), upstream's "auto"
    bool conv_bias = true;
    bool bias = false;       ///< in_proj / out_proj biases

    index_t d_inner() const { return expand * hidden_size; }
    index_t rank() const { return dt_rank > 0 ? dt_rank : (hidden_size + 15) / 16; }

    void validate() const {
      require_positive(name, "hidden_size (d_model)", hidden_size, "d_state", d_state, "d_conv", d_conv, "expand", expand);
      require(dt_rank >= 0, name, "config dt_rank must not be negative");
    }
    static auto fields() {
      return std::tuple{config_field{"d_model", &config::hidden_size}, config_field{"d_state", &config::d_state},
                        config_field{"d_conv", &config::d_conv}, config_field{"expand", &config::expand},
                        config_field{"dt_rank", &config::dt_rank}, config_field{"conv_bias", &config::conv_bias},
                        config_field{"bias", &config::bias}};
    }
  };

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> in_proj;        // [2·d_inner, d_model]
    nn::causal_conv1d<T> conv1d;  // [d_inner, 1, d_conv]
    nn::linear<T, WeightT> x_proj;         // [dt_rank + 2·d_state, d_inner]
    nn::linear<T, WeightT> dt_proj;        // [d_inner, dt_rank] (its bias is dt_bias below)
    tensor<T, 1> dt_bias;         // dt_proj.bias [d_inner]: added inside the softplus
    tensor<T, 2> A_log;           // [d_inner, d_state]
    tensor<T, 1> D;               // [d_inner]
    nn::linear<T, WeightT> out_proj;       // [d_model, d_inner]
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks. The
  /// init is mamba_ssm's: A_log = log(1..d_state) per channel, D = 1, dt_proj.bias the inverse
  /// softplus of a log-uniform dt in [1e-3, 0.1], dt_proj.weight uniform in ±dt_rank^-1/2.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t dm = c.hidden_size, di = c.d_inner(), N = c.d_state, R = c.rank();
    linear_weights(f, "in_proj", w.in_proj, 2 * di, dm, c.bias);
    conv_weights(f, "conv1d", w.conv1d, di, c.d_conv, c.conv_bias);
    linear_weights(f, "x_proj", w.x_proj, R + 2 * N, di);
    linear_weights(f, "dt_proj", w.dt_proj, di, R);
    f(weight_spec<1>{"dt_proj.bias", {di}, init_rule::dt_bias()}, w.dt_bias);
    f(weight_spec<2>{"A_log", {di, N}, init_rule::values([N](index_t i, double) { return std::log(double(1 + i % N)); })},
      w.A_log);
    f(weight_spec<1>{"D", {di}, init_rule::ones()}, w.D);
    linear_weights(f, "out_proj", w.out_proj, dm, di, c.bias);
  }

  /// conv: the last d_conv - 1 pre-conv inputs, oldest first (upstream's conv_state[..., 1:]);
  /// ssm: the scan state.
  struct State {
    tensor<T, 3> conv;  // [B, d_inner, d_conv - 1]
    tensor<T, 3> ssm;   // [B, d_inner, d_state]
    scratch<T> work;    // forward()'s temporaries: 5·d_inner + rank + 2·d_state floats a token
    index_t batch() const { return ssm.extent(0); }
  };

  Mamba(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    A_ = tensor<T, 2>(w_.A_log.extents());
    for (index_t i = 0; i < A_.size(); ++i) A_.data()[i] = -std::exp(w_.A_log.data()[i]);
  }

  using mixer<Mamba<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    State s;
    s.conv = w_.conv1d.make_state(batch), s.ssm = tensor<T, 3>({batch, cfg_.d_inner(), cfg_.d_state});
    return s;
  }

  /// y [B,T,d_model] for x [B,T,d_model]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    const index_t Nt = this->check_io(x, y), B = x.extent(0), L = x.extent(1), di = cfg_.d_inner();
    const index_t N = cfg_.d_state, R = cfg_.rank(), xw = R + 2 * N;
    check_shape(name, "state.conv", state.conv.extents(), {B, di, cfg_.d_conv - 1});
    check_shape(name, "state.ssm", state.ssm.extents(), {B, di, N});
    if (Nt == 0) return;
    const int th = policy.threads;
    const detail::sequence_rows<T> rows(x);
    const tensor_view<const T, 2> x2 = rows.view;

    // xz [Nt, 2·di], u, delta, ys [Nt, di] and xdbl [Nt, xw] from the state's scratch (a fresh
    // allocation is zero-filled by the kernel on every call: ~19% of a prefill); each is written
    // in full before it is read.
    T* ws = state.work.get(checked_mul(Nt, 5 * di + xw, name));
    const tensor_view<T, 2> xz(ws, {Nt, 2 * di});
    w_.in_proj(x2, xz, name, th);
    const tensor_view<const T, 3> xi(xz.data(), {B, L, di}, {L * 2 * di, 2 * di, 1});
    const tensor_view<const T, 3> z(xz.data() + di, {B, L, di}, {L * 2 * di, 2 * di, 1});
    const tensor_view<T, 3> u(ws + 2 * Nt * di, {B, L, di});
    w_.conv1d(xi, u, state.conv, name, th);

    const tensor_view<T, 2> delta(ws + 3 * Nt * di, {Nt, di}), xdbl(ws + 4 * Nt * di, {Nt, xw});
    const auto u2 = u.template reshape<2>({Nt, di});
    w_.x_proj(u2, xdbl, name, th);
    w_.dt_proj(tensor_view<const T, 2>(xdbl.data(), {Nt, R}, {xw, 1}), delta, name, th);
    const tensor_view<const T, 4> Bm(xdbl.data() + R, {B, L, 1, N}, {L * xw, xw, N, 1});
    const tensor_view<const T, 4> Cm(xdbl.data() + R + N, {B, L, 1, N}, {L * xw, xw, N, 1});

    const tensor_view<T, 3> ys(ws + 4 * Nt * di + Nt * xw, {B, L, di});
    const kernels::ssm::selective_scan::inputs<T> in{u, delta.template reshape<3>({B, L, di}), A_, Bm, Cm,
                                                     w_.D, z, w_.dt_bias};
    kernels::ssm::selective_scan::forward(policy, in, ys, state.ssm);

    const auto ys2 = ys.template reshape<2>({Nt, di});
    detail::project_to_sequence<T>(w_.out_proj, ys2, y, name, th);
  }

 private:
  config cfg_;
  weights w_;
  tensor<T, 2> A_;  // -exp(A_log)
};

static_assert(sequence_mixer<Mamba<float>>);
static_assert(sequence_mixer<Mamba<float, bf16>>);

}  // namespace seqmix::layers
