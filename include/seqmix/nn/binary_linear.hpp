// binary_linear: the FBI-Linear projection of Bi-Mamba / FBI-LLM (spec/bi_mamba.md, docs/bitlinear.md)
//   y[o] = Σ_i x_i (wscale_i · s_oi + wbias_i) (+ bias_o) = Σ_i (wscale_i x_i) s_oi + Σ_i wbias_i x_i (+ bias_o)
// with one sign bit s_oi ∈ {−1, +1} per weight and a scale and shift per input column. The signs
// stay packed (32 bits per word, 16 rows per block: simd/bits.hpp); the product looks them up in
// tables of the scaled activations, so no float weight is ever formed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "../policy/threads.hpp"
#include "../simd/bits.hpp"
#include "../simd/vec.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

/// A checkpoint entry of packed signs: `name` stored as uint8 [rows, ceil(cols / 8)] (the spec's
/// layout), holding a [rows, cols] sign matrix.
struct packed_spec {
  std::string name;
  index_t rows = 0, cols = 0;
  std::array<index_t, 2> stored_shape() const { return {rows, (cols + 7) / 8}; }
};

/// A [rows, cols] matrix of signs, one bit each (1: +1, 0: −1), in the block layout of
/// simd/bits.hpp: rows padded to a multiple of 16 and columns to a multiple of 32 with zero bits.
class packed_bits {
 public:
  packed_bits() = default;

  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  /// Bytes per row in the spec's layout: ceil(cols / 8).
  index_t row_bytes() const { return (cols_ + 7) / 8; }
  /// 32-bit words per row and 16-row blocks of the internal layout.
  index_t words() const { return (cols_ + 31) / 32; }
  index_t blocks() const { return (rows_ + 15) / 16; }
  /// The words of block `ob`: [words()][16].
  const std::uint32_t* block(index_t ob) const { return data_.data() + ob * words() * 16; }
  /// Bytes held (the packed signs).
  std::size_t memory_bytes() const { return data_.size() * sizeof(std::uint32_t); }

  /// Sign bit of (o, i): true for +1.
  bool bit(index_t o, index_t i) const {
    return (data_[std::size_t(((o / 16) * words() + i / 32) * 16 + o % 16)] >> (i % 32)) & 1u;
  }

  /// From the spec's bytes [rows, ceil(cols / 8)] (LSB first: bit b of byte j is column 8j + b;
  /// the padding bits of the last byte are ignored). Throws seqmix::error naming `who` and
  /// `what` when the byte shape does not fit `cols`.
  static packed_bits from_bytes(tensor_view<const std::uint8_t, 2> bytes, index_t cols, std::string_view who = "packed_bits",
                                std::string_view what = "weight_packed") {
    require(cols >= 0, who, std::string(what) + ": negative column count");
    check_shape(who, what, bytes.extents(), {bytes.extent(0), (cols + 7) / 8});
    packed_bits p(bytes.extent(0), cols);
    const index_t nb = p.row_bytes(), nw = p.words();
    for (index_t o = 0; o < p.rows_; ++o)
      for (index_t w = 0; w < nw; ++w) {
        std::uint32_t v = 0;
        for (index_t k = 0; k < 4 && 4 * w + k < nb; ++k) v |= std::uint32_t(bytes(o, 4 * w + k)) << (8 * k);
        p.word(o, w) = v & p.valid_mask(w);
      }
    return p;
  }

  /// From signs [rows, cols]: a positive value is +1, anything else −1 (the files hold only ±1).
  static packed_bits from_signs(tensor_view<const std::int8_t, 2> signs) {
    packed_bits p(signs.extent(0), signs.extent(1));
    for (index_t o = 0; o < p.rows_; ++o)
      for (index_t i = 0; i < p.cols_; ++i)
        if (signs(o, i) > 0) p.word(o, i / 32) |= std::uint32_t(1) << (i % 32);
    return p;
  }

