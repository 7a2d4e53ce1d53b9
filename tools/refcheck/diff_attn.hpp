// Reference-case runner for diff_attn (op and layer levels, spec/diff_attn.md).
#pragma once

#include <cmath>

#include <seqmix/kernels/attention/differential.hpp>
#include <seqmix/layers/diff_attn.hpp>
#include "attention.hpp"
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::diff_attn {

inline result run(const ref_case& c, policy_kind p) {
  result r = make_result(c, p);
  namespace A = kernels::attention;
  if (c.level == "op") {
    const auto q = c.get<float, 4>("in.q"), k = c.get<float, 4>("in.k"), v = c.get<float, 4>("in.v");
    const index_t B = q.extent(0), L = q.extent(1), d = q.extent(3), Dv = v.extent(3);
    attention::reserve_cache(c, B, attention::prefix_length(c) + L, k.extent(2) * d, v.extent(2) * Dv);
    c.reserve(std::array<index_t, 4>{B, L, q.extent(2) / 2, Dv}, "out.o");
    A::kv_cache<float> cache({B, k.extent(2), d, v.extent(2), Dv}, attention::prefix_length(c) + L);
    attention::load_prefix(c, cache);
    const auto q1 = c.get<float, 1>("param.lambda_q1"), k1 = c.get<float, 1>("param.lambda_k1");
    const auto q2 = c.get<float, 1>("param.lambda_q2"), k2 = c.get<float, 1>("param.lambda_k2");
    const auto subln = c.get<float, 1>("param.subln.weight");
    const A::diff_params<float> dp{q1, k1, q2, k2, subln, c.cfg<double>("lambda_init"), c.cfg<double>("subln_eps")};
    tensor<float, 4> o({B, L, q.extent(2) / 2, Dv}, std::nanf(""));
    const A::options<float> opt{c.cfg<float>("scale")};
    with_policy(p, [&](auto policy) { A::differential<decltype(policy), float>(policy, q, k, v, o, cache, dp, opt); });
    compare<float, 4>(r, c, "out.o", o);
    if (c.has("out.lambda_full.f64")) {
      tensor<double, 1> lambda({1}, dp.lambda());
      compare<double, 1>(r, c, "out.lambda_full.f64", lambda);
    }
    attention::compare_cache(r, c, cache);
    return r;
  }
  if (c.level == "layer") {
    if (!c.cfg<bool>("rope_interleaved")) return skipped(c, p, "diff_attn: only interleaved RoPE is supported");
    using layer = layers::MultiheadDiffAttn<float>;
    const auto attn = layer::load(c.file, config_from<layer::config>(c), "param.");
    const auto x = c.get<float, 3>("in.x");
    const index_t capacity = attention::prefix_length(c) + x.extent(1);
    {
      const auto one = attn.make_state(1, {.capacity = capacity});
      const auto d = one.dims();
      attention::reserve_cache(c, x.extent(0), capacity, d.key_heads * d.key_dim, d.value_heads * d.value_dim);
    }
    auto state = attn.make_state(x.extent(0), {.capacity = capacity});
    attention::load_prefix(c, state);
    const auto y = with_policy(p, [&](auto policy) { return attn.forward(policy, x, state); });
    compare<float, 3>(r, c, "out.o", y);
    attention::compare_cache(r, c, state);
    return r;
  }
  return skipped(c, p, "diff_attn: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::diff_attn
