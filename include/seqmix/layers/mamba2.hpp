// Mamba2: the mamba_ssm `Mamba2` block (mamba2.py, spec/mamba2.md) around the SSD scan.
#pragma once

#include <limits>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/ssm/ssd.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/rmsnorm.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

namespace detail {

/// Mamba-2's config (upstream keys of mamba_ssm's Mamba2), shared by Mamba2 and BiMamba2;
/// `Layer::name` names the errors.
template <class Layer>
struct mamba2_config {
  index_t hidden_size = 0;  ///< upstream d_model
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

  index_t d_inner() const { return expand * hidden_size; }
  index_t nheads() const { return d_inner() / headdim; }
  index_t conv_dim() const { return d_inner() + 2 * ngroups * d_state; }
  index_t d_in_proj() const { return 2 * d_inner() + 2 * ngroups * d_state + nheads(); }

  void validate() const {
    require_positive(Layer::name, "hidden_size (d_model)", hidden_size, "d_state", d_state, "d_conv", d_conv, "expand", expand,
                     "headdim", headdim, "ngroups", ngroups);
    require(d_inner() % headdim == 0, Layer::name, "config d_inner (expand·d_model) must be a multiple of headdim");
    require(nheads() % ngroups == 0, Layer::name, "config nheads must be a multiple of ngroups");
    require(!(dt_min > dt_max), Layer::name, "config dt_min must not exceed dt_max");
  }
  static auto fields() {
    return std::tuple{config_field{"d_model", &mamba2_config::hidden_size}, config_field{"d_state", &mamba2_config::d_state},
                      config_field{"d_conv", &mamba2_config::d_conv}, config_field{"expand", &mamba2_config::expand},
                      config_field{"headdim", &mamba2_config::headdim}, config_field{"ngroups", &mamba2_config::ngroups},
                      config_field{"rmsnorm", &mamba2_config::rmsnorm},
                      config_field{"norm_before_gate", &mamba2_config::norm_before_gate},
                      config_field{"norm_eps", &mamba2_config::norm_eps}, config_field{"conv_bias", &mamba2_config::conv_bias},
                      config_field{"bias", &mamba2_config::bias}};
  }
};

/// conv: the last d_conv - 1 pre-conv xBC inputs, oldest first (upstream's conv_state[..., 1:]);
/// ssm: the SSD state, P-major as upstream's ssm_state; work: forward()'s temporaries
/// (d_in_proj + conv_dim + d_inner floats a token). Mamba2's and BiMamba2's State.
template <class T>
struct mamba2_state {
  tensor<T, 3> conv;  // [B, conv_dim, d_conv - 1]
  tensor<T, 4> ssm;   // [B, nheads, headdim, d_state]
  scratch<T> work;
  index_t batch() const { return ssm.extent(0); }
};

/// Mamba2's forward after check_io (Nt = B·L tokens) for the weights of either layer (in_proj and
/// out_proj as float or bf16 nn::linear, or Bi-Mamba's 1-bit nn::binary_linear): one body for
/// Mamba2 and BiMamba2. Layer::name names the errors.
template <class Layer, class P, class T, class Config, class Weights>
void mamba2_forward(const P& policy, const Config& cfg, const Weights& w, const tensor<T, 1>& A,
                    tensor_view<const T, 3> x, tensor_view<T, 3> y, mamba2_state<T>& state, index_t Nt) {
  constexpr const char* name = Layer::name;
  const index_t B = x.extent(0), L = x.extent(1), di = cfg.d_inner();
  const index_t H = cfg.nheads(), Pd = cfg.headdim, N = cfg.d_state, G = cfg.ngroups;
  const index_t cd = cfg.conv_dim(), dip = cfg.d_in_proj();
  check_shape(name, "state.conv", state.conv.extents(), {B, cd, cfg.d_conv - 1});
  check_shape(name, "state.ssm", state.ssm.extents(), {B, H, Pd, N});
  if (Nt == 0) return;
  const int th = policy.threads;
  const sequence_rows<T> rows(x);
  const tensor_view<const T, 2> x2 = rows.view;

  // zxbcdt = [z | xBC | dt] per token [Nt, dip], xbc [Nt, cd] and ys [Nt, di] from the state's
  // scratch (fresh buffers would be zero-filled by the kernel on every call); each is written in
  // full before it is read.
  T* ws = state.work.get(checked_mul(Nt, dip + cd + di, name));
  const tensor_view<T, 2> zxbcdt(ws, {Nt, dip});
  w.in_proj(x2, zxbcdt, name, th);
  const tensor_view<T, 3> xbc(ws + Nt * dip, {B, L, cd});
  w.conv1d(tensor_view<const T, 3>(zxbcdt.data() + di, {B, L, cd}, {L * dip, dip, 1}), xbc, state.conv, name, th);

  const kernels::ssm::ssd::inputs<T> in{
      tensor_view<const T, 4>(xbc.data(), {B, L, H, Pd}, {L * cd, cd, Pd, 1}),
      tensor_view<const T, 3>(zxbcdt.data() + di + cd, {B, L, H}, {L * dip, dip, 1}),
      A,
      tensor_view<const T, 4>(xbc.data() + di, {B, L, G, N}, {L * cd, cd, N, 1}),
      tensor_view<const T, 4>(xbc.data() + di + G * N, {B, L, G, N}, {L * cd, cd, N, 1}),
      w.D,
      w.dt_bias};
  const tensor_view<T, 2> ys(ws + Nt * (dip + cd), {Nt, di});
  kernels::ssm::ssd::forward(policy, in, ys.template reshape<4>({B, L, H, Pd}), state.ssm,
                                   {true, cfg.dt_min, cfg.dt_max});

  for (index_t n = 0; n < Nt; ++n) {
    T* row = ys.data() + n * di;
    const T* z = zxbcdt.data() + n * dip;
    if (cfg.rmsnorm)
      nn::group_rmsnorm_gated_row(row, z, w.norm.data(), row, di, di / G, T(cfg.norm_eps), cfg.norm_before_gate);
    else
      simd::transform(row, z, row, di, [](auto a, auto b) { return a * simd::silu(b); });
  }
  project_to_sequence<T>(w.out_proj, ys, y, name, th);
}

}  // namespace detail

