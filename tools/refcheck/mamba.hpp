// Reference-case runner for mamba (op and layer levels, spec/mamba.md).
#pragma once

#include <seqmix/layers/mamba.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::mamba {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    namespace ss = kernels::ssm::selective_scan;
    const auto u = c.get<float, 3>("in.u"), delta = c.get<float, 3>("in.delta");
    const auto A = c.get<float, 2>("in.A");
    const index_t B = u.extent(0), L = u.extent(1), D = u.extent(2), N = A.extent(1);
    // B and C are [B,T,N] (one group) or [B,T,G,N].
    auto grouped = [&](const char* n) -> tensor<float, 4> {
      if (c.file.info(n).shape.size() == 4) return c.get<float, 4>(n);
      return tensor<float, 4>(c.get<float, 3>(n).view().reshape<4>({B, L, 1, N}));
    };
    const auto Bm = grouped("in.B"), Cm = grouped("in.C");
    const auto z = c.has("in.z") ? c.get<float, 3>("in.z") : tensor<float, 3>();
    const auto Dv = c.has("in.D") ? c.get<float, 1>("in.D") : tensor<float, 1>();
    const auto bias = c.has("in.delta_bias") ? c.get<float, 1>("in.delta_bias") : tensor<float, 1>();
    auto h = c.get_or_zero<float, 3>("state_in.h", {B, D, N});
    c.reserve(std::array<index_t, 3>{B, L, D}, "out.y");
    tensor<float, 3> y({B, L, D}, std::nanf(""));
    const ss::inputs<float> in{u, delta, A, Bm, Cm,
                               c.has("in.D") ? tensor_view<const float, 1>(Dv) : tensor_view<const float, 1>(),
                               c.has("in.z") ? tensor_view<const float, 3>(z) : tensor_view<const float, 3>(),
                               c.has("in.delta_bias") ? tensor_view<const float, 1>(bias) : tensor_view<const float, 1>()};
    const ss::options opt{c.cfg_or("delta_softplus", true)};
    with_policy(p, [&](auto policy) { ss::forward(policy, in, y, h, opt); });
    compare<float, 3>(r, c, "out.y", y);
    compare<float, 3>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::Mamba<float>;
    return run_layer<layer>(c, p, config_from<layer::config>(c), "param.", "out.y", [](auto& s, auto&& io) {
      io("conv", s.conv), io("ssm", s.ssm);
    });
  }
  return skipped(c, p, "mamba: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::mamba
