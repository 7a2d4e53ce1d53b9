// Differential attention op: every policy against the double-accumulating reference (component
// heads on shared key heads, cache prefixes, B > 1), the learned λ, and errors.
#include <seqmix/kernels/attention/differential.hpp>
#include <seqmix/kernels/attention/ref.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace attn = seqmix::kernels::attention;

namespace {

struct shape {
  index_t B, P, T, H, Hkv, d;
};

template <class T>
struct problem {
  shape s;
  tensor<T, 4> q, k, v;
  tensor<T, 1> lq1, lk1, lq2, lk2, subln;
  double lambda_init;
  problem(const shape& s_, unsigned seed)
      : s(s_), q(uniform_tensor<T, 4>({s.B, s.T, 2 * s.H, s.d}, -2, 2, seed)),
        k(uniform_tensor<T, 4>({s.B, s.P + s.T, 2 * s.Hkv, s.d}, -2, 2, seed + 1)),
        v(uniform_tensor<T, 4>({s.B, s.P + s.T, s.Hkv, 2 * s.d}, -1, 1, seed + 2)),
        lq1(uniform_tensor<T, 1>({s.d}, -0.3, 0.3, seed + 3)), lk1(uniform_tensor<T, 1>({s.d}, -0.3, 0.3, seed + 4)),
        lq2(uniform_tensor<T, 1>({s.d}, -0.3, 0.3, seed + 5)), lk2(uniform_tensor<T, 1>({s.d}, -0.3, 0.3, seed + 6)),
        subln(uniform_tensor<T, 1>({2 * s.d}, 0.5, 1.5, seed + 7)), lambda_init(attn::diff_lambda_init(3)) {}

  attn::diff_params<T> params() const { return {lq1, lk1, lq2, lk2, subln, lambda_init, 1e-5}; }

  tensor<T, 4> expected() const {
    tensor<T, 4> o({s.B, s.T, s.H, 2 * s.d});
    const double lambda = attn::diff_lambda<T>(lq1, lk1, lq2, lk2, lambda_init);
    attn::diff_ref<T>(q, k, v, subln, o, lambda, lambda_init, 1e-5);
    return o;
  }

  template <class P>
  tensor<T, 4> run(const P& policy) const {
    attn::kv_cache<T> cache({s.B, 2 * s.Hkv, s.d, s.Hkv, 2 * s.d}, s.P + s.T);
    cache.append(k.view().subrange(1, 0, s.P), v.view().subrange(1, 0, s.P));
    auto o = test::nan_tensor<T, 4>({s.B, s.T, s.H, 2 * s.d});
    attn::differential<P, T>(policy, q, k.view().subrange(1, s.P, s.T), v.view().subrange(1, s.P, s.T), o, cache,
                             params());
    return o;
  }
};

// After the sub-layer norm outputs are O(1); float rounding of the two maps' difference stays ~1e-6.
template <class T>
constexpr double tol = std::is_same_v<T, float> ? 2e-5 : 1e-11;

const shape shapes[] = {{1, 0, 1, 1, 1, 8}, {2, 0, 37, 2, 2, 16}, {2, 0, 48, 4, 2, 16},
                        {1, 35, 25, 2, 1, 16}, {2, 100, 1, 2, 1, 32}, {1, 0, 70, 3, 1, 10}};

}  // namespace

TEMPLATE_TEST_CASE("diff_attn policies match the reference", "[diff_attn][op]", float, double) {
  // Sections outermost (Catch2 enters a section once per run): every shape under every policy.
  auto every_shape = [](const auto& policy, double tol) {
    for (const shape& s : shapes) {
      INFO("B=" << s.B << " P=" << s.P << " T=" << s.T << " H=" << s.H << " Hkv=" << s.Hkv << " d=" << s.d);
      const problem<TestType> p(s, 17);
      SEQMIX_CHECK_CLOSE(p.run(policy), p.expected(), tol, tol);
    }
  };
  SECTION("recurrent") { every_shape(exec::recurrent{}, tol<TestType>); }
  SECTION("chunkwise") { every_shape(exec::chunkwise<16>{2}, tol<TestType>); }
  SECTION("parallel") { every_shape(exec::parallel{}, tol<TestType>); }
}

TEST_CASE("diff_attn: lambda re-parameterisation and lambda_init", "[diff_attn][op]") {
  const problem<double> p({1, 0, 4, 1, 1, 8}, 3);
  double a = 0, b = 0;
  for (index_t i = 0; i < 8; ++i) a += p.lq1(i) * p.lk1(i), b += p.lq2(i) * p.lk2(i);
  CHECK(p.params().lambda() == Approx(std::exp(a) - std::exp(b) + p.lambda_init).epsilon(1e-15));
  CHECK(attn::diff_lambda_init(0) == Approx(0.2));
  CHECK(attn::diff_lambda_init(4) == Approx(0.8 - 0.6 * std::exp(-1.2)));
}

TEST_CASE("diff_attn: bad shapes raise seqmix::error", "[diff_attn][op][errors]") {
  const problem<float> p({1, 0, 4, 2, 1, 8}, 3);
  attn::kv_cache<float> cache({1, 2, 8, 1, 16}, 10);
  tensor<float, 4> o_bad({1, 4, 2, 8}), q_odd({1, 4, 3, 8});
  REQUIRE_THROWS_WITH((attn::differential<exec::recurrent, float>({}, p.q, p.k, p.v, o_bad, cache, p.params())),
                      Catch::Contains("diff_attn: o has shape [1, 4, 2, 8], expected [1, 4, 2, 16]"));
  tensor<float, 4> o({1, 4, 1, 16});
  REQUIRE_THROWS_WITH((attn::differential<exec::recurrent, float>({}, q_odd, p.k, p.v, o, cache, p.params())),
                      Catch::Contains("even number of component heads"));
}
