// Softmax attention op: every policy against the double-accumulating reference and against each
// other (GQA, windows, sinks, cache prefixes, Dk != Dv, two key heads per value head), prefill split
// anywhere, ring-buffer caches, long contexts with large logits, and argument errors.
#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/kernels/attention/ref.hpp>
#include <seqmix/simd/softmax.hpp>

#include "support/compare.hpp"

using namespace seqmix;
namespace attn = seqmix::kernels::attention;

namespace {

struct shape {
  index_t B, P, T, Hq, Hk, Hv, Dk, Dv;
  attn::mask m{};
};

std::ostream& operator<<(std::ostream& os, const shape& s) {
  return os << "B=" << s.B << " P=" << s.P << " T=" << s.T << " Hq=" << s.Hq << " Hk=" << s.Hk << " Hv=" << s.Hv
            << " Dk=" << s.Dk << " Dv=" << s.Dv << " window=" << s.m.window << " sink=" << s.m.sink;
}

// q for the T new tokens; k, v for all P + T positions (cache prefix first).
template <class T>
struct problem {
  shape s;
  tensor<T, 4> q, k, v;
  problem(const shape& s_, double qk_range, unsigned seed)
      : s(s_), q(uniform_tensor<T, 4>({s.B, s.T, s.Hq, s.Dk}, -qk_range, qk_range, seed)),
        k(uniform_tensor<T, 4>({s.B, s.P + s.T, s.Hk, s.Dk}, -qk_range, qk_range, seed + 1)),
        v(uniform_tensor<T, 4>({s.B, s.P + s.T, s.Hv, s.Dv}, -1, 1, seed + 2)) {}

  tensor_view<const T, 4> k_new() const { return k.view().subrange(1, s.P, s.T); }
  tensor_view<const T, 4> v_new() const { return v.view().subrange(1, s.P, s.T); }

  attn::kv_cache<T> make_cache(index_t capacity = 0, index_t step = attn::block_keys) const {
    attn::kv_cache<T> c({s.B, s.Hk, s.Dk, s.Hv, s.Dv}, capacity > 0 ? capacity : s.P + s.T, s.m, step);
    c.append(k.view().subrange(1, 0, s.P), v.view().subrange(1, 0, s.P));
    return c;
  }

  tensor<T, 4> expected() const {
    tensor<T, 4> o({s.B, s.T, s.Hq, s.Dv});
    attn::ref<T>(q, k, v, o, {}, s.m);
    return o;
  }

  template <class P>
  tensor<T, 4> run(const P& policy, attn::kv_cache<T>& cache) const {
    auto o = test::nan_tensor<T, 4>({s.B, s.T, s.Hq, s.Dv});
    attn::forward(policy, q, k_new(), v_new(), o, cache);
    return o;
  }
  template <class P>
  tensor<T, 4> run(const P& policy) const {
    auto cache = make_cache();
    return run(policy, cache);
  }
};

// float: softmax weights and sums of up to a few hundred terms, rounding ~1e-6 relative; the fast
// exp2 adds ~2e-7. double: the fused and materialised kernels agree with the reference to ~1e-14.
template <class T>
constexpr double ratio = std::is_same_v<T, float> ? 2e-5 : 1e-11;
template <class T>
constexpr double atol = std::is_same_v<T, float> ? 1e-5 : 1e-12;

const shape shapes[] = {
    {1, 0, 1, 1, 1, 1, 8, 8},                 // one token
    {2, 0, 37, 4, 2, 2, 16, 16},              // GQA, odd length
    {1, 10, 50, 6, 3, 3, 20, 20},             // cache prefix, head dim not a lane multiple
    {1, 0, 130, 4, 4, 4, 64, 64},             // several key blocks
    {2, 5, 70, 8, 4, 2, 16, 32},              // two key heads per value head, Dv = 2 Dk (differential)
    {1, 0, 100, 4, 1, 1, 32, 32, {16, 0}},    // window
    {1, 30, 90, 2, 1, 1, 8, 8, {40, 4}},      // window + sink + prefix
    {1, 100, 1, 4, 1, 1, 32, 32, {24, 0}},    // decode with a window
    {1, 0, 200, 2, 2, 2, 24, 24, {1, 0}},     // window 1: each token sees itself only
    {2, 3, 150, 3, 3, 3, 12, 5, {70, 0}},     // window larger than a block, tiny Dv
};

template <class T, class P>
void check_against_ref(const P& policy, const shape& s, double range) {
  const problem<T> p(s, range, 7);
  SEQMIX_CHECK_CLOSE(p.run(policy), p.expected(), atol<T>, ratio<T>);
}

}  // namespace

