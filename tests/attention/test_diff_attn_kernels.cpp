// Differential attention op: the op suite (support/op_suite.hpp) on the differential-attention
// adapter (component heads on shared key heads, cache prefixes, B > 1), the learned λ, and errors.
#include <seqmix/kernels/attention/differential.hpp>
#include <seqmix/kernels/attention/ref.hpp>

#include <memory>

#include "support/op_suite.hpp"

using namespace seqmix;
namespace attn = seqmix::kernels::attention;

namespace {

/// q [B,T,2H,d], k [B,P+T,2Hkv,d] in [-range, range] (P cached positions first), v [B,P+T,Hkv,2d]
/// in [-1, 1], λ vectors [d] in [-0.3, 0.3], subln [2d] in [0.5, 1.5]; the state is the KV cache.
template <class T>
struct diff_attn_op {
  using value_type = T;
  struct case_type {
    index_t B, P, L, H, Hkv, d;  // L: new tokens
    double range = 2;
    friend std::ostream& operator<<(std::ostream& os, const case_type& c) {
      return os << "B=" << c.B << " P=" << c.P << " T=" << c.L << " H=" << c.H << " Hkv=" << c.Hkv << " d=" << c.d
                << " range=" << c.range;
    }
  };
  struct data {
    tensor<T, 4> q, k, v;
    tensor<T, 1> lq1, lk1, lq2, lk2, subln;
  };
  struct problem {
    case_type c;
    std::shared_ptr<data> d;
    tensor_view<const T, 4> q, k, v;  // the new tokens
    double lambda_init;
    std::shared_ptr<const void> fused;
    attn::diff_params<T> params() const { return {d->lq1, d->lk1, d->lq2, d->lk2, d->subln, lambda_init, 1e-5}; }
  };
  struct result {
    tensor<T, 4> o;
    attn::kv_cache<T> cache;
  };
  static constexpr const char* names[] = {"o", "cached keys", "cached values"};

  static std::vector<case_type> cases() {
    return {{1, 0, 1, 1, 1, 8},    {2, 0, 37, 2, 2, 16},  {2, 0, 48, 4, 2, 16},
            {1, 35, 25, 2, 1, 16}, {2, 100, 1, 2, 1, 32}, {1, 0, 70, 3, 1, 10}};
  }
  static case_type agree_case() { return {2, 17, 150, 4, 2, 32}; }
  static case_type split_case() { return {1, 0, 90, 2, 1, 16}; }
  static case_type fused_case() { return {2, 0, 45, 2, 2, 16}; }
  static case_type empty_case() { return {1, 3, 0, 2, 1, 8}; }
  // Scores up to ±range²·d before the 1/sqrt(d) scale: ±256 / 4 = ±64.
  static case_type long_case(index_t tokens) { return {1, 0, tokens, 2, 1, 16, 4}; }
  static constexpr index_t long_tokens = 1024, parallel_tokens = 1024;

