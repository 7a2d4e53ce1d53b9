// The op test suite every kernel family instantiates: each policy against the family's
// double-accumulating reference (kernels/<family>/ref.hpp) and against the others, with 1 and 2
// threads giving identical results; a sequence split anywhere (calls carrying the state) equal to
// one call; inputs read as strided views into one fused buffer; T = 0 leaving everything unchanged;
// long sequences with extreme decays staying finite and matching the reference. Outputs always
// start as quiet NaN, so an element a kernel forgets to write fails the comparison it is in.
// Every numerical bound is tolerance<T>(Op::reduction(p)) (support/compare.hpp).
//
// A family provides an adapter Op (one per element type T), usually derived from test::op_base;
// see tests/gla/test_gla_kernels.cpp:
//   value_type, problem, result, names, compared(result)    from op_base: a problem holds its
//                                    tensors in shared storage (copies share it) and views `in` of
//                                    them (or of a fused buffer); a result holds the outputs `o`
//                                    and the state (a tensor, or a KV cache)
//   case_type                        shape and input regime of one problem (SEQMIX_TEST_PRINTABLE)
//   cases()                          the problems every policy is checked on against the reference
//   special                          test::special_cases: one problem each for policies_agree,
//                                    splits, fused (a family may run these on more) and empty (T = 0)
//   long_case(tokens)                extreme decays over `tokens` tokens; long_tokens, parallel_tokens
//   make(case, seed) -> problem      random inputs (seqmix::uniform_tensor)
//   fused(problem) -> problem        the same values, per-token inputs in one buffer (test::fused)
//   start(problem) -> result         outputs [B, T, ...] NaN, state the problem's initial state
//   run(policy, problem, result&, in)   tokens in.t0 .. in.t0 + in.n through the op under `policy`
//                                    (in(view) is the view's token range), or through the
//                                    reference when policy is test::reference
//   reduction(problem)               n of tolerance<T>(n)
//   threads_bit_identical            (optional, default true) false: 2 threads only within tolerance
#pragma once

#include <array>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <seqmix/policy/execution.hpp>

#include "compare.hpp"

