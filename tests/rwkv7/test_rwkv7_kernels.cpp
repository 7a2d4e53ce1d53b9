// RWKV-7 op: every policy against the double-accumulating reference and against each other,
// sequence splits, long sequences with decays near 0 and near 1, strided inputs and argument errors.
#include <seqmix/kernels/rwkv7/ref.hpp>
#include <seqmix/kernels/rwkv7/rwkv7.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace rwkv7 = seqmix::kernels::rwkv7;

namespace {

struct shape {
  index_t B, T, H, K, V;
};

// Inputs of the form the RWKV-7 layer produces: a = -kk, b = kk · a_gate with kk a unit vector per
// head and a_gate in (0, 1), so the transition diag(e^w) + b aᵀ does not expand the state.
template <class T>
struct problem {
  tensor<T, 4> r, w, k, v, a, b, state;
  problem(shape s, double wmin, double wmax, unsigned seed)
      : r(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed)),
        w(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, wmin, wmax, seed + 1)),
        k(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed + 2)),
        v(uniform_tensor<T, 4>({s.B, s.T, s.H, s.V}, -1, 1, seed + 3)),
        a(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, -1, 1, seed + 4)),
        b(uniform_tensor<T, 4>({s.B, s.T, s.H, s.K}, 0, 1, seed + 5)),
        state(uniform_tensor<T, 4>({s.B, s.H, s.K, s.V}, -0.5, 0.5, seed + 6)) {
    for (index_t bi = 0; bi < s.B; ++bi)
      for (index_t t = 0; t < s.T; ++t)
        for (index_t h = 0; h < s.H; ++h) {
          double n2 = 0;
          for (index_t i = 0; i < s.K; ++i) n2 += double(a(bi, t, h, i)) * double(a(bi, t, h, i));
          const double inv = 1 / std::max(std::sqrt(n2), 1e-12);
          for (index_t i = 0; i < s.K; ++i) {
            const T kk = T(double(a(bi, t, h, i)) * inv);
            a(bi, t, h, i) = -kk, b(bi, t, h, i) = kk * b(bi, t, h, i);
          }
        }
  }
};

// Output and final state of one policy (int: the reference); `o` starts as NaN.
template <class T, class P>
std::pair<tensor<T, 4>, tensor<T, 4>> run(const P& policy, const problem<T>& p) {
  auto o = test::nan_tensor<T, 4>({p.r.extent(0), p.r.extent(1), p.r.extent(2), p.v.extent(3)});
  tensor<T, 4> s = p.state;
  if constexpr (std::is_same_v<P, int>) rwkv7::ref<T>(p.r, p.w, p.k, p.v, p.a, p.b, o, s);
  else rwkv7::forward(policy, rwkv7::inputs<T>{.r = p.r, .w = p.w, .k = p.k, .v = p.v, .a = p.a, .b = p.b}, o, s);
  return {std::move(o), std::move(s)};
}

// float: rounding of O(T·K) accumulations, ~1e-6 relative; 2e-5 leaves a 10x margin.
// double: the same algorithms agree to ~1e-14.
template <class T>
constexpr double ratio = std::is_same_v<T, float> ? 2e-5 : 1e-11;
template <class T>
constexpr double atol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

template <class T, class P>
void check_against_ref(const P& policy, shape s, double wmin, double wmax) {
  const problem<T> p(s, wmin, wmax, 7);
  const auto [o_ref, s_ref] = run<T>(0, p);
  const auto [o, st] = run<T>(policy, p);
  SEQMIX_CHECK_CLOSE(o, o_ref, atol<T>, ratio<T>);
  SEQMIX_CHECK_CLOSE(st, s_ref, atol<T>, ratio<T>);
}

const shape shapes[] = {{1, 1, 1, 8, 8},     {2, 37, 3, 16, 24}, {1, 100, 2, 20, 33},
                        {1, 130, 1, 64, 64}, {1, 17, 2, 5, 3},   {1, 70, 2, 24, 48}};

// Log-decay ranges: the layer's (−0.6065, 0), strong decays down to −10, decays near 1.
const std::pair<double, double> decays[] = {{-0.6065, 0}, {-10, -1e-5}, {-2e-5, 0}};

}  // namespace

