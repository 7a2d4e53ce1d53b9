// Reference-case runner for delta_net (op and layer levels, spec/delta_net.md).
#pragma once

#include <seqmix/layers/delta_net.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::delta_net {

/// Throws seqmix::error unless config entry `key` is absent or equals `want` (options seqmix does
/// not implement).
template <class T>
void require_cfg(const ref_case& c, const char* who, const char* key, const T& want) {
  if (c.config.contains(key) && c.cfg<T>(key) != want)
    throw error(std::string(who) + ": config '" + key + "' = " + c.config.at(key).dump() + " is not supported");
}

/// The state tensors of DeltaNet and Gated DeltaNet cases (state_in.* / state_out.*).
inline constexpr auto state_io = [](auto& s, auto&& io) {
  io("h", s.h), io("conv_q", s.conv_q), io("conv_k", s.conv_k), io("conv_v", s.conv_v);
};

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    require_cfg(c, "delta_net", "l2norm_inside_op", false);
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const auto beta = c.get<float, 3>("in.beta");
    const index_t B = q.extent(0), L = q.extent(1), HV = v.extent(2), K = q.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, HV, K, V});
    c.reserve(std::array<index_t, 4>{B, L, HV, V}, "out.o");
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
    return run_layer<layer>(c, p, config_from<layer::config>(c), "param.", "out.y", state_io);
  }
  return skipped(c, p, "delta_net: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::delta_net
