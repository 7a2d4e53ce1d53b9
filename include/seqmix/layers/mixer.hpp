// mixer<Layer, T>: what every layer does the same way, written once (CRTP); including it gives a
// layer header its whole vocabulary (concept, weight and field tables, policies, tensors). A layer provides
// name, config (validate(), hidden_size), weights, each_weight(config, weights, f) (its weight
// table, see weight_table.hpp), State, make_state(batch, options), a constructor from
// (config, weights) that calls check_weights(), cfg() and forward(policy, x, y, state); mixer
// adds the allocating forward, step, hidden_size, load, init, save and validate_finite.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include "../error.hpp"
#include "../io/safetensors.hpp"
#include "../io/weights.hpp"
#include "../nn/linear.hpp"
#include "../policy/execution.hpp"
#include "../policy/threads.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"
#include "concept.hpp"
#include "config_fields.hpp"
#include "cross_layer.hpp"
#include "scratch.hpp"
#include "sequence_rows.hpp"
#include "weight_table.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

template <class Layer, class T>
class mixer {
 public:
  using value_type = T;

  /// Allocating form of forward(policy, x, y, state).
  template <exec::policy P, class State>
  tensor<T, 3> forward(const P& policy, tensor_view<const T, 3> x, State& state) const {
    tensor<T, 3> y(x.extents());
    self().forward(policy, x, y.view(), state);
    return y;
  }

  /// One decoding step: x, y [B, hidden]. Runs the recurrent kernels with the policy's threads and pool.
  template <exec::policy P, class State>
  void step(const P& policy, tensor_view<const T, 2> x, tensor_view<T, 2> y, State& state) const {
    check_shape(Layer::name, "x", x.extents(), {x.extent(0), hidden_size()});
    check_shape(Layer::name, "y", y.extents(), {x.extent(0), hidden_size()});
    self().forward(exec::rebind<exec::recurrent>(policy), detail::as_sequence(x), detail::as_sequence(y), state);
  }

  /// The model width (input and output features).
  index_t hidden_size() const { return self().cfg().hidden_size; }

  /// Loads the weights by their upstream names, each prefixed with `prefix` (e.g.
  /// "model.layers.3.attn."). The config is validated first; a missing weight or a wrong shape
  /// raises seqmix::error naming the layer and the weight.
  template <class L = Layer>
  static L load(const io::safetensors& file, const typename L::config& cfg, const std::string& prefix = "") {
    cfg.validate();
    const io::weight_source src(file, prefix, L::name);
    typename L::weights w;
    L::each_weight(cfg, w, weight_loader<T>{src});
    return L(cfg, std::move(w));
  }

  /// A layer with reproducible random weights of the upstream init's scale (see each_weight).
  template <class L = Layer>
  static L init(const typename L::config& cfg, std::uint64_t seed) {
    cfg.validate();
    typename L::weights w;
    L::each_weight(cfg, w, weight_initializer<T>{seed});
    return L(cfg, std::move(w));
  }

  /// Writes the weights under their upstream names, each prefixed with `prefix`; load() of the
  /// result gives this layer back bit for bit.
  void save(io::safetensors_writer& out, const std::string& prefix = "") const {
    Layer::each_weight(self().cfg(), self().params(), weight_saver<T>{out, prefix});
  }

  /// Throws seqmix::error naming the first weight with a NaN or infinite element.
  void validate_finite() const { Layer::each_weight(self().cfg(), self().params(), finite_checker<T>{Layer::name}); }

 protected:
  /// For the start of the layer's forward: x and y are [B, L, hidden]; returns B·L, the token rows
  /// of the call, checked (broadcast views may claim more rows than an index can count).
  index_t check_io(tensor_view<const T, 3> x, tensor_view<T, 3> y) const {
    check_shape(Layer::name, "x", x.extents(), {x.extent(0), x.extent(1), hidden_size()});
    check_shape(Layer::name, "y", y.extents(), x.extents());
    return checked_mul(x.extent(0), x.extent(1), Layer::name);
  }

  /// For the layer's constructor: the config is valid and every weight has its table shape.
  template <class L = Layer>
  static void check_weights(const typename L::config& cfg, const typename L::weights& w) {
    cfg.validate();
    L::each_weight(cfg, w, weight_checker<T>{L::name});
  }

 private:
  const Layer& self() const { return static_cast<const Layer&>(*this); }
};

/// save(layer, writer, prefix) as a free function.
template <class L>
void save(const L& layer, io::safetensors_writer& out, const std::string& prefix = "") {
  layer.save(out, prefix);
}

}  // namespace seqmix::layers
