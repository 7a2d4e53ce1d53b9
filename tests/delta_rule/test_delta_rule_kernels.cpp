// Delta-rule ops: the op suite (support/op_suite.hpp) on DeltaNet and on Gated DeltaNet, both with
// grouped value heads; decays that underflow, and argument errors.
#include <seqmix/kernels/delta_rule/delta_rule.hpp>
#include <seqmix/kernels/delta_rule/ref.hpp>

#include <array>
#include <limits>
#include <memory>

#include "support/op_suite.hpp"

using namespace seqmix;
namespace dr = seqmix::kernels::delta_rule;

namespace {

/// q, k [B,T,H,K] L2-normalised per token and head (as the layers feed the op); v [B,T,HV,V] with
/// HV a multiple of H; beta [B,T,HV] in [0.05, 0.95]; with Gated, g [B,T,HV] log decays in
/// [gmin, 0]. The long problems take betas near 0 and near 1 in alternating runs of 50 tokens,
/// where (I − β k kᵀ) is almost the identity or almost a projection, and (gated) decays down to
/// −20 per step on value head 0 and to −1e-4 on head 1.
template <class T>
struct delta_data {
  tensor<T, 4> q, k, v, state;
  tensor<T, 3> g, beta;
};
template <class T>
struct delta_inputs {
  tensor_view<const T, 4> q, k, v;
  tensor_view<const T, 3> g, beta;  // g: gated only
};

template <class T, bool Gated>
struct delta_rule_op : test::op_base<T, delta_data<T>, delta_inputs<T>, 4, tensor<T, 4>> {
  using typename delta_rule_op::op_base::problem, typename delta_rule_op::op_base::result;
  struct case_type {
    index_t B, L, H, HV, K, V;  // L: tokens
    double gmin;                // 0: DeltaNet (no gate)
    bool extreme = false;
    SEQMIX_TEST_PRINTABLE(case_type, B, L, H, HV, K, V, gmin, extreme)
  };

  // Odd lengths, T = 1, grouped value heads (HV = 2H, 3H), head dims that are not a multiple of any
  // vector width, and K = 80 (the recurrent kernel's 4-token groups on AVX-512; smaller K use 2).
  static std::vector<case_type> cases() {
    std::vector<case_type> all;
    for (const double gmin : Gated ? std::vector<double>{-0.05, -1.0, -8.0} : std::vector<double>{0.0})
      for (const auto& [B, L, H, HV, K, V] : {std::array<index_t, 6>{1, 1, 1, 1, 8, 8},
                                              {2, 37, 3, 3, 16, 24},
                                              {1, 100, 2, 4, 20, 33},
                                              {1, 130, 1, 1, 64, 64},
                                              {1, 17, 2, 6, 5, 3},
                                              {2, 3, 2, 2, 32, 16},
                                              {1, 45, 1, 2, 80, 40}})
        all.push_back({B, L, H, HV, K, V, gmin});
    return all;
  }
  static constexpr test::special_cases<case_type> special{.agree = {2, 200, 2, 4, 32, 32, -0.5},
                                                         .split = {1, 90, 2, 4, 16, 16, -0.7},
                                                         .fused = {2, 45, 3, 3, 16, 16, -0.3},
                                                         .empty = {1, 0, 2, 2, 8, 8, -0.1}};
  static case_type long_case(index_t tokens) { return {1, tokens, 1, 2, 32, 32, -20, true}; }
  // DeltaNet (no decay): 4096 tokens hold 80 alternations of the betas.
  static constexpr index_t long_tokens = Gated ? 16384 : 4096, parallel_tokens = 2048;

