// Mamba2: the mamba_ssm `Mamba2` block (mamba2.py, spec/mamba2.md) around the SSD scan.
#pragma once

#include <cmath>
#include <optional>
#include <limits>
#include <string>
#include <utility>

#include "../io/weights.hpp"
#include "../kernels/ssm/ssd.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/linear.hpp"
#include "../nn/rmsnorm.hpp"
#include "../policy/execution.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"
#include "sequence_rows.hpp"

namespace seqmix::layers {

/// Mamba-2 layer: one in_proj split into (z, xBC, dt), a causal depthwise conv + silu over xBC,
/// the SSD scan with dt bias / softplus and D skip, the gated group RMSNorm and out_proj.
template <class T = float>
class Mamba2 {
 public:
  static constexpr const char* name = "Mamba2";

  struct config {
    index_t d_model = 0;
    index_t d_state = 128;
    index_t d_conv = 4;
    index_t expand = 2;
    index_t headdim = 64;
    index_t ngroups = 1;
    bool rmsnorm = true;            ///< false: y · silu(z) without a norm (and no norm.weight)
    bool norm_before_gate = false;
    double norm_eps = 1e-5;
    double dt_min = 0;              ///< upstream dt_limit (default: no clamp)
    double dt_max = std::numeric_limits<double>::infinity();
    bool conv_bias = true;
    bool bias = false;              ///< in_proj / out_proj biases

    index_t d_inner() const { return expand * d_model; }
    index_t nheads() const { return d_inner() / headdim; }
    index_t conv_dim() const { return d_inner() + 2 * ngroups * d_state; }
    index_t d_in_proj() const { return 2 * d_inner() + 2 * ngroups * d_state + nheads(); }
  };

  /// Upstream state_dict entries (names in comments).
  struct weights {
    nn::linear<T> in_proj;        // in_proj.weight [d_in_proj, d_model] (+ in_proj.bias)
    nn::causal_conv1d<T> conv1d;  // conv1d.weight [conv_dim, 1, d_conv], conv1d.bias [conv_dim]
    tensor<T, 1> dt_bias;         // dt_bias [nheads]
    tensor<T, 1> A_log;           // A_log [nheads]
    tensor<T, 1> D;               // D [nheads]
    tensor<T, 1> norm;            // norm.weight [d_inner] (empty without rmsnorm)
    nn::linear<T> out_proj;       // out_proj.weight [d_model, d_inner] (+ out_proj.bias)
  };

  /// conv: the last d_conv - 1 pre-conv xBC inputs, oldest first (upstream's conv_state[..., 1:]);
  /// ssm: the SSD state, P-major as upstream's ssm_state.
  struct State {
    tensor<T, 3> conv;  // [B, conv_dim, d_conv - 1]
    tensor<T, 4> ssm;   // [B, nheads, headdim, d_state]
    index_t batch() const { return ssm.extent(0); }
  };

  Mamba2(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    validate();
    A_ = tensor<T, 1>(w_.A_log.extents());
    for (index_t i = 0; i < A_.size(); ++i) A_.data()[i] = -std::exp(w_.A_log.data()[i]);
  }

  /// Loads weights by their upstream names, each prefixed with `prefix` (e.g. "backbone.layers.3.mixer.").
  static Mamba2 load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    const io::weight_source src(file, prefix, name);
    require(cfg.headdim > 0 && cfg.d_inner() % cfg.headdim == 0, name, "d_inner must be a multiple of headdim");
    const index_t dm = cfg.d_model, di = cfg.d_inner(), H = cfg.nheads();
    auto opt_bias = [&](const char* n, index_t size) {
      return cfg.bias ? std::optional<tensor<T, 1>>(src.load<T, 1>(n, {size})) : std::nullopt;
    };
    weights w{{src.load<T, 2>("in_proj.weight", {cfg.d_in_proj(), dm}), opt_bias("in_proj.bias", cfg.d_in_proj())},
              nn::causal_conv1d<T>::load(src, "conv1d", cfg.conv_dim(), cfg.d_conv, cfg.conv_bias),
              src.load<T, 1>("dt_bias", {H}),
              src.load<T, 1>("A_log", {H}),
              src.load<T, 1>("D", {H}),
              cfg.rmsnorm ? src.load<T, 1>("norm.weight", {di}) : tensor<T, 1>({0}),
              {src.load<T, 2>("out_proj.weight", {dm, di}), opt_bias("out_proj.bias", dm)}};
    return Mamba2(cfg, std::move(w));
  }