TEST_CASE("simd::exp2_bounded: relative error and underflow", "[attention][simd]") {
  constexpr index_t L = simd::lanes<float>;
  double worst = 0;
  for (double x = -126.0; x <= 64.0; x += 0.001953) {
    alignas(64) float in[L], out[L];
    for (index_t i = 0; i < L; ++i) in[i] = float(x + 1e-4 * double(i));
    simd::store(out, simd::exp2_bounded(simd::load(in)));
    for (index_t i = 0; i < L; ++i) worst = std::max(worst, std::abs(double(out[i]) / std::exp2(double(in[i])) - 1));
  }
  CHECK(worst < 3e-7);  // the polynomial's 1.6e-7 plus the rounding of the scaling
  alignas(64) float in[L], out[L];
  for (index_t i = 0; i < L; ++i) in[i] = i % 3 == 0 ? -130.f : i % 3 == 1 ? -1e30f : std::numeric_limits<float>::lowest();
  simd::store(out, simd::exp2_bounded(simd::load(in)));
  for (index_t i = 0; i < L; ++i) CHECK((out[i] >= 0.f && out[i] < 1e-37f));  // 0 or a denormal below 2^-126
}

TEMPLATE_TEST_CASE("attention policies match the reference", "[attention][op]", float, double) {
  // Sections outermost: Catch2 enters a section once per run, so one inside the loops would only
  // ever see the first shape.
  auto every_shape = [](auto check) {
    for (const double range : {1.0, 3.0})
      for (const shape& s : shapes) {
        INFO(s << " range=" << range);
        check(s, range);
      }
  };
  auto with = [&](const auto& policy) {
    every_shape([&](const shape& s, double range) { check_against_ref<TestType>(policy, s, range); });
  };
  SECTION("recurrent") { with(exec::recurrent{}); }
  SECTION("chunkwise<16>") { with(exec::chunkwise<16>{}); }
  SECTION("chunkwise<64>") { with(exec::chunkwise<64>{}); }
  SECTION("parallel") { with(exec::parallel{}); }
  SECTION("two threads") { with(exec::chunkwise<32>{2}); }
  SECTION("more threads than heads") {  // linear caches split the queries by causal cost
    with(exec::chunkwise<16>{5});
    with(exec::recurrent{3});
    with(exec::parallel{4});
  }
}

TEST_CASE("attention policies agree with each other", "[attention][op]") {
  for (const shape& s : {shape{2, 17, 200, 8, 2, 2, 64, 64}, shape{1, 0, 300, 4, 2, 2, 32, 32, {100, 3}}}) {
    INFO(s);
    const problem<float> p(s, 2.0, 11);
    const auto o_r = p.run(exec::recurrent{}), o_c = p.run(exec::chunkwise<64>{}), o_p = p.run(exec::parallel{});
    SEQMIX_CHECK_CLOSE(o_c, o_r, 1e-5, 2e-5);
    SEQMIX_CHECK_CLOSE(o_p, o_r, 1e-5, 2e-5);
  }
}

