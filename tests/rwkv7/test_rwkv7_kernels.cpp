// RWKV-7 op: the op suite (support/op_suite.hpp) on the RWKV-7 adapter, short calls on many heads
// (decode), decays that underflow, one deferred-decay run over a long call, and argument errors.
#include <seqmix/kernels/rwkv7/ref.hpp>
#include <seqmix/kernels/rwkv7/rwkv7.hpp>

#include <array>
#include <memory>

#include "support/op_suite.hpp"

using namespace seqmix;
namespace rwkv7 = seqmix::kernels::rwkv7;

namespace {

/// Inputs of the form the RWKV-7 layer produces: a = -kk, b = kk · a_gate with kk a unit vector per
/// head and a_gate in (0, 1), so the transition diag(e^w) + b aᵀ does not expand the state. Log
/// decays w uniform in [w.first, w.second]; with `split_decay` half the key channels are scaled by 5e-7,
/// so that factors near 0 and near 1 meet in one head.
template <class T>
struct rwkv7_data {
  tensor<T, 4> r, w, k, v, a, b, state;
};

template <class T>
struct rwkv7_op : test::op_base<T, rwkv7_data<T>, rwkv7::inputs<T>, 4, tensor<T, 4>> {
  using typename rwkv7_op::op_base::problem, typename rwkv7_op::op_base::result;
  struct case_type {
    index_t B, L, H, K, V;  // L: tokens
    std::pair<double, double> w;  // log-decay range
    bool split_decay = false;
    SEQMIX_TEST_PRINTABLE(case_type, B, L, H, K, V, w, split_decay)
  };

  // Log-decay ranges: the layer's (−0.6065, 0), strong decays down to −10, decays near 1.
  static constexpr std::array<std::pair<double, double>, 3> decays{{{-0.6065, 0}, {-10, -1e-5}, {-2e-5, 0}}};

