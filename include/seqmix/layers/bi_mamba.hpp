// BiMamba2: the Bi-Mamba block (arXiv 2411.11843, spec/bi_mamba.md): Mamba-2 whose in_proj and
// out_proj are 1-bit FBI-Linear projections (nn::binary_linear: packed signs, a scale and a shift
// per input column); conv1d, the SSD scan, dt / A / D and the gated group RMSNorm stay in float
// and run on the same kernels as Mamba2.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

#include "mixer.hpp"  // the layer vocabulary: concept, weight table, policies, tensors
#include "../kernels/ssm/ssd.hpp"
#include "mamba2.hpp"  // the config
#include "../nn/binary_linear.hpp"
#include "../nn/conv1d.hpp"
#include "../nn/rmsnorm.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

namespace binary {

/// The entries of an FBI-Linear `<name>`: `.weight_packed` uint8 [out, ceil(in/8)] (listed only to
/// visitors that take nn::packed_spec, below), `.wscale` and `.wbias` [1, in], and with `bias`,
/// `.bias` [out]. Init: random signs, wscale uniform in [0.5, 1.5]/√in (the mean |W| of a
/// ±1/√in uniform init is 0.5/√in), wbias uniform in ±0.1/√in.
template <class F, class L>
void weights(F& f, const std::string& name, L& lin, index_t out, index_t in, bool bias) {
  if constexpr (std::is_invocable_v<F&, const nn::packed_spec&, decltype((lin.weight))>)
    f(nn::packed_spec{name + ".weight_packed", out, in}, lin.weight);
  const double s = 1 / std::sqrt(double(std::max<index_t>(in, 1)));
  f(weight_spec<2>{name + ".wscale", {1, in}, init_rule::uniform(0.5 * s, 1.5 * s)}, lin.wscale);
  f(weight_spec<2>{name + ".wbias", {1, in}, init_rule::uniform(-0.1 * s, 0.1 * s)}, lin.wbias);
  f(weight_spec<1>{name + ".bias", {out}, init_rule::uniform(-s, s), bias}, lin.bias);
}

// The weight-table visitors of weight_table.hpp, each also taking the packed signs.
template <class T>
struct loader : weight_loader<T> {
  using weight_loader<T>::operator();
  void operator()(const nn::packed_spec& s, nn::packed_bits& m) const {
    const auto bytes = this->src.template load<std::uint8_t, 2>(s.name, s.stored_shape());
    m = nn::packed_bits::from_bytes(bytes.view(), s.cols, this->src.who(), "weight '" + this->src.prefix() + s.name + "'");
  }
};
template <class T>
struct saver : weight_saver<T> {
  using weight_saver<T>::operator();
  void operator()(const nn::packed_spec& s, const nn::packed_bits& m) const { this->out.add(this->prefix + s.name, m.to_bytes()); }
};
template <class T>
struct checker : weight_checker<T> {
  using weight_checker<T>::operator();
  void operator()(const nn::packed_spec& s, const nn::packed_bits& m) const {
    check_shape(this->who, "weight '" + s.name + "'", std::array<index_t, 2>{m.rows(), m.cols()}, {s.rows, s.cols});
  }
};
template <class T>
struct initializer : weight_initializer<T> {
  using weight_initializer<T>::operator();
  void operator()(const nn::packed_spec& s, nn::packed_bits& m) const {
    m = nn::packed_bits::random(s.rows, s.cols, detail::weight_seed(this->seed, s.name));
  }
};

}  // namespace binary

/// Bi-Mamba layer: Mamba2 (layers/mamba2.hpp) with 1-bit in_proj and out_proj.
template <class T = float>
class BiMamba2 : public mixer<BiMamba2<T>, T> {
 public:
  static constexpr const char* name = "BiMamba2";

  /// Mamba2's config (upstream keys of mamba_ssm's Mamba2).
  using config = detail::mamba2_config<BiMamba2>;

  struct weights {
    nn::binary_linear<T> in_proj;    // signs [d_in_proj, d_model], wscale / wbias [d_model]
    nn::causal_conv1d<T> conv1d;     // [conv_dim, 1, d_conv]
    tensor<T, 1> dt_bias, A_log, D;  // [nheads]
    tensor<T, 1> norm;               // norm.weight [d_inner] (empty without rmsnorm)
    nn::binary_linear<T> out_proj;   // signs [d_model, d_inner], wscale / wbias [d_inner]
  };

