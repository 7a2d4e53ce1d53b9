// Reference-case runner for RWKV-7 (op and layer levels, spec/rwkv7.md).
#pragma once

#include <seqmix/layers/rwkv7.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::rwkv7 {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    require(c.cfg<double>("scale") == 1.0, "refcheck rwkv7", "only scale = 1 is defined for the op");
    const auto rr = c.get<float, 4>("in.r"), w = c.get<float, 4>("in.w"), k = c.get<float, 4>("in.k");
    const auto v = c.get<float, 4>("in.v"), a = c.get<float, 4>("in.a"), b = c.get<float, 4>("in.b");
    const index_t B = rr.extent(0), L = rr.extent(1), H = rr.extent(2), K = rr.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, H, K, V});
    c.reserve(std::array<index_t, 4>{B, L, H, V}, "out.o");
    tensor<float, 4> o({B, L, H, V}, std::nanf(""));
    with_policy(p, [&](auto policy) {
      kernels::rwkv7::forward(policy, kernels::rwkv7::inputs<float>{.r = rr, .w = w, .k = k, .v = v, .a = a, .b = b}, o, h);
    });
    compare<float, 4>(r, c, "out.o", o);
    compare<float, 4>(r, c, "state_out.h", h);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::RWKV7TimeMix<float>;
    const auto cfg = config_from<layer::config>(c);
    require(c.cfg<index_t>("dim_att") == cfg.hidden_size, "refcheck rwkv7", "dim_att != n_embd is not supported");
    // Layer 0 leaves v_first in the cross-layer values; later layers read the file's there.
    return run_layer<layer>(
        c, p, cfg, "param.att.", "out.y", [](auto& s, auto&& io) { io("shift", s.shift), io("wkv", s.wkv); },
        [&](auto& s) {
          if (cfg.layer_id > 0) s.cross->v_first = c.get<float, 3>("in.v_first");
        },
        [&](result& r, const auto& s) {
          if (cfg.layer_id == 0) compare<float, 3>(r, c, "out.v_first", s.cross->v_first);
        });
  }
  return skipped(c, p, "rwkv7: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::rwkv7