  const config& cfg() const { return cfg_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch) const {
    return {w_.conv1d.make_state(batch), tensor<T, 4>({batch, cfg_.nheads(), cfg_.headdim, cfg_.d_state})};
  }

  /// y [B,T,d_model] for x [B,T,d_model]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    const index_t B = x.extent(0), L = x.extent(1), Nt = B * L, dm = cfg_.d_model, di = cfg_.d_inner();
    const index_t H = cfg_.nheads(), Pd = cfg_.headdim, N = cfg_.d_state, G = cfg_.ngroups;
    const index_t cd = cfg_.conv_dim(), dip = cfg_.d_in_proj();
    check_shape(name, "x", x.extents(), {B, L, dm});
    check_shape(name, "y", y.extents(), {B, L, dm});
    check_shape(name, "state.conv", state.conv.extents(), {B, cd, cfg_.d_conv - 1});
    check_shape(name, "state.ssm", state.ssm.extents(), {B, H, Pd, N});
    const int th = policy.threads;
    const detail::sequence_rows<T> rows(x);
    const tensor_view<const T, 2> x2 = rows.view;

    // zxbcdt = [z | xBC | dt] per token.
    tensor<T, 2> zxbcdt({Nt, dip});
    w_.in_proj(x2, zxbcdt, name, th);
    tensor<T, 3> xbc({B, L, cd});
    w_.conv1d(tensor_view<const T, 3>(zxbcdt.data() + di, {B, L, cd}, {L * dip, dip, 1}), xbc, state.conv, name, th);

    const kernels::ssm::ssd::inputs<T> in{
        tensor_view<const T, 4>(xbc.data(), {B, L, H, Pd}, {L * cd, cd, Pd, 1}),
        tensor_view<const T, 3>(zxbcdt.data() + di + cd, {B, L, H}, {L * dip, dip, 1}),
        A_,
        tensor_view<const T, 4>(xbc.data() + di, {B, L, G, N}, {L * cd, cd, N, 1}),
        tensor_view<const T, 4>(xbc.data() + di + G * N, {B, L, G, N}, {L * cd, cd, N, 1}),
        w_.D,
        w_.dt_bias};
    tensor<T, 2> ys({Nt, di});
    kernels::ssm::ssd::forward(policy, in, ys.view().template reshape<4>({B, L, H, Pd}), state.ssm,
                                     {true, cfg_.dt_min, cfg_.dt_max});

    for (index_t n = 0; n < Nt; ++n) {
      T* row = ys.data() + n * di;
      const T* z = zxbcdt.data() + n * dip;
      if (cfg_.rmsnorm)
        nn::group_rmsnorm_gated_row(row, z, w_.norm.data(), row, di, di / G, T(cfg_.norm_eps), cfg_.norm_before_gate);
      else
        simd::transform(row, z, row, di, [](auto a, auto b) { return a * simd::silu(b); });
    }
    detail::project_to_sequence<T>(w_.out_proj, ys, y, name, th);
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
    require(cfg_.d_model > 0 && cfg_.d_state > 0 && cfg_.d_conv >= 1 && cfg_.expand > 0 && cfg_.headdim > 0 &&
                cfg_.ngroups > 0,
            name, "d_model, d_state, d_conv, expand, headdim and ngroups must be positive");
    require(cfg_.d_inner() % cfg_.headdim == 0, name, "d_inner must be a multiple of headdim");
    require(cfg_.nheads() % cfg_.ngroups == 0, name, "nheads must be a multiple of ngroups");
    const index_t dm = cfg_.d_model, di = cfg_.d_inner(), H = cfg_.nheads();
    check_shape(name, "in_proj.weight", w_.in_proj.weight.extents(), {cfg_.d_in_proj(), dm});
    check_shape(name, "conv1d.weight", w_.conv1d.weight.extents(), {cfg_.conv_dim(), cfg_.d_conv});
    require(w_.conv1d.bias.has_value() == cfg_.conv_bias, name, "conv1d.bias must be present exactly when conv_bias");
    check_shape(name, "dt_bias", w_.dt_bias.extents(), {H});
    check_shape(name, "A_log", w_.A_log.extents(), {H});
    check_shape(name, "D", w_.D.extents(), {H});
    if (cfg_.rmsnorm) check_shape(name, "norm.weight", w_.norm.extents(), {di});
    check_shape(name, "out_proj.weight", w_.out_proj.weight.extents(), {dm, di});
  }

  config cfg_;
  weights w_;
  tensor<T, 1> A_;  // -exp(A_log)
};

}  // namespace seqmix::layers
