// The op test suite every kernel family instantiates: each policy against the family's
// double-accumulating reference (kernels/<family>/ref.hpp) and against the others, with 1 and 2
// threads giving identical results; a sequence split anywhere (calls carrying the state) equal to
// one call; inputs read as strided views into one fused buffer; T = 0 leaving everything unchanged;
// long sequences with extreme decays staying finite and matching the reference. Outputs always
// start as quiet NaN, so an element a kernel forgets to write fails the comparison it is in.
// Every numerical bound is tolerance<T>(Op::reduction(p)) (support/compare.hpp).
//
// A family provides an adapter Op (one per element type T), see tests/gla/test_gla_kernels.cpp:
//   value_type                       T
//   case_type                        shape and input regime of one problem (printable with <<)
//   problem, result                  inputs (copies share storage); outputs and state
//   names                            names of the tensors compared(result) returns, in order
//   cases()                          the problems every policy is checked on against the reference
//   agree_case(), split_case(), fused_case(), empty_case()   one problem each (empty: T = 0);
//                                    a family may run policies_agree, splits, fused on more cases
//   long_case(tokens)                extreme decays over `tokens` tokens; long_tokens, parallel_tokens
//   make(case, seed) -> problem      random inputs (seqmix::uniform_tensor)
//   fused(problem) -> problem        the same values, per-token inputs in one buffer (test::fuse)
//   start(problem) -> result         outputs NaN, state the problem's initial state
//   run(policy, problem, result&, t0, n)   tokens [t0, t0 + n) through the op under `policy`, or
//                                    through the reference when policy is test::reference
//   compared(result)                 tuple of the tensors to compare (outputs, state)
//   length(problem), reduction(problem)    tokens, and n of tolerance<T>(n)
#pragma once

#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <seqmix/policy/execution.hpp>

#include "compare.hpp"

namespace seqmix::test {

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
std::tuple<tensor_view<const T, R>...> fuse(std::shared_ptr<const void>& keep, const tensor_view<const T, R>&... parts) {
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

template <class Op>
struct op_suite {
  using T = typename Op::value_type;
  using problem = typename Op::problem;
  using result = typename Op::result;

  /// The whole sequence of `p` in one call.
  template <class P>
  static result run(const P& policy, const problem& p) {
    result r = Op::start(p);
    Op::run(policy, p, r, 0, Op::length(p));
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

  /// `policy` on `p` against the reference, and with 2 threads identical to 1 thread.
  template <class P>
  static void check_against_reference(const P& policy, const problem& p) {
    INFO("policy " << policy_name(policy));
    const result want = run(reference{}, p), got = run(policy, p);
    check(got, want, tol(p));
    INFO("2 threads against 1");
    check(run(with_threads(policy, 2), p), got, 0);
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

  /// Every policy against the reference on every case of `cases`.
  template <class Cases>
  static void against_reference(const Cases& cases) {
    each_policy([&](const auto& policy) {
      for (const auto& c : cases) {
        INFO(c);
        check_against_reference(policy, Op::make(c, 7));
      }
    });
  }
  static void against_reference() { against_reference(Op::cases()); }

  /// The policies against recurrent on one larger problem.
  static void policies_agree(const typename Op::case_type& c = Op::agree_case()) {
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
  static void splits(const typename Op::case_type& c = Op::split_case()) {
    const problem p = Op::make(c, 3);
    INFO(c);
    const index_t L = Op::length(p);
    const result full = run(exec::chunkwise<32>{}, p);
    for (const index_t cut : {index_t(0), index_t(1), index_t(2), index_t(31), index_t(32), index_t(33), index_t(63),
                              index_t(64), index_t(65), L - 1}) {
      if (cut >= L) continue;
      INFO("cut at " << cut);
      auto two = [&](const auto& first, const auto& second) {
        result r = Op::start(p);
        Op::run(first, p, r, 0, cut);
        Op::run(exec::automatic{}, p, r, cut, 0);
        Op::run(second, p, r, cut, L - cut);
        check(r, full, tol(p));
      };
      two(exec::recurrent{}, exec::parallel{});
      two(exec::parallel{}, exec::chunkwise<16>{});
      two(exec::automatic{}, exec::recurrent{});
      result r = Op::start(p);
      Op::run(exec::chunkwise<16>{}, p, r, 0, cut);
      for (index_t t = cut; t < L; ++t) Op::run(exec::recurrent{}, p, r, t, 1);
      INFO("token by token after the cut");
      check(r, full, tol(p));
    }
  }

  /// Inputs as strided views into one fused buffer, under every policy, against the reference on
  /// the contiguous inputs.
  static void fused(const typename Op::case_type& c = Op::fused_case()) {
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
    const problem p = Op::make(Op::empty_case(), 1);
    REQUIRE(Op::length(p) == 0);
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

  /// Op::long_tokens tokens with extreme decays: recurrent, chunkwise and automatic; parallel
  /// (quadratic in T) on a problem of Op::parallel_tokens tokens of the same regime.
  static void long_sequences() {
    const problem p = Op::make(Op::long_case(Op::long_tokens), 5);
    const result want = run(reference{}, p);
    REQUIRE(finite(want));
    check_long(exec::recurrent{}, p, want);
    check_long(exec::chunkwise<64>{}, p, want);
    check_long(exec::automatic{}, p, want);
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
