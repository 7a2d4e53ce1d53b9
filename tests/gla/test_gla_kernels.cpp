// GLA op: every policy against the double-accumulating reference and against each other, sequence
// splits, long sequences with strong decay, strided inputs and argument errors.
#include <seqmix/kernels/gla/gla.hpp>
#include <seqmix/kernels/gla/ref.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace gla = seqmix::kernels::gla;

namespace {

struct shape {
  index_t B, T, H, K, V;
};

template <class T>
struct problem {
  tensor<T, 4> q, k, v, g, state;
  problem(shape s, double gmin, unsigned seed)
      : q(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed)),
        k(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed + 1)),
        v(uniform_tensor<T, 4>({s.B, s.T, s.H, s.V}, -1, 1, seed + 2)),
        g(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, gmin, 0, seed + 3)),
        state(uniform_tensor<T, 4>({s.B, s.H, s.K, s.V}, -1, 1, seed + 4)) {}
};

// Output and final state of one policy; `o` starts as NaN so unwritten elements fail.
template <class T, class P>
std::pair<tensor<T, 4>, tensor<T, 4>> run(const P& policy, const problem<T>& p) {
  auto o = test::nan_tensor<T, 4>({p.q.extent(0), p.q.extent(1), p.q.extent(2), p.v.extent(3)});
  tensor<T, 4> s = p.state;
  if constexpr (std::is_same_v<P, int>) gla::ref<T>(p.q, p.k, p.v, p.g, o, s);
  else gla::forward<P, T>(policy, p.q, p.k, p.v, p.g, o, s);
  return {std::move(o), std::move(s)};
}

// float: rounding of O(T·K) accumulations, ~1e-6 relative; 2e-5 leaves a 10x margin.
// double: the same algorithms agree to ~1e-14.
template <class T>
constexpr double ratio = std::is_same_v<T, float> ? 2e-5 : 1e-11;
template <class T>
constexpr double atol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

template <class T, class P>
void check_against_ref(const P& policy, shape s, double gmin) {
  const problem<T> p(s, gmin, 7);
  const auto [o_ref, s_ref] = run<T>(0, p);
  const auto [o, st] = run<T>(policy, p);
  SEQMIX_CHECK_CLOSE(o, o_ref, atol<T>, ratio<T>);
  SEQMIX_CHECK_CLOSE(st, s_ref, atol<T>, ratio<T>);
}

const shape shapes[] = {{1, 1, 1, 8, 8}, {2, 37, 3, 16, 24}, {1, 100, 2, 20, 33}, {1, 130, 1, 64, 64}, {1, 17, 2, 5, 3}};

}  // namespace

TEMPLATE_TEST_CASE("gla policies match the reference", "[gla][op]", float, double) {
  // Sections outermost: Catch2 runs a section once, so a section inside the loops would only
  // ever see the first shape.
  auto every_shape = [](const auto& policy) {
    for (const double gmin : {-0.05, -1.0, -8.0})
      for (const shape& s : shapes) {
        INFO("B=" << s.B << " T=" << s.T << " H=" << s.H << " K=" << s.K << " V=" << s.V << " gmin=" << gmin);
        check_against_ref<TestType>(policy, s, gmin);
      }
  };
  SECTION("recurrent") { every_shape(exec::recurrent{}); }
  SECTION("chunkwise<16>") { every_shape(exec::chunkwise<16>{}); }
  SECTION("chunkwise<64>") { every_shape(exec::chunkwise<64>{}); }
  SECTION("parallel") { every_shape(exec::parallel{}); }
  SECTION("two threads") { every_shape(exec::chunkwise<32>{2}); }
  SECTION("recurrent, two threads") { every_shape(exec::recurrent{2}); }
}

