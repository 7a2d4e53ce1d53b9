// bf16 weights (tensor/bf16.hpp, simd/bf16.hpp, nn::linear<float, bf16>): the conversion against a
// double model of round-to-nearest-even; the GEMV and GEMM products against a double evaluation
// with the exact bf16 weights, within the error that rounding the activations to bf16 and float32
// accumulation can make (odd widths, edges of every tile, strided rows, accumulate, NaN-filled
// outputs); threads give the same bits; the float32 gemm_nt against double too.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include <seqmix/nn/linear.hpp>
#include <seqmix/simd/bf16.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"

using namespace seqmix;

namespace {

// The bf16 nearest to x by a double model: the two neighbours, the closer one, ties to an even
// last bit. x finite and within bf16's range.
std::uint16_t nearest_bf16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint16_t down = static_cast<std::uint16_t>(u >> 16), up = static_cast<std::uint16_t>(down + 1);
  if ((u & 0xffffu) == 0) return down;
  const double d = std::abs(double(x) - double(to_float(bf16::from_bits(down))));
  const double e = std::abs(double(to_float(bf16::from_bits(up))) - double(x));
  if (d < e) return down;
  if (e < d) return up;
  return (down & 1u) ? up : down;
}

tensor<bf16, 2> random_bf16(index_t rows, index_t cols, double scale, unsigned seed) {
  const auto f = uniform_tensor<float, 2>({rows, cols}, -scale, scale, seed);
  tensor<bf16, 2> w({rows, cols});
  for (index_t i = 0; i < f.size(); ++i) w.data()[i] = bf16(f.data()[i]);
  return w;
}

// Σ_k x[m][k] W[n][k] in double with the exact weights, and the bound on what rounding x to bf16
// (relative 2^-8 per term, where the target does) and float32 accumulation (K·2^-23 of Σ|terms|,
// a loose bound for any summation order) can move it.
struct expected {
  tensor<double, 2> value, bound;
};
expected reference(tensor_view<const float, 2> x, const tensor<bf16, 2>& w) {
  const index_t M = x.extent(0), N = w.extent(0), K = w.extent(1);
  expected r{tensor<double, 2>({M, N}), tensor<double, 2>({M, N})};
  const double rel = (simd::native_bf16 ? std::ldexp(1.0, -8) : 0.0) + double(K + 2) * std::ldexp(1.0, -23);
  for (index_t m = 0; m < M; ++m)
    for (index_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (index_t k = 0; k < K; ++k) {
        const double t = double(x(m, k)) * double(to_float(w(n, k)));
        s += t;
        a += std::abs(t);
      }
      r.value(m, n) = s;
      r.bound(m, n) = rel * a + 1e-30;
    }
  return r;
}

void check_within(tensor_view<const float, 2> y, const expected& e, double base = 0.0) {
  for (index_t m = 0; m < y.extent(0); ++m)
    for (index_t n = 0; n < y.extent(1); ++n) {
      INFO("row " << m << " column " << n << " value " << y(m, n) << " expected " << base + e.value(m, n) << " bound "
                  << e.bound(m, n));
      // Adding to base rounds once more.
      REQUIRE(std::abs(double(y(m, n)) - base - e.value(m, n)) <= e.bound(m, n) + std::ldexp(std::abs(base) + std::abs(e.value(m, n)), -23));
    }
}

}  // namespace