  /// Random signs (each bit from std::mt19937_64 seeded with `seed`; the same on every platform).
  static packed_bits random(index_t rows, index_t cols, std::uint64_t seed) {
    packed_bits p(rows, cols);
    std::mt19937_64 rng(seed);
    for (index_t o = 0; o < rows; ++o)
      for (index_t w = 0; w < p.words(); ++w) p.word(o, w) = std::uint32_t(rng() >> 32) & p.valid_mask(w);
    return p;
  }

  /// The spec's bytes [rows, ceil(cols / 8)], padding bits 0.
  tensor<std::uint8_t, 2> to_bytes() const {
    tensor<std::uint8_t, 2> out({rows_, row_bytes()});
    for (index_t o = 0; o < rows_; ++o)
      for (index_t j = 0; j < row_bytes(); ++j)
        out(o, j) = std::uint8_t((data_[std::size_t(((o / 16) * words() + j / 4) * 16 + o % 16)] >> (8 * (j % 4))) & 0xffu);
    return out;
  }

  /// Signs [rows, cols] as ±1.
  tensor<std::int8_t, 2> to_signs() const {
    tensor<std::int8_t, 2> out({rows_, cols_});
    for (index_t o = 0; o < rows_; ++o)
      for (index_t i = 0; i < cols_; ++i) out(o, i) = bit(o, i) ? 1 : -1;
    return out;
  }

  friend bool operator==(const packed_bits& a, const packed_bits& b) {
    return a.rows_ == b.rows_ && a.cols_ == b.cols_ && a.data_ == b.data_;
  }

 private:
  packed_bits(index_t rows, index_t cols)
      : rows_(rows), cols_(cols), data_(std::size_t(checked_mul(checked_mul(blocks(), words(), "packed_bits"), 16, "packed_bits"))) {}

  std::uint32_t& word(index_t o, index_t w) { return data_[std::size_t(((o / 16) * words() + w) * 16 + o % 16)]; }
  // The bits of word w that are columns < cols.
  std::uint32_t valid_mask(index_t w) const {
    const index_t left = cols_ - 32 * w;
    return left >= 32 ? ~std::uint32_t(0) : (std::uint32_t(1) << left) - 1;
  }

  index_t rows_ = 0, cols_ = 0;
  std::vector<std::uint32_t> data_;
};

/// The FBI-Linear projection: signs [out, in] packed, wscale and wbias [in] (upstream [1, in]),
/// an optional bias [out].
template <class T>
struct binary_linear {
  static_assert(std::is_same_v<T, float>, "binary_linear: the lookup kernels are float32");

  packed_bits weight;                // weight_packed: sign(W) [out, in]
  tensor<T, 1> wscale, wbias;        // [in]
  std::optional<tensor<T, 1>> bias;  // [out]

  index_t in_features() const { return weight.cols(); }
  index_t out_features() const { return weight.rows(); }

  /// Bytes held: packed signs, scales, shifts and bias.
  std::size_t memory_bytes() const {
    return weight.memory_bytes() + std::size_t(wscale.size() + wbias.size() + (bias ? bias->size() : 0)) * sizeof(T);
  }

  /// Throws seqmix::error naming `who` unless wscale, wbias (and bias) fit the signs.
  void check(std::string_view who, const std::string& name = "binary_linear") const {
    check_shape(who, "weight '" + name + ".wscale'", wscale.extents(), {in_features()});
    check_shape(who, "weight '" + name + ".wbias'", wbias.extents(), {in_features()});
    if (bias) check_shape(who, "weight '" + name + ".bias'", bias->extents(), {out_features()});
  }

  /// y [N, out] = x [N, in] · (wscale ⊙ S + wbias)ᵀ + b. x and y need unit column stride (rows
  /// may be strided); y must not overlap x. Output row blocks are split over `threads` when the
  /// work pays for them.
  void operator()(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who = "binary_linear",
                  int threads = 1) const {
    run<false>(x, y, who, threads);
  }

  /// The same product through the portable lookup (simd/bits.hpp lut_accumulate_portable): the
  /// reference the target's kernel is tested against (same bits).
  void portable(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who = "binary_linear",
                int threads = 1) const {
    run<true>(x, y, who, threads);
  }

