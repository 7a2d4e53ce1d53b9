// Reference-case runner for GLA (op and layer levels, spec/gla.md).
#pragma once

#include <seqmix/layers/gla.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::gla {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const auto g = c.get<float, 4>("in.gk");
    const index_t B = q.extent(0), L = q.extent(1), H = q.extent(2), K = q.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, H, K, V});
    c.reserve(std::array<index_t, 4>{B, L, H, V}, "out.o");
    tensor<float, 4> o({B, L, H, V}, std::nanf(""));
    const kernels::gla::options<float> opt{c.cfg<float>("scale")};
    with_policy(p, [&](auto policy) { kernels::gla::forward(policy, q, k, v, g, o, h, opt); });
    compare<float, 4>(r, c, "out.o", o);
    compare<float, 4>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::GatedLinearAttention<float>;
    return run_layer<layer>(c, p, config_from<layer::config>(c), "param.", "out.y",
                            [](auto& s, auto&& io) { io("h", s.h); });
  }
  return skipped(c, p, "gla: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::gla
