// Mamba: the mamba_ssm `Mamba` block (mamba_simple.py, spec/mamba.md) around the selective scan.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "../io/weights.hpp"
#include "../kernels/ssm/selective_scan.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/linear.hpp"
#include "../policy/execution.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

/// Mamba-1 layer: in_proj to (x, z), causal depthwise conv + silu on x, x_proj to (dt, B, C),
/// the low-rank dt_proj, the selective scan with D skip and z gate, and out_proj.
template <class T = float>
class Mamba {
 public:
  static constexpr const char* name = "Mamba";

  struct config {
    index_t d_model = 0;
    index_t d_state = 16;
    index_t d_conv = 4;
    index_t expand = 2;
    index_t dt_rank = 0;     ///< 0: ceil(d_model / 16), upstream's "auto"
    bool conv_bias = true;
    bool bias = false;       ///< in_proj / out_proj biases

    index_t d_inner() const { return expand * d_model; }
    index_t rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  };

  /// Upstream state_dict entries (names in comments).
  struct weights {
    nn::linear<T> in_proj;        // in_proj.weight [2·d_inner, d_model] (+ in_proj.bias)
    nn::causal_conv1d<T> conv1d;  // conv1d.weight [d_inner, 1, d_conv], conv1d.bias [d_inner]
    nn::linear<T> x_proj;         // x_proj.weight [dt_rank + 2·d_state, d_inner]
    nn::linear<T> dt_proj;        // dt_proj.weight [d_inner, dt_rank] (its bias is dt_bias below)
    tensor<T, 1> dt_bias;         // dt_proj.bias [d_inner]: added inside the softplus
    tensor<T, 2> A_log;           // A_log [d_inner, d_state]
    tensor<T, 1> D;               // D [d_inner]
    nn::linear<T> out_proj;       // out_proj.weight [d_model, d_inner] (+ out_proj.bias)
  };

  /// conv: the last d_conv - 1 pre-conv inputs, oldest first (upstream's conv_state[..., 1:]);
  /// ssm: the scan state.
  struct State {
    tensor<T, 3> conv;  // [B, d_inner, d_conv - 1]
    tensor<T, 3> ssm;   // [B, d_inner, d_state]
    index_t batch() const { return ssm.extent(0); }
  };

  Mamba(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    validate();
    A_ = tensor<T, 2>(w_.A_log.extents());
    for (index_t i = 0; i < A_.size(); ++i) A_.data()[i] = -std::exp(w_.A_log.data()[i]);
  }

  /// Loads weights by their upstream names, each prefixed with `prefix` (e.g. "backbone.layers.3.mixer.").
  static Mamba load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    const io::weight_source src(file, prefix, name);
    const index_t dm = cfg.d_model, di = cfg.d_inner(), N = cfg.d_state, R = cfg.rank();
    auto opt_bias = [&](const char* n, index_t size) {
      return cfg.bias ? std::optional<tensor<T, 1>>(src.load<T, 1>(n, {size})) : std::nullopt;
    };
    weights w{{src.load<T, 2>("in_proj.weight", {2 * di, dm}), opt_bias("in_proj.bias", 2 * di)},
              nn::causal_conv1d<T>::load(src, "conv1d", di, cfg.d_conv, cfg.conv_bias),
              {src.load<T, 2>("x_proj.weight", {R + 2 * N, di}), {}},
              {src.load<T, 2>("dt_proj.weight", {di, R}), {}},
              src.load<T, 1>("dt_proj.bias", {di}),
              src.load<T, 2>("A_log", {di, N}),
              src.load<T, 1>("D", {di}),
              {src.load<T, 2>("out_proj.weight", {dm, di}), opt_bias("out_proj.bias", dm)}};
    return Mamba(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch) const {
    return {w_.conv1d.make_state(batch), tensor<T, 3>({batch, cfg_.d_inner(), cfg_.d_state})};
  }

