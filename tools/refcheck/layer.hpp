// The layer level of a reference case, for every layer: the config from the layer's field table,
// the weights from `param.*` by the layer's weight table, state_in.* / state_out.* by the names a
// runner lists, out.* compared under the tolerance rule.
#pragma once

#include <string>
#include <type_traits>

#include <seqmix/layers/config_fields.hpp>
#include <seqmix/layers/cross_layer.hpp>
#include "case.hpp"

namespace seqmix::refcheck {

/// Config of the case's `seqmix.config`, read through Config::fields() (upstream keys); absent or
/// null keys keep the default.
template <class Config>
Config config_from(const ref_case& c) {
  Config cfg;
  layers::for_each_field<Config>([&](const auto& f) {
    const auto it = c.config.find(f.key);
    if (it == c.config.end() || it->is_null()) return;
    using M = std::remove_reference_t<decltype(cfg.*(f.member))>;
    cfg.*(f.member) = c.template config_value<M>(*it, f.key);
  });
  return cfg;
}

/// Runs the layer case: Layer::load(file, cfg, prefix), in.x through forward() under policy `p`
/// from the state in state_in.* (zeros where absent), then compares `out` and state_out.*.
/// state_io(state, fn) calls fn(name, tensor) for each state tensor; `prepare(state)` may set more
/// (cross-layer values); `check(result, state)` may compare more.
template <class Layer, class StateIO, class Prepare, class Check>
result run_layer(const ref_case& c, policy_kind p, const typename Layer::config& cfg, const std::string& prefix,
                 const std::string& out, StateIO state_io, Prepare prepare, Check check) {
  result r = make_result(c, p);
  const auto layer = Layer::load(c.file, cfg, prefix);
  const auto x = c.get<float, 3>("in.x");
  layers::cross_layer<float> cross;
  {  // the state of B sequences must fit the case (ref_case::reserve): measured on one sequence
    auto one = layer.make_state(1, {.capacity = 0, .cross = &cross});
    index_t per = 0;
    state_io(one, [&](const std::string&, const auto& t) { per += t.size(); });
    index_t all = 0;
    if (__builtin_mul_overflow(per, x.extent(0), &all)) all = -1;
    c.reserve(all, "the state of " + std::to_string(x.extent(0)) + " sequences");
  }
  auto state = layer.make_state(x.extent(0), {.capacity = 0, .cross = &cross});
  state_io(state, [&](const std::string& name, auto& t) {
    t = c.get_or_zero<float, std::remove_reference_t<decltype(t)>::rank()>("state_in." + name, t.extents());
  });
  prepare(state);
  const auto y = with_policy(p, [&](auto policy) { return layer.forward(policy, x, state); });
  compare<float, 3>(r, c, out, y);
  state_io(state, [&](const std::string& name, const auto& t) {
    compare<float, std::remove_reference_t<decltype(t)>::rank()>(r, c, "state_out." + name, t);
  });
  check(r, state);
  return r;
}

/// run_layer with nothing to prepare or check beyond the state tensors.
template <class Layer, class StateIO>
result run_layer(const ref_case& c, policy_kind p, const typename Layer::config& cfg, const std::string& prefix,
                 const std::string& out, StateIO state_io) {
  return run_layer<Layer>(c, p, cfg, prefix, out, state_io, [](auto&) {}, [](result&, const auto&) {});
}

}  // namespace seqmix::refcheck
