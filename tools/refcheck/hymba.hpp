// Reference-case runner for Hymba (op and layer levels, spec/hymba.md).
#pragma once

#include <cmath>
#include <string>

#include <seqmix/kernels/hymba/hymba.hpp>
#include <seqmix/layers/hymba.hpp>
#include "attention.hpp"
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::hymba {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    const auto attn = c.get<float, 3>("in.attn_out"), ssm = c.get<float, 3>("in.ssm_out");
    const auto n1 = c.get<float, 1>("param.pre_avg_layernorm1.weight"), n2 = c.get<float, 1>("param.pre_avg_layernorm2.weight");
    const auto w = c.get<float, 2>("param.out_proj.weight");
    const auto b = c.has("param.out_proj.bias") ? c.get<float, 1>("param.out_proj.bias") : tensor<float, 1>();
    const std::array<index_t, 3> os{attn.extent(0), attn.extent(1), w.extent(0)};
    c.reserve(attn.extents(), "out.y"), c.reserve(os, "out.o");
    tensor<float, 3> y(attn.extents(), std::nanf("")), o(os, std::nanf(""));
    const kernels::hymba::inputs<float> in{attn, ssm, n1, n2, w, b.size() > 0 ? b.view() : tensor_view<float, 1>()};
    const kernels::hymba::options<float> opt{float(c.cfg_or<double>("rms_eps", 1e-6))};
    with_policy(p, [&](auto policy) { kernels::hymba::forward(policy, in, y.view(), o.view(), opt); });
    compare<float, 3>(r, c, "out.y", y);
    compare<float, 3>(r, c, "out.o", o);
    return r;
  }
  if (c.level == "layer") {
    using layer = layers::HymbaBlock<float>;
    auto cfg = config_from<layer::config>(c);
    if (c.cfg_or<index_t>("num_meta_tokens", 0) > 0 && !c.has("param.meta_token"))
      return skipped(c, p, "hymba: meta tokens without param.meta_token");
    const auto x = c.get<float, 3>("in.x");
    const index_t B = x.extent(0), L = x.extent(1), P0 = attention::prefix_length(c), M = cfg.num_meta_tokens;
    const index_t rows = (P0 == 0 && cfg.prepends() ? M : 0) + L, S = c.has("in.shared_k") ? c.file.info("in.shared_k").shape[1] : 0;
    cfg.max_length = std::max<index_t>({P0 + rows, S, cfg.attention_window_size + 1, M + 1});
    const auto block = layer::load(c.file, cfg, "param.");
    const index_t I = cfg.inner();
    attention::reserve_cache(c, B, cfg.max_length, cfg.kv_heads() * cfg.dim(), cfg.kv_heads() * cfg.dim());
    c.reserve(std::array<index_t, 3>{B, I, cfg.ssm_state_size + cfg.conv_kernel_size}, "the conv and SSM state");
    layers::cross_layer<float> cross;
    kernels::attention::kv_cache<float> shared;
    if (cfg.kv_reuse) {
      const auto k = c.get<float, 4>("in.shared_k"), v = c.get<float, 4>("in.shared_v");
      shared = kernels::attention::kv_cache<float>({B, k.extent(2), k.extent(3), v.extent(2), v.extent(3)},
                                                   std::max<index_t>(k.extent(1), 1), cfg.mask());
      shared.append(k, v);
      cross.shared_kv = &shared;
    }
    // A first chunk with meta tokens: the spec's output (meta rows first) from a state that runs
    // them, and, where the block has one, the snapshot's meta rows and a state started from it.
    auto state = block.make_state_without_snapshot(B, {.capacity = cfg.max_length, .cross = &cross});
    if (P0 > 0) {
      attention::load_prefix(c, state.kv);
      state.position = P0, state.meta_pending = false;
    }
    state.conv = c.get_or_zero<float, 3>("state_in.conv", state.conv.extents());
    state.ssm = c.get_or_zero<float, 3>("state_in.ssm", state.ssm.extents());
    const auto want = c.file.get<double, 3>("out.y");
    require(want.extent(1) == rows, "hymba", "out.y has " + std::to_string(want.extent(1)) + " rows, expected " + std::to_string(rows));
    tensor<float, 3> y({B, rows, cfg.hidden_size}, std::nanf(""));
    with_policy(p, [&](auto policy) {
      if (state.meta_pending) block.forward_with_meta(policy, x, y.view(), state);
      else block.forward(policy, x, y.view(), state);
    });
    compare<float, 3>(r, c, "out.y", y);
    compare<float, 3>(r, c, "state_out.conv", state.conv);
    compare<float, 3>(r, c, "state_out.ssm", state.ssm);
    if (!cfg.kv_reuse) attention::compare_cache(r, c, state.kv);
    if (P0 == 0 && block.has_snapshot()) {  // the snapshot path gives the same rows
      auto s2 = block.make_state(B, {.capacity = cfg.max_length, .cross = &cross});
      tensor<float, 3> y2({B, rows, cfg.hidden_size}, std::nanf(""));
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t < M; ++t)
          for (index_t j = 0; j < cfg.hidden_size; ++j) y2(b, t, j) = block.meta_outputs()(t, j);
      with_policy(p, [&](auto policy) { block.forward(policy, x, y2.view().subrange(1, M, L), s2); });
      compare<float, 3>(r, c, "out.y", y2);
      compare<float, 3>(r, c, "state_out.conv", s2.conv);
      compare<float, 3>(r, c, "state_out.ssm", s2.ssm);
      attention::compare_cache(r, c, s2.kv);
    }
    return r;
  }
  return skipped(c, p, "hymba: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::hymba
