// 1-bit linear op (nn::binary_linear, simd/bits.hpp): the reference cases; widths 37, 100 and 4095
// (not multiples of 8, 32 or 16 rows) against a double evaluation of the signs, with the padding
// bits of the stored bytes set to garbage; the target's lookup against the portable one (same
// bits), GEMV and GEMM tiles, 1 and 2 threads; pack / unpack round trips; the memory bound;
// argument errors.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include <seqmix/io/safetensors.hpp>
#include <seqmix/nn/binary_linear.hpp>
#include <seqmix/tensor/random.hpp>

#include "support/compare.hpp"

using namespace seqmix;
using seqmix::nn::binary_linear;
using seqmix::nn::packed_bits;

namespace {

const std::string dir = SEQMIX_TEST_DATA_DIR "/refs/bi_mamba/";

tensor<std::int8_t, 2> random_signs(index_t rows, index_t cols, unsigned seed) {
  tensor<std::int8_t, 2> s({rows, cols});
  std::mt19937 rng(seed);
  for (index_t i = 0; i < s.size(); ++i) s.data()[i] = (rng() & 1) ? 1 : -1;
  return s;
}

// The spec's bytes of `s` with every padding bit of the last byte set.
tensor<std::uint8_t, 2> bytes_with_garbage(const tensor<std::int8_t, 2>& s) {
  const index_t rows = s.extent(0), cols = s.extent(1), nb = (cols + 7) / 8;
  tensor<std::uint8_t, 2> b({rows, nb});
  for (index_t o = 0; o < rows; ++o) {
    for (index_t i = 0; i < cols; ++i)
      if (s(o, i) > 0) b(o, i / 8) = std::uint8_t(b(o, i / 8) | (1u << (i % 8)));
    for (index_t i = cols; i < 8 * nb; ++i) b(o, i / 8) = std::uint8_t(b(o, i / 8) | (1u << (i % 8)));
  }
  return b;
}

binary_linear<float> make_op(const tensor<std::int8_t, 2>& s, bool with_bias, unsigned seed) {
  const index_t out = s.extent(0), in = s.extent(1);
  binary_linear<float> op;
  op.weight = packed_bits::from_bytes(bytes_with_garbage(s).view(), in);
  op.wscale = uniform_tensor<float, 1>({in}, 0.01, 0.1, seed);
  op.wbias = uniform_tensor<float, 1>({in}, -0.02, 0.02, seed + 1);
  if (with_bias) op.bias = uniform_tensor<float, 1>({out}, -0.5, 0.5, seed + 2);
  return op;
}

// y in double from the signs: Σ_i x_i (wscale_i s_oi + wbias_i) + b_o.
tensor<double, 2> reference(const binary_linear<float>& op, const tensor<std::int8_t, 2>& s, const tensor<float, 2>& x) {
  const index_t M = x.extent(0), out = s.extent(0), in = s.extent(1);
  tensor<double, 2> y({M, out});
  for (index_t m = 0; m < M; ++m)
    for (index_t o = 0; o < out; ++o) {
      double a = op.bias ? double(op.bias->data()[o]) : 0.0;
      for (index_t i = 0; i < in; ++i) a += double(x(m, i)) * (double(op.wscale(i)) * s(o, i) + double(op.wbias(i)));
      y(m, o) = a;
    }
  return y;
}

tensor<float, 2> apply(const binary_linear<float>& op, const tensor<float, 2>& x, int threads, bool portable = false) {
  auto y = test::nan_tensor<float, 2>({x.extent(0), op.out_features()});
  if (portable) op.portable(x.view(), y.view(), "test", threads);
  else op(x.view(), y.view(), "test", threads);
  return y;
}

}  // namespace