  /// The weight table: Mamba2's, with the FBI-Linear entries of binary::weights for the two
  /// projections. The packed signs are listed to the visitors of namespace binary only, so the
  /// generic visitors (finite checks, tests' poisoning) see the float entries.
  template <class W, class F>
  static void each_weight(const config& c, W& w, F&& f) {
    const index_t dm = c.hidden_size, di = c.d_inner(), H = c.nheads();
    binary::weights(f, "in_proj", w.in_proj, c.d_in_proj(), dm, c.bias);
    conv_weights(f, "conv1d", w.conv1d, c.conv_dim(), c.d_conv, c.conv_bias);
    f(weight_spec<1>{"dt_bias", {H}, init_rule::dt_bias()}, w.dt_bias);
    f(weight_spec<1>{"A_log", {H}, init_rule::values([](index_t, double u) { return std::log(1 + 15 * u); })}, w.A_log);
    f(weight_spec<1>{"D", {H}, init_rule::ones()}, w.D);
    f(weight_spec<1>{"norm.weight", {di}, init_rule::ones(), c.rmsnorm}, w.norm);
    binary::weights(f, "out_proj", w.out_proj, dm, di, c.bias);
  }

  /// Mamba2's State (detail::mamba2_state).
  using State = detail::mamba2_state<T>;

  BiMamba2(const config& cfg, weights w) : cfg_(cfg), w_(std::move(w)) {
    cfg_.validate();
    each_weight(cfg_, w_, binary::checker<T>{{name}});
    A_ = tensor<T, 1>(w_.A_log.extents());
    for (index_t i = 0; i < A_.size(); ++i) A_.data()[i] = -std::exp(w_.A_log.data()[i]);
  }

  using mixer<BiMamba2<T>, T>::forward;

  const config& cfg() const { return cfg_; }
  const weights& params() const { return w_; }

  /// From a checkpoint in the spec's layout (weight_packed bytes as stored, wscale / wbias [1, in]);
  /// a missing weight or a wrong shape raises seqmix::error naming the layer and the weight.
  static BiMamba2 load(const io::safetensors& file, const config& cfg, const std::string& prefix = "") {
    cfg.validate();
    const io::weight_source src(file, prefix, name);
    weights w;
    each_weight(cfg, w, binary::loader<T>{{src}});
    return BiMamba2(cfg, std::move(w));
  }

  /// Reproducible random weights (binary::weights gives the projections' rules).
  static BiMamba2 init(const config& cfg, std::uint64_t seed) {
    cfg.validate();
    weights w;
    each_weight(cfg, w, binary::initializer<T>{{seed}});
    return BiMamba2(cfg, std::move(w));
  }

  /// Writes the weights in the spec's layout; load() of the result is this layer bit for bit.
  void save(io::safetensors_writer& out, const std::string& prefix = "") const {
    each_weight(cfg_, w_, binary::saver<T>{{out, prefix}});
  }

  /// Bytes of the weights as held (packed signs and the float parameters).
  std::size_t memory_bytes() const {
    auto floats = [](const auto&... t) { return (std::size_t(t.size()) + ...) * sizeof(T); };
    return w_.in_proj.memory_bytes() + w_.out_proj.memory_bytes() + floats(w_.conv1d.weight, w_.dt_bias, w_.A_log, w_.D, w_.norm) +
           (w_.conv1d.bias ? floats(*w_.conv1d.bias) : 0);
  }

  /// A zero state for `batch` sequences.
  State make_state(index_t batch, const state_options<T>& = {}) const {
    State s;
    s.conv = w_.conv1d.make_state(batch), s.ssm = tensor<T, 4>({batch, cfg_.nheads(), cfg_.headdim, cfg_.d_state});
    return s;
  }

  /// y [B,T,d_model] for x [B,T,d_model]; `state` enters as the state before x and leaves as the
  /// state after it: Mamba2's forward (detail::mamba2_forward) with the 1-bit projections.
  template <exec::policy P>
  void forward(const P& policy, tensor_view<const T, 3> x, tensor_view<T, 3> y, State& state) const {
    exec::check(policy, name);
    const pool_scope scope(policy);
    detail::mamba2_forward<BiMamba2>(policy, cfg_, w_, A_, x, y, state, this->check_io(x, y));
  }

 private:
  config cfg_;
  weights w_;
  tensor<T, 1> A_;  // -exp(A_log)
};

static_assert(sequence_mixer<BiMamba2<float>>);

}  // namespace seqmix::layers
