// Softmax and differential attention ops: the op suite (support/op_suite.hpp) on both adapters
// (GQA, windows, sinks, cache prefixes, Dk != Dv, two key heads per value head; differential
// component heads on shared key heads); more threads than heads, windowed splits and agreement,
// the cache's contents and ring buffer, attend() on a shared cache, long contexts with large
// logits, a running max that moves on every tile, exp2_bounded, the learned λ, and errors.
#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/kernels/attention/differential.hpp>
#include <seqmix/kernels/attention/ref.hpp>
#include <seqmix/simd/softmax.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <type_traits>

#include "support/op_suite.hpp"

using namespace seqmix;
namespace attn = seqmix::kernels::attention;

namespace {

/// What both attention adapters share: the inputs are q, k, v of the L new tokens (views into the
/// data's q and its k, v of all P + L positions, the P of the cache prefix first); the state is the
/// KV cache, holding the prefix at the start; the reference reads every key up to the last query's
/// position and appends the new ones to the cache as the op does. `extra` is the case. Store: the
/// cache's storage type (T, or bf16 for T = float).
template <class T, class Data, class Case, class Store = T>
struct cache_op : test::op_base<T, Data, std::array<tensor_view<const T, 4>, 3>, 4, attn::kv_cache<Store>, Case> {
  using typename cache_op::op_base::problem, typename cache_op::op_base::result;
  // With more threads than (batch, value head) tasks, a linear cache's queries are split into parts
  // of equal causal cost (kernels/attention/common.hpp) whose cuts are not tile boundaries, so the
  // online softmax may round differently: on AVX2, in double, 1 ulp apart from one thread.
  static constexpr bool threads_bit_identical = false;
  static problem inputs_of(std::shared_ptr<Data> d, const Case& c) {
    return {d, {d->q, d->k.view().subrange(1, c.P, c.L), d->v.view().subrange(1, c.P, c.L)}, c};
  }
  static problem fused(problem p) { return test::fused(p, [](auto& in) { return std::tie(in[0], in[1], in[2]); }); }
  /// Outputs [B, L, heads, dv] and a cache of the given shape holding the prefix.
  static result start_with(const problem& p, index_t heads, index_t dv, const typename attn::kv_cache<Store>::shape& s,
                           index_t capacity, attn::mask m = {}, index_t step = attn::block_keys) {
    const Case& c = p.extra;
    result r{test::nan_tensor<T, 4>({c.B, c.L, heads, dv}),
             attn::kv_cache<Store>(s, capacity > 0 ? capacity : c.P + c.L, m, step)};
    r.state.append(p.d->k.view().subrange(1, 0, c.P), p.d->v.view().subrange(1, 0, c.P));
    return r;
  }
  /// Keys and values of every position up to the last of the tokens `t`.
  static auto keys_values(const problem& p, const test::tokens& t) {
    const index_t S = p.extra.P + t.t0 + t.n;
    return std::pair{p.d->k.view().subrange(1, 0, S), p.d->v.view().subrange(1, 0, S)};
  }
};

/// q uniform in [-range, range] [B,L,Hq,Dk]; k [B,P+L,Hk,Dk] the same, v [B,P+L,Hv,Dv] in [-1, 1].
/// The cache has capacity P + L unless given, the mask and `step`. `large_logits`: every 7th query
/// is ±sign(k_j)·range for a key j it sees whose entries are ±range, so its score is ±Dk·range²
/// before the 1/sqrt(Dk) scale.
struct attention_case {
  index_t B, P, L, Hq, Hk, Hv, Dk, Dv;  // L: new tokens
  attn::mask m{};
  double range = 1;
  index_t capacity = 0, step = attn::block_keys;
  bool large_logits = false;
  friend std::ostream& operator<<(std::ostream& os, const attention_case& c) {
    return test::print_fields(os, "B, P, L, Hq, Hk, Hv, Dk, Dv, window, sink, range, capacity, step, large_logits", c.B,
                              c.P, c.L, c.Hq, c.Hk, c.Hv, c.Dk, c.Dv, c.m.window, c.m.sink, c.range, c.capacity, c.step,
                              c.large_logits);
  }
};

template <class T>
struct qkv {
  tensor<T, 4> q, k, v;
};

/// S = bf16: the cache stores bf16, and make() rounds k and v to bf16 values, so the reference on
/// the same k and v is the exact attention of what the cache holds.
template <class T, class S = T>
struct attention_op : cache_op<T, qkv<T>, attention_case, S> {
  using typename attention_op::cache_op::problem, typename attention_op::cache_op::result;
  using case_type = attention_case;