TEST_CASE("bf16 rounds to nearest even and widens exactly", "[bf16]") {
  // Every bf16 value widens to a float that rounds back to itself (NaNs stay NaN).
  for (std::uint32_t b = 0; b < 0x10000u; ++b) {
    const bf16 v = bf16::from_bits(static_cast<std::uint16_t>(b));
    const float f = to_float(v);
    if (std::isnan(f)) REQUIRE(std::isnan(to_float(bf16(f))));
    else REQUIRE(bf16(f).bits == v.bits);
  }
  // Halfway cases go to the even neighbour; just above or below halfway to the nearer one.
  REQUIRE(bf16(std::bit_cast<float>(0x3f808000u)).bits == 0x3f80u);  // 1 + 2^-8: tie, down to even
  REQUIRE(bf16(std::bit_cast<float>(0x3f818000u)).bits == 0x3f82u);  // tie, up to even
  REQUIRE(bf16(std::bit_cast<float>(0x3f808001u)).bits == 0x3f81u);
  REQUIRE(bf16(std::bit_cast<float>(0x3f807fffu)).bits == 0x3f80u);
  REQUIRE(bf16(std::numeric_limits<float>::max()).bits == 0x7f80u);  // overflows to +inf
  REQUIRE(bf16(-std::numeric_limits<float>::infinity()).bits == 0xff80u);
  REQUIRE(bf16(-0.0f).bits == 0x8000u);
  const bf16 qnan = bf16(std::bit_cast<float>(0xff800001u));  // a signalling NaN whose payload is cut off
  REQUIRE(std::isnan(to_float(qnan)));
  REQUIRE((qnan.bits & 0x8000u) != 0);
  // Random floats of every magnitude against the double model.
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (!std::isfinite(x) || std::abs(x) >= 0x1.fefffep127f) continue;
    INFO("x = " << x);
    REQUIRE(bf16(x).bits == nearest_bf16(x));
  }
}

TEST_CASE("simd::to_bf16 equals bf16() on normal numbers", "[bf16]") {
  std::mt19937 rng(3);
  for (const index_t n : {0, 1, 15, 16, 17, 100}) {
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& v : x) v = std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng), int(rng() % 60) - 30);
    if (n > 3) x[1] = std::bit_cast<float>(0x3f808000u), x[2] = -0.0f, x[3] = 1e-40f;  // a tie, -0, a subnormal
    std::vector<bf16> out(static_cast<std::size_t>(n) + 1, bf16::from_bits(0x1234));
    simd::to_bf16(x.data(), out.data(), n);
    for (index_t i = 0; i < n; ++i) {
      INFO("n " << n << " i " << i << " x " << x[i]);
      if (std::abs(x[i]) < std::numeric_limits<float>::min() && x[i] != 0.0f)
        REQUIRE((out[i] == bf16(x[i]) || out[i] == bf16(std::copysign(0.0f, x[i]))));  // flushed, or not
      else
        REQUIRE(out[i] == bf16(x[i]));
    }
    REQUIRE(out[n].bits == 0x1234);  // nothing written past n
  }
}

TEST_CASE("bf16 GEMV and GEMM against a double evaluation", "[bf16][linear]") {
  struct shape {
    index_t M, N, K;
  };
  // Odd and even K (pairs), K past a block of pairs (192) and of 32 columns; N past panels of 32
  // and slices of 512; M past tiles of 12 and blocks of 96.
  const shape shapes[] = {{1, 1, 1},    {1, 5, 37},   {3, 33, 64},  {2, 100, 385}, {4, 3, 1},
                          {13, 31, 37}, {12, 32, 2},  {25, 65, 100}, {97, 530, 401}, {1, 1030, 33}};
  unsigned seed = 1;
  for (const auto& [M, N, K] : shapes) {
    INFO("M " << M << " N " << N << " K " << K);
    const auto w = random_bf16(N, K, 0.5, seed++);
    // X rows strided (a column slice of a wider tensor), Y rows strided too.
    const auto xwide = uniform_tensor<float, 2>({M, K + 3}, -2, 2, seed++);
    const auto x = xwide.view().subrange(1, 1, K);
    const expected e = reference(x, w);
    const nn::bf16_matrix packed(w.view());
    for (const bool gemm : {false, true}) {
      INFO((gemm ? "gemm_nt_bf16" : "gemv_bf16"));
      tensor<float, 2> ywide({M, N + 5}, std::numeric_limits<float>::quiet_NaN());
      const auto y = ywide.view().subrange(1, 2, N);
      if (gemm) simd::gemm_nt_bf16(x, w.view(), y);
      else simd::gemv_bf16(x, w.view(), y);
      check_within(y, e);
      for (index_t m = 0; m < M; ++m) REQUIRE(std::isnan(ywide(m, 0)));  // nothing outside y written
      // The same product from the matrix packed once (the panel layout on AVX512_BF16).
      tensor<float, 2> pwide({M, N + 5}, std::numeric_limits<float>::quiet_NaN());
      const auto yp = pwide.view().subrange(1, 2, N);
      if (gemm) packed.gemm(x, yp);
      else packed.gemv(x, yp, 0, N);
      check_within(yp, e);
      for (index_t m = 0; m < M; ++m) REQUIRE((std::isnan(pwide(m, 0)) && std::isnan(pwide(m, 1)) && std::isnan(pwide(m, N + 2))));
      // The GEMM reads the same panels in the same order as packing W per call: the same bits.
      if (gemm)
        for (index_t m = 0; m < M; ++m)
          for (index_t n = 0; n < N; ++n) REQUIRE(std::bit_cast<std::uint32_t>(yp(m, n)) == std::bit_cast<std::uint32_t>(y(m, n)));
      // Accumulate: y += x·Wᵀ on top of 1.
      for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) y(m, n) = 1.0f;
      if (gemm) simd::gemm_nt_bf16(x, w.view(), y, true);
      else simd::gemv_bf16(x, w.view(), y, true);
      check_within(y, e, 1.0);
    }
  }
}

