// Reference-case runner for bi_mamba (op and layer levels, spec/bi_mamba.md): the op is the 1-bit
// FBI-Linear (nn::binary_linear) from the packed bytes as stored.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include <seqmix/layers/bi_mamba.hpp>
#include <seqmix/nn/binary_linear.hpp>
#include "case.hpp"
#include "layer.hpp"
#include "mamba2.hpp"

namespace seqmix::refcheck::bi_mamba {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    require(c.cfg_or<std::string>("pack_bitorder", "little") == "little", "refcheck", "bi_mamba: pack_bitorder must be little");
    require(c.cfg_or<std::string>("scaling_pattern", "column") == "column", "refcheck",
            "bi_mamba: only scaling_pattern column (per input column) is implemented");
    const auto x3 = c.get<float, 3>("in.x");
    const index_t B = x3.extent(0), T = x3.extent(1), in = x3.extent(2), out = c.cfg<index_t>("out_features");
    require(c.cfg<index_t>("in_features") == in, "refcheck", "bi_mamba: config in_features differs from in.x");
    nn::binary_linear<float> op;
    op.weight = nn::packed_bits::from_bytes(c.get<std::uint8_t, 2>("param.weight_packed"), in, "refcheck bi_mamba",
                                            "param.weight_packed");
    require(op.out_features() == out, "refcheck", "bi_mamba: param.weight_packed rows differ from out_features");
    op.wscale = tensor<float, 1>(c.file.get<float, 2>("param.wscale", {1, in}, "refcheck").view().reshape<1>({in}));
    op.wbias = tensor<float, 1>(c.file.get<float, 2>("param.wbias", {1, in}, "refcheck").view().reshape<1>({in}));
    if (c.has("param.bias")) op.bias = c.file.get<float, 1>("param.bias", {out}, "refcheck");
    c.reserve(std::array<index_t, 3>{B, T, out}, "out.y");
    tensor<float, 3> y({B, T, out}, std::nanf(""));
    with_policy(p, [&](auto policy) {
      op(x3.view().reshape<2>({B * T, in}), y.view().reshape<2>({B * T, out}), "bi_mamba op", policy.threads);
    });
    compare<float, 3>(r, c, "out.y", y);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::BiMamba2<float>;
    auto cfg = config_from<layer::config>(c);
    std::tie(cfg.dt_min, cfg.dt_max) = mamba2::dt_limit(c);
    require(c.cfg<index_t>("d_inner") == cfg.d_inner() && c.cfg<index_t>("nheads") == cfg.nheads(), "refcheck",
            "bi_mamba: d_inner / nheads in the config do not follow from d_model, expand and headdim");
    require(!c.cfg_or("D_has_hdim", false), "refcheck", "bi_mamba: D_has_hdim is not supported");
    require(c.cfg_or("dt_softplus", true), "refcheck", "bi_mamba: dt_softplus false is not supported");
    require(c.cfg_or<std::string>("pack_bitorder", "little") == "little", "refcheck", "bi_mamba: pack_bitorder must be little");
    require(c.cfg_or<std::string>("scaling_pattern", "column") == "column", "refcheck",
            "bi_mamba: only scaling_pattern column (per input column) is implemented");
    return run_layer<layer>(c, p, cfg, "param.", "out.y", [](auto& s, auto&& io) { io("conv", s.conv), io("ssm", s.ssm); });
  }
  return skipped(c, p, "bi_mamba: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::bi_mamba
