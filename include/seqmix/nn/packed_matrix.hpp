// packed_matrix: a projection's weight [out, in] kept in the layout the target's products read,
// so a projection packs its weights once, when it is built or loaded, and never per call.
//   - float / double: gemm_nt's panel layout (simd::panel_rows), for weights of at least
//     packed_min on both sides; prefill multiplies the panels as they are (gemm_nt_panels) and
//     decode streams them in one pass (gemv_panels). Narrower or shallower weights (low-rank
//     factors) stay row-major for Eigen, where packing would not repay itself.
//   - bf16: on AVX512_BF16 targets the bf16 GEMM's panel layout (simd::bf16_panel_rows); other
//     targets keep the rows as checkpoints store them (their kernels widen them to float32).
// Built from and unpacked to the row-major [out, in] tensor bit for bit.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <type_traits>

#include "../error.hpp"
#include "../simd/bf16.hpp"
#include "../simd/gemm_nt.hpp"
#include "../simd/vec.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/eigen.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

template <class W>
class packed_matrix {
  static constexpr bool is_bf16 = std::is_same_v<W, bf16>;
  // A panel element: one value, or a pair of bf16 in one 32-bit word.
  using word = std::conditional_t<is_bf16, std::uint32_t, W>;

 public:
  using value_type = W;
  /// Float weights with fewer outputs or inputs than this stay row-major.
  static constexpr index_t packed_min = 64;
  /// Outputs per panel: a split of the outputs over threads starts each part at a multiple of it.
  static constexpr index_t panel_rows = [] {
    if constexpr (is_bf16) return simd::bf16_panel_rows;
    else return simd::panel_rows<W>;
  }();

  packed_matrix() = default;
  /// The matrix of `w` [out, in] (row-major, as checkpoints store it), packed once.
  packed_matrix(tensor_view<const W, 2> w) : extents_(w.extents()), panels_used_(panel_layout(w.extents())) {
    if (!panels_used_) {
      rows_ = tensor<W, 2>(w);
    } else if constexpr (is_bf16) {
      panels_ = tensor<word, 1>({simd::bf16_panel_words(w.extent(0), w.extent(1))});
      simd::pack_bf16_panels(w, panels_.data());
    } else {
      panels_ = tensor<word, 1>({simd::panel_elements<W>(w.extent(0), w.extent(1))});
      simd::pack_panels(w, panels_.data());
    }
  }
  packed_matrix(const tensor<W, 2>& w) : packed_matrix(w.view()) {}

  index_t extent(std::size_t d) const { return extents_[d]; }
  const std::array<index_t, 2>& extents() const { return extents_; }
  index_t size() const { return extents_[0] * extents_[1]; }
  /// True when the weights are held in panels (false: row-major).
  bool panels() const { return panels_used_; }
  /// Bytes held: the values and, in the panel layout, the padding of the last panel (and for
  /// bf16, of an odd input count).
  std::size_t memory_bytes() const {
    return std::size_t(panels_.size()) * sizeof(word) + std::size_t(rows_.size()) * sizeof(W);
  }

  /// The matrix row-major [out, in], as checkpoints store it (a copy, bit for bit).
  tensor<W, 2> unpacked() const {
    if (!panels_used_) return rows_;
    tensor<W, 2> w(extents_);
    if constexpr (is_bf16) {
      if (size() > 0) simd::unpack_bf16_panels(panels_.data(), w.view());
    } else {
      simd::unpack_panels(panels_.data(), w.view());
    }
    return w;
  }

  /// out[0, in) = row n (an output's weights) converted to T: an embedding lookup, when the
  /// matrix is an embedding tied to the LM head. In the panel layout the row is strided (one
  /// value per NR outputs).
  template <class T>
  void row(index_t n, T* out) const {
    require(0 <= n && n < extent(0), "packed_matrix", "row " + std::to_string(n) + " outside [0, " + std::to_string(extent(0)) + ")");
    const index_t K = extent(1), P = panel_rows;
    for (index_t k = 0; k < K; ++k) {
      if (!panels_used_) {
        out[k] = static_cast<T>(rows_(n, k));
      } else if constexpr (is_bf16) {
        const std::uint32_t word = panels_.data()[(n / P * ((K + 1) / 2) + k / 2) * P + n % P];
        out[k] = static_cast<T>(to_float(bf16::from_bits(static_cast<std::uint16_t>(k % 2 ? word >> 16 : word & 0xffffu))));
      } else {
        out[k] = static_cast<T>(panels_.data()[(n / P * K + k) * P + n % P]);
      }
    }
  }

  /// Y[:, begin, end) = X · W[begin, end)ᵀ for few rows of X (decode): each row of X reads the
  /// weights of those outputs once. `begin` must be a multiple of panel_rows.
  template <class T>
  void gemv(tensor_view<const T, 2> X, tensor_view<T, 2> Y, index_t begin, index_t end) const {
    check_operands(X, Y);
    if constexpr (is_bf16) {
#if defined(SEQMIX_SIMD_BF16)
      simd::gemv_bf16_panels(X, panels_.data(), extent(0), Y, begin, end);
#else
      simd::gemv_bf16(X, rows_.view().subrange(0, begin, end - begin), Y.subrange(1, begin, end - begin));
#endif
    } else if (panels_used_) {
      simd::gemv_panels(X, panels_.data(), extent(0), Y, begin, end);
    } else {
      // One dot product per output: the same bits however the outputs are split over threads.
      for (index_t i = 0; i < X.extent(0); ++i)
        for (index_t n = begin; n < end; ++n) Y(i, n) = simd::dot(X.ptr(i, 0), rows_.data() + n * extent(1), extent(1));
    }
  }

  /// Y = X · Wᵀ for many rows of X (prefill).
  template <class T>
  void gemm(tensor_view<const T, 2> X, tensor_view<T, 2> Y) const {
    check_operands(X, Y);
    if constexpr (is_bf16) {
#if defined(SEQMIX_SIMD_BF16)
      simd::gemm_nt_bf16_panels(X, panels_.data(), extent(0), Y);
#else
      simd::gemm_nt_bf16(X, rows_.view(), Y);
#endif
    } else if (panels_used_) {
      simd::gemm_nt_panels(X, panels_.data(), extent(0), Y);
    } else {
      eigen_product(X, Y);
    }
  }

 private:
  static bool panel_layout(const std::array<index_t, 2>& e) {
    if constexpr (is_bf16) return simd::native_bf16;
    else return e[0] >= packed_min && e[1] >= packed_min;
  }
  template <class T>
  void check_operands(tensor_view<const T, 2> X, tensor_view<T, 2> Y) const {
    static_assert(std::is_same_v<T, W> || (is_bf16 && std::is_same_v<T, float>),
                  "packed_matrix: activations of the weight's type, or float with bf16 weights");
    check_shape("packed_matrix", "input", X.extents(), {X.extent(0), extent(1)});
    check_shape("packed_matrix", "output", Y.extents(), {X.extent(0), extent(0)});
  }
  // Y = X · Wᵀ from the row-major weights.
  template <class T>
  void eigen_product(tensor_view<const T, 2> X, tensor_view<T, 2> Y) const {
    if constexpr (!is_bf16) as_row_major(Y).noalias() = as_row_major(X) * as_row_major(rows_.view()).transpose();
  }

  std::array<index_t, 2> extents_{0, 0};
  bool panels_used_ = false;
  tensor<word, 1> panels_;  // the panel layout
  tensor<W, 2> rows_;       // row-major
};

/// bf16 weights of a projection (linear<float, bf16>).
using bf16_matrix = packed_matrix<bf16>;

}  // namespace seqmix::nn