  static std::vector<case_type> cases() {
    std::vector<case_type> all;
    for (const auto& w : decays)
      for (const auto& [B, L, H, K, V] : {std::array<index_t, 5>{1, 1, 1, 8, 8}, {2, 37, 3, 16, 24}, {1, 100, 2, 20, 33},
                                          {1, 130, 1, 64, 64}, {1, 17, 2, 5, 3}, {1, 70, 2, 24, 48}})
        all.push_back({B, L, H, K, V, w});
    return all;
  }
  static constexpr test::special_cases<case_type> special{.agree = {2, 200, 4, 32, 32, {-0.6065, 0}},
                                                         .split = {2, 90, 2, 16, 16, {-0.7, 0}},
                                                         .fused = {2, 45, 3, 16, 16, {-0.6, 0}},
                                                         .empty = {1, 0, 2, 8, 8, {-0.1, 0}}};
  static case_type long_case(index_t tokens) { return {1, tokens, 2, 32, 32, {-20, 0}, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 1024;

  static problem make(const case_type& c, unsigned seed) {
    const std::array<index_t, 4> key{c.B, c.L, c.H, c.K};
    auto d = std::make_shared<rwkv7_data<T>>(rwkv7_data<T>{
        uniform_tensor<T, 4>(key, -1, 1, seed), uniform_tensor<T, 4>(key, c.w.first, c.w.second, seed + 1),
        uniform_tensor<T, 4>(key, -1, 1, seed + 2), uniform_tensor<T, 4>({c.B, c.L, c.H, c.V}, -1, 1, seed + 3),
        uniform_tensor<T, 4>(key, -1, 1, seed + 4), uniform_tensor<T, 4>(key, 0, 1, seed + 5),
        uniform_tensor<T, 4>({c.B, c.H, c.K, c.V}, -0.5, 0.5, seed + 6)});
    for (index_t b = 0; b < c.B; ++b)
      for (index_t t = 0; t < c.L; ++t)
        for (index_t h = 0; h < c.H; ++h) {
          double n2 = 0;
          for (index_t i = 0; i < c.K; ++i) n2 += double(d->a(b, t, h, i)) * double(d->a(b, t, h, i));
          const double inv = 1 / std::max(std::sqrt(n2), 1e-12);
          for (index_t i = 0; i < c.K; ++i) {
            const T kk = T(double(d->a(b, t, h, i)) * inv);
            d->a(b, t, h, i) = -kk, d->b(b, t, h, i) = kk * d->b(b, t, h, i);
            if (c.split_decay && i < c.K / 2) d->w(b, t, h, i) *= T(5e-7);
          }
        }
    return {d, {.r = d->r, .w = d->w, .k = d->k, .v = d->v, .a = d->a, .b = d->b}};
  }
  static problem fused(problem p) {
    return test::fused(p, [](auto& in) { return std::tie(in.r, in.w, in.k, in.v, in.a, in.b); });
  }
  static index_t reduction(const problem& p) { return p.in.r.extent(3) + p.in.r.extent(1); }
  static result start(const problem& p) { return {test::nan_tensor<T, 4>(p.d->v.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const test::tokens& t) {
    const rwkv7::inputs<T> in{
        .r = t(p.in.r), .w = t(p.in.w), .k = t(p.in.k), .v = t(p.in.v), .a = t(p.in.a), .b = t(p.in.b)};
    if constexpr (std::is_same_v<P, test::reference>)
      rwkv7::ref(in, t(r.o), r.state);
    else rwkv7::forward(policy, in, t(r.o), r.state);
  }
};

}  // namespace

SEQMIX_OP_SUITE(rwkv7_op, "rwkv7", "[rwkv7]")

TEMPLATE_TEST_CASE("rwkv7: short calls on several heads (decode) match the reference", "[rwkv7][op]", float, double) {
  // Calls shorter than a block take explicit steps, each fused with the next token's (or the next
  // head's) reduction; odd widths exercise the single-vector and scalar tiles of that path. More
  // than 32 heads, and a wide value axis, take the allocated head tables and scratch.
  using op = rwkv7_op<TestType>;
  for (const auto& w : op::decays)
    for (const auto& [B, L, H, K, V] : {std::array<index_t, 5>{2, 1, 3, 20, 33}, {3, 1, 2, 64, 64}, {1, 2, 4, 16, 16},
                                        {2, 3, 2, 24, 40}, {1, 3, 3, 5, 7}, {5, 1, 7, 8, 12}, {1, 1, 2, 12, 530}}) {
      const typename op::case_type c{B, L, H, K, V, w};
      INFO(c);
      test::op_suite<op>::check_against_reference(exec::recurrent{}, op::make(c, 7));
    }
}

TEST_CASE("rwkv7: a single step with a decay that underflows", "[rwkv7][op]") {
  const auto p = rwkv7_op<float>::make({1, 40, 1, 16, 16, {-1, 0}}, 9);
  p.d->w(0, 20, 0, 3) = -200.f;  // e^-200 underflows in float; the state row must simply reset
  p.d->w(0, 21, 0, 5) = -90.f;   // beyond the diagonal tile's span limit: the exact fallback
  using suite = test::op_suite<rwkv7_op<float>>;
  suite::check_against_reference(exec::recurrent{}, p);
  suite::check_against_reference(exec::chunkwise<16>{}, p);
  suite::check_against_reference(exec::parallel{}, p);
}

TEST_CASE("rwkv7: one open run over a whole long call stays exact", "[rwkv7][op][long]") {
  // Log decays in (-1e-3, 0): over 8192 tokens no channel decays below e^-16, so the recurrent
  // kernel keeps one deferred-decay run for the whole call and folds it only at the end.
  using suite = test::op_suite<rwkv7_op<float>>;
  const auto p = rwkv7_op<float>::make({1, 8192, 2, 32, 32, {-1e-3, 0}}, 17);
  suite::check_long(exec::recurrent{}, p, suite::run(test::reference{}, p));
}

TEST_CASE("rwkv7: bad arguments raise seqmix::error naming the tensor and both shapes", "[rwkv7][op][errors]") {
  const auto p = rwkv7_op<float>::make({1, 8, 2, 4, 4, {-0.1, 0}}, 1);
  tensor<float, 4> o({1, 8, 2, 4}), s({1, 2, 4, 4}), bad_k({1, 8, 2, 5}), bad_s({1, 2, 4, 3});
  auto with = [&](auto change) {
    rwkv7::inputs<float> in = p.in;
    change(in);
    return in;
  };
  REQUIRE_THROWS_WITH((rwkv7::forward(exec::recurrent{}, with([&](auto& in) { in.k = bad_k; }), o, s)),
                      Catch::Contains("rwkv7") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((rwkv7::forward(exec::chunkwise<16>{}, p.in, o, bad_s)),
                      Catch::Contains("state has shape [1, 2, 4, 3], expected [1, 2, 4, 4]"));
  REQUIRE_THROWS_WITH((rwkv7::forward(exec::parallel{}, with([&](auto& in) { in.a = bad_k; }), o, s)),
                      Catch::Contains("a has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  const tensor_view<const float, 4> strided(p.in.r.data(), {1, 4, 2, 4}, {64, 8, 4, 2});
  tensor<float, 4> o4({1, 4, 2, 4});
  REQUIRE_THROWS_AS((rwkv7::forward(exec::parallel{},
                                    rwkv7::inputs<float>{.r = strided, .w = strided, .k = strided, .v = strided,
                                                         .a = strided, .b = strided},
                                    o4, s)),
                    seqmix::error);
}
