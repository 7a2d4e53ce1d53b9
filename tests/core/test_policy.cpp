// exec::automatic: for every op family, automatic gives bit-identical results to the policy the
// family's rule (policy/automatic.hpp) resolves to; the rules' measured choices; a caller's pool
// reaching the kernels; threads < 1 rejected at every op entry point.
#include <catch2/catch.hpp>

#include <seqmix/kernels/attention/attention.hpp>
#include <seqmix/kernels/delta_rule/delta_rule.hpp>
#include <seqmix/kernels/gla/gla.hpp>
#include <seqmix/kernels/rwkv7/rwkv7.hpp>
#include <seqmix/kernels/ssm/selective_scan.hpp>
#include <seqmix/kernels/ssm/ssd.hpp>
#include <seqmix/policy/automatic.hpp>
#include <seqmix/policy/threads.hpp>
#include <seqmix/tensor/random.hpp>

#include <cmath>
#include <cstring>
#include <utility>

using seqmix::index_t;
using seqmix::tensor;
using seqmix::uniform_tensor;
namespace exec = seqmix::exec;
namespace rules = seqmix::exec::rules;
namespace kernels = seqmix::kernels;

namespace {

template <class T, std::size_t R>
bool same_bits(const tensor<T, R>& a, const tensor<T, R>& b) {
  return a.extents() == b.extents() && std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.size())) == 0;
}

// Runs run(policy) with the concrete policy resolve() names, carrying threads and pool.
template <class Rule, class Run>
void as_resolved(const exec::automatic& a, const exec::shape& s, Run&& run) {
  switch (exec::resolve<Rule>(a, s)) {
    case exec::choice::recurrent: return run(exec::recurrent{.threads = a.threads, .pool = a.pool});
    case exec::choice::chunkwise: return run(exec::chunkwise<Rule::chunk>{.threads = a.threads, .pool = a.pool});
    case exec::choice::parallel: return run(exec::parallel{.threads = a.threads, .pool = a.pool});
  }
}

// Lengths on both sides of every rule's thresholds, and the automatic policies tried.
constexpr index_t lengths[] = {1, 3, 15, 16, 47, 48, 70, 200};
const exec::automatic autos[] = {exec::automatic{}, exec::automatic{.recurrent_below = 16},
                                 exec::automatic{.threads = 2, .recurrent_below = 64}};

// Every family's problem: run(policy) returns (output, final state) for fixed inputs.
struct gla_case {
  using rule = rules::gla;
  index_t B = 1, T, H = 2, K = 16, V = 8;
  tensor<float, 4> q = uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 1), k = uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 2),
                   v = uniform_tensor<float, 4>({B, T, H, V}, -1, 1, 3), g = uniform_tensor<float, 4>({B, T, H, K}, -0.3, 0, 4),
                   s0 = uniform_tensor<float, 4>({B, H, K, V}, -1, 1, 5);
  explicit gla_case(index_t t) : T(t) {}
  exec::shape shape() const { return {T, K, V}; }
  template <class P>
  std::pair<tensor<float, 4>, tensor<float, 4>> run(const P& p) const {
    tensor<float, 4> o({B, T, H, V}), s = s0;
    kernels::gla::forward(p, q, k, v, g, o, s);
    return {std::move(o), std::move(s)};
  }
};

struct delta_case {
  using rule = rules::delta_rule;
  index_t B = 1, T, H = 2, K = 16, V = 16;
  bool gated;
  tensor<float, 4> q, k, v, s0;
  tensor<float, 3> g, beta;
  delta_case(index_t t, bool gate)
      : T(t), gated(gate), q(unit_rows(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 1))),
        k(unit_rows(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 2))), v(uniform_tensor<float, 4>({B, T, H, V}, -1, 1, 3)),
        s0(uniform_tensor<float, 4>({B, H, K, V}, -1, 1, 4)), g(uniform_tensor<float, 3>({B, T, H}, -0.3, 0, 5)),
        beta(uniform_tensor<float, 3>({B, T, H}, 0, 1, 6)) {}
  static tensor<float, 4> unit_rows(tensor<float, 4> x) {
    const index_t K = x.extent(3);
    for (index_t r = 0; r < x.size() / K; ++r) {
      float n = 0;
      for (index_t i = 0; i < K; ++i) n += x.data()[r * K + i] * x.data()[r * K + i];
      for (index_t i = 0; i < K; ++i) x.data()[r * K + i] /= std::sqrt(n);
    }
    return x;
  }
  exec::shape shape() const { return {T, K, V}; }
  template <class P>
  std::pair<tensor<float, 4>, tensor<float, 4>> run(const P& p) const {
    tensor<float, 4> o({B, T, H, V}), s = s0;
    if (gated) kernels::delta_rule::forward(p, q, k, v, g, beta, o, s);
    else kernels::delta_rule::forward(p, q, k, v, beta, o, s);
    return {std::move(o), std::move(s)};
  }
};

