// nn::rotary on its own: both pair layouts against the rotation written out in double, position
// offsets (decode continues where the prompt stopped), partial rotary dims, the relative-position
// property and argument errors.
#include <seqmix/nn/rotary.hpp>
#include <seqmix/tensor/random.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "support/compare.hpp"

using namespace seqmix;

namespace {

// The rotation of spec/attention.md (half_split) and spec/diff_attn.md (interleaved), in double.
tensor<double, 4> rotated(const tensor<double, 4>& x, index_t dim, double theta, nn::rope_layout layout, index_t offset) {
  tensor<double, 4> y = x;
  for (index_t b = 0; b < x.extent(0); ++b)
    for (index_t t = 0; t < x.extent(1); ++t)
      for (index_t h = 0; h < x.extent(2); ++h)
        for (index_t i = 0; i < dim / 2; ++i) {
          const double a = double(offset + t) * std::pow(theta, -2.0 * double(i) / double(dim));
          const index_t i1 = layout == nn::rope_layout::half_split ? i : 2 * i;
          const index_t i2 = layout == nn::rope_layout::half_split ? i + dim / 2 : 2 * i + 1;
          const double x1 = x(b, t, h, i1), x2 = x(b, t, h, i2);
          y(b, t, h, i1) = x1 * std::cos(a) - x2 * std::sin(a);
          y(b, t, h, i2) = x1 * std::sin(a) + x2 * std::cos(a);
        }
  return y;
}

}  // namespace

TEST_CASE("rotary: both layouts match the rotation formula", "[rotary]") {
  for (const auto layout : {nn::rope_layout::half_split, nn::rope_layout::interleaved})
    for (const index_t D : {8, 32, 64, 38})
      for (const double theta : {10000.0, 500000.0}) {
        INFO("layout " << int(layout) << " D " << D << " theta " << theta);
        const auto x = uniform_tensor<double, 4>({2, 9, 3, D}, -1, 1, 3);
        auto y = x;
        nn::rotary<double>{D, theta, layout}.apply(y, 100);
        SEQMIX_CHECK_CLOSE(y, rotated(x, D, theta, layout, 100), 1e-13, 1e-13);
        auto yf = tensor<float, 4>(x.view());
        nn::rotary<float>{D, theta, layout}.apply(yf, 100);
        SEQMIX_CHECK_CLOSE(yf, rotated(x, D, theta, layout, 100), 1e-6, 1e-6);
      }
}

TEST_CASE("rotary: the cos/sin tables match direct evaluation far into a sequence", "[rotary]") {
  const nn::rotary<double> rope{64, 500000, nn::rope_layout::half_split};
  std::vector<double> c, s;
  rope.tables(70000, 1000, c, s);
  double worst = 0;
  for (index_t t = 0; t < 1000; ++t)
    for (index_t i = 0; i < 32; ++i) {
      const double a = double(70000 + t) * std::pow(500000.0, -2.0 * double(i) / 64);
      worst = std::max({worst, std::abs(c[std::size_t(t * 32 + i)] - std::cos(a)), std::abs(s[std::size_t(t * 32 + i)] - std::sin(a))});
    }
  CHECK(worst < 1e-10);  // the direct angle p·f itself is only good to ~p·eps = 1e-11
}

TEST_CASE("rotary: position offsets continue a sequence; position 0 is the identity", "[rotary]") {
  const nn::rotary<float> rope{16, 10000, nn::rope_layout::half_split};
  const auto x = uniform_tensor<float, 4>({1, 40, 2, 16}, -1, 1, 5);
  auto whole = x;
  rope.apply(whole, 7);
  auto parts = x;
  rope.apply(parts.view().subrange(1, 0, 25), 7);
  rope.apply(parts.view().subrange(1, 25, 15), 32);
  SEQMIX_CHECK_CLOSE(parts, whole, 0.0, 0.0);
  auto first = x;
  rope.apply(first.view().subrange(1, 0, 1), 0);
  const tensor<float, 4> got(first.view().subrange(1, 0, 1)), want(x.view().subrange(1, 0, 1));
  SEQMIX_CHECK_CLOSE(got, want, 0.0, 0.0);
}

TEST_CASE("rotary: scores depend on relative positions only; partial rotary dims", "[rotary]") {
  const nn::rotary<double> rope{32, 10000, nn::rope_layout::interleaved};
  const auto q = uniform_tensor<double, 4>({1, 1, 1, 32}, -1, 1, 8), k = uniform_tensor<double, 4>({1, 1, 1, 32}, -1, 1, 9);
  auto score = [&](index_t pq, index_t pk) {
    auto a = q, b = k;
    rope.apply(a, pq), rope.apply(b, pk);
    double s = 0;
    for (index_t d = 0; d < 32; ++d) s += a(0, 0, 0, d) * b(0, 0, 0, d);
    return s;
  };
  CHECK(std::abs(score(10, 3) - score(8000, 7993)) < 1e-9);

  // dim 8 of a 12-wide head: the last 4 dims pass unchanged.
  const auto x = uniform_tensor<double, 4>({1, 5, 2, 12}, -1, 1, 10);
  auto y = x;
  nn::rotary<double>{8, 10000, nn::rope_layout::half_split}.apply(y, 3);
  SEQMIX_CHECK_CLOSE(y, rotated(x, 8, 10000, nn::rope_layout::half_split, 3), 1e-13, 1e-13);
}

TEST_CASE("rotary: bad dims raise seqmix::error", "[rotary][errors]") {
  tensor<float, 4> x({1, 2, 1, 8});
  REQUIRE_THROWS_WITH((nn::rotary<float>{7, 10000, nn::rope_layout::half_split}.apply(x, 0, "Attention")),
                      Catch::Contains("Attention: rotary dim 7 must be even"));
  REQUIRE_THROWS_WITH((nn::rotary<float>{16, 10000, nn::rope_layout::half_split}.apply(x, 0, "Attention")),
                      Catch::Contains("at most the head dim 8"));
}
