// Delta-rule ops (DeltaNet and Gated DeltaNet): every policy against the double-accumulating
// reference and against each other, grouped value heads, sequence splits, long sequences with
// extreme gates and betas, strided inputs and argument errors.
#include <seqmix/kernels/delta_rule/delta_rule.hpp>
#include <seqmix/kernels/delta_rule/ref.hpp>

#include <algorithm>
#include <limits>

#include "support/compare.hpp"

using namespace seqmix;
namespace dr = seqmix::kernels::delta_rule;

namespace {

struct shape {
  index_t B, T, H, HV, K, V;
};

// q, k L2-normalised per token and head (as the layers feed the op); g log decays in [gmin, 0]
// (gated only), beta in [bmin, bmax].
template <class T>
struct problem {
  tensor<T, 4> q, k, v, state;
  tensor<T, 3> g, beta;
  bool gated;
  problem(shape s, bool gated_, double gmin, unsigned seed, double bmin = 0.05, double bmax = 0.95)
      : q(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed)),
        k(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed + 1)),
        v(uniform_tensor<T, 4>({s.B, s.T, s.HV, s.V}, -1, 1, seed + 2)),
        state(uniform_tensor<T, 4>({s.B, s.HV, s.K, s.V}, -1, 1, seed + 4)),
        g(uniform_tensor<T, 3>({s.B, s.T, s.HV}, gmin, 0, seed + 3)),
        beta(uniform_tensor<T, 3>({s.B, s.T, s.HV}, bmin, bmax, seed + 5)),
        gated(gated_) {
    dr::l2_normalize_rows(q.data(), s.B * s.T * s.H, s.K, s.K, T(1e-6));
    dr::l2_normalize_rows(k.data(), s.B * s.T * s.H, s.K, s.K, T(1e-6));
  }
};

struct reference {};  // policy tag for the oracle

// Output and final state of one policy; `o` starts as NaN so unwritten elements fail.
template <class T, class P>
std::pair<tensor<T, 4>, tensor<T, 4>> run(const P& policy, const problem<T>& p) {
  auto o = test::nan_tensor<T, 4>({p.q.extent(0), p.q.extent(1), p.v.extent(2), p.v.extent(3)});
  tensor<T, 4> s = p.state;
  if constexpr (std::is_same_v<P, reference>) {
    if (p.gated) dr::ref<T>(p.q, p.k, p.v, p.g, p.beta, o, s);
    else dr::ref<T>(p.q, p.k, p.v, p.beta, o, s);
  } else {
    if (p.gated) dr::forward<P, T>(policy, p.q, p.k, p.v, p.g, p.beta, o, s);
    else dr::forward<P, T>(policy, p.q, p.k, p.v, p.beta, o, s);
  }
  return {std::move(o), std::move(s)};
}

// float: rounding of O(T·K) accumulations of terms ≤ 1, ~1e-6 relative; 2e-5 leaves a 10x margin.
// double: the algorithms agree to ~1e-14.
template <class T>
constexpr double ratio = std::is_same_v<T, float> ? 2e-5 : 1e-11;
template <class T>
constexpr double atol = std::is_same_v<T, float> ? 2e-5 : 1e-12;

template <class T, class P>
void check_against_ref(const P& policy, shape s, bool gated, double gmin) {
  const problem<T> p(s, gated, gmin, 7);
  const auto [o_ref, s_ref] = run<T>(reference{}, p);
  const auto [o, st] = run<T>(policy, p);
  SEQMIX_CHECK_CLOSE(o, o_ref, atol<T>, ratio<T>);
  SEQMIX_CHECK_CLOSE(st, s_ref, atol<T>, ratio<T>);
}

// Odd lengths, T = 1, grouped value heads (HV = 2H, 3H), head dims that are not a multiple of any
// vector width, and K = 80 (the recurrent kernel's 4-token groups on AVX-512; smaller K use 2).
const shape shapes[] = {{1, 1, 1, 1, 8, 8},   {2, 37, 3, 3, 16, 24}, {1, 100, 2, 4, 20, 33}, {1, 130, 1, 1, 64, 64},
                        {1, 17, 2, 6, 5, 3}, {2, 3, 2, 2, 32, 16},  {1, 45, 1, 2, 80, 40}};

