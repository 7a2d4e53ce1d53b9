// nn/ building blocks on their own: the causal short conv1d against its definition (double loop),
// sequences split anywhere, short inputs that keep part of the old state, and shape errors; the
// gated group RMSNorm against its definition; linear on both product paths.
#include <seqmix/nn/conv1d.hpp>
#include <seqmix/nn/linear.hpp>
#include <seqmix/nn/rmsnorm.hpp>

#include "support/compare.hpp"

using namespace seqmix;

namespace {

// The spec's definition in double: inputs before x come from `state` (oldest first).
template <class T>
tensor<double, 3> conv_definition(const nn::causal_conv1d<T>& conv, const tensor<T, 3>& x, const tensor<T, 3>& state) {
  const index_t B = x.extent(0), L = x.extent(1), C = conv.channels(), W = conv.width(), P = W - 1;
  tensor<double, 3> y({B, L, C});
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t c = 0; c < C; ++c) {
        double acc = conv.bias ? double((*conv.bias)(c)) : 0.0;
        for (index_t j = 0; j < W; ++j) {
          const index_t s = t - P + j;
          acc += double(conv.weight(c, j)) * (s >= 0 ? double(x(b, s, c)) : double(state(b, c, P + s)));
        }
        y(b, t, c) = conv.silu ? acc / (1 + std::exp(-acc)) : acc;
      }
  return y;
}

template <class T>
nn::causal_conv1d<T> random_conv(index_t C, index_t W, bool with_bias, bool silu) {
  nn::causal_conv1d<T> conv{uniform_tensor<T, 2>({C, W}, -1, 1, 11), std::nullopt, silu};
  if (with_bias) conv.bias = uniform_tensor<T, 1>({C}, -0.5, 0.5, 12);
  return conv;
}

}  // namespace

TEST_CASE("causal_conv1d matches its definition", "[nn][conv1d]") {
  // C = 37 and 150 exercise the scalar channel tail and several channel blocks; W = 1 has no state;
  // W = 5 takes the run-time width path; L = 70 spans several time tiles (the last one partial).
  for (index_t L : {23, 70})
    for (index_t C : {37, 150})
      for (index_t W : {1, 2, 3, 4, 5})
        for (bool with_bias : {false, true}) {
          const auto conv = random_conv<float>(C, W, with_bias, with_bias);
          const auto x = uniform_tensor<float, 3>({2, L, C}, -2, 2, 3);
          auto state = uniform_tensor<float, 3>({2, C, W - 1}, -2, 2, 4);
          const auto want = conv_definition(conv, x, state);
          auto y = test::nan_tensor<float, 3>({2, L, C});
          conv(x, y, state, "test", 2);
          INFO("L=" << L << " C=" << C << " W=" << W << " bias=" << with_bias);
          SEQMIX_CHECK_CLOSE(y, want, 2e-6, 1e-6);
          for (index_t b = 0; b < 2; ++b)
            for (index_t c = 0; c < C; ++c)
              for (index_t j = 0; j < W - 1; ++j) REQUIRE(state(b, c, j) == x(b, L - (W - 1) + j, c));
        }
}

TEST_CASE("causal_conv1d: a sequence split anywhere gives the same outputs and state", "[nn][conv1d]") {
  const index_t C = 70, W = 4, L = 19;
  const auto conv = random_conv<double>(C, W, true, true);
  const auto x = uniform_tensor<double, 3>({1, L, C}, -2, 2, 5);
  auto s_full = conv.make_state(1);
  tensor<double, 3> y_full({1, L, C});
  conv(x, y_full, s_full);

  // Pieces of 1 and 2 tokens are shorter than the state, so part of the old state must survive.
  auto s = conv.make_state(1);
  auto y = test::nan_tensor<double, 3>({1, L, C});
  const index_t cuts[] = {0, 1, 3, 4, 10, 18, 19};
  for (int i = 0; i + 1 < 7; ++i) {
    const index_t t0 = cuts[i], n = cuts[i + 1] - cuts[i];
    conv(x.view().subrange(1, t0, n), y.view().subrange(1, t0, n), s);
  }
  SEQMIX_CHECK_CLOSE(y, y_full, 1e-14, 1e-14);
  SEQMIX_CHECK_CLOSE(s, s_full, 0, 0);
}

