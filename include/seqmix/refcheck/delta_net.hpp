// Reference-case runner for delta_net (op and layer levels, spec/delta_net.md).
#pragma once

#include "../layers/delta_net.hpp"
#include "case.hpp"

namespace seqmix::refcheck::delta_net {

/// Config entry `key`, or `fallback` when the file does not have it.
template <class T>
T cfg_or(const ref_case& c, const char* key, T fallback) {
  return c.config.contains(key) ? c.cfg<T>(key) : fallback;
}

/// Throws seqmix::error unless config entry `key` is absent or equals `want` (options seqmix does
/// not implement).
template <class T>
void require_cfg(const ref_case& c, const char* who, const char* key, const T& want) {
  if (c.config.contains(key) && c.cfg<T>(key) != want)
    throw error(std::string(who) + ": config '" + key + "' = " + c.config.at(key).dump() + " is not supported");
}

/// Conv tails and recurrent state from `state_in.*` (zeros when absent); compares `state_out.*`.
template <class State>
void load_state(const ref_case& c, State& s) {
  s.h = c.get_or_zero<float, 4>("state_in.h", s.h.extents());
  s.conv_q = c.get_or_zero<float, 3>("state_in.conv_q", s.conv_q.extents());
  s.conv_k = c.get_or_zero<float, 3>("state_in.conv_k", s.conv_k.extents());
  s.conv_v = c.get_or_zero<float, 3>("state_in.conv_v", s.conv_v.extents());
}
template <class State>
void compare_state(result& r, const ref_case& c, const State& s) {
  compare<float, 4>(r, c, "state_out.h", s.h);
  compare<float, 3>(r, c, "state_out.conv_q", s.conv_q);
  compare<float, 3>(r, c, "state_out.conv_k", s.conv_k);
  compare<float, 3>(r, c, "state_out.conv_v", s.conv_v);
}

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    require_cfg(c, "delta_net", "l2norm_inside_op", false);
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const auto beta = c.get<float, 3>("in.beta");
    const index_t B = q.extent(0), L = q.extent(1), HV = v.extent(2), K = q.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, HV, K, V});
    tensor<float, 4> o({B, L, HV, V}, std::nanf(""));
    const kernels::delta_rule::options<float> opt{c.cfg<float>("scale")};
    with_policy(p, [&](auto policy) {
      kernels::delta_rule::forward(policy, q, k, v, beta, o, h, opt);
    });
    compare<float, 4>(r, c, "out.o", o);
    compare<float, 4>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::DeltaNet<float>;
    require_cfg<std::string>(c, "DeltaNet", "qk_activation", "silu");
    require_cfg<std::string>(c, "DeltaNet", "qk_norm", "l2");
    require_cfg(c, "DeltaNet", "use_beta", true);
    require_cfg(c, "DeltaNet", "use_short_conv", true);
    layer::config cfg;
    cfg.hidden_size = c.cfg<index_t>("hidden_size"), cfg.num_heads = c.cfg<index_t>("num_heads");
    cfg.expand_k = cfg_or(c, "expand_k", 1.0), cfg.expand_v = cfg_or(c, "expand_v", 1.0);
    cfg.conv_size = cfg_or<index_t>(c, "conv_size", 4), cfg.conv_bias = cfg_or(c, "conv_bias", false);
    cfg.use_gate = cfg_or(c, "use_gate", false), cfg.allow_neg_eigval = cfg_or(c, "allow_neg_eigval", false);
    cfg.norm_eps = cfg_or(c, "norm_eps", 1e-5), cfg.l2norm_eps = cfg_or(c, "l2norm_eps", 1e-6);
    const auto net = layer::load(c.file, cfg, "param.");
    const auto x = c.get<float, 3>("in.x");
    auto state = net.make_state(x.extent(0));
    load_state(c, state);
    const auto y = with_policy(p, [&](auto policy) { return net.forward(policy, x, state); });
    compare<float, 3>(r, c, "out.y", y);
    compare_state(r, c, state);
    return r;
  }
  return skipped(c, p, "delta_net: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::delta_net