TEST_CASE("attention: the cache after a call holds every key and value", "[attention][op][cache]") {
  const problem<float> p({2, 20, 45, 4, 2, 2, 16, 24}, 1.0, 3);
  auto cache = p.make_cache(100);
  p.run(exec::chunkwise<16>{}, cache);
  CHECK(cache.length() == 65);
  SEQMIX_CHECK_CLOSE(cache.keys(), p.k, 0.0, 0.0);
  SEQMIX_CHECK_CLOSE(cache.values(), p.v, 0.0, 0.0);
  // Rolling back and running the same tokens again gives the same cache.
  cache.truncate(20);
  p.run(exec::recurrent{}, cache);
  SEQMIX_CHECK_CLOSE(cache.keys(), p.k, 0.0, 0.0);
  REQUIRE_THROWS_WITH(cache.truncate(66), Catch::Contains("past the length 65"));
}

TEST_CASE("attention: attend() on keys already cached (shared KV) matches the reference", "[attention][op]") {
  for (const shape& s : {shape{2, 30, 45, 4, 2, 2, 16, 24}, shape{1, 200, 40, 4, 1, 1, 32, 32, {24, 2}}}) {
    INFO(s);
    const problem<float> p(s, 2.0, 19);
    const auto want = p.expected();
    auto check = [&](auto policy) {
      attn::kv_cache<float> cache({s.B, s.Hk, s.Dk, s.Hv, s.Dv}, 10000, s.m);
      cache.append(p.k, p.v);
      auto o = test::nan_tensor<float, 4>({s.B, s.T, s.Hq, s.Dv});
      attn::attend(policy, p.q, o, cache);
      SEQMIX_CHECK_CLOSE(o, want, 1e-5, 2e-5);
      CHECK(cache.length() == s.P + s.T);
    };
    check(exec::recurrent{});
    check(exec::chunkwise<16>{2});
    check(exec::parallel{});
  }
  attn::kv_cache<float> cache({1, 1, 8, 1, 8}, 100);
  tensor<float, 4> q({1, 3, 1, 8}), o({1, 3, 1, 8});
  REQUIRE_THROWS_WITH((attn::attend(exec::recurrent{}, q, o, cache)),
                      Catch::Contains("attending 3 queries needs as many cached positions, the cache holds 0"));
}

TEST_CASE("attention: prefill split anywhere equals one pass", "[attention][op]") {
  for (const attn::mask m : {attn::mask{}, attn::mask{24, 0}, attn::mask{50, 5}}) {
    const shape s{1, 0, 150, 4, 2, 2, 16, 16, m};
    const problem<double> p(s, 2.0, 5);
    const auto o_full = p.run(exec::chunkwise<32>{});
    for (const index_t cut : {1, 63, 64, 65, 149}) {
      INFO("window " << m.window << " sink " << m.sink << " cut at " << cut);
      auto cache = p.make_cache(1000, 16);
      auto o = test::nan_tensor<double, 4>(o_full.extents());
      auto part = [&](auto policy, index_t t0, index_t n) {
        attn::forward(policy, p.q.view().subrange(1, t0, n), p.k.view().subrange(1, t0, n),
                                                p.v.view().subrange(1, t0, n), o.view().subrange(1, t0, n), cache);
      };
      part(exec::recurrent{}, 0, cut);
      part(exec::parallel{}, cut, s.T - cut);
      SEQMIX_CHECK_CLOSE(o, o_full, 1e-12, 1e-12);
      CHECK(cache.length() == s.T);
    }
  }
}