  static std::vector<case_type> cases() {
    const case_type shapes[] = {
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
    std::vector<case_type> all;
    for (const double range : {1.0, 3.0})
      for (case_type c : shapes) c.range = range, all.push_back(c);
    return all;
  }
  static constexpr test::special_cases<case_type> special{.agree = {2, 17, 200, 8, 2, 2, 64, 64, {}, 2},
                                                         .split = {1, 0, 150, 4, 2, 2, 16, 16, {}, 2, 1000, 16},
                                                         .fused = {2, 0, 45, 3, 3, 3, 16, 16},
                                                         .empty = {1, 3, 0, 4, 2, 2, 8, 8}};
  static case_type long_case(index_t tokens, attn::mask m = {}) {
    return {1, 0, tokens, 2, 1, 1, 32, 32, m, std::sqrt(80.0 / 32), 0, attn::block_keys, true};
  }
  static constexpr index_t long_tokens = 1024, parallel_tokens = 1024;

  static problem make(const case_type& c, unsigned seed) {
    auto d =
        std::make_shared<qkv<T>>(qkv<T>{uniform_tensor<T, 4>({c.B, c.L, c.Hq, c.Dk}, -c.range, c.range, seed),
                                        uniform_tensor<T, 4>({c.B, c.P + c.L, c.Hk, c.Dk}, -c.range, c.range, seed + 1),
                                        uniform_tensor<T, 4>({c.B, c.P + c.L, c.Hv, c.Dv}, -1, 1, seed + 2)});
    if (c.large_logits)
      for (index_t t = 0; t < c.L; t += 7) {
        const index_t j = t - (t / 7) % std::min<index_t>(t + 1, c.m.window > 0 ? c.m.window : 300);
        const T sign = (t / 7) % 2 ? 1 : -1, r = T(c.range);
        for (index_t e = 0; e < c.Dk; ++e) {
          d->k(0, c.P + j, 0, e) = (e * 37 + j) % 3 ? r : -r;
          for (index_t h = 0; h < c.Hq; ++h) d->q(0, t, h, e) = sign * d->k(0, c.P + j, 0, e);
        }
      }
    if constexpr (std::is_same_v<S, bf16>)
      for (auto* x : {&d->k, &d->v}) std::transform(x->data(), x->data() + x->size(), x->data(), [](T a) { return to_float(bf16(a)); });
    return attention_op::inputs_of(d, c);
  }
  static index_t reduction(const problem& p) { return p.extra.Dk + p.extra.P + p.extra.L; }
  static result start(const problem& p) {
    const case_type& c = p.extra;
    return attention_op::start_with(p, c.Hq, c.Dv, {c.B, c.Hk, c.Dk, c.Hv, c.Dv}, c.capacity, c.m, c.step);
  }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const test::tokens& t) {
    const auto& [q, k, v] = p.in;
    if constexpr (std::is_same_v<P, test::reference>) {
      const auto [keys, values] = attention_op::keys_values(p, t);
      attn::ref<T>(t(q), keys, values, t(r.o), {}, p.extra.m);
      r.state.append(t(k), t(v));
    } else {
      attn::forward(policy, t(q), t(k), t(v), t(r.o), r.state);
    }
  }
};

/// Differential attention: q [B,L,2H,d] and k [B,P+L,2Hkv,d] in [-range, range], v [B,P+L,Hkv,2d]
/// in [-1, 1], λ vectors [d] in [-0.3, 0.3], subln [2d] in [0.5, 1.5].
struct diff_case {
  index_t B, P, L, H, Hkv, d;  // L: new tokens
  double range = 2;
  SEQMIX_TEST_PRINTABLE(diff_case, B, P, L, H, Hkv, d, range)
};

template <class T>
struct diff_data {
  tensor<T, 4> q, k, v;
  tensor<T, 1> lq1, lk1, lq2, lk2, subln;
  double lambda_init = attn::diff_lambda_init(3);
  attn::diff_params<T> params() const { return {lq1, lk1, lq2, lk2, subln, lambda_init, 1e-5}; }
};

template <class T>
struct diff_attn_op : cache_op<T, diff_data<T>, diff_case> {
  using typename diff_attn_op::cache_op::problem, typename diff_attn_op::cache_op::result;
  using case_type = diff_case;

