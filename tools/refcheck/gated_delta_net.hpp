// Reference-case runner for gated_delta_net (op and layer levels, spec/gated_delta_net.md).
#pragma once

#include <seqmix/layers/gated_delta_net.hpp>
#include "case.hpp"
#include "layer.hpp"
#include "delta_net.hpp"

namespace seqmix::refcheck::gated_delta_net {

inline result run(const ref_case& c, policy_kind p) {
  using delta_net::require_cfg;
  result r = make_result(c, p);
  if (c.level == "op") {
    require_cfg(c, "gated_delta_net", "l2norm_inside_op", false);
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const auto g = c.get<float, 3>("in.g"), beta = c.get<float, 3>("in.beta");
    const index_t B = q.extent(0), L = q.extent(1), HV = v.extent(2), K = q.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, HV, K, V});
    c.reserve(std::array<index_t, 4>{B, L, HV, V}, "out.o");
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
    return run_layer<layer>(c, p, config_from<layer::config>(c), "param.", "out.y", delta_net::state_io);
  }
  return skipped(c, p, "gated_delta_net: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::gated_delta_net
