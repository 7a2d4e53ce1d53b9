// Reference-case runner for GLA (op and layer levels, spec/gla.md).
#pragma once

#include "../layers/gla.hpp"
#include "case.hpp"

namespace seqmix::refcheck::gla {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const auto g = c.get<float, 4>("in.gk");
    const index_t B = q.extent(0), L = q.extent(1), H = q.extent(2), K = q.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, H, K, V});
    tensor<float, 4> o({B, L, H, V}, std::nanf(""));
    const kernels::gla::options<float> opt{c.cfg<float>("scale")};
    with_policy(p, [&](auto policy) { kernels::gla::forward(policy, q, k, v, g, o, h, opt); });
    compare<float, 4>(r, c, "out.o", o);
    compare<float, 4>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::GatedLinearAttention<float>;
    layer::config cfg;
    cfg.hidden_size = c.cfg<index_t>("hidden_size"), cfg.num_heads = c.cfg<index_t>("num_heads");
    cfg.expand_k = c.cfg<double>("expand_k"), cfg.expand_v = c.cfg<double>("expand_v");
    cfg.gate_low_rank_dim = c.cfg<index_t>("gate_low_rank_dim");
    cfg.gate_logit_normalizer = c.cfg<double>("gate_logit_normalizer"), cfg.norm_eps = c.cfg<double>("norm_eps");
    const auto gla = layer::load(c.file, cfg, "param.");
    const auto x = c.get<float, 3>("in.x");
    auto state = gla.make_state(x.extent(0));
    state.h = c.get_or_zero<float, 4>("state_in.h", state.h.extents());
    const auto y = with_policy(p, [&](auto policy) { return gla.forward(policy, x, state); });
    compare<float, 3>(r, c, "out.y", y);
    compare<float, 4>(r, c, "state_out.h", state.h);
    return r;
  }
  return skipped(c, p, "gla: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::gla