/// Mamba-2 layer: one in_proj split into (z, xBC, dt), a causal depthwise conv + silu over xBC,
/// the SSD scan with dt bias / softplus and D skip, the gated group RMSNorm and out_proj.
template <class T = float, class WeightT = T>
class Mamba2 : public mixer<Mamba2<T, WeightT>, T> {
 public:
  static constexpr const char* name = "Mamba2";

  using config = detail::mamba2_config<Mamba2>;

  /// Upstream state_dict entries: see each_weight.
  struct weights {
    nn::linear<T, WeightT> in_proj;        // [d_in_proj, d_model]
    nn::causal_conv1d<T> conv1d;  // [conv_dim, 1, d_conv]
    tensor<T, 1> dt_bias, A_log, D;  // [nheads]
    tensor<T, 1> norm;            // norm.weight [d_inner] (empty without rmsnorm)
    nn::linear<T, WeightT> out_proj;       // [d_model, d_inner]
  };

  /// The weight table (names, shapes, init): drives load, save, init and the shape checks. The
  /// init is mamba_ssm's: A uniform in [1, 16), D = 1, dt_bias the inverse softplus of a
  /// log-uniform dt in [1e-3, 0.1].
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t dm = c.hidden_size, di = c.d_inner(), H = c.nheads();
    linear_weights(f, "in_proj", w.in_proj, c.d_in_proj(), dm, c.bias);
    conv_weights(f, "conv1d", w.conv1d, c.conv_dim(), c.d_conv, c.conv_bias);
    f(weight_spec<1>{"dt_bias", {H}, init_rule::dt_bias()}, w.dt_bias);
    f(weight_spec<1>{"A_log", {H}, init_rule::values([](index_t, double u) { return std::log(1 + 15 * u); })}, w.A_log);
    f(weight_spec<1>{"D", {H}, init_rule::ones()}, w.D);
    f(weight_spec<1>{"norm.weight", {di}, init_rule::ones(), c.rmsnorm}, w.norm);
    linear_weights(f, "out_proj", w.out_proj, dm, di, c.bias);
  }

  /// The conv and SSD states (detail::mamba2_state).
  using State = detail::mamba2_state<T>;

  Mamba2(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    this->check_weights(cfg_, w_);
    A_ = tensor<T, 1>(w_.A_log.extents());
    for (index_t i = 0; i < A_.size(); ++i) A_.data()[i] = -std::exp(w_.A_log.data()[i]);
  }

  using mixer<Mamba2<T, WeightT>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    State s;
    s.conv = w_.conv1d.make_state(batch), s.ssm = tensor<T, 4>({batch, cfg_.nheads(), cfg_.headdim, cfg_.d_state});
    return s;
  }

  /// y [B,T,d_model] for x [B,T,d_model]; `state` enters as the state before x and leaves as the
  /// state after it, so consecutive calls continue one sequence.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);  // the policy\'s pool runs every parallel part of the layer
    detail::mamba2_forward<Mamba2>(policy, cfg_, w_, A_, x, y, state, this->check_io(x, y));
  }

 private:
  config cfg_;
  weights w_;
  tensor<T, 1> A_;  // -exp(A_log)
};

static_assert(sequence_mixer<Mamba2<float>>);
static_assert(sequence_mixer<Mamba2<float, bf16>>);

}  // namespace seqmix::layers