  static std::vector<case_type> cases() {
    return {{1, 0, 1, 1, 1, 8},    {2, 0, 37, 2, 2, 16},  {2, 0, 48, 4, 2, 16},
            {1, 35, 25, 2, 1, 16}, {2, 100, 1, 2, 1, 32}, {1, 0, 70, 3, 1, 10}};
  }
  static constexpr test::special_cases<case_type> special{.agree = {2, 17, 150, 4, 2, 32},
                                                          .split = {1, 0, 90, 2, 1, 16},
                                                          .fused = {2, 0, 45, 2, 2, 16},
                                                          .empty = {1, 3, 0, 2, 1, 8}};
  // Scores up to ±range²·d before the 1/sqrt(d) scale: ±256 / 4 = ±64.
  static case_type long_case(index_t tokens) { return {1, 0, tokens, 2, 1, 16, 4}; }
  static constexpr index_t long_tokens = 512, parallel_tokens = 512;

  static problem make(const case_type& c, unsigned seed) {
    auto lambda = [&](unsigned i) { return uniform_tensor<T, 1>({c.d}, -0.3, 0.3, seed + 3 + i); };
    auto d = std::make_shared<diff_data<T>>(diff_data<T>{
        uniform_tensor<T, 4>({c.B, c.L, 2 * c.H, c.d}, -c.range, c.range, seed),
        uniform_tensor<T, 4>({c.B, c.P + c.L, 2 * c.Hkv, c.d}, -c.range, c.range, seed + 1),
        uniform_tensor<T, 4>({c.B, c.P + c.L, c.Hkv, 2 * c.d}, -1, 1, seed + 2), lambda(0), lambda(1), lambda(2),
        lambda(3), uniform_tensor<T, 1>({2 * c.d}, 0.5, 1.5, seed + 7)});
    return diff_attn_op::inputs_of(d, c);
  }
  static index_t reduction(const problem& p) { return p.extra.d + p.extra.P + p.extra.L; }
  static result start(const problem& p) {
    const case_type& c = p.extra;
    return diff_attn_op::start_with(p, c.H, 2 * c.d, {c.B, 2 * c.Hkv, c.d, c.Hkv, 2 * c.d}, 0);
  }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const test::tokens& t) {
    const auto& [q, k, v] = p.in;
    const diff_data<T>& d = *p.d;
    if constexpr (std::is_same_v<P, test::reference>) {
      const auto [keys, values] = diff_attn_op::keys_values(p, t);
      attn::diff_ref<T>(t(q), keys, values, d.subln, t(r.o),
                        attn::diff_lambda<T>(d.lq1, d.lk1, d.lq2, d.lk2, d.lambda_init), d.lambda_init, 1e-5);
      r.state.append(t(k), t(v));
    } else {
      attn::differential<P, T>(policy, t(q), t(k), t(v), t(r.o), r.state, d.params());
    }
  }
};

using op = attention_op<float>;
using suite = test::op_suite<op>;
using op_bf16 = attention_op<float, bf16>;
using suite_bf16 = test::op_suite<op_bf16>;

/// Bound of |o_bf16 − o_f32| for query (b, t, h) of problem p (k, v as given, not rounded): bf16
/// rounding moves each key and value element by at most u = 2^-8 of itself, so every score
/// s_j = scale·q·k_j by at most Δ = scale·u·max_j Σ_d |q_d·k_jd| (over the keys the query may
/// see); each softmax weight then moves by at most a factor e^(±2Δ), so Σ_j p_j·v_j by at most
/// max|v|·(e^(2Δ) − 1), and the rounded values add u·max|v|.
double bf16_bound(const op::problem& p, index_t b, index_t t, index_t h) {
  const auto& c = p.extra;
  const double u = 0x1p-8, scale = 1 / std::sqrt(double(c.Dk));
  const index_t kh = h / (c.Hq / c.Hk), vh = h / (c.Hq / c.Hv);
  double dot = 0, vmax = 0;
  for (index_t j = 0; j <= c.P + t; ++j) {
    double a = 0;
    for (index_t d = 0; d < c.Dk; ++d) a += std::abs(double(p.in[0](b, t, h, d)) * double(p.d->k(b, j, kh, d)));
    dot = std::max(dot, a);
    for (index_t e = 0; e < c.Dv; ++e) vmax = std::max(vmax, std::abs(double(p.d->v(b, j, vh, e))));
  }
  return vmax * (std::expm1(2 * scale * u * dot) + u);
}