struct rwkv7_case {
  using rule = rules::rwkv7;
  index_t B = 1, T, H = 2, K = 16;
  tensor<float, 4> r, w, k, v, a, b, s0;
  explicit rwkv7_case(index_t t)
      : T(t), r(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 1)), w(uniform_tensor<float, 4>({B, T, H, K}, -0.6, -0.01, 2)),
        k(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 3)), v(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 4)),
        a(delta_case::unit_rows(uniform_tensor<float, 4>({B, T, H, K}, -1, 1, 5))),
        b(uniform_tensor<float, 4>({B, T, H, K}, 0, 1, 6)), s0(uniform_tensor<float, 4>({B, H, K, K}, -1, 1, 7)) {
    for (index_t i = 0; i < a.size(); ++i) b.data()[i] *= a.data()[i], a.data()[i] = -a.data()[i];  // a = -kk, b = kk·gate
  }
  exec::shape shape() const { return {T, K, K}; }
  template <class P>
  std::pair<tensor<float, 4>, tensor<float, 4>> run(const P& p) const {
    tensor<float, 4> o({B, T, H, K}), s = s0;
    kernels::rwkv7::forward(p, kernels::rwkv7::inputs<float>{.r = r, .w = w, .k = k, .v = v, .a = a, .b = b}, o, s);
    return {std::move(o), std::move(s)};
  }
};

struct selective_scan_case {
  using rule = rules::selective_scan;
  index_t B = 1, T, D = 12, N = 8, G = 1;
  tensor<float, 3> u, delta, z;
  tensor<float, 2> A;
  tensor<float, 4> Bm, Cm;
  tensor<float, 1> Dv, bias;
  tensor<float, 3> s0;
  explicit selective_scan_case(index_t t)
      : T(t), u(uniform_tensor<float, 3>({B, T, D}, -1, 1, 1)), delta(uniform_tensor<float, 3>({B, T, D}, -2, 0, 2)),
        z(uniform_tensor<float, 3>({B, T, D}, -1, 1, 3)), A(uniform_tensor<float, 2>({D, N}, -2, -0.1, 4)),
        Bm(uniform_tensor<float, 4>({B, T, G, N}, -1, 1, 5)), Cm(uniform_tensor<float, 4>({B, T, G, N}, -1, 1, 6)),
        Dv(uniform_tensor<float, 1>({D}, -1, 1, 7)), bias(uniform_tensor<float, 1>({D}, -1, 0, 8)),
        s0(uniform_tensor<float, 3>({B, D, N}, -1, 1, 9)) {}
  exec::shape shape() const { return {T, N, 1}; }
  template <class P>
  std::pair<tensor<float, 3>, tensor<float, 3>> run(const P& p) const {
    tensor<float, 3> y({B, T, D}), s = s0;
    const kernels::ssm::selective_scan::inputs<float> in{u, delta, A, Bm, Cm, Dv, z, bias};
    kernels::ssm::selective_scan::forward(p, in, y, s);
    return {std::move(y), std::move(s)};
  }
};