  static problem make(const case_type& c, unsigned seed) {
    const std::array<index_t, 4> qk{c.B, c.L, c.H, c.K};
    const std::array<index_t, 3> heads{c.B, c.L, c.HV};
    auto d = std::make_shared<delta_data<T>>(delta_data<T>{
        uniform_tensor<T, 4>(qk, -1, 1, seed), uniform_tensor<T, 4>(qk, -1, 1, seed + 1),
        uniform_tensor<T, 4>({c.B, c.L, c.HV, c.V}, -1, 1, seed + 2),
        uniform_tensor<T, 4>({c.B, c.HV, c.K, c.V}, -1, 1, seed + 4), uniform_tensor<T, 3>(heads, c.gmin, 0, seed + 3),
        uniform_tensor<T, 3>(heads, 0.05, 0.95, seed + 5)});
    dr::l2_normalize_rows(d->q.data(), c.B * c.L * c.H, c.K, c.K, T(1e-6));
    dr::l2_normalize_rows(d->k.data(), c.B * c.L * c.H, c.K, c.K, T(1e-6));
    if (c.extreme)
      for (index_t b = 0; b < c.B; ++b)
        for (index_t t = 0; t < c.L; ++t)
          for (index_t h = 0; h < c.HV; ++h) {
            if (h == 1) d->g(b, t, h) *= T(5e-6);
            const T beta = d->beta(b, t, h);
            d->beta(b, t, h) = (t / 50) % 2 ? T(1) - T(1e-6) * beta : T(1e-6) * beta;
          }
    return {d, {d->q, d->k, d->v, d->g, d->beta}};
  }
  static problem fused(problem p) {
    return test::fused(p, [](auto& in) { return std::tie(in.q, in.k, in.v, in.g, in.beta); });
  }
  static index_t reduction(const problem& p) { return p.in.q.extent(3) + p.in.q.extent(1); }
  static result start(const problem& p) { return {test::nan_tensor<T, 4>(p.d->v.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const test::tokens& in) {
    const auto& [q, k, v, g, beta] = p.in;
    const tensor_view<T, 4> o = in(r.o);
    if constexpr (std::is_same_v<P, test::reference>) {
      if constexpr (Gated) dr::ref<T>(in(q), in(k), in(v), in(g), in(beta), o, r.state);
      else dr::ref<T>(in(q), in(k), in(v), in(beta), o, r.state);
    } else {
      if constexpr (Gated) dr::forward(policy, in(q), in(k), in(v), in(g), in(beta), o, r.state);
      else dr::forward(policy, in(q), in(k), in(v), in(beta), o, r.state);
    }
  }
};

template <class T>
using delta_net_op = delta_rule_op<T, false>;
template <class T>
using gated_delta_net_op = delta_rule_op<T, true>;

}  // namespace

SEQMIX_OP_SUITE(delta_net_op, "delta_net", "[delta_rule]")
SEQMIX_OP_SUITE(gated_delta_net_op, "gated_delta_net", "[delta_rule]")

TEST_CASE("delta rule: decays that underflow reset the state", "[delta_rule][op]") {
  const auto p = gated_delta_net_op<float>::make({1, 40, 1, 2, 16, 16, -1}, 9);
  p.d->g(0, 20, 0) = -200.f;  // e^-200 underflows in float
  p.d->g(0, 21, 1) = -1e4f;
  p.d->g(0, 30, 0) = -std::numeric_limits<float>::infinity();  // e.g. exp(A_log) overflowing in a layer
  using suite = test::op_suite<gated_delta_net_op<float>>;
  suite::check_against_reference(exec::recurrent{}, p);
  suite::check_against_reference(exec::chunkwise<16>{}, p);
  suite::check_against_reference(exec::parallel{}, p);
}

TEST_CASE("delta rule: bad arguments raise seqmix::error naming the tensor and both shapes", "[delta_rule][op][errors]") {
  const auto p = gated_delta_net_op<float>::make({1, 8, 2, 4, 4, 4, -0.1}, 1);
  tensor<float, 4> o({1, 8, 4, 4}), s({1, 4, 4, 4}), bad_k({1, 8, 2, 5}), bad_s({1, 2, 4, 4});
  tensor<float, 3> bad_g({1, 8, 2});
  REQUIRE_THROWS_WITH((dr::forward(exec::recurrent{}, p.in.q, bad_k, p.in.v, p.in.g, p.in.beta, o, s)),
                      Catch::Contains("gated_delta_net") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((dr::forward(exec::chunkwise<16>{}, p.in.q, p.in.k, p.in.v, p.in.beta, o, bad_s)),
                      Catch::Contains("delta_net") && Catch::Contains("state has shape [1, 2, 4, 4], expected [1, 4, 4, 4]"));
  REQUIRE_THROWS_WITH((dr::forward(exec::parallel{}, p.in.q, p.in.k, p.in.v, bad_g, p.in.beta, o, s)),
                      Catch::Contains("g has shape [1, 8, 2], expected [1, 8, 4]"));
  tensor<float, 4> v3({1, 8, 3, 4}), o3({1, 8, 3, 4}), s3({1, 3, 4, 4});
  tensor<float, 3> b3({1, 8, 3});
  REQUIRE_THROWS_WITH((dr::forward(exec::recurrent{}, p.in.q, p.in.k, v3, b3, o3, s3)),
                      Catch::Contains("not a positive multiple of the 2 q/k heads"));
  const tensor_view<const float, 4> strided_q(p.in.q.data(), {1, 8, 2, 2}, {32, 4, 2, 2});
  tensor<float, 4> s2({1, 4, 2, 4});
  REQUIRE_THROWS_AS((dr::forward(exec::recurrent{}, strided_q, strided_q, p.in.v, p.in.g, p.in.beta, o, s2)),
                    seqmix::error);
}
