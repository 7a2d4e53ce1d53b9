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
struct gla_op {
  using value_type = T;
  struct case_type {
    index_t B, L, H, K, V;  // L: tokens
    double gmin;
    bool split_decay = false;
    friend std::ostream& operator<<(std::ostream& os, const case_type& c) {
      return os << "B=" << c.B << " T=" << c.L << " H=" << c.H << " K=" << c.K << " V=" << c.V << " gmin=" << c.gmin
                << (c.split_decay ? " (half the channels x5e-4)" : "");
    }
  };
  struct data {
    tensor<T, 4> q, k, v, g, state;
  };
  struct problem {
    std::shared_ptr<data> d;
    tensor_view<const T, 4> q, k, v, g;
    std::shared_ptr<const void> fused;
  };
  struct result {
    tensor<T, 4> o, state;
  };
  static constexpr const char* names[] = {"o", "state"};

  static std::vector<case_type> cases() {
    std::vector<case_type> all;
    for (const double gmin : {-0.05, -1.0, -8.0})
      for (const auto& [B, L, H, K, V] : {std::array<index_t, 5>{1, 1, 1, 8, 8}, {2, 37, 3, 16, 24}, {1, 100, 2, 20, 33},
                                          {1, 130, 1, 64, 64}, {1, 17, 2, 5, 3}})
        all.push_back({B, L, H, K, V, gmin});
    return all;
  }
  static case_type agree_case() { return {2, 200, 4, 32, 32, -0.5}; }
  static case_type split_case() { return {1, 90, 2, 16, 16, -0.7}; }
  static case_type fused_case() { return {2, 45, 3, 16, 16, -0.3}; }
  static case_type empty_case() { return {1, 0, 2, 8, 8, -0.1}; }
  static case_type long_case(index_t tokens) { return {1, tokens, 2, 32, 32, -20, true}; }
  static constexpr index_t long_tokens = 16384, parallel_tokens = 2048;

  static problem make(const case_type& c, unsigned seed) {
    auto d = std::make_shared<data>(data{uniform_tensor<T, 4>({c.B, c.L, c.H, c.K}, -1, 1, seed),
                                         uniform_tensor<T, 4>({c.B, c.L, c.H, c.K}, -1, 1, seed + 1),
                                         uniform_tensor<T, 4>({c.B, c.L, c.H, c.V}, -1, 1, seed + 2),
                                         uniform_tensor<T, 4>({c.B, c.L, c.H, c.K}, c.gmin, 0, seed + 3),
                                         uniform_tensor<T, 4>({c.B, c.H, c.K, c.V}, -1, 1, seed + 4)});
    if (c.split_decay)
      for (index_t i = 0; i < d->g.size(); ++i)
        if (i % c.K < c.K / 2) d->g.data()[i] *= T(5e-4);
    return {d, d->q, d->k, d->v, d->g, {}};
  }
  static problem fused(problem p) {
    std::tie(p.q, p.k, p.v, p.g) = test::fuse(p.fused, p.q, p.k, p.v, p.g);
    return p;
  }
  static index_t length(const problem& p) { return p.q.extent(1); }
  static index_t reduction(const problem& p) { return p.q.extent(3) + p.q.extent(1); }
  static result start(const problem& p) {
    return {test::nan_tensor<T, 4>({p.q.extent(0), p.q.extent(1), p.q.extent(2), p.v.extent(3)}), p.d->state};
  }
  template <class P>
  static void run(const P& policy, const problem& p, result& r, index_t t0, index_t n) {
    auto in = [&](tensor_view<const T, 4> x) { return x.subrange(1, t0, n); };
    const tensor_view<T, 4> o = r.o.view().subrange(1, t0, n);
    if constexpr (std::is_same_v<P, test::reference>) gla::ref<T>(in(p.q), in(p.k), in(p.v), in(p.g), o, r.state);
    else gla::forward(policy, in(p.q), in(p.k), in(p.v), in(p.g), o, r.state);
  }
  static auto compared(const result& r) { return std::tie(r.o, r.state); }
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
  REQUIRE_THROWS_WITH((gla::forward(exec::recurrent{}, p.q, bad_k, p.v, p.g, o, s)),
                      Catch::Contains("gla") && Catch::Contains("k has shape [1, 8, 2, 5], expected [1, 8, 2, 4]"));
  REQUIRE_THROWS_WITH((gla::forward(exec::chunkwise<16>{}, p.q, p.k, p.v, p.g, o, bad_s)),
                      Catch::Contains("state has shape [1, 2, 4, 3], expected [1, 2, 4, 4]"));
  const tensor_view<const float, 4> strided_q(p.q.data(), {1, 4, 2, 4}, {64, 8, 4, 2});
  tensor<float, 4> o4({1, 4, 2, 4});
  REQUIRE_THROWS_AS((gla::forward(exec::parallel{}, strided_q, strided_q, strided_q, strided_q, o4, s)),
                    seqmix::error);
}
