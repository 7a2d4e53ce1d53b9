// The layer families a model block can hold: one list, so the config variant, the layer variant
// and the state variant of a model never disagree, and each family's name (as in the JSON config and
// tools/refcheck) and default weight prefix are written once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "../layers/attention.hpp"
#include "../layers/bi_mamba.hpp"
#include "../layers/delta_net.hpp"
#include "../layers/diff_attn.hpp"
#include "../layers/gated_delta_net.hpp"
#include "../layers/gla.hpp"
#include "../layers/hymba.hpp"
#include "../layers/mamba.hpp"
#include "../layers/mamba2.hpp"
#include "../layers/ngpt.hpp"
#include "../layers/rwkv7.hpp"
#include "../layers/ultramem.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::models {

/// A family's name in configs and its weight prefix inside a block ("model.layers.N.<prefix>.").
template <class L>
struct family;
#define SEQMIX_MODEL_FAMILY(Layer, family_name, default_prefix)                  \
  template <class T, class... R> /* any weight (and cache) type */               \
  struct family<layers::Layer<T, R...>> {                                        \
    static constexpr std::string_view name = family_name, prefix = default_prefix; \
  }
SEQMIX_MODEL_FAMILY(GatedLinearAttention, "gla", "attn");
SEQMIX_MODEL_FAMILY(DeltaNet, "delta_net", "attn");
SEQMIX_MODEL_FAMILY(GatedDeltaNet, "gated_delta_net", "attn");
SEQMIX_MODEL_FAMILY(Mamba, "mamba", "mixer");
SEQMIX_MODEL_FAMILY(Mamba2, "mamba2", "mixer");
SEQMIX_MODEL_FAMILY(Attention, "attention", "self_attn");
SEQMIX_MODEL_FAMILY(MultiheadDiffAttn, "diff_attn", "self_attn");
SEQMIX_MODEL_FAMILY(RWKV7TimeMix, "rwkv7", "attn");
SEQMIX_MODEL_FAMILY(NGPTBlock, "ngpt", "mixer");
SEQMIX_MODEL_FAMILY(UltraMem, "ultramem", "mixer");
SEQMIX_MODEL_FAMILY(HymbaBlock, "hymba", "mixer");
#undef SEQMIX_MODEL_FAMILY
template <class T>
struct family<layers::BiMamba2<T>> {
  static constexpr std::string_view name = "bi_mamba", prefix = "mixer";
};

/// Layer L with weights of type W: X<T, V> as X<T, W>, Attention<T, V, C> as Attention<T, W, C>;
/// a family without a weight type (Bi-Mamba's projections are bits) stays itself.
template <class L, class W>
struct with_weights {
  using type = L;
};
template <template <class, class> class X, class T, class V, class W>
struct with_weights<X<T, V>, W> {
  using type = X<T, W>;
};
template <template <class, class, class> class X, class T, class V, class C, class W>
struct with_weights<X<T, V, C>, W> {
  using type = X<T, W, C>;
};
template <class L, class W>
using with_weights_t = typename with_weights<L, W>::type;

/// A layer's config tagged with its layer type (two families could share a config type).
template <class L>
struct config_of {
  using layer = L;
  typename L::config value;
};
/// A layer's state tagged likewise (Attention and MultiheadDiffAttn share the KV cache type).
template <class L>
struct state_of {
  using layer = L;
  typename L::State value;
};

/// The variants over families L...: the layer, its tagged config, its tagged state.
template <class... L>
struct family_list {
  using mixer = std::variant<L...>;
  using config = std::variant<config_of<L>...>;
  using state = std::variant<state_of<L>...>;
  static constexpr std::size_t size = sizeof...(L);

  /// Calls fn(config_of<L>{}) for the family called `name`; false when there is none.
  template <class Fn>
  static bool with_name(std::string_view name, Fn&& fn) {
    return ((family<L>::name == name ? (fn(config_of<L>{}), true) : false) || ...);
  }
  /// "gla, delta_net, ..." for messages.
  static std::string names() {
    std::string s;
    ((s += (s.empty() ? "" : ", ") + std::string(family<L>::name)), ...);
    return s;
  }
};

/// Every family of the library, computing in T.
template <class T>
using families = family_list<layers::GatedLinearAttention<T>, layers::DeltaNet<T>, layers::GatedDeltaNet<T>,
                             layers::Mamba<T>, layers::Mamba2<T>, layers::Attention<T>, layers::MultiheadDiffAttn<T>,
                             layers::RWKV7TimeMix<T>, layers::NGPTBlock<T>, layers::BiMamba2<T>, layers::UltraMem<T>,
                             layers::HymbaBlock<T>>;

/// The families' layers with weights of type W (configs stay those of families<T>).
template <class T, class W, class List = families<T>>
struct families_with;
template <class T, class W, class... L>
struct families_with<T, W, family_list<L...>> {
  using type = family_list<with_weights_t<L, W>...>;
};
template <class T, class W>
using families_with_t = typename families_with<T, W>::type;

}  // namespace seqmix::models