TEST_CASE("bf16_matrix: packed once, unpacked bit for bit; a GEMV split at panels equals the whole", "[bf16][linear]") {
  unsigned seed = 40;
  for (const auto& [N, K] : {std::pair<index_t, index_t>{1, 1}, {31, 3}, {32, 2}, {33, 768}, {70, 130}, {97, 1}, {0, 5}}) {
    INFO("N " << N << " K " << K);
    auto w = random_bf16(N, K, 1, seed++);
    if (w.size() > 2) w.data()[1] = bf16::from_bits(0x7fc1);  // a NaN payload survives too
    const nn::bf16_matrix m(w.view());
    CHECK(m.extents() == w.extents());
    const auto back = m.unpacked();
    REQUIRE(back.extents() == w.extents());
    for (index_t i = 0; i < w.size(); ++i) REQUIRE(back.data()[i].bits == w.data()[i].bits);
    std::vector<float> r(static_cast<std::size_t>(K));  // each row read out of the panels, widened exactly
    for (index_t n = 0; n < N; ++n) {
      m.row(n, r.data());
      for (index_t k = 0; k < K; ++k) REQUIRE(std::bit_cast<std::uint32_t>(r[std::size_t(k)]) == std::bit_cast<std::uint32_t>(to_float(w(n, k))));
    }
    if (w.size() > 2) w.data()[1] = bf16(0.5f);
    const nn::bf16_matrix finite(w.view());
    const auto x = uniform_tensor<float, 2>({2, K}, -1, 1, seed++);
    tensor<float, 2> whole({2, N}, std::numeric_limits<float>::quiet_NaN()), parts = whole;
    finite.gemv(x.view(), whole.view(), 0, N);
    const index_t P = nn::bf16_matrix::panel_rows;
    for (index_t b = 0; b < N; b += 2 * P) finite.gemv(x.view(), parts.view(), b, std::min(N, b + 2 * P));
    for (index_t i = 0; i < whole.size(); ++i)
      REQUIRE(std::bit_cast<std::uint32_t>(whole.data()[i]) == std::bit_cast<std::uint32_t>(parts.data()[i]));
  }
}

TEST_CASE("bf16 products: empty shapes and errors", "[bf16][linear]") {
  const auto w = random_bf16(4, 0, 1, 1);
  tensor<float, 2> x({3, 0}), y({3, 4}, std::numeric_limits<float>::quiet_NaN());
  simd::gemm_nt_bf16(x.view(), w.view(), y.view());
  for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0f);
  y.fill(std::numeric_limits<float>::quiet_NaN());
  simd::gemv_bf16(x.view(), w.view(), y.view());
  for (index_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == 0.0f);
  const auto w2 = random_bf16(4, 5, 1, 2);
  tensor<float, 2> x2({3, 6}), y2({3, 4});
  REQUIRE_THROWS_AS(simd::gemm_nt_bf16(x2.view(), w2.view(), y2.view()), error);
  REQUIRE_THROWS_AS(simd::gemv_bf16(x2.view(), w2.view(), y2.view()), error);
}

