// model_config: what a model is made of — vocabulary, width, head tying and the list of blocks, each
// a mixer of any family (its own config) plus an optional SwiGLU MLP. validate() checks what no
// single layer can: every width equals the model's, and cross-layer producers come before their
// consumers. Read from JSON by models/json_config.hpp.
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../error.hpp"
#include "families.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

/// One block: x += mixer(rmsnorm(x)); then, with mlp_size > 0, x += mlp(rmsnorm(x)).
template <class T>
struct block_config {
  typename families<T>::config mixer;
  index_t mlp_size = 0;      ///< SwiGLU width (gate_proj/up_proj rows); 0: no MLP
  std::string prefix;        ///< the mixer's weights under "model.layers.N.<prefix>."; empty: the family's default
  bool drop_mixer = false;   ///< the mixer is dropped (not loaded, not run): the block is its MLP alone
  index_t weights_layer = -1;  ///< the N of its weights' names "model.layers.N."; -1: its position

  /// The N of "model.layers.N." for the block at `position`.
  index_t weights_index(std::size_t position) const { return weights_layer >= 0 ? weights_layer : index_t(position); }

  /// A block of family L.
  template <class L>
  static block_config of(const typename L::config& c, index_t mlp = 0, std::string prefix = {}) {
    return {config_of<L>{c}, mlp, std::move(prefix)};
  }
  std::string_view family_name() const {
    return std::visit([](const auto& c) { return family<typename std::decay_t<decltype(c)>::layer>::name; }, mixer);
  }
  std::string mixer_prefix() const {
    if (!prefix.empty()) return prefix;
    return std::string(std::visit([](const auto& c) { return family<typename std::decay_t<decltype(c)>::layer>::prefix; }, mixer));
  }
  index_t hidden_size() const {
    return std::visit([](const auto& c) { return c.value.hidden_size; }, mixer);
  }
};

/// A part of a block: what a model run may skip, a config drop, and a hook observe.
enum class part { mixer, mlp, block };
struct layer_part {
  std::size_t layer;
  part what;
  friend bool operator==(const layer_part&, const layer_part&) = default;
};

template <class T>
struct model_config {
  index_t vocab_size = 0;
  index_t hidden_size = 0;
  bool tie_word_embeddings = true;  ///< the LM head is the embedding (no lm_head.weight)
  double rms_norm_eps = 1e-6;       ///< every block norm and the final norm
  std::vector<block_config<T>> layers;

  /// "model layer 3 (mamba2)": how messages name block i.
  std::string who(std::size_t i) const {
    return "model layer " + std::to_string(i) + " (" + std::string(layers[i].family_name()) + ")";
  }

  /// This config without `parts`: a dropped mixer makes its block the MLP alone, a dropped MLP sets
  /// mlp_size 0, a dropped block leaves the list; every block keeps reading its own weights
  /// (weights_layer), so the result loads the same checkpoint. Validated: dropping a cross-layer
  /// producer whose consumer stays (RWKV-7 layer_id 0, Hymba's shared KV cache) is an error.
  model_config without(std::span<const layer_part> parts) const {
    model_config c = *this;
    c.layers.clear();
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const auto dropped = [&](part p) { return std::find(parts.begin(), parts.end(), layer_part{i, p}) != parts.end(); };
      if (dropped(part::block)) continue;
      block_config<T> b = layers[i];
      if (b.weights_index(i) != index_t(c.layers.size())) b.weights_layer = b.weights_index(i);
      if (dropped(part::mixer)) b.drop_mixer = true;
      if (dropped(part::mlp)) b.mlp_size = 0;
      c.layers.push_back(std::move(b));
    }
    for (const auto& p : parts)
      require(p.layer < layers.size(), "model", "cannot drop layer " + std::to_string(p.layer) + " of " + std::to_string(layers.size()));
    c.validate();
    return c;
  }

  /// Throws seqmix::error naming the block and the field that is wrong.
  void validate() const {
    require(vocab_size > 0, "model", "config vocab_size must be positive");
    require(hidden_size > 0, "model", "config hidden_size must be positive");
    require(rms_norm_eps > 0, "model", "config rms_norm_eps must be positive");
    require(!layers.empty(), "model", "config has no layers");
    bool rwkv_first = false, hymba_producer = false;
    std::vector<index_t> names;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const auto& b = layers[i];
      require(b.mlp_size >= 0, who(i), "mlp_size must not be negative");
      require(b.weights_layer >= -1, who(i), "weights_layer must not be negative");
      const index_t n = b.weights_index(i);
      require(std::find(names.begin(), names.end(), n) == names.end(), who(i),
              "its weights_layer " + std::to_string(n) + " is another block's too");
      names.push_back(n);
      require(b.hidden_size() == hidden_size, who(i),
              "hidden_size " + std::to_string(b.hidden_size()) + " differs from the model's " + std::to_string(hidden_size));
      std::visit(
          [&](const auto& c) {
            using L = typename std::decay_t<decltype(c)>::layer;
            try {
              c.value.validate();
            } catch (const error& e) {
              throw error(who(i) + ": " + e.what());
            }
            // Cross-layer values (docs/layers.md): the producer must run first (and run at all).
            if (b.drop_mixer) return;
            if constexpr (std::is_same_v<L, layers::RWKV7TimeMix<T>>) {
              if (c.value.layer_id == 0) rwkv_first = true;
              else require(rwkv_first, who(i), "an RWKV-7 layer with layer_id > 0 needs an earlier one with layer_id 0 (v_first)");
            } else if constexpr (std::is_same_v<L, layers::HymbaBlock<T>>) {
              if (!c.value.kv_reuse) hymba_producer = true;
              else require(hymba_producer, who(i), "kv_reuse needs an earlier Hymba layer without kv_reuse (the shared KV cache)");
            }
          },
          b.mixer);
    }
  }
};

}  // namespace seqmix::models