  /// y [B,T,d_model] for x [B,T,d_model]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), Nt = B * L, dm = cfg_.d_model, di = cfg_.d_inner();
    const index_t N = cfg_.d_state, R = cfg_.rank(), xw = R + 2 * N;
    check_shape(name, "x", x.extents(), {B, L, dm});
    check_shape(name, "y", y.extents(), {B, L, dm});
    check_shape(name, "state.conv", state.conv.extents(), {B, di, cfg_.d_conv - 1});
    check_shape(name, "state.ssm", state.ssm.extents(), {B, di, N});
    const int th = policy.threads;
    const detail::sequence_rows<T> rows(x);
    const tensor_view<const T, 2> x2 = rows.view;

    tensor<T, 2> xz({Nt, 2 * di});
    w_.in_proj(x2, xz, name, th);
    const tensor_view<const T, 3> xi(xz.data(), {B, L, di}, {L * 2 * di, 2 * di, 1});
    const tensor_view<const T, 3> z(xz.data() + di, {B, L, di}, {L * 2 * di, 2 * di, 1});
    tensor<T, 3> u({B, L, di});
    w_.conv1d(xi, u, state.conv, name, th);

    tensor<T, 2> xdbl({Nt, xw}), delta({Nt, di});
    const auto u2 = u.view().template reshape<2>({Nt, di});
    w_.x_proj(u2, xdbl, name, th);
    w_.dt_proj(tensor_view<const T, 2>(xdbl.data(), {Nt, R}, {xw, 1}), delta, name, th);
    const tensor_view<const T, 4> Bm(xdbl.data() + R, {B, L, 1, N}, {L * xw, xw, N, 1});
    const tensor_view<const T, 4> Cm(xdbl.data() + R + N, {B, L, 1, N}, {L * xw, xw, N, 1});

    tensor<T, 3> ys({B, L, di});
    const kernels::ssm::selective_scan::inputs<T> in{u, delta.view().template reshape<3>({B, L, di}), A_, Bm, Cm,
                                                     w_.D, z, w_.dt_bias};
    kernels::ssm::selective_scan::forward(policy, in, ys, state.ssm);

    const auto ys2 = ys.view().template reshape<2>({Nt, di});
    detail::project_to_sequence<T>(w_.out_proj, ys2, y, name, th);
  }

  /// Allocating form of forward().
  template <exec::policy P>
  tensor<T, 3> forward(const P& policy, tensor_view<const T, 3> x, State& state) const {
    tensor<T, 3> y(x.extents());
    forward(policy, x, y.view(), state);
    return y;
  }

  /// One decoding step: x, y [B, d_model].
  void step(tensor_view<const T, 2> x, tensor_view<T, 2> y, State& state) const {
    check_shape(name, "x", x.extents(), {x.extent(0), cfg_.d_model});
    check_shape(name, "y", y.extents(), {x.extent(0), cfg_.d_model});
    forward(exec::recurrent{}, detail::as_sequence(x), detail::as_sequence(y), state);
  }

 private:
  void validate() const {
    require(cfg_.d_model > 0 && cfg_.d_state > 0 && cfg_.d_conv >= 1 && cfg_.expand > 0, name,
            "d_model, d_state, d_conv and expand must be positive");
    const index_t dm = cfg_.d_model, di = cfg_.d_inner(), N = cfg_.d_state, R = cfg_.rank();
    check_shape(name, "in_proj.weight", w_.in_proj.weight.extents(), {2 * di, dm});
    check_shape(name, "conv1d.weight", w_.conv1d.weight.extents(), {di, cfg_.d_conv});
    require(w_.conv1d.bias.has_value() == cfg_.conv_bias, name, "conv1d.bias must be present exactly when conv_bias");
    check_shape(name, "x_proj.weight", w_.x_proj.weight.extents(), {R + 2 * N, di});
    check_shape(name, "dt_proj.weight", w_.dt_proj.weight.extents(), {di, R});
    check_shape(name, "dt_proj.bias", w_.dt_bias.extents(), {di});
    check_shape(name, "A_log", w_.A_log.extents(), {di, N});
    check_shape(name, "D", w_.D.extents(), {di});
    check_shape(name, "out_proj.weight", w_.out_proj.weight.extents(), {dm, di});
  }

  config cfg_;
  weights w_;
  tensor<T, 2> A_;  // -exp(A_log)
};

}  // namespace seqmix::layers