// Sections outermost: Catch2 runs a SECTION once per test-case run, so a SECTION inside a loop
// would only ever see the loop's first iteration.
template <class T, class P>
void check_all(const P& policy) {
  for (const auto& [wmin, wmax] : decays)
    for (const shape& s : shapes) {
      INFO("B=" << s.B << " T=" << s.T << " H=" << s.H << " K=" << s.K << " V=" << s.V << " w in " << wmin << ".." << wmax);
      check_against_ref<T>(policy, s, wmin, wmax);
    }
}

TEMPLATE_TEST_CASE("rwkv7 policies match the reference", "[rwkv7][op]", float, double) {
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

TEST_CASE("rwkv7 policies agree with each other", "[rwkv7][op]") {
  const problem<float> p({2, 200, 4, 32, 32}, -0.6065, 0, 11);
  const auto [o_r, s_r] = run<float>(exec::recurrent{}, p);
  const auto [o_c, s_c] = run<float>(exec::chunkwise<64>{}, p);
  const auto [o_p, s_p] = run<float>(exec::parallel{}, p);
  SEQMIX_CHECK_CLOSE(o_c, o_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(o_p, o_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(s_c, s_r, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(s_p, s_r, 1e-5, 2e-5);
}

TEST_CASE("rwkv7: splitting a sequence anywhere gives the same outputs and state", "[rwkv7][op]") {
  const shape s{2, 90, 2, 16, 16};
  const problem<double> p(s, -0.7, 0, 3);
  const auto [o_full, s_full] = run<double>(exec::chunkwise<32>{}, p);
  for (const index_t cut : {1, 2, 3, 31, 32, 33, 89}) {
    INFO("cut at " << cut);
    auto o = test::nan_tensor<double, 4>(o_full.extents());
    tensor<double, 4> st = p.state;
    auto part = [&](auto policy, index_t t0, index_t n) {
      auto sub = [&](const tensor<double, 4>& x) { return tensor_view<const double, 4>(x.view().subrange(1, t0, n)); };
      rwkv7::forward(policy,
                     rwkv7::inputs<double>{.r = sub(p.r), .w = sub(p.w), .k = sub(p.k), .v = sub(p.v), .a = sub(p.a),
                                           .b = sub(p.b)},
                     o.view().subrange(1, t0, n), st);
    };
    part(exec::recurrent{}, 0, cut);
    part(exec::parallel{}, cut, s.T - cut);
    SEQMIX_CHECK_CLOSE(o, o_full, 1e-12, 1e-12);
    SEQMIX_CHECK_CLOSE(st, s_full, 1e-12, 1e-12);
  }
}

TEST_CASE("rwkv7: T = 16384 with decays near 0 and near 1 stays finite and agrees", "[rwkv7][op][long]") {
  // Half the key channels decay hard (log decay down to -20 per step: factors near 0), half barely
  // (down to -1e-5: factors near 1): the chunk form must neither overflow on the first nor lose
  // the second.
  const shape s{1, 16384, 2, 32, 32};
  problem<float> p(s, -20, 0, 5);
  for (index_t t = 0; t < s.T; ++t)
    for (index_t h = 0; h < s.H; ++h)
      for (index_t i = 0; i < s.K / 2; ++i) p.w(0, t, h, i) *= 5e-7f;
  const auto [o_ref, s_ref] = run<float>(0, p);
  const auto finite = [](const tensor<float, 4>& t) {
    return std::all_of(t.data(), t.data() + t.size(), [](float x) { return std::isfinite(x); });
  };
  REQUIRE(finite(o_ref));
  const auto [o_r, s_r] = run<float>(exec::recurrent{}, p);
  const auto [o_c, s_c] = run<float>(exec::chunkwise<64>{}, p);
  CHECK(finite(o_r));
  CHECK(finite(o_c));
  CHECK(finite(s_r));
  CHECK(finite(s_c));
  SEQMIX_CHECK_CLOSE(o_r, o_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(o_c, o_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_r, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_c, s_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(o_c, o_r, 1e-4, 1e-4);
}

TEST_CASE("rwkv7: a single step with a decay that underflows", "[rwkv7][op]") {
  problem<float> p({1, 40, 1, 16, 16}, -1, 0, 9);
  p.w(0, 20, 0, 3) = -200.f;  // e^-200 underflows in float; the state row must simply reset
  p.w(0, 21, 0, 5) = -90.f;   // beyond the diagonal tile's span limit: the exact fallback
  const auto [o_ref, s_ref] = run<float>(0, p);
  for (const auto& [o, st] : {run<float>(exec::recurrent{}, p), run<float>(exec::chunkwise<16>{}, p),
                              run<float>(exec::parallel{}, p)}) {
    SEQMIX_CHECK_CLOSE(o, o_ref, 1e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(st, s_ref, 1e-5, 2e-5);
  }
}

TEST_CASE("rwkv7: strided inputs give the same result as contiguous ones", "[rwkv7][op]") {
  // r, w, k, v, a, b interleaved in one fused buffer [B, T, H, 6*D], as a fused projection leaves them.
  const index_t B = 2, T = 45, H = 3, D = 16;
  const problem<float> p({B, T, H, D, D}, -0.6, 0, 21);
  tensor<float, 4> fused({B, T, H, 6 * D});
  const tensor<float, 4>* parts[] = {&p.r, &p.w, &p.k, &p.v, &p.a, &p.b};
  for (index_t n = 0; n < 6; ++n)
    for (index_t bi = 0; bi < B; ++bi)
      for (index_t t = 0; t < T; ++t)
        for (index_t h = 0; h < H; ++h)
          for (index_t i = 0; i < D; ++i) fused(bi, t, h, n * D + i) = (*parts[n])(bi, t, h, i);
  auto part = [&](index_t n) { return tensor_view<const float, 4>(fused.view().subrange(3, n * D, D)); };
  const auto [o_ref, s_ref] = run<float>(exec::chunkwise<16>{}, p);
  auto check = [&](auto policy) {
    auto o = test::nan_tensor<float, 4>({B, T, H, D});
    tensor<float, 4> st = p.state;
    rwkv7::forward(policy,
                   rwkv7::inputs<float>{.r = part(0), .w = part(1), .k = part(2), .v = part(3), .a = part(4), .b = part(5)},
                   o, st);
    SEQMIX_CHECK_CLOSE(o, o_ref, 1e-6, 1e-6);
    SEQMIX_CHECK_CLOSE(st, s_ref, 1e-6, 1e-6);
  };
  check(exec::recurrent{}), check(exec::chunkwise<16>{}), check(exec::parallel{});
}

TEST_CASE("rwkv7: bad arguments raise seqmix::error naming the tensor and both shapes", "[rwkv7][op][errors]") {
  const problem<float> p({1, 8, 2, 4, 4}, -0.1, 0, 1);
  tensor<float, 4> o({1, 8, 2, 4}), s({1, 2, 4, 4}), bad_k({1, 8, 2, 5}), bad_s({1, 2, 4, 3});
  REQUIRE_THROWS_WITH((rwkv7::forward(exec::recurrent{}, rwkv7::inputs<float>{.r = p.r, .w = p.w, .k = bad_k, .v = p.v, .a = p.a, .b = p.b}, o, s)),
                      Catch::Contains("rwkv7") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((rwkv7::forward(exec::chunkwise<16>{}, rwkv7::inputs<float>{.r = p.r, .w = p.w, .k = p.k, .v = p.v, .a = p.a, .b = p.b}, o, bad_s)),
                      Catch::Contains("state has shape [1, 2, 4, 3], expected [1, 2, 4, 4]"));
  REQUIRE_THROWS_WITH((rwkv7::forward(exec::parallel{}, rwkv7::inputs<float>{.r = p.r, .w = p.w, .k = p.k, .v = p.v, .a = bad_k, .b = p.b}, o, s)),
                      Catch::Contains("a has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  const tensor_view<const float, 4> strided(p.r.data(), {1, 4, 2, 4}, {64, 8, 4, 2});
  tensor<float, 4> o4({1, 4, 2, 4});
  REQUIRE_THROWS_AS((rwkv7::forward(exec::parallel{}, rwkv7::inputs<float>{strided, strided, strided, strided, strided, strided}, o4, s)),
                    seqmix::error);
}

TEST_CASE("rwkv7: an empty sequence leaves the state unchanged", "[rwkv7][op]") {
  const problem<float> p({1, 0, 2, 8, 8}, -0.1, 0, 1);
  tensor<float, 4> o({1, 0, 2, 8}), s = p.state;
  rwkv7::forward(exec::chunkwise<64>{}, rwkv7::inputs<float>{.r = p.r, .w = p.w, .k = p.k, .v = p.v, .a = p.a, .b = p.b}, o, s);
  rwkv7::forward(exec::recurrent{}, rwkv7::inputs<float>{.r = p.r, .w = p.w, .k = p.k, .v = p.v, .a = p.a, .b = p.b}, o, s);
  rwkv7::forward(exec::parallel{}, rwkv7::inputs<float>{.r = p.r, .w = p.w, .k = p.k, .v = p.v, .a = p.a, .b = p.b}, o, s);
  SEQMIX_CHECK_CLOSE(s, p.state, 0.0, 0.0);
}

TEMPLATE_TEST_CASE("rwkv7: short calls on several heads (decode) match the reference", "[rwkv7][op]", float, double) {
  // Calls shorter than a block take explicit steps, each fused with the next token's (or the next
  // head's) reduction; odd widths exercise the single-vector and scalar tiles of that path. More
  // than 32 heads, and a wide value axis, take the allocated head tables and scratch.
  const shape short_shapes[] = {{2, 1, 3, 20, 33}, {3, 1, 2, 64, 64}, {1, 2, 4, 16, 16}, {2, 3, 2, 24, 40},
                                {1, 3, 3, 5, 7},   {5, 1, 7, 8, 12},  {1, 1, 2, 12, 530}};
  for (const auto& [wmin, wmax] : decays)
    for (const shape& s : short_shapes) {
      INFO("B=" << s.B << " T=" << s.T << " H=" << s.H << " K=" << s.K << " V=" << s.V << " w in " << wmin << ".." << wmax);
      check_against_ref<TestType>(exec::recurrent{}, s, wmin, wmax);
    }
}

TEST_CASE("rwkv7: token-by-token calls give the same outputs and state as one call", "[rwkv7][op]") {
  // Each single-token call hands back the exact state; one long call keeps it in deferred form
  // between its blocks and folds it back at the end.
  const shape s{2, 23, 3, 24, 20};
  const problem<double> p(s, -0.7, 0, 13);
  const auto [o_full, s_full] = run<double>(exec::recurrent{}, p);
  auto o = test::nan_tensor<double, 4>(o_full.extents());
  tensor<double, 4> st = p.state;
  auto sub = [&](const tensor<double, 4>& x, index_t t) { return tensor_view<const double, 4>(x.view().subrange(1, t, 1)); };
  for (index_t t = 0; t < s.T; ++t)
    rwkv7::forward(exec::recurrent{},
                   rwkv7::inputs<double>{.r = sub(p.r, t), .w = sub(p.w, t), .k = sub(p.k, t), .v = sub(p.v, t),
                                         .a = sub(p.a, t), .b = sub(p.b, t)},
                   o.view().subrange(1, t, 1), st);
  SEQMIX_CHECK_CLOSE(o, o_full, 1e-12, 1e-12);
  SEQMIX_CHECK_CLOSE(st, s_full, 1e-12, 1e-12);
}

TEST_CASE("rwkv7: one open run over a whole long call stays exact", "[rwkv7][op][long]") {
  // Log decays in (-1e-3, 0): over 8192 tokens no channel decays below e^-16, so the recurrent
  // kernel keeps one deferred-decay run for the whole call and folds it only at the end.
  const problem<float> p({1, 8192, 2, 32, 32}, -1e-3, 0, 17);
  const auto [o_ref, s_ref] = run<float>(0, p);
  const auto [o_r, s_r] = run<float>(exec::recurrent{}, p);
  SEQMIX_CHECK_CLOSE(o_r, o_ref, 1e-4, 1e-4);
  SEQMIX_CHECK_CLOSE(s_r, s_ref, 1e-4, 1e-4);
}
