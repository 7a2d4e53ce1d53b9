// GLA op: the op suite (support/op_suite.hpp) on the GLA adapter, a decay that underflows in one
// step, and argument errors.
#include <seqmix/kernels/gla/gla.hpp>
#include <seqmix/kernels/gla/ref.hpp>

#include <array>
#include <memory>

#include "support/op_suite.hpp"

using namespace seqmix;
namespace gla = seqmix::kernels::gla;

namespace {

/// q, k, g [B,T,H,K], v [B,T,H,V], state [B,H,K,V]; log decays g uniform in [gmin, 0], or for
/// half the key channels (`split_decay`) scaled to within [gmin·5e-4, 0], so that some channels
/// forget within a token while others remember over the whole sequence.
template <class T>
struct gla_data {
  tensor<T, 4> q, k, v, g, state;
};
template <class T>
struct gla_inputs {
  tensor_view<const T, 4> q, k, v, g;
};

template <class T>
struct gla_op : test::op_base<T, gla_data<T>, gla_inputs<T>, 4, tensor<T, 4>> {
  using typename gla_op::op_base::problem, typename gla_op::op_base::result;
  struct case_type {
    index_t B, L, H, K, V;  // L: tokens
    double gmin;
    bool split_decay = false;
    SEQMIX_TEST_PRINTABLE(case_type, B, L, H, K, V, gmin, split_decay)
  };

  static std::vector<case_type> cases() {
    std::vector<case_type> all;
    for (const double gmin : {-0.05, -1.0, -8.0})
      for (const auto& [B, L, H, K, V] : {std::array<index_t, 5>{1, 1, 1, 8, 8},
                                          {2, 37, 3, 16, 24},
                                          {1, 100, 2, 20, 33},
                                          {1, 130, 1, 64, 64},
                                          {1, 17, 2, 5, 3}})
        all.push_back({B, L, H, K, V, gmin});
    return all;
  }
  static constexpr test::special_cases<case_type> special{
      .agree = {2, 200, 4, 32, 32, -0.5}, .split = {1, 90, 2, 16, 16, -0.7}, .fused = {2, 45, 3, 16, 16, -0.3},
      .empty = {1, 0, 2, 8, 8, -0.1}};
  static case_type long_case(index_t tokens) { return {1, tokens, 2, 32, 32, -20, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 1024;

  static problem make(const case_type& c, unsigned seed) {
    const std::array<index_t, 4> qk{c.B, c.L, c.H, c.K};
    auto d = std::make_shared<gla_data<T>>(gla_data<T>{
        uniform_tensor<T, 4>(qk, -1, 1, seed), uniform_tensor<T, 4>(qk, -1, 1, seed + 1),
        uniform_tensor<T, 4>({c.B, c.L, c.H, c.V}, -1, 1, seed + 2), uniform_tensor<T, 4>(qk, c.gmin, 0, seed + 3),
        uniform_tensor<T, 4>({c.B, c.H, c.K, c.V}, -1, 1, seed + 4)});
    if (c.split_decay)
      for (index_t i = 0; i < d->g.size(); ++i)
        if (i % c.K < c.K / 2) d->g.data()[i] *= T(5e-4);
    return {d, {d->q, d->k, d->v, d->g}};
  }
  static problem fused(problem p) { return test::fused(p, [](auto& in) { return std::tie(in.q, in.k, in.v, in.g); }); }
  static index_t reduction(const problem& p) { return p.in.q.extent(3) + p.in.q.extent(1); }
  static result start(const problem& p) { return {test::nan_tensor<T, 4>(p.d->v.extents()), p.d->state}; }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, const test::tokens& in) {
    const auto& [q, k, v, g] = p.in;
    if constexpr (std::is_same_v<P, test::reference>) gla::ref<T>(in(q), in(k), in(v), in(g), in(r.o), r.state);
    else gla::forward(policy, in(q), in(k), in(v), in(g), in(r.o), r.state);
  }
};

using suite = test::op_suite<gla_op<float>>;

}  // namespace

SEQMIX_OP_SUITE(gla_op, "gla", "[gla]")

TEST_CASE("gla: a single step with a decay that underflows", "[gla][op]") {
  const auto p = gla_op<float>::make({1, 40, 1, 16, 16, -1}, 9);
  p.d->g(0, 20, 0, 3) = -200.f;  // e^-200 underflows in float; the state row must simply reset
  suite::check_against_reference(exec::recurrent{}, p);
  suite::check_against_reference(exec::chunkwise<16>{}, p);
  suite::check_against_reference(exec::parallel{}, p);
}

TEST_CASE("gla: bad arguments raise seqmix::error naming the tensor and both shapes", "[gla][op][errors]") {
  const auto p = gla_op<float>::make({1, 8, 2, 4, 4, -0.1}, 1);
  tensor<float, 4> o({1, 8, 2, 4}), s({1, 2, 4, 4}), bad_k({1, 8, 2, 5}), bad_s({1, 2, 4, 3});
  REQUIRE_THROWS_WITH((gla::forward(exec::recurrent{}, p.in.q, bad_k, p.in.v, p.in.g, o, s)),
                      Catch::Contains("gla") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((gla::forward(exec::chunkwise<16>{}, p.in.q, p.in.k, p.in.v, p.in.g, o, bad_s)),
                      Catch::Contains("state has shape [1, 2, 4, 3], expected [1, 2, 4, 4]"));
  const tensor_view<const float, 4> strided_q(p.in.q.data(), {1, 4, 2, 4}, {64, 8, 4, 2});
  tensor<float, 4> o4({1, 4, 2, 4});
  REQUIRE_THROWS_AS((gla::forward(exec::parallel{}, strided_q, strided_q, strided_q, strided_q, o4, s)),
                    seqmix::error);
}