// Every shape, with and without a gate (decays down to -0.05, -1 and -8 per step).
template <class T, class P>
void check_all(const P& policy) {
  for (const bool gated : {false, true}) {
    for (const double gmin : gated ? std::vector<double>{-0.05, -1.0, -8.0} : std::vector<double>{0.0}) {
      for (const shape& s : shapes) {
        INFO("gated=" << gated << " B=" << s.B << " T=" << s.T << " H=" << s.H << " HV=" << s.HV << " K=" << s.K
                      << " V=" << s.V << " gmin=" << gmin);
        check_against_ref<T>(policy, s, gated, gmin);
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("delta rule policies match the reference", "[delta_rule][op]", float, double) {
  SECTION("recurrent") { check_all<TestType>(exec::recurrent{}); }
  SECTION("chunkwise<16>") { check_all<TestType>(exec::chunkwise<16>{}); }
  SECTION("chunkwise<64>") { check_all<TestType>(exec::chunkwise<64>{}); }
  SECTION("parallel") { check_all<TestType>(exec::parallel{}); }
  SECTION("automatic") { check_all<TestType>(exec::automatic{}); }
  SECTION("two threads") {
    check_all<TestType>(exec::chunkwise<32>{2});
    check_all<TestType>(exec::recurrent{2});
  }
}

TEST_CASE("delta rule policies agree with each other", "[delta_rule][op]") {
  for (const bool gated : {false, true}) {
    INFO("gated=" << gated);
    const problem<float> p({2, 200, 2, 4, 32, 32}, gated, -0.5, 11);
    const auto [o_r, s_r] = run<float>(exec::recurrent{}, p);
    const auto [o_c, s_c] = run<float>(exec::chunkwise<64>{}, p);
    const auto [o_p, s_p] = run<float>(exec::parallel{}, p);
    SEQMIX_CHECK_CLOSE(o_c, o_r, 2e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(o_p, o_r, 2e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(s_c, s_r, 2e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(s_p, s_r, 2e-5, 2e-5);
  }
}

TEST_CASE("delta rule: splitting a sequence anywhere gives the same outputs and state", "[delta_rule][op]") {
  const shape s{1, 90, 2, 4, 16, 16};
  for (const bool gated : {false, true}) {
    const problem<double> p(s, gated, -0.7, 3);
    const auto [o_full, s_full] = run<double>(exec::chunkwise<32>{}, p);
    for (const index_t cut : {1, 2, 31, 32, 33, 65, 89}) {
      INFO("gated=" << gated << " cut at " << cut);
      auto o = test::nan_tensor<double, 4>(o_full.extents());
      tensor<double, 4> st = p.state;
      auto part = [&](auto policy, index_t t0, index_t n) {
        using P = decltype(policy);
        auto sub4 = [&](const tensor<double, 4>& x) { return x.view().subrange(1, t0, n); };
        auto sub3 = [&](const tensor<double, 3>& x) { return x.view().subrange(1, t0, n); };
        if (gated)
          dr::forward<P, double>(policy, sub4(p.q), sub4(p.k), sub4(p.v), sub3(p.g), sub3(p.beta),
                                 o.view().subrange(1, t0, n), st);
        else
          dr::forward<P, double>(policy, sub4(p.q), sub4(p.k), sub4(p.v), sub3(p.beta), o.view().subrange(1, t0, n), st);
      };
      part(exec::recurrent{}, 0, cut);
      part(exec::parallel{}, cut, s.T - cut);
      SEQMIX_CHECK_CLOSE(o, o_full, 1e-12, 1e-12);
      SEQMIX_CHECK_CLOSE(st, s_full, 1e-12, 1e-12);
      // And the other way round, token by token after the cut.
      st = p.state;
      part(exec::chunkwise<16>{}, 0, cut);
      for (index_t t = cut; t < s.T; ++t) part(exec::recurrent{}, t, 1);
      SEQMIX_CHECK_CLOSE(o, o_full, 1e-12, 1e-12);
      SEQMIX_CHECK_CLOSE(st, s_full, 1e-12, 1e-12);
    }
  }
}

TEST_CASE("delta rule: T = 16384 with gates down to -20 and betas near 0 and 1 stays finite and agrees",
          "[delta_rule][op][long]") {
  // Value head 0 decays by up to -20 per step, head 1 barely (down to -1e-4); betas alternate
  // between runs near 0 and near 1, where (I - β k kᵀ) is almost a projection.
  const shape s{1, 16384, 1, 2, 32, 32};
  problem<float> p(s, true, -20, 5);
  for (index_t t = 0; t < s.T; ++t) {
    p.g(0, t, 1) *= 5e-6f;
    for (index_t h = 0; h < s.HV; ++h) {
      const float b = p.beta(0, t, h);
      p.beta(0, t, h) = (t / 50) % 2 ? 1.0f - 1e-6f * b : 1e-6f * b;
    }
  }
  const auto finite = [](const tensor<float, 4>& t) {
    return std::all_of(t.data(), t.data() + t.size(), [](float x) { return std::isfinite(x); });
  };
  const auto [o_ref, s_ref] = run<float>(reference{}, p);
  REQUIRE(finite(o_ref));
  const auto [o_r, s_r] = run<float>(exec::recurrent{}, p);
  const auto [o_c, s_c] = run<float>(exec::chunkwise<64>{}, p);
  CHECK(finite(o_r));
  CHECK(finite(o_c));
  SEQMIX_CHECK_CLOSE(o_r, o_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(o_c, o_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_r, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_c, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(o_c, o_r, 1e-4, 1e-4);
  // parallel materialises T x T blocks: check it on the first 2048 tokens of the same inputs.
  const index_t n = 2048;
  auto o_p = test::nan_tensor<float, 4>({1, n, s.HV, s.V});
  tensor<float, 4> s_p = p.state;
  dr::forward<exec::parallel, float>({}, p.q.view().subrange(1, 0, n), p.k.view().subrange(1, 0, n),
                                     p.v.view().subrange(1, 0, n), p.g.view().subrange(1, 0, n),
                                     p.beta.view().subrange(1, 0, n), o_p, s_p);
  CHECK(finite(o_p));
  SEQMIX_CHECK_CLOSE(o_p, o_r.view().subrange(1, 0, n), 1e-4, 1e-4);
}

TEST_CASE("delta rule: decays that underflow reset the state", "[delta_rule][op]") {
  problem<float> p({1, 40, 1, 2, 16, 16}, true, -1, 9);
  p.g(0, 20, 0) = -200.f;  // e^-200 underflows in float
  p.g(0, 21, 1) = -1e4f;
  p.g(0, 30, 0) = -std::numeric_limits<float>::infinity();  // e.g. exp(A_log) overflowing in a layer
  const auto [o_ref, s_ref] = run<float>(reference{}, p);
  for (const auto& [o, st] : {run<float>(exec::recurrent{}, p), run<float>(exec::chunkwise<16>{}, p),
                              run<float>(exec::parallel{}, p)}) {
    SEQMIX_CHECK_CLOSE(o, o_ref, 2e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(st, s_ref, 2e-5, 2e-5);
  }
}

TEST_CASE("delta rule: strided inputs give the same result as contiguous ones", "[delta_rule][op]") {
  // q, k, v interleaved in one fused buffer [B, T, H, 3*D] and g, beta in [B, T, H, 2], as a fused
  // projection leaves them.
  const index_t B = 2, T = 45, H = 3, D = 16;
  const problem<float> p({B, T, H, H, D, D}, true, -0.3, 21);
  tensor<float, 4> fused({B, T, H, 3 * D}), gb({B, T, H, 2});
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t h = 0; h < H; ++h) {
        for (index_t i = 0; i < D; ++i)
          fused(b, t, h, i) = p.q(b, t, h, i), fused(b, t, h, D + i) = p.k(b, t, h, i),
                     fused(b, t, h, 2 * D + i) = p.v(b, t, h, i);
        gb(b, t, h, 0) = p.g(b, t, h), gb(b, t, h, 1) = p.beta(b, t, h);
      }
  auto part = [&](index_t n) { return tensor_view<const float, 4>(fused.view().subrange(3, n * D, D)); };
  const tensor_view<const float, 3> g = gb.view().slice(3, 0), beta = gb.view().slice(3, 1);
  const auto [o_ref, s_ref] = run<float>(exec::chunkwise<16>{}, p);
  for (int policy = 0; policy < 3; ++policy) {
    auto o = test::nan_tensor<float, 4>({B, T, H, D});
    tensor<float, 4> st = p.state;
    if (policy == 0) dr::forward<exec::recurrent, float>({}, part(0), part(1), part(2), g, beta, o, st);
    if (policy == 1) dr::forward<exec::chunkwise<16>, float>({}, part(0), part(1), part(2), g, beta, o, st);
    if (policy == 2) dr::forward<exec::parallel, float>({}, part(0), part(1), part(2), g, beta, o, st);
    SEQMIX_CHECK_CLOSE(o, o_ref, 1e-6, 1e-6);
    SEQMIX_CHECK_CLOSE(st, s_ref, 1e-6, 1e-6);
  }
}

TEST_CASE("delta rule: bad arguments raise seqmix::error naming the tensor and both shapes", "[delta_rule][op][errors]") {
  const problem<float> p({1, 8, 2, 4, 4, 4}, true, -0.1, 1);
  tensor<float, 4> o({1, 8, 4, 4}), s({1, 4, 4, 4}), bad_k({1, 8, 2, 5}), bad_s({1, 2, 4, 4});
  tensor<float, 3> bad_g({1, 8, 2});
  REQUIRE_THROWS_WITH((dr::forward<exec::recurrent, float>({}, p.q, bad_k, p.v, p.g, p.beta, o, s)),
                      Catch::Contains("gated_delta_net") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((dr::forward<exec::chunkwise<16>, float>({}, p.q, p.k, p.v, p.beta, o, bad_s)),
                      Catch::Contains("delta_net") && Catch::Contains("state has shape [1, 2, 4, 4], expected [1, 4, 4, 4]"));
  REQUIRE_THROWS_WITH((dr::forward<exec::parallel, float>({}, p.q, p.k, p.v, bad_g, p.beta, o, s)),
                      Catch::Contains("g has shape [1, 8, 2], expected [1, 8, 4]"));
  tensor<float, 4> v3({1, 8, 3, 4}), o3({1, 8, 3, 4}), s3({1, 3, 4, 4});
  tensor<float, 3> b3({1, 8, 3});
  REQUIRE_THROWS_WITH((dr::forward<exec::recurrent, float>({}, p.q, p.k, v3, b3, o3, s3)),
                      Catch::Contains("not a positive multiple of the 2 q/k heads"));
  const tensor_view<const float, 4> strided_q(p.q.data(), {1, 8, 2, 2}, {32, 4, 2, 2});
  tensor<float, 4> s2({1, 4, 2, 4});
  REQUIRE_THROWS_AS((dr::forward<exec::recurrent, float>({}, strided_q, strided_q, p.v, p.g, p.beta, o, s2)),
                    seqmix::error);
}

TEST_CASE("delta rule: an empty sequence leaves the state unchanged", "[delta_rule][op]") {
  const problem<float> p({1, 0, 2, 2, 8, 8}, true, -0.1, 1);
  tensor<float, 4> o({1, 0, 2, 8}), s = p.state;
  dr::forward<exec::chunkwise<64>, float>({}, p.q, p.k, p.v, p.g, p.beta, o, s);
  dr::forward<exec::recurrent, float>({}, p.q, p.k, p.v, p.g, p.beta, o, s);
  dr::forward<exec::parallel, float>({}, p.q, p.k, p.v, p.beta, o, s);
  SEQMIX_CHECK_CLOSE(s, p.state, 0.0, 0.0);
}
