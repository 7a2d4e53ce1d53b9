// Reference-case runner for UltraMem (op and layer levels, spec/ultramem.md). The selected indices
// are compared as a set per (token, head) and the scores in descending order, as the spec allows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <seqmix/kernels/ultramem/ultramem.hpp>
#include <seqmix/layers/ultramem.hpp>
#include "case.hpp"
#include "layer.hpp"

namespace seqmix::refcheck::ultramem {

/// indices [B,T,h,m]: each (token, head) must select the file's set of virtual indices.
inline void compare_index_sets(result& r, const ref_case& c, const std::string& name,
                               tensor_view<const std::int64_t, 4> got) {
  const auto want = c.file.get<std::int64_t, 4>(name);
  if (!std::equal(want.extents().begin(), want.extents().end(), got.extents().begin())) {
    r.state = result::status::fail;
    r.reason = name + " has shape " + shape_string(got.extents()) + ", expected " + shape_string(want.extents());
    return;
  }
  const index_t groups = want.size() / std::max<index_t>(want.extent(3), 1), m = want.extent(3);
  const tensor<std::int64_t, 4> g(got);
  for (index_t q = 0; q < groups; ++q) {
    std::vector<std::int64_t> a(g.data() + q * m, g.data() + (q + 1) * m), b(want.data() + q * m, want.data() + (q + 1) * m);
    std::sort(a.begin(), a.end()), std::sort(b.begin(), b.end());
    if (a != b) {
      if (r.state == result::status::pass) r.state = result::status::fail, r.reason = name + " selects another set";
      return;
    }
  }
}

/// scores [B,T,h,m] compared in descending order per (token, head) under the tolerance rule.
inline void compare_scores(result& r, const ref_case& c, const std::string& name, tensor_view<const float, 4> got) {
  tensor<float, 4> s(got);
  const index_t m = s.extent(3), groups = s.size() / std::max<index_t>(m, 1);
  for (index_t q = 0; q < groups; ++q) std::sort(s.data() + q * m, s.data() + (q + 1) * m, std::greater<float>());
  compare<float, 4>(r, c, name, s);
}

inline kernels::ultramem::activation activation_of(const ref_case& c) {
  return kernels::ultramem::activation_from(c.cfg_or<std::string>("score_activation", "identity"), "ultramem");
}

inline result run_op(const ref_case& c, policy_kind p) {
  namespace um = kernels::ultramem;
  result r = make_result(c, p);
  const auto q_row = c.get<float, 3>("in.q_row"), q_col = c.get<float, 3>("in.q_col");
  const auto keys = c.get<float, 4>("param.keys");
  const auto core = c.get<float, 3>("param.core");
  const auto values = c.get<float, 3>("param.values");
  const index_t m = c.cfg<index_t>("topk"), B = q_row.extent(0), L = q_row.extent(1), h = core.extent(0);
  require(c.cfg<index_t>("num_keys") == keys.extent(2) && c.cfg<index_t>("core_rank") == keys.extent(1) &&
              c.cfg<index_t>("core_heads") == h && c.cfg<index_t>("dim_qk") == keys.extent(3) &&
              c.cfg<index_t>("dim_values") == values.extent(2),
          "ultramem", "config and tensor shapes disagree");
  c.reserve(std::array<index_t, 4>{B, L, h, m}, "out.indices");
  c.reserve(std::array<index_t, 4>{B, L, h, values.extent(2)}, "out.o");
  tensor<float, 4> o({B, L, h, values.extent(2)}, std::nanf("")), scores({B, L, h, m}, std::nanf(""));
  tensor<std::int64_t, 4> indices({B, L, h, m}, -1);
  with_policy(p, [&](auto policy) {
    um::forward(policy, q_row, q_col, keys, core, values, o, indices.view(), scores, {activation_of(c)});
  });
  compare_index_sets(r, c, "out.indices", indices);
  compare_scores(r, c, "out.scores", scores);
  compare<float, 4>(r, c, "out.o", o);
  std::vector<double> u, t;
  um::core_factors<float>(core, u, t);
  tensor<float, 2> U({h, keys.extent(1)}), Tt(U.extents());
  for (index_t i = 0; i < U.size(); ++i) U.data()[i] = float(u[std::size_t(i)]), Tt.data()[i] = float(t[std::size_t(i)]);
  compare<float, 2>(r, c, "out.core_u", U);
  compare<float, 2>(r, c, "out.core_t", Tt);
  return r;
}

inline result run_layer_case(const ref_case& c, policy_kind p) {
  using layer = layers::UltraMem<float>;
  result r = make_result(c, p);
  const auto cfg = config_from<layer::config>(c);
  const auto l = layer::load(c.file, cfg, "param.");
  const auto x = c.get<float, 3>("in.x");
  const index_t B = x.extent(0), L = x.extent(1), h = cfg.core_heads, m = cfg.topk;
  c.reserve(std::array<index_t, 3>{B, cfg.hidden_size, cfg.query_conv_kernel - 1}, "state conv");
  c.reserve(std::array<index_t, 4>{B, L, h, m}, "out.indices");
  auto state = l.make_state(B);
  state.conv = c.get_or_zero<float, 3>("state_in.conv", state.conv.extents());
  tensor<float, 3> y(x.extents(), std::nanf(""));
  tensor<float, 4> scores({B, L, h, m}, std::nanf(""));
  tensor<std::int64_t, 4> indices({B, L, h, m}, -1);
  with_policy(p, [&](auto policy) { l.forward(policy, x, y.view(), state, indices.view(), scores.view()); });
  compare<float, 3>(r, c, "out.y", y);
  compare<float, 3>(r, c, "state_out.conv", state.conv);
  if (c.has("out.indices")) compare_index_sets(r, c, "out.indices", indices);
  if (c.has("out.scores")) compare_scores(r, c, "out.scores", scores);
  return r;
}

inline result run(const ref_case& c, policy_kind p) {
  if (c.level == "op") return run_op(c, p);
  if (c.level == "layer") return run_layer_case(c, p);
  return skipped(c, p, "ultramem: unknown level '" + c.level + "'");
}

}  // namespace seqmix::refcheck::ultramem
