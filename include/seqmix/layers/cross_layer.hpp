// cross_layer<T>: the one named place for inputs that cross layers within a model (RWKV-7's
// v_first today; a shared KV cache or a meta-token prefix next). See docs/layers.md.
#pragma once

#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// Values one layer of a model produces for later layers of the same forward pass. A model keeps
/// one per batch of sequences and hands its address to every layer's make_state() through
/// state_options::cross; a layer that produces a value writes it during forward()/step(), a layer
/// that consumes one reads it there, so the layers keep the common forward(policy, x, y, state)
/// signature. Layers run in order, so a producer always runs before its consumers.
template <class T>
struct cross_layer {
  /// RWKV-7: layer 0's value vectors v [B, T, C] of the current call; read by layers > 0.
  tensor<T, 3> v_first;
};

/// Options of make_state(batch, options) common to every layer; a layer ignores what it does not use.
template <class T>
struct state_options {
  index_t capacity = 0;            ///< KV-cache tokens (attention layers; 0: the config's max_length)
  cross_layer<T>* cross = nullptr;  ///< the model's cross-layer values (RWKV-7), or none
};

}  // namespace seqmix::layers