struct ssd_case {
  using rule = rules::ssd;
  index_t B = 1, T, H = 4, P = 8, N = 16, G = 1;
  tensor<float, 4> x, Bm, Cm, s0;
  tensor<float, 3> dt;
  tensor<float, 1> A, Dv, bias;
  explicit ssd_case(index_t t)
      : T(t), x(uniform_tensor<float, 4>({B, T, H, P}, -1, 1, 1)), Bm(uniform_tensor<float, 4>({B, T, G, N}, -1, 1, 2)),
        Cm(uniform_tensor<float, 4>({B, T, G, N}, -1, 1, 3)), s0(uniform_tensor<float, 4>({B, H, P, N}, -1, 1, 4)),
        dt(uniform_tensor<float, 3>({B, T, H}, -2, 0, 5)), A(uniform_tensor<float, 1>({H}, -2, -0.1, 6)),
        Dv(uniform_tensor<float, 1>({H}, -1, 1, 7)), bias(uniform_tensor<float, 1>({H}, -1, 0, 8)) {}
  exec::shape shape() const { return {T, N, P}; }
  template <class Pol>
  std::pair<tensor<float, 4>, tensor<float, 4>> run(const Pol& p) const {
    tensor<float, 4> y({B, T, H, P}), s = s0;
    const kernels::ssm::ssd::inputs<float> in{x, dt, A, Bm, Cm, Dv, bias};
    kernels::ssm::ssd::forward(p, in, y, s);
    return {std::move(y), std::move(s)};
  }
};

struct attention_case {
  using rule = rules::attention;
  index_t B = 1, T, Hq = 4, Hk = 2, D = 16, prefix = 5;
  tensor<float, 4> q, k, v, k0, v0;
  explicit attention_case(index_t t)
      : T(t), q(uniform_tensor<float, 4>({B, T, Hq, D}, -1, 1, 1)), k(uniform_tensor<float, 4>({B, T, Hk, D}, -1, 1, 2)),
        v(uniform_tensor<float, 4>({B, T, Hk, D}, -1, 1, 3)), k0(uniform_tensor<float, 4>({B, prefix, Hk, D}, -1, 1, 4)),
        v0(uniform_tensor<float, 4>({B, prefix, Hk, D}, -1, 1, 5)) {}
  exec::shape shape() const { return {T, D, D}; }
  template <class P>
  std::pair<tensor<float, 4>, tensor<float, 4>> run(const P& p) const {
    kernels::attention::kv_cache<float> cache({B, Hk, D, Hk, D}, prefix + T + 1);
    tensor<float, 4> o0({B, prefix, Hq, D}), o({B, T, Hq, D});
    const auto q0 = uniform_tensor<float, 4>({B, prefix, Hq, D}, -1, 1, 6);
    kernels::attention::forward(exec::recurrent{}, q0, k0, v0, o0, cache);  // a cached prefix
    kernels::attention::forward(p, q, k, v, o, cache);
    // The queries again against the now-complete cache (attend), as a second output.
    tensor<float, 4> o2({B, T, Hq, D});
    kernels::attention::attend(p, q, o2, cache);
    return {std::move(o), std::move(o2)};
  }
};

template <class Case>
void check_family(const char* family, const Case& c) {
  for (const auto& a : autos) {
    INFO(family << " T=" << c.T << " recurrent_below=" << a.recurrent_below << " threads=" << a.threads
                << " resolves to " << int(exec::resolve<typename Case::rule>(a, c.shape())));
    const auto got = c.run(a);
    as_resolved<typename Case::rule>(a, c.shape(), [&](const auto& p) {
      const auto want = c.run(p);
      CHECK(same_bits(got.first, want.first));
      CHECK(same_bits(got.second, want.second));
    });
  }
}

}  // namespace

TEST_CASE("automatic is bit-identical to the policy its rule resolves to, in every family", "[policy]") {
  for (index_t T : lengths) {
    check_family("gla", gla_case(T));
    check_family("gated_delta_net", delta_case(T, true));
    check_family("delta_net", delta_case(T, false));
    check_family("rwkv7", rwkv7_case(T));
    check_family("selective_scan", selective_scan_case(T));
    check_family("ssd", ssd_case(T));
    check_family("attention", attention_case(T));
  }
}