TEST_CASE("attention: a windowed cache is a ring of O(window) slots", "[attention][op][cache]") {
  const shape s{2, 0, 500, 4, 2, 2, 16, 16, {40, 3}};
  const problem<float> p(s, 2.0, 9);
  for (const index_t step : {1, 16, 64}) {
    INFO("step " << step);
    auto cache = p.make_cache(100000, step);
    CHECK(cache.is_ring());
    CHECK(cache.slots() <= 64 + (40 - 1 + step + 63) / 64 * 64);
    const auto o_c = p.run(exec::chunkwise<64>{2}, cache);
    SEQMIX_CHECK_CLOSE(o_c, p.expected(), 1e-5, 2e-5);
    // Kept: the sink and the newest positions; values as appended.
    const auto pos = cache.positions();
    REQUIRE(pos.size() >= 40 + 3);
    CHECK(pos[0] == 0);
    CHECK(pos.back() == s.T - 1);
    const auto kept = cache.keys();
    for (std::size_t i = 0; i < pos.size(); ++i)
      for (index_t h = 0; h < s.Hk; ++h)
        for (index_t d = 0; d < s.Dk; ++d) CHECK(kept(1, index_t(i), h, d) == p.k(1, pos[i], h, d));
  }
}

TEST_CASE("attention: T = 8192 with large logits stays finite and matches the reference", "[attention][op][long]") {
  // Every 7th query is ±r·sign(k_j) for a key j ≤ t whose entries are ±r, r = sqrt(80/32): its
  // score is exactly ±80 before the 1/sqrt(32) scale; the rest are uniform in [-r, r]. Checked
  // against the reference on the first and last 16 queries (the reference costs O(T²)), and
  // policies against each other everywhere.
  const double r = std::sqrt(80.0 / 32);
  for (const attn::mask m : {attn::mask{}, attn::mask{512, 0}}) {
    INFO("window " << m.window);
    const shape s{1, 0, 8192, 2, 1, 1, 32, 32, m};
    problem<float> p(s, r, 13);
    for (index_t t = 0; t < s.T; t += 7) {
      const index_t j = t - (t / 7) % std::min<index_t>(t + 1, m.window > 0 ? m.window : 300);
      const float sign = (t / 7) % 2 ? 1.f : -1.f;
      for (index_t d = 0; d < s.Dk; ++d) {
        p.k(0, j, 0, d) = float((d * 37 + j) % 3 ? r : -r);
        for (index_t h = 0; h < s.Hq; ++h) p.q(0, t, h, d) = sign * p.k(0, j, 0, d);
      }
    }
    const auto o_c = p.run(exec::chunkwise<64>{});
    const auto o_r = p.run(exec::recurrent{2});
    REQUIRE(std::all_of(o_c.data(), o_c.data() + o_c.size(), [](float x) { return std::isfinite(x); }));
    SEQMIX_CHECK_CLOSE(o_c, o_r, 1e-5, 2e-5);
    for (const index_t t0 : {index_t(0), s.T - 16}) {
      const index_t S = t0 + 16;
      tensor<float, 4> want({1, 16, s.Hq, s.Dv});
      attn::ref<float>(p.q.view().subrange(1, t0, 16), p.k.view().subrange(1, 0, S), p.v.view().subrange(1, 0, S), want,
                       {}, m);
      const tensor<float, 4> got(o_c.view().subrange(1, t0, 16));
      SEQMIX_CHECK_CLOSE(got, want, 1e-5, 2e-5);
    }
  }
}

