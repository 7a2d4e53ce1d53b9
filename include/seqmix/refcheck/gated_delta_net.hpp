// Reference-case runner for gated_delta_net (op and layer levels, spec/gated_delta_net.md).
#pragma once

#include "../layers/gated_delta_net.hpp"
#include "case.hpp"
#include "delta_net.hpp"

namespace seqmix::refcheck::gated_delta_net {

inline result run(const ref_case& c, policy_kind p) {
  using delta_net::cfg_or, delta_net::require_cfg;
  result r = make_result(c, p);
  if (c.level == "op") {
    require_cfg(c, "gated_delta_net", "l2norm_inside_op", false);
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const auto g = c.get<float, 3>("in.g"), beta = c.get<float, 3>("in.beta");
    const index_t B = q.extent(0), L = q.extent(1), HV = v.extent(2), K = q.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, HV, K, V});
    tensor<float, 4> o({B, L, HV, V}, std::nanf(""));
    const kernels::delta_rule::options<float> opt{c.cfg<float>("scale")};
    with_policy(p, [&](auto policy) {
      kernels::delta_rule::forward(policy, q, k, v, g, beta, o, h, opt);
    });
    compare<float, 4>(r, c, "out.o", o);
    compare<float, 4>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::GatedDeltaNet<float>;
    require_cfg(c, "GatedDeltaNet", "use_short_conv", true);
    layer::config cfg;
    cfg.hidden_size = c.cfg<index_t>("hidden_size"), cfg.head_dim = c.cfg<index_t>("head_dim");
    cfg.num_heads = c.cfg<index_t>("num_heads"), cfg.num_v_heads = cfg_or<index_t>(c, "num_v_heads", 0);
    cfg.expand_v = cfg_or(c, "expand_v", 2.0);
    cfg.conv_size = cfg_or<index_t>(c, "conv_size", 4), cfg.conv_bias = cfg_or(c, "conv_bias", false);
    cfg.use_gate = cfg_or(c, "use_gate", true), cfg.allow_neg_eigval = cfg_or(c, "allow_neg_eigval", false);
    cfg.norm_eps = cfg_or(c, "norm_eps", 1e-5), cfg.l2norm_eps = cfg_or(c, "l2norm_eps", 1e-6);
    const auto net = layer::load(c.file, cfg, "param.");
    const auto x = c.get<float, 3>("in.x");
    auto state = net.make_state(x.extent(0));
    delta_net::load_state(c, state);
    const auto y = with_policy(p, [&](auto policy) { return net.forward(policy, x, state); });
    compare<float, 3>(r, c, "out.y", y);
    delta_net::compare_state(r, c, state);
    return r;
  }
  return skipped(c, p, "gated_delta_net: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::gated_delta_net