TEST_CASE("causal_conv1d: wrong shapes raise seqmix::error naming the tensor", "[nn][conv1d]") {
  const auto conv = random_conv<float>(8, 4, true, true);
  const tensor<float, 3> x({1, 5, 8});
  tensor<float, 3> y({1, 5, 8}), bad_y({1, 5, 7});
  auto state = conv.make_state(1);
  tensor<float, 3> bad_state({1, 8, 4});
  REQUIRE_THROWS_WITH(conv(x, bad_y, state, "Mamba"), Catch::Contains("Mamba") && Catch::Contains("conv output"));
  REQUIRE_THROWS_WITH(conv(x, y, bad_state, "Mamba"), Catch::Contains("conv state") && Catch::Contains("[1, 8, 4]"));
}

TEST_CASE("group_rmsnorm_gated_row matches its definition", "[nn][rmsnorm]") {
  // n = 90 in groups of 45 (a scalar tail in each group) and of 90; gate first and norm first.
  const index_t n = 90;
  const auto x = uniform_tensor<float, 1>({n}, -2, 2, 1), z = uniform_tensor<float, 1>({n}, -3, 3, 2);
  const auto w = uniform_tensor<float, 1>({n}, 0.5, 1.5, 3);
  for (index_t group : {45, 90})
    for (bool norm_first : {false, true}) {
      tensor<double, 1> want({n});
      for (index_t g0 = 0; g0 < n; g0 += group) {
        double ss = 0;
        for (index_t i = g0; i < g0 + group; ++i) {
          const double gate = double(z(i)) / (1 + std::exp(-double(z(i))));
          const double v = norm_first ? double(x(i)) : double(x(i)) * gate;
          ss += v * v;
          want(i) = v * (norm_first ? gate : 1.0);
        }
        const double r = 1 / std::sqrt(ss / double(group) + 1e-5);
        for (index_t i = g0; i < g0 + group; ++i) want(i) *= r * double(w(i));
      }
      tensor<float, 1> y = x;  // in place, as the Mamba2 layer calls it
      nn::group_rmsnorm_gated_row(y.data(), z.data(), w.data(), y.data(), n, group, 1e-5f, norm_first);
      INFO("group=" << group << " norm_before_gate=" << norm_first);
      SEQMIX_CHECK_CLOSE(y, want, 1e-6, 1e-6);
    }
}

TEST_CASE("linear matches its definition on both product paths", "[nn][linear]") {
  // 70 outputs x 80 inputs are packed into panels: 5 and 150 rows take the panel GEMM (150 also
  // split over 2 threads: 75 rows each), 1 and 3 rows the panel GEMV (2 threads split the
  // outputs); a 20-wide output stays row-major for Eigen; with and without bias.
  for (index_t rows : {1, 3, 5, 150})
    for (index_t out : {20, 70})
      for (bool with_bias : {false, true})
        for (int threads : {1, 2}) {
          const index_t in = 80;
          nn::linear<float> lin{uniform_tensor<float, 2>({out, in}, -1, 1, 1), std::nullopt};
          if (with_bias) lin.bias = uniform_tensor<float, 1>({out}, -1, 1, 2);
          const auto x = uniform_tensor<float, 2>({rows, in}, -1, 1, 3);
          const auto w = nn::unpacked(lin.weight);
          tensor<double, 2> want({rows, out});
          for (index_t i = 0; i < rows; ++i)
            for (index_t j = 0; j < out; ++j) {
              double s = with_bias ? double((*lin.bias)(j)) : 0.0;
              for (index_t p = 0; p < in; ++p) s += double(x(i, p)) * double(w(j, p));
              want(i, j) = s;
            }
          auto y = test::nan_tensor<float, 2>({rows, out});
          lin(x, y, "test", threads);
          INFO("rows=" << rows << " out=" << out << " bias=" << with_bias << " threads=" << threads);
          SEQMIX_CHECK_CLOSE(y, want, 1e-5, 1e-5);
        }
  nn::linear<float> lin{tensor<float, 2>({4, 3}), std::nullopt};
  tensor<float, 2> x({2, 5}), y({2, 4});
  REQUIRE_THROWS_WITH(lin(x, y, "Mamba"), Catch::Contains("Mamba") && Catch::Contains("[2, 5]") && Catch::Contains("[2, 3]"));
}
