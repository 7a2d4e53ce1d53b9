// Reference-case runner for RWKV-7 (op and layer levels, spec/rwkv7.md).
#pragma once

#include "../layers/rwkv7.hpp"
#include "case.hpp"

namespace seqmix::refcheck::rwkv7 {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    require(c.cfg<double>("scale") == 1.0, "refcheck rwkv7", "only scale = 1 is defined for the op");
    const auto rr = c.get<float, 4>("in.r"), w = c.get<float, 4>("in.w"), k = c.get<float, 4>("in.k");
    const auto v = c.get<float, 4>("in.v"), a = c.get<float, 4>("in.a"), b = c.get<float, 4>("in.b");
    const index_t B = rr.extent(0), L = rr.extent(1), H = rr.extent(2), K = rr.extent(3), V = v.extent(3);
    auto h = c.get_or_zero<float, 4>("state_in.h", {B, H, K, V});
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
    layer::config cfg;
    cfg.n_embd = c.cfg<index_t>("n_embd"), cfg.head_size = c.cfg<index_t>("head_size");
    cfg.layer_id = c.cfg<index_t>("layer_id");
    cfg.decay_lora = c.cfg<index_t>("D_DECAY_LORA"), cfg.aaa_lora = c.cfg<index_t>("D_AAA_LORA");
    cfg.mv_lora = c.cfg<index_t>("D_MV_LORA"), cfg.gate_lora = c.cfg<index_t>("D_GATE_LORA");
    cfg.ln_x_eps = c.cfg<double>("ln_x_eps"), cfg.kk_normalize_eps = c.cfg<double>("kk_normalize_eps");
    require(c.cfg<index_t>("dim_att") == cfg.n_embd, "refcheck rwkv7", "dim_att != n_embd is not supported");
    const auto tmix = layer::load(c.file, cfg, "param.att.");
    const auto x = c.get<float, 3>("in.x");
    auto state = tmix.make_state(x.extent(0));
    state.shift = c.get_or_zero<float, 2>("state_in.shift", state.shift.extents());
    state.wkv = c.get_or_zero<float, 4>("state_in.wkv", state.wkv.extents());
    tensor<float, 3> v_first = cfg.layer_id == 0 ? tensor<float, 3>(x.extents(), std::nanf("")) : c.get<float, 3>("in.v_first");
    const auto y = with_policy(p, [&](auto policy) { return tmix.forward(policy, x, state, v_first.view()); });
    compare<float, 3>(r, c, "out.y", y);
    if (cfg.layer_id == 0) compare<float, 3>(r, c, "out.v_first", v_first);
    compare<float, 2>(r, c, "state_out.shift", state.shift);
    compare<float, 4>(r, c, "state_out.wkv", state.wkv);
    return r;
  }
  return skipped(c, p, "rwkv7: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::rwkv7
