// state_bytes: what a sequence costs in each block — the bytes of its layer state (recurrent and
// conv states, KV slots as allocated), not forward()'s temporaries (layers::scratch, which a copy
// of the state does not take) nor the model's cross-layer values (rewritten by every call). One
// overload per family, from the State members the layers list (models/families.hpp): a family
// added without one fails to compile in state_bytes(model, state, i).
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <variant>

#include "../error.hpp"
#include "families.hpp"
#include "model.hpp"
#include "state.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

namespace detail {

template <class X, std::size_t R>
index_t tensor_bytes(const tensor<X, R>& t) {
  return t.size() * index_t(sizeof(X));
}

/// Key and value rows of every allocated slot (a ring counts its O(window) slots), in the cache's
/// storage type; an empty cache (Hymba's kv_reuse) is 0.
template <class S>
index_t kv_bytes(const kernels::attention::kv_cache<S>& c) {
  if (c.slots() == 0) return 0;
  using stored = std::remove_cvref_t<decltype(*c.key_block(0, 0, 0))>;
  const auto& d = c.dims();
  return d.batch * (d.key_heads * d.key_dim + d.value_heads * d.value_dim) * c.slots() * index_t(sizeof(stored));
}

}  // namespace detail

/// Bytes of one layer's state (the layer names its State type).
template <class T, class W>
index_t state_bytes(const layers::GatedLinearAttention<T, W>&, const typename layers::GatedLinearAttention<T, W>::State& s) {
  return detail::tensor_bytes(s.h);
}
template <class T, class W>
index_t state_bytes(const layers::DeltaNet<T, W>&, const typename layers::DeltaNet<T, W>::State& s) {
  using detail::tensor_bytes;
  return tensor_bytes(s.h) + tensor_bytes(s.conv_q) + tensor_bytes(s.conv_k) + tensor_bytes(s.conv_v);
}
template <class T, class W>
index_t state_bytes(const layers::GatedDeltaNet<T, W>&, const typename layers::GatedDeltaNet<T, W>::State& s) {
  using detail::tensor_bytes;
  return tensor_bytes(s.h) + tensor_bytes(s.conv_q) + tensor_bytes(s.conv_k) + tensor_bytes(s.conv_v);
}
template <class T, class W>
index_t state_bytes(const layers::Mamba<T, W>&, const typename layers::Mamba<T, W>::State& s) {
  return detail::tensor_bytes(s.conv) + detail::tensor_bytes(s.ssm);
}
template <class T, class W>
index_t state_bytes(const layers::Mamba2<T, W>&, const typename layers::Mamba2<T, W>::State& s) {
  return detail::tensor_bytes(s.conv) + detail::tensor_bytes(s.ssm);
}
template <class T>
index_t state_bytes(const layers::BiMamba2<T>&, const typename layers::BiMamba2<T>::State& s) {
  return detail::tensor_bytes(s.conv) + detail::tensor_bytes(s.ssm);
}
template <class T, class W, class S>
index_t state_bytes(const layers::Attention<T, W, S>&, const typename layers::Attention<T, W, S>::State& s) {
  return detail::kv_bytes(s);  // in the cache's storage type (bf16: half)
}
template <class T, class W>
index_t state_bytes(const layers::MultiheadDiffAttn<T, W>&, const typename layers::MultiheadDiffAttn<T, W>::State& s) {
  return detail::kv_bytes(s);
}
template <class T, class W>
index_t state_bytes(const layers::NGPTBlock<T, W>&, const typename layers::NGPTBlock<T, W>::State& s) {
  return detail::kv_bytes(s);  // its KV cache base; work is scratch
}
template <class T, class W>
index_t state_bytes(const layers::RWKV7TimeMix<T, W>&, const typename layers::RWKV7TimeMix<T, W>::State& s) {
  return detail::tensor_bytes(s.shift) + detail::tensor_bytes(s.wkv);
}
template <class T, class W>
index_t state_bytes(const layers::UltraMem<T, W>&, const typename layers::UltraMem<T, W>::State& s) {
  return detail::tensor_bytes(s.conv);
}
template <class T, class W>
index_t state_bytes(const layers::HymbaBlock<T, W>&, const typename layers::HymbaBlock<T, W>::State& s) {
  // A kv_reuse block's own cache is empty: the shared one is counted at its producer.
  return detail::kv_bytes(s.kv) + detail::tensor_bytes(s.conv) + detail::tensor_bytes(s.ssm);
}

/// Bytes of block i's layer state in `s` (a state `m` made).
template <class T, class W>
index_t state_bytes(const model<T, W>& m, const model_state<T, W>& s, std::size_t i) {
  require(i < m.num_layers(), "state_bytes", "block " + std::to_string(i) + " of a model of " +
                                                 std::to_string(m.num_layers()) + " blocks");
  if (!m.mixer(i)) return 0;  // a dropped mixer: the block holds no state
  return std::visit(
      [&](const auto& layer) {
        using L = std::decay_t<decltype(layer)>;
        const auto* st = s.layer(i) ? std::get_if<state_of<L>>(s.layer(i)) : nullptr;
        require(st != nullptr, "state_bytes", "the state was made by a model with another family at block " + std::to_string(i));
        return state_bytes(layer, st->value);
      },
      *m.mixer(i));
}

/// Bytes of every block's layer state: what one sequence of `m` holds besides forward()'s buffers.
template <class T, class W>
index_t state_bytes(const model<T, W>& m, const model_state<T, W>& s) {
  index_t total = 0;
  for (std::size_t i = 0; i < m.num_layers(); ++i) total += state_bytes(m, s, i);
  return total;
}

}  // namespace seqmix::models