TEST_CASE("attention: a running max that moves on every key tile matches the reference", "[attention][op]") {
  // Scores rise by 9 log2 units every 32 keys (more than the lazy max's slack of 8), so the max
  // moves on every key tile, also on the second tile of a P·V pass, whose first tile's p must be
  // rescaled (2^-9 relative weight: a missing or doubled rescale shows at 1e-3).
  const shape s{1, 40, 300, 4, 1, 1, 1, 8};
  problem<float> p(s, 1.0, 23);
  const double step = 9.0 * std::log(2.0);
  for (index_t j = 0; j < s.P + s.T; ++j) p.k(0, j, 0, 0) = float(step * double(j / 32) + 0.5 * p.k(0, j, 0, 0));
  for (index_t t = 0; t < s.T; ++t)
    for (index_t h = 0; h < s.Hq; ++h) p.q(0, t, h, 0) = 1.f + 0.05f * p.q(0, t, h, 0);
  const auto want = p.expected();
  SEQMIX_CHECK_CLOSE(p.run(exec::chunkwise<64>{}), want, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(p.run(exec::chunkwise<16>{}), want, 1e-5, 2e-5);
  SEQMIX_CHECK_CLOSE(p.run(exec::recurrent{}), want, 1e-5, 2e-5);
}

TEST_CASE("attention: strided q, k, v give the same result", "[attention][op]") {
  // q, k, v interleaved in one fused projection buffer [B, T, H, 3D].
  const shape s{2, 0, 45, 3, 3, 3, 16, 16};
  const problem<float> p(s, 1.0, 21);
  tensor<float, 4> fused({s.B, s.T, s.Hq, 3 * s.Dk});
  for (index_t b = 0; b < s.B; ++b)
    for (index_t t = 0; t < s.T; ++t)
      for (index_t h = 0; h < s.Hq; ++h)
        for (index_t i = 0; i < s.Dk; ++i)
          fused(b, t, h, i) = p.q(b, t, h, i), fused(b, t, h, s.Dk + i) = p.k(b, t, h, i),
                       fused(b, t, h, 2 * s.Dk + i) = p.v(b, t, h, i);
  auto part = [&](index_t n) { return tensor_view<const float, 4>(fused.view().subrange(3, n * s.Dk, s.Dk)); };
  const auto want = p.expected();
  auto o = test::nan_tensor<float, 4>({s.B, s.T, s.Hq, s.Dv});
  auto c1 = p.make_cache();
  attn::forward(exec::chunkwise<16>{}, part(0), part(1), part(2), o, c1);
  SEQMIX_CHECK_CLOSE(o, want, 1e-5, 2e-5);
  auto c2 = p.make_cache();
  attn::forward(exec::parallel{}, part(0), part(1), part(2), o, c2);
  SEQMIX_CHECK_CLOSE(o, want, 1e-5, 2e-5);
}

TEST_CASE("attention: bad shapes and a full cache raise seqmix::error", "[attention][op][errors]") {
  attn::kv_cache<float> cache({2, 2, 16, 2, 16}, 10);
  tensor<float, 4> q({2, 4, 4, 16}), k({2, 4, 2, 16}), v({2, 4, 2, 16}), o({2, 4, 4, 16});
  tensor<float, 4> k_bad({2, 4, 3, 16}), o_bad({2, 4, 4, 8}), q_bad({2, 4, 3, 16});
  REQUIRE_THROWS_WITH((attn::forward(exec::recurrent{}, q, k_bad, v, o, cache)),
                      Catch::Contains("attention: k has shape [2, 4, 3, 16], expected [2, 4, 2, 16]"));
  REQUIRE_THROWS_WITH((attn::forward(exec::parallel{}, q, k, v, o_bad, cache)),
                      Catch::Contains("attention: o has shape [2, 4, 4, 8], expected [2, 4, 4, 16]"));
  REQUIRE_THROWS_WITH((attn::forward(exec::chunkwise<64>{}, q_bad, k, v, o, cache)),
                      Catch::Contains("multiple of key heads"));
  attn::forward(exec::chunkwise<64>{}, q, k, v, o, cache);
  attn::forward(exec::chunkwise<64>{}, q, k, v, o, cache);
  CHECK(cache.length() == 8);
  tensor<float, 4> q0({2, 0, 4, 16}), k0({2, 0, 2, 16}), v0({2, 0, 2, 16}), o0({2, 0, 4, 16});
  attn::forward(exec::recurrent{}, q0, k0, v0, o0, cache);  // no tokens: nothing happens
  attn::forward(exec::parallel{}, q0, k0, v0, o0, cache);
  CHECK(cache.length() == 8);
  REQUIRE_THROWS_WITH((attn::forward(exec::recurrent{}, q, k, v, o, cache)),
                      Catch::Contains("KV cache capacity 10 exceeded (holds 8 tokens, appending 4)"));
  CHECK(cache.length() == 8);
}