namespace seqmix::test {

/// Writes "a=1 b=2 ..." for the comma-separated `names` and the values.
template <class... V>
std::ostream& print_fields(std::ostream& os, std::string_view names, const V&... values) {
  auto one = [&](const auto& value) {
    const auto end = names.find(',');
    os << names.substr(0, end) << '=';
    if constexpr (requires { value.second; }) os << value.first << ".." << value.second << ' ';
    else os << value << ' ';
    names.remove_prefix(end == names.npos ? names.size() : end + 2);
  };
  (one(values), ...);
  return os;
}

/// Inside an aggregate: operator<< printing each member (listed in order) with its name.
#define SEQMIX_TEST_PRINTABLE(Type, ...)                                     \
  friend std::ostream& operator<<(std::ostream& os_, const Type& self_) {   \
    const auto& [__VA_ARGS__] = self_;                                       \
    return ::seqmix::test::print_fields(os_, #__VA_ARGS__, __VA_ARGS__);     \
  }

/// What the adapters share. Data owns a problem's tensors (and `state`, the initial state, when
/// the state is a tensor); Inputs are the views the op reads; Extra is whatever else a call needs
/// (options, or the case itself where it sets up the state); State is a tensor or a KV cache.
template <class T, class Data, class Inputs, std::size_t OutRank, class State, class Extra = std::monostate>
struct op_base {
  using value_type = T;
  struct problem {
    std::shared_ptr<Data> d;
    Inputs in;
    Extra extra{};
    std::shared_ptr<const void> fused{};  // the buffer `in` points into, if fused
  };
  struct result {
    tensor<T, OutRank> o;
    State state;
  };
  static constexpr bool cache_state = requires(const State& s) { s.keys(); };
  static constexpr auto names = [] {
    if constexpr (cache_state) return std::array{"o", "cached keys", "cached values"};
    else return std::array{"o", "state"};
  }();
  static auto compared(const result& r) {
    if constexpr (cache_state)
      return std::tuple<const tensor<T, OutRank>&, tensor<T, 4>, tensor<T, 4>>(r.o, r.state.keys(), r.state.values());
    else return std::tie(r.o, r.state);
  }
};

/// The cases an adapter names for policies_agree, splits, fused and empty.
template <class Case>
struct special_cases {
  Case agree, split, fused, empty;
};

/// The token range [t0, t0 + n) of a call: in(x) is that range of a [B, T, ...] view or tensor (an
/// empty view, an absent optional input, stays empty).
struct tokens {
  index_t t0, n;
  template <class V>
  auto operator()(V&& x) const {
    if constexpr (requires { x.view(); }) return x.view().subrange(1, t0, n);
    else return x.data() ? x.subrange(1, t0, n) : x;
  }
};

/// Policy tag that makes an adapter's run() call the family's reference.
struct reference {};

template <class P>
std::string policy_name(const P&) {
  if constexpr (std::is_same_v<P, reference>) return "reference";
  else if constexpr (exec::is_chunkwise_v<P>) return "chunkwise<" + std::to_string(P::chunk) + ">";
  else return exec::name_of<P>();
}

/// `policy` with another thread count (and everything else kept).
template <class P>
P with_threads(P policy, int threads) {
  policy.threads = threads;
  return policy;
}

/// Copies of tensors (or views) that share their first two extents [B, T], placed side by side in
/// the token rows of one buffer, with a gap of 3 NaN after each, as a fused projection leaves its
/// outputs: the views returned have the same extents and values, a token stride of the whole row
/// and odd offsets. `keep` receives the buffer.
template <class T, std::size_t... R>
std::tuple<tensor_view<const T, R>...> fuse(std::shared_ptr<const void>& keep,
                                            const tensor_view<const T, R>&... parts) {
  constexpr index_t gap = 3;
  const auto& first = std::get<0>(std::tie(parts...));
  const index_t B = first.extent(0), L = first.extent(1);
  auto row = [](const auto& v) {
    index_t n = 1;
    for (std::size_t d = 2; d < v.extents().size(); ++d) n *= v.extent(d);
    return n;
  };
  const index_t W = ((row(parts) + gap) + ...);
  auto buffer = std::make_shared<std::vector<T>>(std::size_t(B * L * W), std::numeric_limits<T>::quiet_NaN());
  index_t offset = 0;
  auto place = [&](const auto& v) {
    using view = std::remove_cvref_t<decltype(v)>;
    constexpr std::size_t Rank = std::tuple_size_v<typename view::shape_type>;
    REQUIRE((v.extent(0) == B && v.extent(1) == L));
    const index_t n = row(v);
    typename view::shape_type strides{L * W, W};
    for (std::size_t d = Rank; d-- > 2;) strides[d] = d + 1 == Rank ? 1 : strides[d + 1] * v.extent(d + 1);
    for (std::size_t d = 2; d < Rank; ++d) REQUIRE((v.extent(d) == 1 || v.stride(d) == strides[d]));
    for (index_t b = 0; b < B; ++b)
      for (index_t t = 0; t < L; ++t)
        std::copy_n(v.data() + b * v.stride(0) + t * v.stride(1), n, buffer->data() + (b * L + t) * W + offset);
    const view out(buffer->data() + offset, v.extents(), strides);
    offset += n + gap;
    return out;
  };
  std::tuple<tensor_view<const T, R>...> views{place(parts)...};  // braces: placed left to right
  keep = buffer;
  return views;
}

/// `p` with the inputs that `members(p.in)` ties (per-token views) copied into one fused buffer.
template <class Problem, class Members>
Problem fused(Problem p, Members members) {
  members(p.in) = std::apply([&](const auto&... v) { return fuse(p.fused, v...); }, members(p.in));
  return p;
}

template <class Op>
struct op_suite {
  using T = typename Op::value_type;
  using problem = typename Op::problem;
  using result = typename Op::result;

  static index_t length(const problem& p) { return Op::start(p).o.extent(1); }

  /// The whole sequence of `p` in one call.
  template <class P>
  static result run(const P& policy, const problem& p) {
    result r = Op::start(p);
    Op::run(policy, p, r, tokens{0, length(p)});
    return r;
  }

  static double tol(const problem& p) { return tolerance<T>(double(Op::reduction(p))); }

  /// Every compared tensor of `got` within `bound` of `want` (bound 0: bit-identical).
  static void check(const result& got, const result& want, double bound) {
    const auto a = Op::compared(got), b = Op::compared(want);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (
          [&] {
            INFO("comparing " << Op::names[I]);
            SEQMIX_CHECK_WITHIN(std::get<I>(a), std::get<I>(b), bound);
          }(),
          ...);
    }(std::make_index_sequence<std::tuple_size_v<decltype(a)>>{});
  }

  static bool finite(const result& r) {
    return std::apply([](const auto&... t) { return (all_finite(t) && ...); }, Op::compared(r));
  }

  /// Whether 2 threads give bit-identical results to 1 (Op::threads_bit_identical, default true).
  static constexpr bool threads_bit_identical = [] {
    if constexpr (requires { Op::threads_bit_identical; }) return Op::threads_bit_identical;
    else return true;
  }();

  /// `policy` on `p` against the reference (`want`, if given), and with 2 threads identical to 1.
  template <class P>
  static void check_against_reference(const P& policy, const problem& p, const result* want = nullptr) {
    INFO("policy " << policy_name(policy));
    const result got = run(policy, p);
    if (want) check(got, *want, tol(p));
    else check(got, run(reference{}, p), tol(p));
    INFO("2 threads against 1");
    check(run(with_threads(policy, 2), p), got, threads_bit_identical ? 0 : tol(p));
  }

  /// Runs f(policy) in one section per policy: Catch2 enters a section once per test-case run, so
  /// sections must be outside the loops over problems.
  template <class F>
  static void each_policy(F&& f) {
    SECTION("recurrent") { f(exec::recurrent{}); }
    SECTION("chunkwise<16>") { f(exec::chunkwise<16>{}); }
    SECTION("chunkwise<64>") { f(exec::chunkwise<64>{}); }
    SECTION("parallel") { f(exec::parallel{}); }
    SECTION("automatic") { f(exec::automatic{}); }
  }

  /// Every policy against the reference on every case of `cases`. The reference's results are
  /// kept across the policies' sections (each a separate run of the test case).
  template <class Cases>
  static void against_reference(const Cases& cases) {
    static std::map<std::string, result> wanted;
    each_policy([&](const auto& policy) {
      for (const auto& c : cases) {
        INFO(c);
        const problem p = Op::make(c, 7);
        std::ostringstream key;
        key << c;
        auto it = wanted.find(key.str());
        if (it == wanted.end()) it = wanted.emplace(key.str(), run(reference{}, p)).first;
        check_against_reference(policy, p, &it->second);
      }
    });
  }
  static void against_reference() { against_reference(Op::cases()); }

  /// The policies against recurrent on one larger problem.
  static void policies_agree(const typename Op::case_type& c = Op::special.agree) {
    const problem p = Op::make(c, 11);
    INFO(c);
    const result want = run(exec::recurrent{}, p);
    auto against = [&](const auto& policy) {
      INFO("policy " << policy_name(policy) << " threads " << policy.threads);
      check(run(policy, p), want, tol(p));
    };
    against(exec::chunkwise<16>{}), against(exec::chunkwise<64>{}), against(exec::parallel{});
    against(exec::automatic{}), against(exec::chunkwise<32>{2});
  }

  /// Two calls (and a zero-length one between them) carrying the state equal one call, cut
  /// anywhere; and the second part token by token, as decode runs it.
  static void splits(const typename Op::case_type& c = Op::special.split) {
    const problem p = Op::make(c, 3);
    INFO(c);
    const index_t L = length(p);
    const result full = run(exec::chunkwise<32>{}, p);
    for (const index_t cut : {index_t(0), index_t(1), index_t(2), index_t(31), index_t(32), index_t(33), index_t(63),
                              index_t(64), index_t(65), L - 1}) {
      if (cut >= L) continue;
      INFO("cut at " << cut);
      auto two = [&](const auto& first, const auto& second) {
        result r = Op::start(p);
        Op::run(first, p, r, tokens{0, cut});
        Op::run(exec::automatic{}, p, r, tokens{cut, 0});
        Op::run(second, p, r, tokens{cut, L - cut});
        check(r, full, tol(p));
      };
      two(exec::recurrent{}, exec::parallel{});
      two(exec::parallel{}, exec::chunkwise<16>{});
      two(exec::automatic{}, exec::recurrent{});
      result r = Op::start(p);
      Op::run(exec::chunkwise<16>{}, p, r, tokens{0, cut});
      for (index_t t = cut; t < L; ++t) Op::run(exec::recurrent{}, p, r, tokens{t, 1});
      INFO("token by token after the cut");
      check(r, full, tol(p));
    }
  }

  /// Inputs as strided views into one fused buffer, under every policy, against the reference on
  /// the contiguous inputs.
  static void fused(const typename Op::case_type& c = Op::special.fused) {
    const problem p = Op::make(c, 21), f = Op::fused(p);
    INFO(c);
    const result want = run(reference{}, p);
    auto check_policy = [&](const auto& policy) {
      INFO("policy " << policy_name(policy));
      check(run(policy, f), want, tol(p));
    };
    check_policy(exec::recurrent{}), check_policy(exec::chunkwise<16>{}), check_policy(exec::parallel{});
    check_policy(exec::automatic{}), check_policy(reference{});
  }

  /// T = 0 changes nothing, under every policy.
  static void empty() {
    const problem p = Op::make(Op::special.empty, 1);
    REQUIRE(length(p) == 0);
    const result before = Op::start(p);
    auto check_policy = [&](const auto& policy) {
      INFO("policy " << policy_name(policy));
      check(run(policy, p), before, 0);
    };
    check_policy(exec::recurrent{}), check_policy(exec::chunkwise<16>{}), check_policy(exec::parallel{});
    check_policy(exec::automatic{}), check_policy(exec::chunkwise<64>{2});
  }

  /// `policy` on the long problem stays finite and matches the reference.
  template <class P>
  static void check_long(const P& policy, const problem& p, const result& want) {
    INFO("policy " << policy_name(policy));
    const result got = run(policy, p);
    CHECK(finite(got));
    check(got, want, tol(p));
  }

  /// Op::long_tokens tokens with extreme decays: recurrent and chunkwise (automatic resolves to one
  /// of the policies, and meets the reference on every case of cases()); parallel (quadratic in T) on a
  /// problem of Op::parallel_tokens tokens of the same regime.
  static void long_sequences() {
    const problem p = Op::make(Op::long_case(Op::long_tokens), 5);
    const result want = run(reference{}, p);
    REQUIRE(finite(want));
    check_long(exec::recurrent{}, p, want);
    check_long(exec::chunkwise<64>{}, p, want);
    if constexpr (Op::parallel_tokens == Op::long_tokens) {
      check_long(exec::parallel{}, p, want);
    } else {
      const problem q = Op::make(Op::long_case(Op::parallel_tokens), 5);
      const result want_q = run(reference{}, q);
      REQUIRE(finite(want_q));
      check_long(exec::parallel{}, q, want_q);
    }
  }
};

}  // namespace seqmix::test

