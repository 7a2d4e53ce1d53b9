// config_field: a config member with the key it has in upstream configs and reference files, so
// that a config can be read from JSON (or any key-value source) by one generic loop.
#pragma once

#include <tuple>

#include "../config.hpp"

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

/// Calls fn(field) for every field of Config::fields().
template <class Config, class Fn>
void for_each_field(Fn&& fn) {
  std::apply([&](const auto&... f) { (fn(f), ...); }, Config::fields());
}

}  // namespace seqmix::layers