  static problem make(const case_type& c, unsigned seed) {
    auto d = std::make_shared<data>(data{uniform_tensor<T, 4>({c.B, c.L, 2 * c.H, c.d}, -c.range, c.range, seed),
                                         uniform_tensor<T, 4>({c.B, c.P + c.L, 2 * c.Hkv, c.d}, -c.range, c.range, seed + 1),
                                         uniform_tensor<T, 4>({c.B, c.P + c.L, c.Hkv, 2 * c.d}, -1, 1, seed + 2),
                                         uniform_tensor<T, 1>({c.d}, -0.3, 0.3, seed + 3),
                                         uniform_tensor<T, 1>({c.d}, -0.3, 0.3, seed + 4),
                                         uniform_tensor<T, 1>({c.d}, -0.3, 0.3, seed + 5),
                                         uniform_tensor<T, 1>({c.d}, -0.3, 0.3, seed + 6),
                                         uniform_tensor<T, 1>({2 * c.d}, 0.5, 1.5, seed + 7)});
    return {c, d, d->q, d->k.view().subrange(1, c.P, c.L), d->v.view().subrange(1, c.P, c.L), attn::diff_lambda_init(3), {}};
  }
  static problem fused(problem p) {
    std::tie(p.q, p.k, p.v) = test::fuse(p.fused, p.q, p.k, p.v);
    return p;
  }
  static index_t length(const problem& p) { return p.c.L; }
  static index_t reduction(const problem& p) { return p.c.d + p.c.P + p.c.L; }
  static result start(const problem& p) {
    const case_type& c = p.c;
    result r{test::nan_tensor<T, 4>({c.B, c.L, c.H, 2 * c.d}),
             attn::kv_cache<T>({c.B, 2 * c.Hkv, c.d, c.Hkv, 2 * c.d}, c.P + c.L)};
    r.cache.append(p.d->k.view().subrange(1, 0, c.P), p.d->v.view().subrange(1, 0, c.P));
    return r;
  }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, index_t t0, index_t n) {
    auto in = [&](tensor_view<const T, 4> x) { return x.subrange(1, t0, n); };
    const tensor_view<T, 4> o = r.o.view().subrange(1, t0, n);
    if constexpr (std::is_same_v<P, test::reference>) {
      const index_t S = p.c.P + t0 + n;
      const data& d = *p.d;
      attn::diff_ref<T>(in(p.q), d.k.view().subrange(1, 0, S), d.v.view().subrange(1, 0, S), d.subln, o,
                        attn::diff_lambda<T>(d.lq1, d.lk1, d.lq2, d.lk2, p.lambda_init), p.lambda_init, 1e-5);
      r.cache.append(in(p.k), in(p.v));
    } else {
      attn::differential<P, T>(policy, in(p.q), in(p.k), in(p.v), o, r.cache, p.params());
    }
  }
  static auto compared(const result& r) {
    return std::tuple<const tensor<T, 4>&, tensor<T, 4>, tensor<T, 4>>(r.o, r.cache.keys(), r.cache.values());
  }
};

}  // namespace

SEQMIX_OP_SUITE(diff_attn_op, "diff_attn", "[diff_attn]")

TEST_CASE("diff_attn: lambda re-parameterisation and lambda_init", "[diff_attn][op]") {
  const auto p = diff_attn_op<double>::make({1, 0, 4, 1, 1, 8}, 3);
  const auto& d = *p.d;
  double a = 0, b = 0;
  for (index_t i = 0; i < 8; ++i) a += d.lq1(i) * d.lk1(i), b += d.lq2(i) * d.lk2(i);
  CHECK(p.params().lambda() == Approx(std::exp(a) - std::exp(b) + p.lambda_init).epsilon(1e-15));
  CHECK(attn::diff_lambda_init(0) == Approx(0.2));
  CHECK(attn::diff_lambda_init(4) == Approx(0.8 - 0.6 * std::exp(-1.2)));
}

TEST_CASE("diff_attn: bad shapes raise seqmix::error", "[diff_attn][op][errors]") {
  const auto p = diff_attn_op<float>::make({1, 0, 4, 2, 1, 8}, 3);
  attn::kv_cache<float> cache({1, 2, 8, 1, 16}, 10);
  tensor<float, 4> o_bad({1, 4, 2, 8}), q_odd({1, 4, 3, 8});
  REQUIRE_THROWS_WITH((attn::differential<exec::recurrent, float>({}, p.q, p.k, p.v, o_bad, cache, p.params())),
                      Catch::Contains("diff_attn: o has shape [1, 4, 2, 8], expected [1, 4, 2, 16]"));
  tensor<float, 4> o({1, 4, 1, 16});
  REQUIRE_THROWS_WITH((attn::differential<exec::recurrent, float>({}, q_odd, p.k, p.v, o, cache, p.params())),
                      Catch::Contains("even number of component heads"));
}