TEST_CASE("nn::linear with bf16 weights: GEMV and GEMM, bias, threads", "[bf16][linear]") {
  for (const index_t rows : {1, 3, 4, 150}) {
    INFO("rows " << rows);
    nn::linear<float, bf16> lin{random_bf16(70, 130, 0.1, 5), uniform_tensor<float, 1>({70}, -1, 1, 6)};
    const auto x = uniform_tensor<float, 2>({rows, 130}, -1, 1, 7);
    const expected e = reference(x.view(), lin.weight.unpacked());
    tensor<float, 2> y1({rows, 70}, std::numeric_limits<float>::quiet_NaN()), y2 = y1;
    lin(x.view(), y1.view(), "linear", 1);
    lin(x.view(), y2.view(), "linear", 2);
    for (index_t m = 0; m < rows; ++m)
      for (index_t n = 0; n < 70; ++n) {
        REQUIRE(std::abs(double(y1(m, n)) - double((*lin.bias)(n)) - e.value(m, n)) <= e.bound(m, n) + 1e-6);
        REQUIRE(std::bit_cast<std::uint32_t>(y1(m, n)) == std::bit_cast<std::uint32_t>(y2(m, n)));
      }
    // Against the float layer holding the same (widened) weights.
    const auto wb = lin.weight.unpacked();
    tensor<float, 2> wf({70, 130});
    for (index_t i = 0; i < wf.size(); ++i) wf.data()[i] = to_float(wb.data()[i]);
    const nn::linear<float> wide{wf, lin.bias};
    tensor<float, 2> yf({rows, 70});
    wide(x.view(), yf.view());
    for (index_t m = 0; m < rows; ++m)
      for (index_t n = 0; n < 70; ++n) REQUIRE(std::abs(double(yf(m, n)) - y1(m, n)) <= 2 * e.bound(m, n) + 1e-6);
  }
  nn::linear<float, bf16> lin{random_bf16(8, 16, 0.1, 5), std::nullopt};
  tensor<float, 2> x({2, 15}), y({2, 8});
  REQUIRE_THROWS_WITH(lin(x.view(), y.view(), "proj"), Catch::Contains("proj") && Catch::Contains("input"));
}

TEST_CASE("float gemm_nt against a double evaluation", "[linear]") {
  // The packed float32 product over tile and block edges (K past 256, N past 512).
  const index_t M = 29, N = 530, K = 300;
  const auto w = uniform_tensor<float, 2>({N, K}, -0.5, 0.5, 11);
  const auto x = uniform_tensor<float, 2>({M, K}, -2, 2, 12);
  tensor<float, 2> y({M, N}, std::numeric_limits<float>::quiet_NaN());
  simd::gemm_nt<float>(x.view(), w.view(), y.view());
  for (index_t m = 0; m < M; ++m)
    for (index_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (index_t k = 0; k < K; ++k) s += double(x(m, k)) * w(n, k), a += std::abs(double(x(m, k)) * w(n, k));
      REQUIRE(std::abs(double(y(m, n)) - s) <= double(K + 2) * std::ldexp(a, -23));
    }
}