TEST_CASE("the rule table's measured choices", "[policy]") {
  const exec::automatic a{};
  using exec::choice;
  // Decode (one token) is recurrent everywhere.
  CHECK(exec::resolve<rules::gla>(a, {1, 64, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::delta_rule>(a, {1, 128, 128}) == choice::recurrent);
  CHECK(exec::resolve<rules::rwkv7>(a, {1, 64, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::selective_scan>(a, {1, 16, 1}) == choice::recurrent);
  CHECK(exec::resolve<rules::ssd>(a, {1, 128, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::attention>(a, {1, 64, 64}) == choice::recurrent);
  // Long prefill: see docs/policy.md for the figures behind each.
  CHECK(exec::resolve<rules::gla>(a, {2048, 64, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::delta_rule>(a, {2048, 64, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::delta_rule>(a, {2048, 128, 128}) == choice::recurrent);
  CHECK(exec::resolve<rules::rwkv7>(a, {2048, 64, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::selective_scan>(a, {2048, 16, 1}) == choice::recurrent);
  CHECK(exec::resolve<rules::ssd>(a, {2048, 128, 64}) == choice::chunkwise);
  CHECK(exec::resolve<rules::attention>(a, {2048, 64, 64}) == choice::chunkwise);
  // The measured crossovers.
  CHECK(exec::resolve<rules::ssd>(a, {8, 128, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::ssd>(a, {16, 128, 64}) == choice::chunkwise);
  CHECK(exec::resolve<rules::attention>(a, {2, 64, 64}) == choice::chunkwise);
  CHECK(exec::resolve<rules::gla>(a, {16, 64, 64}) == choice::recurrent);
  // recurrent_below forces the recurrent kernel below it in every family.
  const exec::automatic long_recurrent{.recurrent_below = 4096};
  CHECK(exec::resolve<rules::ssd>(long_recurrent, {2048, 128, 64}) == choice::recurrent);
  CHECK(exec::resolve<rules::attention>(long_recurrent, {2048, 64, 64}) == choice::recurrent);
}

TEST_CASE("an op runs on the caller's pool, with the same bits as one thread", "[policy][threads]") {
  seqmix::thread_pool mine(1);
  const auto default_jobs = seqmix::thread_pool::default_pool().jobs();
  const gla_case g(64);
  const auto one = g.run(exec::chunkwise<16>{});
  const auto two = g.run(exec::chunkwise<16>{.threads = 2, .pool = &mine});
  CHECK(mine.jobs() >= 1);
  CHECK(same_bits(one.first, two.first));
  CHECK(same_bits(one.second, two.second));
  const delta_case d(300, true);  // 2·16·16·300 state updates: two threads' worth (threads_for_work)
  const auto before = mine.jobs();
  const auto d1 = d.run(exec::recurrent{});
  const auto d2 = d.run(exec::automatic{.threads = 2, .pool = &mine});
  CHECK(mine.jobs() > before);
  CHECK(same_bits(d1.first, d2.first));
  CHECK(seqmix::thread_pool::default_pool().jobs() == default_jobs);
}

TEST_CASE("threads < 1 is a seqmix::error naming the op and the policy", "[policy][threads]") {
  CHECK_THROWS_WITH(gla_case(4).run(exec::recurrent{.threads = 0}),
                    Catch::Contains("gla") && Catch::Contains("exec::recurrent") && Catch::Contains("threads must be at least 1"));
  CHECK_THROWS_WITH(delta_case(4, true).run(exec::chunkwise<16>{.threads = -1}),
                    Catch::Contains("gated_delta_net") && Catch::Contains("exec::chunkwise"));
  CHECK_THROWS_WITH(rwkv7_case(4).run(exec::automatic{.threads = 0}), Catch::Contains("rwkv7") && Catch::Contains("exec::automatic"));
  CHECK_THROWS_WITH(selective_scan_case(4).run(exec::parallel{.threads = 0}), Catch::Contains("selective_scan"));
  CHECK_THROWS_WITH(ssd_case(4).run(exec::recurrent{.threads = 0}), Catch::Contains("ssd"));
  CHECK_THROWS_WITH(attention_case(4).run(exec::chunkwise<64>{.threads = 0}), Catch::Contains("attention"));
}