TEST_CASE("binary_linear: the reference cases", "[bi_mamba][op]") {
  for (const char* name : {"op_decode", "op_medium", "op_odd_T37", "op_bias"}) {
    INFO(name);
    const auto f = io::safetensors::load(dir + name + std::string(".safetensors"));
    const auto x3 = f.get<float, 3>("in.x");
    const auto want3 = f.get<float, 3>("out.y");
    const auto bytes = f.get<std::uint8_t, 2>("param.weight_packed");
    const auto signs = f.get<std::int8_t, 2>("param.weight_sign");
    const index_t in = x3.extent(2), out = want3.extent(2), M = x3.extent(0) * x3.extent(1);
    binary_linear<float> op;
    op.weight = packed_bits::from_bytes(bytes.view(), in);
    CHECK(op.weight == packed_bits::from_signs(signs.view()));
    CHECK(op.weight.to_bytes().size() == bytes.size());
    CHECK(std::equal(bytes.data(), bytes.data() + bytes.size(), op.weight.to_bytes().data()));
    op.wscale = tensor<float, 1>(f.get<float, 2>("param.wscale").view().reshape<1>({in}));
    op.wbias = tensor<float, 1>(f.get<float, 2>("param.wbias").view().reshape<1>({in}));
    if (f.contains("param.bias")) op.bias = f.get<float, 1>("param.bias");
    const tensor<float, 2> x(x3.view().reshape<2>({M, in}));
    const tensor<float, 2> want(want3.view().reshape<2>({M, out}));
    for (int th : {1, 2}) {
      const auto y = apply(op, x, th);
      double worst = 0;
      for (index_t i = 0; i < y.size(); ++i)
        worst = std::max(worst, std::abs(double(y.data()[i]) - want.data()[i]) - (1e-4 + 1e-3 * std::abs(double(want.data()[i]))));
      CHECK(worst <= 0);
      SEQMIX_CHECK_IDENTICAL(y, apply(op, x, th, true));
    }
  }
}

TEST_CASE("binary_linear: widths 37, 100, 4095 with garbage padding bits, GEMV and GEMM, portable = target",
          "[bi_mamba][op]") {
  for (const index_t in : {37, 100, 4095}) {
    for (const index_t out : {1, 19, 40}) {
      const auto s = random_signs(out, in, unsigned(in * 7 + out));
      const auto op = make_op(s, out != 19, unsigned(in + out));
      INFO("in=" << in << " out=" << out);
      CHECK(op.weight == packed_bits::from_signs(s.view()));
      for (const index_t M : {1, 3, 11}) {
        INFO("rows=" << M);
        const auto x = uniform_tensor<float, 2>({M, in}, -1, 1, unsigned(M + in));
        const auto y = apply(op, x, 1);
        SEQMIX_CHECK_WITHIN(y, reference(op, s, x), test::tolerance<float>(double(in)));
        SEQMIX_CHECK_IDENTICAL(apply(op, x, 1, true), y);
        SEQMIX_CHECK_IDENTICAL(apply(op, x, 2), y);
      }
    }
  }
}

TEST_CASE("binary_linear: large GEMM tiles and strided rows give the same bits", "[bi_mamba][op]") {
  const index_t in = 300, out = 70, M = 29;
  const auto s = random_signs(out, in, 5);
  const auto op = make_op(s, true, 6);
  const auto x = uniform_tensor<float, 2>({M, in}, -1, 1, 7);
  const auto y = apply(op, x, 2);
  SEQMIX_CHECK_WITHIN(y, reference(op, s, x), test::tolerance<float>(double(in)));
  SEQMIX_CHECK_IDENTICAL(apply(op, x, 1, true), y);
  // Every row alone (the GEMV tile, several partial sums per lane) gives the row of the GEMM
  // within float rounding.
  for (index_t m = 0; m < M; m += 7) {
    tensor<float, 2> xr(x.view().subrange(0, m, 1));
    const auto yr = apply(op, xr, 1);
    const tensor<float, 2> row(y.view().subrange(0, m, 1));
    SEQMIX_CHECK_WITHIN(yr, row, test::tolerance<float>(double(in)));
    SEQMIX_CHECK_IDENTICAL(apply(op, xr, 1, true), yr);
  }
  // Strided input and output rows.
  tensor<float, 2> xs({M, in + 5}), ys({M, out + 3}, -7.0f);
  for (index_t m = 0; m < M; ++m)
    for (index_t i = 0; i < in; ++i) xs(m, i) = x(m, i);
  op(xs.view().subrange(1, 0, in), ys.view().subrange(1, 0, out));
  const tensor<float, 2> ys_cut(ys.view().subrange(1, 0, out));
  SEQMIX_CHECK_IDENTICAL(ys_cut, y);
  CHECK(ys(3, out) == -7.0f);
}

