// Reference-case runner for mamba2 (op and layer levels, spec/mamba2.md).
#pragma once

#include <limits>

#include <seqmix/layers/mamba2.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::mamba2 {

// Upstream dt_limit [lo, hi] (hi null or absent: no upper limit).
inline std::pair<double, double> dt_limit(const ref_case& c) {
  double lo = 0, hi = std::numeric_limits<double>::infinity();
  const auto it = c.config.find("dt_limit");
  if (it != c.config.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != 2)
      throw error("refcheck " + c.path.string() + ": config 'dt_limit' = " + it->dump() + ": expected [lo, hi]");
    if (!(*it)[0].is_null()) lo = c.config_value<double>((*it)[0], "dt_limit");
    if (!(*it)[1].is_null()) hi = c.config_value<double>((*it)[1], "dt_limit");
  }
  return {lo, hi};
}

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  const auto [dt_lo, dt_hi] = dt_limit(c);
  if (c.level == "op") {
    namespace ssd = kernels::ssm::ssd;
    const auto x = c.get<float, 4>("in.x"), Bm = c.get<float, 4>("in.B"), Cm = c.get<float, 4>("in.C");
    const auto dt = c.get<float, 3>("in.dt");
    const auto A = c.get<float, 1>("in.A");
    const index_t B = x.extent(0), L = x.extent(1), H = x.extent(2), P = x.extent(3), N = Bm.extent(3);
    const auto Dv = c.has("in.D") ? c.get<float, 1>("in.D") : tensor<float, 1>();
    const auto bias = c.has("in.dt_bias") ? c.get<float, 1>("in.dt_bias") : tensor<float, 1>();
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, H, P, N});
    c.reserve(std::array<index_t, 4>{B, L, H, P}, "out.y");
    tensor<float, 4> y({B, L, H, P}, std::nanf(""));
    const ssd::inputs<float> in{x, dt, A, Bm, Cm,
                                c.has("in.D") ? tensor_view<const float, 1>(Dv) : tensor_view<const float, 1>(),
                                c.has("in.dt_bias") ? tensor_view<const float, 1>(bias) : tensor_view<const float, 1>()};
    const ssd::options opt{c.cfg_or("dt_softplus", true), dt_lo, dt_hi};
    with_policy(p, [&](auto policy) { ssd::forward(policy, in, y, h, opt); });
    compare<float, 4>(r, c, "out.y", y);
    compare<float, 4>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::Mamba2<float>;
    auto cfg = config_from<layer::config>(c);
    cfg.dt_min = dt_lo, cfg.dt_max = dt_hi;
    require(c.cfg<index_t>("d_inner") == cfg.d_inner() && c.cfg<index_t>("nheads") == cfg.nheads(), "refcheck",
            "mamba2: d_inner / nheads in the config do not follow from d_model, expand and headdim");
    require(!c.cfg_or("D_has_hdim", false), "refcheck", "mamba2: D_has_hdim is not supported");
    return run_layer<layer>(c, p, cfg, "param.", "out.y", [](auto& s, auto&& io) { io("conv", s.conv), io("ssm", s.ssm); });
  }
  return skipped(c, p, "mamba2: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::mamba2