/// The op with a bf16 cache against the op with a float cache on the same (unrounded) inputs: every
/// output within bf16_bound plus twice the float tolerance (each is within it of its exact value).
/// Returns the largest error in units of u·max|v| (u = 2^-8).
template <class P>
double check_bf16_against_f32(const P& policy, const op::problem& p) {
  const auto& c = p.extra;
  attn::kv_cache<float> cf({c.B, c.Hk, c.Dk, c.Hv, c.Dv}, c.capacity > 0 ? c.capacity : c.P + c.L, c.m, c.step);
  attn::kv_cache<bf16> cb({c.B, c.Hk, c.Dk, c.Hv, c.Dv}, c.capacity > 0 ? c.capacity : c.P + c.L, c.m, c.step);
  for (auto* cache : {&cf}) cache->append(p.d->k.view().subrange(1, 0, c.P), p.d->v.view().subrange(1, 0, c.P));
  cb.append(p.d->k.view().subrange(1, 0, c.P), p.d->v.view().subrange(1, 0, c.P));
  auto of = test::nan_tensor<float, 4>({c.B, c.L, c.Hq, c.Dv}), ob = test::nan_tensor<float, 4>({c.B, c.L, c.Hq, c.Dv});
  const auto& [q, k, v] = p.in;
  attn::forward(policy, q, k, v, of, cf);
  attn::forward(policy, q, k, v, ob, cb);
  REQUIRE(test::all_finite(ob));
  double worst = 0, vmax = 0;
  for (index_t i = 0; i < p.d->v.size(); ++i) vmax = std::max(vmax, std::abs(double(p.d->v.data()[i])));
  for (index_t b = 0; b < c.B; ++b)
    for (index_t t = 0; t < c.L; ++t)
      for (index_t h = 0; h < c.Hq; ++h) {
        const double bound = bf16_bound(p, b, t, h) + 2 * suite::tol(p);
        for (index_t e = 0; e < c.Dv; ++e) {
          const double err = std::abs(double(ob(b, t, h, e)) - double(of(b, t, h, e)));
          if (!(err <= bound)) FAIL_CHECK("b " << b << " t " << t << " h " << h << " e " << e << ": " << err << " > " << bound);
          worst = std::max(worst, err / (0x1p-8 * vmax));
        }
      }
  return worst;
}

}  // namespace

SEQMIX_OP_SUITE(attention_op, "attention", "[attention]")
SEQMIX_OP_SUITE(diff_attn_op, "diff_attn", "[diff_attn]")

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

TEMPLATE_TEST_CASE("attention: more threads than heads agree with one thread", "[attention][op]", float, double) {
  // Linear caches split the queries by causal cost when there are more threads than heads.
  using s = test::op_suite<attention_op<TestType>>;
  for (const auto& c : attention_op<TestType>::cases()) {
    INFO(c);
    const auto p = attention_op<TestType>::make(c, 7);
    s::check(s::run(exec::chunkwise<16>{5}, p), s::run(exec::chunkwise<16>{}, p), s::tol(p));
    s::check(s::run(exec::recurrent{3}, p), s::run(exec::recurrent{}, p), s::tol(p));
    s::check(s::run(exec::parallel{4}, p), s::run(exec::parallel{}, p), s::tol(p));
  }
}

TEST_CASE("attention: windows and sinks, policies agree and prefill splits anywhere", "[attention][op]") {
  suite::policies_agree({1, 0, 300, 4, 2, 2, 32, 32, {100, 3}, 2});
  for (const attn::mask m : {attn::mask{24, 0}, attn::mask{50, 5}}) {
    auto c = op::special.split;
    c.m = m;
    suite::splits(c);
  }
}

TEST_CASE("attention: the cache after a call holds every key and value", "[attention][op][cache]") {
  const auto p = op::make({2, 20, 45, 4, 2, 2, 16, 24, {}, 1, 100}, 3);
  auto r = op::start(p);
  op::run(exec::chunkwise<16>{}, p, r, test::tokens{0, 45});
  CHECK(r.state.length() == 65);
  SEQMIX_CHECK_IDENTICAL(r.state.keys(), p.d->k);
  SEQMIX_CHECK_IDENTICAL(r.state.values(), p.d->v);
  // Rolling back and running the same tokens again gives the same cache.
  r.state.truncate(20);
  op::run(exec::recurrent{}, p, r, test::tokens{0, 45});
  SEQMIX_CHECK_IDENTICAL(r.state.keys(), p.d->k);
  REQUIRE_THROWS_WITH(r.state.truncate(66), Catch::Contains("past the length 65"));
}