 private:
  template <bool Portable>
  void run(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who, int threads) const {
    namespace bits = simd::bits;
    const index_t M = x.extent(0), in = in_features(), out = out_features();
    check_shape(who, "input", x.extents(), {M, in});
    check_shape(who, "output", y.extents(), {M, out});
    check(who);
    require(threads >= 1, who, "threads must be at least 1");
    require((in <= 1 || x.stride(1) == 1) && (out <= 1 || y.stride(1) == 1), who,
            "binary_linear input and output need unit column stride");
    if (M == 0 || out == 0) return;
    const index_t nw = weight.words(), nblocks = weight.blocks(), width = 32 * nw;
    constexpr int MR = bits::lut_rows;
    const int tile = int(std::min<index_t>(MR, M));
    // Words per k-block: the tables of a tile (tile · 8·kw groups · 64 B) stay near 32 KB, in L1.
    const index_t kw = std::max<index_t>(1, std::min<index_t>(nw, 64 / tile));
    const index_t ts = kw * bits::groups_per_word * bits::table_entries;
    const int th = threads_for_work(threads, double(M) * double(out) * double(std::max<index_t>(in, 1)) / 64.0);
    parallel_ranges(th, nblocks, [&](index_t b0, index_t b1) {
      std::vector<float> u(std::size_t(MR * std::max<index_t>(width, 1)), 0.0f), tables(std::size_t(MR * ts));
      std::vector<float> acc(std::size_t((b1 - b0) * MR * 16));
      float c[MR] = {};
      const index_t o0 = 16 * b0, o1 = std::min(out, 16 * b1);
      for (index_t m0 = 0; m0 < M; m0 += MR) {
        const int mr = int(std::min<index_t>(MR, M - m0));
        for (int m = 0; m < mr; ++m) {
          const T* xr = x.data() + (m0 + m) * x.stride(0);
          simd::mul(xr, wscale.data(), u.data() + m * width, in);  // the tail past `in` stays 0
          c[m] = in > 0 ? simd::dot(xr, wbias.data(), in) : 0.0f;
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (index_t w0 = 0; w0 < nw; w0 += kw) {
          const index_t n = std::min(kw, nw - w0);
          for (int m = 0; m < mr; ++m)
            bits::build_tables(u.data() + m * width + 32 * w0, bits::groups_per_word * n, tables.data() + m * ts);
          for (index_t ob = b0; ob < b1; ++ob)
            with_rows(mr, [&]<int R>() {
              const std::uint32_t* words = weight.block(ob) + 16 * w0;
              float* a = acc.data() + (ob - b0) * MR * 16;
              if constexpr (Portable) bits::lut_accumulate_portable<R>(words, n, tables.data(), ts, a);
              else bits::lut_accumulate<R>(words, n, tables.data(), ts, a);
            });
        }
        for (int m = 0; m < mr; ++m) {
          T* yr = y.data() + (m0 + m) * y.stride(0);
          for (index_t o = o0; o < o1; ++o) {
            const float v = acc[std::size_t(((o / 16 - b0) * MR + m) * 16 + o % 16)] + c[m];
            yr[o] = bias ? v + bias->data()[o] : v;
          }
        }
      }
    });
  }

  // f.template operator()<R>() with R = mr as a compile-time constant (1 <= mr <= lut_rows).
  template <class F>
  static void with_rows(int mr, F&& f) {
    switch (mr) {
      case 1: return f.template operator()<1>();
      case 2: return f.template operator()<2>();
      case 3: return f.template operator()<3>();
      case 4: return f.template operator()<4>();
      default: break;
    }
    if constexpr (simd::bits::lut_rows > 4) {
      switch (mr) {
        case 5: return f.template operator()<5>();
        case 6: return f.template operator()<6>();
        case 7: return f.template operator()<7>();
        default: return f.template operator()<8>();
      }
    }
  }
};

}  // namespace seqmix::nn
