// config_field: a config member with the key it has in upstream configs and reference files, so
// that a config can be read from JSON (or any key-value source) by one generic loop.
#pragma once

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../config.hpp"
#include "../error.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::layers {

/// `key` is the upstream spelling (e.g. Mamba's "d_model" for hidden_size).
template <class Config, class Member>
struct config_field {
  const char* key;
  Member Config::*member;
};
// Aggregate deduction is C++20, but clang < 17 does not implement it: spell the guide.
template <class Config, class Member>
config_field(const char*, Member Config::*) -> config_field<Config, Member>;

/// The first check of a config's validate(): fails naming the first field whose value is not
/// positive (NaN included): require_positive(layer, "hidden_size", hidden_size, "num_heads", ...).
template <class V, class... Rest>
void require_positive(const char* layer, const char* key, V value, const Rest&... rest) {
  require(value > 0, layer, std::string("config ") + key + " must be positive");
  if constexpr (sizeof...(Rest) > 0) require_positive(layer, rest...);
}

/// key_dim = hidden_size·expand_k and value_dim = hidden_size·expand_v split into num_heads heads
/// (GLA, DeltaNet).
inline void require_head_split(const char* layer, index_t key_dim, index_t value_dim, index_t num_heads) {
  require(key_dim > 0 && key_dim % num_heads == 0, layer,
          "config key_dim (hidden_size·expand_k) must be a positive multiple of num_heads");
  require(value_dim > 0 && value_dim % num_heads == 0, layer,
          "config value_dim (hidden_size·expand_v) must be a positive multiple of num_heads");
}

/// Calls fn(field) for every field of Config::fields().
template <class Config, class Fn>
void for_each_field(Fn&& fn) {
  std::apply([&](const auto&... f) { (fn(f), ...); }, Config::fields());
}

/// The config of one instantiation of a layer as another's (Layer<float>::config as
/// Layer<float, bf16>::config): the same fields in the same order, copied member by member.
template <class To, class From>
To config_cast(const From& from) {
  if constexpr (std::is_same_v<To, From>) {
    return from;
  } else {
    To to{};
    auto src = From::fields();
    auto dst = To::fields();
    static_assert(std::tuple_size_v<decltype(src)> == std::tuple_size_v<decltype(dst)>, "config_cast: other fields");
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((to.*(std::get<I>(dst).member) = from.*(std::get<I>(src).member)), ...);
    }(std::make_index_sequence<std::tuple_size_v<decltype(src)>>{});
    return to;
  }
}

}  // namespace seqmix::layers