TEST_CASE("attention: attend() on keys already cached (shared KV) matches the reference", "[attention][op]") {
  for (const op::case_type& c :
       {op::case_type{2, 30, 45, 4, 2, 2, 16, 24, {}, 2}, {1, 200, 40, 4, 1, 1, 32, 32, {24, 2}, 2}}) {
    INFO(c);
    const auto p = op::make(c, 19);
    const auto want = suite::run(test::reference{}, p);
    auto check = [&](auto policy) {
      attn::kv_cache<float> cache({c.B, c.Hk, c.Dk, c.Hv, c.Dv}, 10000, c.m);
      cache.append(p.d->k, p.d->v);
      auto o = test::nan_tensor<float, 4>({c.B, c.L, c.Hq, c.Dv});
      attn::attend(policy, p.in[0], o, cache);
      SEQMIX_CHECK_WITHIN(o, want.o, suite::tol(p));
      CHECK(cache.length() == c.P + c.L);
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

TEST_CASE("attention: a windowed cache is a ring of O(window) slots", "[attention][op][cache]") {
  for (const index_t step : {1, 16, 64}) {
    INFO("step " << step);
    const auto p = op::make({2, 0, 500, 4, 2, 2, 16, 16, {40, 3}, 2, 100000, step}, 9);
    auto r = op::start(p);
    CHECK(r.state.is_ring());
    CHECK(r.state.slots() <= 64 + (40 - 1 + step + 63) / 64 * 64);
    op::run(exec::chunkwise<64>{2}, p, r, test::tokens{0, 500});
    SEQMIX_CHECK_WITHIN(r.o, suite::run(test::reference{}, p).o, suite::tol(p));
    // Kept: the sink and the newest positions; values as appended.
    const auto pos = r.state.positions();
    REQUIRE(pos.size() >= 40 + 3);
    CHECK(pos[0] == 0);
    CHECK(pos.back() == 500 - 1);
    const auto kept = r.state.keys();
    for (std::size_t i = 0; i < pos.size(); ++i)
      for (index_t h = 0; h < 2; ++h)
        for (index_t d = 0; d < 16; ++d) CHECK(kept(1, index_t(i), h, d) == p.d->k(1, pos[i], h, d));
  }
}

TEST_CASE("attention: set_step grows a ring for a long shared call and shrinks it back", "[attention][op][cache]") {
  // A producer appends 300 tokens in one call, a reader then attends all 300 from the cache
  // (Hymba's KV sharing): with the default step the ring has dropped the early windows and the
  // call is refused; after set_step(300) before the append it matches the reference. Shrinking
  // back keeps the newest window, and decoding on matches the reference still.
  const op::case_type c{1, 0, 300, 4, 2, 2, 16, 16, {40, 3}, 2, 100000};
  const auto p = op::make(c, 31);
  const auto want = suite::run(test::reference{}, p).o;
  auto o = test::nan_tensor<float, 4>({1, 300, 4, 16});
  attn::kv_cache<float> ring({1, 2, 16, 2, 16}, 100000, c.m);
  ring.append(p.d->k, p.d->v);
  REQUIRE_THROWS_WITH(attn::attend(exec::recurrent{}, p.in[0], o.view(), ring), Catch::Contains("no longer holds the keys"));
  attn::kv_cache<float> cache({1, 2, 16, 2, 16}, 100000, c.m);
  cache.append(p.d->k.view().subrange(1, 0, 50), p.d->v.view().subrange(1, 0, 50));
  const auto before = cache.slots();
  cache.set_step(250);  // grows, keeping the 50 positions
  CHECK(cache.slots() > before);
  cache.append(p.d->k.view().subrange(1, 50, 250), p.d->v.view().subrange(1, 50, 250));
  auto check = [&](const auto& policy) {
    o = test::nan_tensor<float, 4>({1, 300, 4, 16});
    attn::attend(policy, p.in[0], o.view(), cache);
    SEQMIX_CHECK_WITHIN(o, want, suite::tol(p));
  };
  check(exec::recurrent{});
  check(exec::chunkwise<64>{2});
  cache.set_step(1);  // shrinks to the window: the newest 39 + 1 positions and the sink
  CHECK(cache.slots() == 64 + 64);  // one block for the 3 sink positions, one for the ring of 40
  const auto pos = cache.positions();
  REQUIRE(pos.size() >= 3 + 39);
  CHECK(pos[0] == 0);
  CHECK(pos.back() == 299);
  const auto kept = cache.keys(), vals = cache.values();
  for (std::size_t i = 0; i < pos.size(); ++i)
    for (index_t h = 0; h < 2; ++h)
      for (index_t d = 0; d < 16; ++d) {
        CHECK(kept(0, index_t(i), h, d) == p.d->k(0, pos[i], h, d));
        CHECK(vals(0, index_t(i), h, d) == p.d->v(0, pos[i], h, d));
      }
  // The last query again, from the shrunk cache.
  auto last = test::nan_tensor<float, 4>({1, 1, 4, 16});
  attn::attend(exec::recurrent{}, p.in[0].subrange(1, 299, 1), last.view(), cache);
  const tensor<float, 4> want_last(want.view().subrange(1, 299, 1));
  SEQMIX_CHECK_WITHIN(last, want_last, suite::tol(p));
}

TEST_CASE("attention: T = 8192 with large logits stays finite and matches the reference", "[attention][op][long]") {
  // Scores of ±80 before the 1/sqrt(32) scale (attention_op::long_case). Checked against the
  // reference on the first and last 16 queries (the reference costs O(T²)), and policies against
  // each other everywhere.
  for (const attn::mask m : {attn::mask{}, attn::mask{512, 0}}) {
    INFO("window " << m.window);
    const auto p = op::make(op::long_case(8192, m), 13);
    const auto o_c = suite::run(exec::chunkwise<64>{}, p).o;
    const auto o_r = suite::run(exec::recurrent{2}, p).o;
    REQUIRE(test::all_finite(o_c));
    SEQMIX_CHECK_WITHIN(o_c, o_r, suite::tol(p));
    for (const index_t t0 : {index_t(0), index_t(8192 - 16)}) {
      const index_t S = t0 + 16;
      tensor<float, 4> want({1, 16, 2, 32});
      attn::ref<float>(p.in[0].subrange(1, t0, 16), p.d->k.view().subrange(1, 0, S), p.d->v.view().subrange(1, 0, S), want,
                       {}, m);
      const tensor<float, 4> got(o_c.view().subrange(1, t0, 16));
      SEQMIX_CHECK_WITHIN(got, want, test::tolerance<float>(double(p.extra.Dk + S)));
    }
  }
}

TEST_CASE("attention: a running max that moves on every key tile matches the reference", "[attention][op]") {
  // Scores rise by 9 log2 units every 32 keys (more than the lazy max's slack of 8), so the max
  // moves on every key tile, also on the second tile of a P·V pass, whose first tile's p must be
  // rescaled (2^-9 relative weight: a missing or doubled rescale shows at 1e-3).
  const auto p = op::make({1, 40, 300, 4, 1, 1, 1, 8}, 23);
  const double step = 9.0 * std::log(2.0);
  for (index_t j = 0; j < 340; ++j) p.d->k(0, j, 0, 0) = float(step * double(j / 32) + 0.5 * p.d->k(0, j, 0, 0));
  for (index_t t = 0; t < 300; ++t)
    for (index_t h = 0; h < 4; ++h) p.d->q(0, t, h, 0) = 1.f + 0.05f * p.d->q(0, t, h, 0);
  suite::check_against_reference(exec::chunkwise<64>{}, p);
  suite::check_against_reference(exec::chunkwise<16>{}, p);
  suite::check_against_reference(exec::recurrent{}, p);
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

TEST_CASE("diff_attn: lambda re-parameterisation and lambda_init", "[diff_attn][op]") {
  const auto p = diff_attn_op<double>::make({1, 0, 4, 1, 1, 8}, 3);
  const auto& d = *p.d;
  double a = 0, b = 0;
  for (index_t i = 0; i < 8; ++i) a += d.lq1(i) * d.lk1(i), b += d.lq2(i) * d.lk2(i);
  CHECK(d.params().lambda() == Approx(std::exp(a) - std::exp(b) + d.lambda_init).epsilon(test::tolerance<double>(8)));
  CHECK(attn::diff_lambda_init(0) == Approx(0.2));
  CHECK(attn::diff_lambda_init(4) == Approx(0.8 - 0.6 * std::exp(-1.2)));
}

TEST_CASE("diff_attn: bad shapes raise seqmix::error", "[diff_attn][op][errors]") {
  const auto p = diff_attn_op<float>::make({1, 0, 4, 2, 1, 8}, 3);
  attn::kv_cache<float> cache({1, 2, 8, 1, 16}, 10);
  tensor<float, 4> o_bad({1, 4, 2, 8}), q_odd({1, 4, 3, 8});
  REQUIRE_THROWS_WITH((attn::differential<exec::recurrent, float>({}, p.in[0], p.in[1], p.in[2], o_bad, cache, p.d->params())),
                      Catch::Contains("diff_attn: o has shape [1, 4, 2, 8], expected [1, 4, 2, 16]"));
  tensor<float, 4> o({1, 4, 1, 16});
  REQUIRE_THROWS_WITH((attn::differential<exec::recurrent, float>({}, q_odd, p.in[1], p.in[2], o, cache, p.d->params())),
                      Catch::Contains("even number of component heads"));
}

// ---- bf16 KV cache: kv_cache<bf16> stores keys and values rounded to bf16, the kernels widen them ----

TEST_CASE("attention, bf16 cache: policies match the reference on bf16 keys and values", "[attention][op][bf16]") {
  suite_bf16::against_reference();
}

TEST_CASE("attention, bf16 cache: policies agree, splits, fused inputs, empty, long", "[attention][op][bf16]") {
  suite_bf16::policies_agree();
  suite_bf16::splits();  // includes decode token by token after a prefill
  suite_bf16::fused();
  suite_bf16::empty();
  suite_bf16::long_sequences();
}

TEST_CASE("attention, bf16 cache: within the bound of bf16 rounding of the float cache", "[attention][op][bf16]") {
  for (const auto& c : op::cases()) {
    INFO(c);
    const auto p = op::make(c, 7);
    check_bf16_against_f32(exec::recurrent{}, p);
    check_bf16_against_f32(exec::chunkwise<16>{}, p);
    check_bf16_against_f32(exec::parallel{2}, p);
  }
  // A ring (window and sink, capacity far beyond it) and a decode after a long prefill.
  for (const index_t step : {1, 64}) {
    const op::case_type c{2, 0, 500, 4, 2, 2, 16, 16, {40, 3}, 2, 100000, step};
    INFO(c);
    check_bf16_against_f32(exec::chunkwise<64>{2}, op::make(c, 9));
  }
  const op::case_type c{1, 1000, 20, 8, 2, 2, 64, 64};
  INFO(c);
  check_bf16_against_f32(exec::recurrent{}, op::make(c, 5));
}

TEST_CASE("attention, bf16 cache: decode after a prefill and through a ring", "[attention][op][bf16][cache]") {
  // Prefill 300 tokens (chunkwise), then decode 40 one by one, against the reference on the
  // rounded keys and values; the same through a ring of window 40 and sink 3.
  for (const attn::mask m : {attn::mask{}, attn::mask{40, 3}}) {
    INFO("window " << m.window);
    const auto p = op_bf16::make({2, 0, 340, 4, 2, 2, 32, 32, m, 2, 100000}, 17);
    auto r = op_bf16::start(p);
    CHECK(r.state.is_ring() == (m.window > 0));
    op_bf16::run(exec::chunkwise<64>{}, p, r, test::tokens{0, 300});
    for (index_t t = 300; t < 340; ++t) op_bf16::run(exec::recurrent{}, p, r, test::tokens{t, 1});
    SEQMIX_CHECK_WITHIN(r.o, suite_bf16::run(test::reference{}, p).o, suite_bf16::tol(p));
    if (m.window > 0) CHECK(r.state.slots() <= 64 + (40 - 1 + 64 + 63) / 64 * 64);
  }
}

TEST_CASE("attention, bf16 cache: contents are the rounded keys and values", "[attention][op][bf16][cache]") {
  const auto p = op::make({2, 20, 45, 4, 2, 2, 16, 24, {}, 3, 100}, 3);  // k, v not rounded
  attn::kv_cache<bf16> cache({2, 2, 16, 2, 24}, 100);
  cache.append(p.d->k.view().subrange(1, 0, 20), p.d->v.view().subrange(1, 0, 20));
  auto o = test::nan_tensor<float, 4>({2, 45, 4, 24});
  attn::forward(exec::chunkwise<16>{}, p.in[0], p.in[1], p.in[2], o, cache);
  REQUIRE(test::all_finite(o));
  auto rounded = [](const tensor<float, 4>& x) {
    tensor<float, 4> r(x.extents());
    std::transform(x.data(), x.data() + x.size(), r.data(), [](float a) { return to_float(bf16(a)); });
    return r;
  };
  CHECK(cache.length() == 65);
  SEQMIX_CHECK_IDENTICAL(cache.keys(), rounded(p.d->k));
  SEQMIX_CHECK_IDENTICAL(cache.values(), rounded(p.d->v));
  static_assert(std::is_same_v<decltype(cache.keys()), tensor<float, 4>>);
  // Rolled back and run again token by token: the same cache.
  cache.truncate(20);
  attn::forward(exec::recurrent{}, p.in[0], p.in[1], p.in[2], o, cache);
  SEQMIX_CHECK_IDENTICAL(cache.keys(), rounded(p.d->k));
  SEQMIX_CHECK_IDENTICAL(cache.values(), rounded(p.d->v));
  // set_step re-lays a ring and keeps the rounded values bit for bit.
  attn::kv_cache<bf16> ring({2, 2, 16, 2, 24}, 100000, {16, 2});
  ring.append(p.d->k, p.d->v);
  ring.set_step(100);
  const auto pos = ring.positions();
  const auto kept = ring.keys(), vals = ring.values(), rk = rounded(p.d->k), rv = rounded(p.d->v);
  REQUIRE(pos.size() >= 2 + 15);
  for (std::size_t i = 0; i < pos.size(); ++i)
    for (index_t h = 0; h < 2; ++h) {
      for (index_t d = 0; d < 16; ++d) CHECK(kept(1, index_t(i), h, d) == rk(1, pos[i], h, d));
      for (index_t d = 0; d < 24; ++d) CHECK(vals(1, index_t(i), h, d) == rv(1, pos[i], h, d));
    }
}

TEST_CASE("attention, bf16 cache: shape errors name the op", "[attention][op][bf16][errors]") {
  attn::kv_cache<bf16> cache({1, 2, 16, 2, 16}, 4);
  tensor<float, 4> q({1, 5, 4, 16}), k({1, 5, 2, 16}), v({1, 5, 2, 16}), o({1, 5, 4, 16}), k_bad({1, 5, 3, 16});
  REQUIRE_THROWS_WITH((attn::forward(exec::recurrent{}, q, k_bad, v, o, cache)),
                      Catch::Contains("attention: k has shape [1, 5, 3, 16], expected [1, 5, 2, 16]"));
  REQUIRE_THROWS_WITH((attn::forward(exec::chunkwise<64>{}, q, k, v, o, cache)),
                      Catch::Contains("KV cache capacity 4 exceeded (holds 0 tokens, appending 5)"));
}

TEST_CASE("attention, bf16 cache: error against the float cache (measurement)", "[.][bf16-error]") {
  // Decode after 4096 cached tokens, q, k, v uniform in [-1, 1]: the largest and the RMS difference
  // of the outputs, in units of u·max|v| (u = 2^-8), and the bound of bf16_bound.
  for (const index_t D : {64, 128}) {
    const op::case_type c{1, 4096, 16, 8, 2, 2, D, D};
    const auto p = op::make(c, 1);
    attn::kv_cache<float> cf({1, 2, D, 2, D}, 4096 + 16);
    attn::kv_cache<bf16> cb({1, 2, D, 2, D}, 4096 + 16);
    const auto kp = p.d->k.view().subrange(1, 0, 4096), vp = p.d->v.view().subrange(1, 0, 4096);
    cf.append(kp, vp), cb.append(kp, vp);
    tensor<float, 4> of({1, 16, 8, D}), ob({1, 16, 8, D});
    attn::forward(exec::recurrent{}, p.in[0], p.in[1], p.in[2], of, cf);
    attn::forward(exec::recurrent{}, p.in[0], p.in[1], p.in[2], ob, cb);
    double worst = 0, sq = 0, ref = 0, bound = 0;
    for (index_t i = 0; i < of.size(); ++i) {
      const double e = double(ob.data()[i]) - double(of.data()[i]);
      worst = std::max(worst, std::abs(e)), sq += e * e, ref += double(of.data()[i]) * double(of.data()[i]);
    }
    for (index_t t = 0; t < 16; ++t) bound = std::max(bound, bf16_bound(p, 0, t, 0));
    std::printf("D %ld: max |diff| %.3g (%.3g u), rms diff %.3g, rms(o) %.3g, relative rms %.3g (%.3g u); bound %.3g\n",
                long(D), worst, worst / 0x1p-8, std::sqrt(sq / double(of.size())), std::sqrt(ref / double(of.size())),
                std::sqrt(sq / ref), std::sqrt(sq / ref) / 0x1p-8, bound);
  }
}
