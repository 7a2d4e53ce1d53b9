// cross_layer<T>: the one named place for inputs that cross layers within a model (RWKV-7's
// v_first, Hymba's shared KV cache). See docs/layers.md.
#pragma once

#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {
template <class T>
class kv_cache;  // kernels/attention/cache.hpp
}  // namespace seqmix::kernels::attention

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
  /// Hymba: the KV cache of the latest layer that makes its own keys and values (kv_reuse =
  /// false), set by that layer's forward()/step() to its State's cache; the following layers with
  /// kv_reuse = true attend it in place (no copy of the shared keys and values) and check its
  /// heads, window and length. Null until such a layer has run.
  kernels::attention::kv_cache<T>* shared_kv = nullptr;
};

/// Options of make_state(batch, options) common to every layer; a layer ignores what it does not use.
template <class T>
struct state_options {
  index_t capacity = 0;            ///< KV-cache tokens (attention layers; 0: the config's max_length)
  cross_layer<T>* cross = nullptr;  ///< the model's cross-layer values (RWKV-7, Hymba), or none
};

}  // namespace seqmix::layers
