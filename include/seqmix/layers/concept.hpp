// seqmix::layers::sequence_mixer: what every layer provides, so that a model can hold layers of
// different families and run prefill and decode through them without knowing which is which.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>

#include "../io/safetensors.hpp"
#include "../policy/execution.hpp"
#include "../tensor/tensor.hpp"
#include "cross_layer.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// A layer L over element type L::value_type:
/// - `L::config` (validate(), hidden_size), `L::weights`, `L::State`, `L::name`;
/// - `make_state(batch[, state_options])`: a fresh state (zeros / an empty cache);
/// - `forward(policy, x, y, state)` for x, y [B, T, hidden] under any policy, and the allocating
///   `forward(policy, x, state)`; the state enters as the state before x and leaves as the state
///   after it;
/// - `step(policy, x, y, state)` for one token x, y [B, hidden] (decode; the policy's threads);
/// - `hidden_size()`, `cfg()`;
/// - `L::load(file, config, prefix)`, `L::init(config, seed)`, `save(writer, prefix)`,
///   `validate_finite()`.
template <class L>
concept sequence_mixer = requires(const L& l, typename L::State& s, index_t batch, const typename L::config& c,
                                  tensor_view<const typename L::value_type, 3> x,
                                  tensor_view<typename L::value_type, 3> y,
                                  tensor_view<const typename L::value_type, 2> x1,
                                  tensor_view<typename L::value_type, 2> y1, const io::safetensors& file,
                                  io::safetensors_writer& writer) {
  typename L::config;
  typename L::weights;
  typename L::State;
  { L::name } -> std::convertible_to<const char*>;
  { c.validate() };
  { l.cfg() } -> std::same_as<const typename L::config&>;
  { l.hidden_size() } -> std::same_as<index_t>;
  { l.make_state(batch) } -> std::same_as<typename L::State>;
  { l.make_state(batch, state_options<typename L::value_type>{}) } -> std::same_as<typename L::State>;
  l.forward(exec::recurrent{}, x, y, s);
  l.forward(exec::chunkwise<64>{}, x, y, s);
  l.forward(exec::parallel{}, x, y, s);
  l.forward(exec::automatic{}, x, y, s);
  { l.forward(exec::automatic{}, x, s) } -> std::same_as<tensor<typename L::value_type, 3>>;
  l.step(exec::recurrent{}, x1, y1, s);
  l.step(exec::automatic{}, x1, y1, s);
  { L::load(file, c, std::string()) } -> std::same_as<L>;
  { L::init(c, std::uint64_t(0)) } -> std::same_as<L>;
  l.save(writer, std::string());
  l.validate_finite();
};

}  // namespace seqmix::layers