TEST_CASE("gla policies agree with each other", "[gla][op]") {
  const problem<float> p({2, 200, 4, 32, 32}, -0.5, 11);
  const auto [o_r, s_r] = run<float>(exec::recurrent{}, p);
  const auto [o_c, s_c] = run<float>(exec::chunkwise<64>{}, p);
  const auto [o_p, s_p] = run<float>(exec::parallel{}, p);
  SEQMIX_CHECK_CLOSE(o_c, o_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(o_p, o_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(s_c, s_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(s_p, s_r, 1e-5, 2e-5);
}

TEST_CASE("gla: splitting a sequence anywhere gives the same outputs and state", "[gla][op]") {
  const shape s{1, 90, 2, 16, 16};
  const problem<double> p(s, -0.7, 3);
  const auto [o_full, s_full] = run<double>(exec::chunkwise<32>{}, p);
  for (const index_t cut : {1, 31, 32, 33, 89}) {
    INFO("cut at " << cut);
    auto o = test::nan_tensor<double, 4>(o_full.extents());
    tensor<double, 4> st = p.state;
    auto part = [&](auto policy, index_t t0, index_t n) {
      gla::forward<decltype(policy), double>(policy, p.q.view().subrange(1, t0, n), p.k.view().subrange(1, t0, n),
                                             p.v.view().subrange(1, t0, n), p.g.view().subrange(1, t0, n),
                                             o.view().subrange(1, t0, n), st);
    };
    part(exec::recurrent{}, 0, cut);
    part(exec::parallel{}, cut, s.T - cut);
    SEQMIX_CHECK_CLOSE(o, o_full, 1e-12, 1e-12);
    SEQMIX_CHECK_CLOSE(st, s_full, 1e-12, 1e-12);
  }
}

TEST_CASE("gla: T = 16384 with log-gates down to -20 stays finite and agrees", "[gla][op][long]") {
  // Half the key channels decay hard (down to -20 per step), half barely (down to -0.01): the
  // chunk factorisation must neither overflow on the first nor lose the second.
  const shape s{1, 16384, 2, 32, 32};
  problem<float> p(s, -20, 5);
  for (index_t t = 0; t < s.T; ++t)
    for (index_t h = 0; h < s.H; ++h)
      for (index_t i = 0; i < s.K / 2; ++i) p.g(0, t, h, i) *= 0.0005f;
  const auto [o_ref, s_ref] = run<float>(0, p);
  const auto finite = [](const tensor<float, 4>& t) { return std::all_of(t.data(), t.data() + t.size(), [](float x) { return std::isfinite(x); }); };
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
}

TEST_CASE("gla: a single step with a decay that underflows", "[gla][op]") {
  problem<float> p({1, 40, 1, 16, 16}, -1, 9);
  p.g(0, 20, 0, 3) = -200.f;  // e^-200 underflows in float; the state row must simply reset
  const auto [o_ref, s_ref] = run<float>(0, p);
  for (const auto& [o, st] : {run<float>(exec::recurrent{}, p), run<float>(exec::chunkwise<16>{}, p),
                              run<float>(exec::parallel{}, p)}) {
    SEQMIX_CHECK_CLOSE(o, o_ref, 1e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(st, s_ref, 1e-5, 2e-5);
  }
}

TEST_CASE("gla: strided inputs give the same result as contiguous ones", "[gla][op]") {
  // q, k, v, g interleaved in one fused buffer [B, T, H, 4*D], as a fused projection leaves them.
  const index_t B = 2, T = 45, H = 3, D = 16;
  const problem<float> p({B, T, H, D, D}, -0.3, 21);
  tensor<float, 4> fused({B, T, H, 4 * D});
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t h = 0; h < H; ++h)
        for (index_t i = 0; i < D; ++i) {
          fused(b, t, h, i) = p.q(b, t, h, i), fused(b, t, h, D + i) = p.k(b, t, h, i);
          fused(b, t, h, 2 * D + i) = p.v(b, t, h, i), fused(b, t, h, 3 * D + i) = p.g(b, t, h, i);
        }
  auto part = [&](index_t n) { return tensor_view<const float, 4>(fused.view().subrange(3, n * D, D)); };
  const auto [o_ref, s_ref] = run<float>(exec::chunkwise<16>{}, p);
  for (int policy = 0; policy < 3; ++policy) {
    auto o = test::nan_tensor<float, 4>({B, T, H, D});
    tensor<float, 4> st = p.state;
    if (policy == 0) gla::forward<exec::recurrent, float>({}, part(0), part(1), part(2), part(3), o, st);
    if (policy == 1) gla::forward<exec::chunkwise<16>, float>({}, part(0), part(1), part(2), part(3), o, st);
    if (policy == 2) gla::forward<exec::parallel, float>({}, part(0), part(1), part(2), part(3), o, st);
    SEQMIX_CHECK_CLOSE(o, o_ref, 1e-6, 1e-6);
    SEQMIX_CHECK_CLOSE(st, s_ref, 1e-6, 1e-6);
  }
}

TEST_CASE("gla: bad arguments raise seqmix::error naming the tensor and both shapes", "[gla][op][errors]") {
  const problem<float> p({1, 8, 2, 4, 4}, -0.1, 1);
  tensor<float, 4> o({1, 8, 2, 4}), s({1, 2, 4, 4}), bad_k({1, 8, 2, 5}), bad_s({1, 2, 4, 3});
  REQUIRE_THROWS_WITH((gla::forward<exec::recurrent, float>({}, p.q, bad_k, p.v, p.g, o, s)),
                      Catch::Contains("gla") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((gla::forward<exec::chunkwise<16>, float>({}, p.q, p.k, p.v, p.g, o, bad_s)),
                      Catch::Contains("state has shape [1, 2, 4, 3], expected [1, 2, 4, 4]"));
  const tensor_view<const float, 4> strided_q(p.q.data(), {1, 4, 2, 4}, {64, 8, 4, 2});
  tensor<float, 4> o4({1, 4, 2, 4});
  REQUIRE_THROWS_AS((gla::forward<exec::parallel, float>({}, strided_q, strided_q, strided_q, strided_q, o4, s)),
                    seqmix::error);
}

TEST_CASE("gla: an empty sequence leaves the state unchanged", "[gla][op]") {
  const problem<float> p({1, 0, 2, 8, 8}, -0.1, 1);
  tensor<float, 4> o({1, 0, 2, 8}), s = p.state;
  gla::forward<exec::chunkwise<64>, float>({}, p.q, p.k, p.v, p.g, o, s);
  gla::forward<exec::recurrent, float>({}, p.q, p.k, p.v, p.g, o, s);
  SEQMIX_CHECK_CLOSE(s, p.state, 0.0, 0.0);
}