TEST_CASE("packed_bits: pack / unpack round trips; padding bits are ignored and written as 0", "[bi_mamba][op]") {
  for (const index_t in : {1, 7, 8, 9, 37, 100, 4095}) {
    INFO("in=" << in);
    const auto s = random_signs(21, in, unsigned(in));
    const auto p = packed_bits::from_signs(s.view());
    const auto back = p.to_signs();
    CHECK(std::equal(back.data(), back.data() + back.size(), s.data(), s.data() + s.size()));
    const auto garbage = bytes_with_garbage(s);
    const auto q = packed_bits::from_bytes(garbage.view(), in);
    CHECK(q == p);
    const auto clean = q.to_bytes();
    REQUIRE(clean.extents() == garbage.extents());
    for (index_t o = 0; o < clean.extent(0); ++o) {
      const index_t last = clean.extent(1) - 1;
      const unsigned used = in % 8 == 0 ? 0xffu : (1u << (in % 8)) - 1;
      CHECK(clean(o, last) == (garbage(o, last) & used));
      for (index_t j = 0; j < last; ++j) CHECK(clean(o, j) == garbage(o, j));
    }
    CHECK(packed_bits::from_bytes(clean.view(), in) == p);
  }
}

TEST_CASE("binary_linear: a 4096 x 4096 projection takes at most 1/25 of its float32 bytes", "[bi_mamba][op]") {
  binary_linear<float> op;
  op.weight = packed_bits::random(4096, 4096, 1);
  op.wscale = tensor<float, 1>({4096}), op.wbias = tensor<float, 1>({4096});
  CHECK(op.memory_bytes() * 25 <= std::size_t(4096) * 4096 * sizeof(float));
  CHECK(op.weight.memory_bytes() == std::size_t(4096) * 4096 / 8);
}

TEST_CASE("binary_linear: empty inputs; bad shapes, strides and thread counts raise seqmix::error",
          "[bi_mamba][op][errors]") {
  const auto s = random_signs(20, 37, 3);
  auto op = make_op(s, true, 4);
  tensor<float, 2> x({0, 37}), y({0, 20});
  op(x.view(), y.view());  // no rows: nothing to do
  tensor<float, 2> x1({2, 36}), y1({2, 20}), x2({2, 37}), y2({2, 21});
  REQUIRE_THROWS_WITH(op(x1.view(), y1.view(), "Op"), Catch::Contains("Op: input has shape [2, 36], expected [2, 37]"));
  REQUIRE_THROWS_WITH(op(x2.view(), y2.view(), "Op"), Catch::Contains("Op: output has shape [2, 21], expected [2, 20]"));
  REQUIRE_THROWS_AS(op(x2.view(), y1.view(), "Op", 0), seqmix::error);
  tensor<float, 2> xt({37, 2});
  REQUIRE_THROWS_WITH(op(transposed(xt.view()), y1.view(), "Op"), Catch::Contains("unit column stride"));
  tensor<std::uint8_t, 2> bytes({20, 4});
  REQUIRE_THROWS_WITH(packed_bits::from_bytes(bytes.view(), 37, "Op", "w"), Catch::Contains("Op: w has shape [20, 4], expected [20, 5]"));
  op.wscale = tensor<float, 1>({36});
  REQUIRE_THROWS_WITH(op(x2.view(), y1.view(), "Op"), Catch::Contains("wscale"));
}