/// The suite's test cases for one family: Adapter<T> for T = float and double (the long sequences in
/// float, where overflow and underflow come first). Name: the family's test name prefix; Tags: its tags.
#define SEQMIX_OP_SUITE(Adapter, Name, Tags)                                                                   \
  TEMPLATE_TEST_CASE(Name " policies match the reference, with 2 threads identical to 1", Tags "[op]", float, \
                     double) {                                                                                \
    ::seqmix::test::op_suite<Adapter<TestType>>::against_reference();                                        \
  }                                                                                                           \
  TEMPLATE_TEST_CASE(Name " policies agree with each other", Tags "[op]", float, double) {                    \
    ::seqmix::test::op_suite<Adapter<TestType>>::policies_agree();                                           \
  }                                                                                                           \
  TEMPLATE_TEST_CASE(Name ": splitting a sequence anywhere gives the same outputs and state", Tags "[op]",    \
                     float, double) {                                                                         \
    ::seqmix::test::op_suite<Adapter<TestType>>::splits();                                                   \
  }                                                                                                           \
  TEMPLATE_TEST_CASE(Name ": inputs in one fused buffer (strided views) match the reference", Tags "[op]",    \
                     float, double) {                                                                         \
    ::seqmix::test::op_suite<Adapter<TestType>>::fused();                                                    \
  }                                                                                                           \
  TEMPLATE_TEST_CASE(Name ": an empty sequence changes nothing", Tags "[op]", float, double) {                \
    ::seqmix::test::op_suite<Adapter<TestType>>::empty();                                                    \
  }                                                                                                           \
  TEST_CASE(Name ": long sequences with extreme decays stay finite and match the reference", Tags "[op][long]") { \
    ::seqmix::test::op_suite<Adapter<float>>::long_sequences();                                              \
  }
