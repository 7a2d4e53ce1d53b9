// Reference-case runner for nGPT (op and layer levels, spec/ngpt.md).
#pragma once

#include <cmath>
#include <string>

#include <seqmix/kernels/ngpt/ngpt.hpp>
#include <seqmix/layers/ngpt.hpp>
#include "attention.hpp"
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::ngpt {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  if (c.level == "op") {
    if (c.cfg_or<double>("norm_eps", 0) != 0) return skipped(c, p, "ngpt: norm_eps other than 0 is not upstream's justnorm");
    const auto h = c.get<float, 3>("in.h"), hm = c.get<float, 3>("in.h_m");
    const auto alpha = c.get<float, 1>("param.alpha");
    c.reserve(h.extents(), "out.h"), c.reserve(h.extents(), "out.h_normalized");
    tensor<float, 3> out(h.extents(), std::nanf("")), normalized(h.extents(), std::nanf(""));
    const double scaling = c.cfg_or<double>("alpha_init_scaling", c.cfg<double>("base_scale"));
    require(scaling != 0, "ngpt", "config alpha_init_scaling must not be 0");
    const kernels::ngpt::options<float> opt{float(c.cfg_or<double>("alpha_init_value", 0.05) / scaling)};
    auto nv = normalized.view();
    with_policy(p, [&](auto policy) { kernels::ngpt::forward(policy, h, hm, alpha, out, opt, &nv); });
    compare<float, 3>(r, c, "out.h", out);
    compare<float, 3>(r, c, "out.h_normalized", normalized);
    return r;
  }
  if (c.level == "layer") {
    if (c.cfg_or<std::string>("rope", "ngpt_model_py") != "ngpt_model_py")
      return skipped(c, p, "ngpt: only model.py's position table (rope = ngpt_model_py) is implemented");
    using layer = layers::NGPTBlock<float>;
    const auto block = layer::load(c.file, config_from<layer::config>(c), "param.");
    const auto x = c.get<float, 3>("in.x");
    const index_t capacity = attention::prefix_length(c) + x.extent(1);
    {
      const auto d = block.make_state(1, {.capacity = capacity}).dims();
      attention::reserve_cache(c, x.extent(0), capacity, d.key_heads * d.key_dim, d.value_heads * d.value_dim);
    }
    auto state = block.make_state(x.extent(0), {.capacity = capacity});
    attention::load_prefix(c, state);
    require(state.length() == c.cfg_or<index_t>("position_offset", state.length()), "ngpt",
            "config position_offset differs from the cache length");
    const auto y = with_policy(p, [&](auto policy) { return block.forward(policy, x, state); });
    compare<float, 3>(r, c, "out.h", y);
    attention::compare_cache(r, c, state);
    return r;
  }
  return skipped(c, p, "ngpt: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::ngpt