TEST_CASE("float packed_matrix: panels unpack bit for bit; GEMM as gemm_nt, GEMV against double", "[linear]") {
  struct shape {
    index_t M, N, K;
  };
  // Panels from 64 x 64 on: N past a panel (2 vectors) and past a slice of 2048, K past a block
  // of 512 (the stored panel read from its middle), M below, at and past a tile; then shapes that
  // stay row-major (fewer than 64 outputs or inputs).
  const shape shapes[] = {{1, 64, 64},  {3, 65, 100}, {4, 97, 513}, {2, 530, 601}, {13, 2100, 70},
                          {70, 130, 64}, {2, 20, 80},  {5, 70, 30},  {0, 64, 64}};
  unsigned seed = 60;
  for (const auto& [M, N, K] : shapes) {
    INFO("M " << M << " N " << N << " K " << K);
    auto w = uniform_tensor<float, 2>({N, K}, -0.5, 0.5, seed++);
    const nn::packed_matrix<float> packed(w.view());
    CHECK(packed.panels() == (N >= 64 && K >= 64));
    {
      auto payload = w;
      payload.data()[1] = std::bit_cast<float>(0x7fc00123u);  // a NaN payload survives the round trip
      const nn::packed_matrix<float> m(payload.view());
      const auto back = m.unpacked();
      REQUIRE(back.extents() == payload.extents());
      for (index_t i = 0; i < w.size(); ++i)
        REQUIRE(std::bit_cast<std::uint32_t>(back.data()[i]) == std::bit_cast<std::uint32_t>(payload.data()[i]));
      std::vector<float> r(std::size_t(K) + 1, -7.0f);  // each row read out of the panels (an embedding lookup)
      for (index_t n = 0; n < N; ++n) {
        m.row(n, r.data());
        for (index_t k = 0; k < K; ++k) REQUIRE(std::bit_cast<std::uint32_t>(r[std::size_t(k)]) == std::bit_cast<std::uint32_t>(payload(n, k)));
        REQUIRE(r[std::size_t(K)] == -7.0f);
      }
      REQUIRE_THROWS_AS(m.row(N, r.data()), error);
    }
    const auto xwide = uniform_tensor<float, 2>({M, K + 3}, -2, 2, seed++);
    const auto x = xwide.view().subrange(1, 1, K);  // strided rows
    auto wide_y = [&] { return tensor<float, 2>({M, N + 5}, std::numeric_limits<float>::quiet_NaN()); };
    tensor<float, 2> gw = wide_y(), vw = wide_y(), sw = wide_y(), rw = wide_y();
    const auto yg = gw.view().subrange(1, 2, N), yv = vw.view().subrange(1, 2, N), ys = sw.view().subrange(1, 2, N),
               yr = rw.view().subrange(1, 2, N);
    packed.gemm(x, yg);
    packed.gemv(x, yv, 0, N);
    const index_t P = nn::packed_matrix<float>::panel_rows;
    for (index_t b = 0; b < N; b += 2 * P) packed.gemv(x, ys, b, std::min(N, b + 2 * P));
    if (packed.panels()) simd::gemm_nt<float>(x, w.view(), yr);
    for (index_t m = 0; m < M; ++m) {
      for (const auto* t : {&gw, &vw, &sw})  // nothing outside y written
        REQUIRE((std::isnan((*t)(m, 0)) && std::isnan((*t)(m, 1)) && std::isnan((*t)(m, N + 2))));
      for (index_t n = 0; n < N; ++n) {
        double s = 0, a = 0;
        for (index_t k = 0; k < K; ++k) s += double(x(m, k)) * w(n, k), a += std::abs(double(x(m, k)) * w(n, k));
        const double bound = double(K + 2) * std::ldexp(a, -23) + 1e-30;
        INFO("row " << m << " column " << n);
        REQUIRE(std::abs(double(yg(m, n)) - s) <= bound);
        REQUIRE(std::abs(double(yv(m, n)) - s) <= bound);
        // A GEMV split at panel boundaries gives the bits of the whole; the GEMM over the stored
        // panels those of gemm_nt packing them per call (the same operands in the same order).
        REQUIRE(std::bit_cast<std::uint32_t>(ys(m, n)) == std::bit_cast<std::uint32_t>(yv(m, n)));
        if (packed.panels()) REQUIRE(std::bit_cast<std::uint32_t>(yr(m, n)) == std::bit_cast<std::uint32_t>(yg(m, n)));
      }
    }
  }
}

TEST_CASE("packed_matrix<double>: the panel products against a double evaluation", "[linear]") {
  const index_t M = 5, N = 70, K = 81;
  const auto w = uniform_tensor<double, 2>({N, K}, -1, 1, 90), x = uniform_tensor<double, 2>({M, K}, -1, 1, 91);
  const nn::packed_matrix<double> packed(w.view());
  REQUIRE(packed.panels());
  tensor<double, 2> yg({M, N}), yv({M, N});
  packed.gemm(x.view(), yg.view());
  packed.gemv(x.view(), yv.view(), 0, N);
  for (index_t m = 0; m < M; ++m)
    for (index_t n = 0; n < N; ++n) {
      double s = 0;
      for (index_t k = 0; k < K; ++k) s += x(m, k) * w(n, k);
      REQUIRE(std::abs(yg(m, n) - s) <= 1e-13);
      REQUIRE(std::abs(yv(m, n) - s) <= 1e-13);
    }
}
