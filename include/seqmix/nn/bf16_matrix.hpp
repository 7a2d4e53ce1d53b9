// bf16_matrix: a bf16 weight [out, in] kept in the layout the target's bf16 products read, so a
// projection packs its weights once, when it is built or loaded, and never per call. On
// AVX512_BF16 targets that is the GEMM's panel layout (simd::bf16_panel_rows); prefill multiplies
// the panels as they are and decode streams them in one pass. Other targets keep the rows as
// checkpoints store them (their kernels widen them to float32).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "../error.hpp"
#include "../simd/bf16.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

class bf16_matrix {
 public:
  /// Outputs per panel: a split of the outputs over threads starts each part at a multiple of it.
  static constexpr index_t panel_rows = simd::bf16_panel_rows;

  bf16_matrix() = default;
  /// The matrix of `w` [out, in] (row-major, as checkpoints store it), packed once.
  bf16_matrix(tensor_view<const bf16, 2> w) : extents_(w.extents()) {
    if constexpr (simd::native_bf16) {
      panels_ = tensor<std::uint32_t, 1>({simd::bf16_panel_words(w.extent(0), w.extent(1))});
      simd::pack_bf16_panels(w, panels_.data());
    } else {
      rows_ = tensor<bf16, 2>(w);
    }
  }
  bf16_matrix(const tensor<bf16, 2>& w) : bf16_matrix(w.view()) {}

  index_t extent(std::size_t d) const { return extents_[d]; }
  const std::array<index_t, 2>& extents() const { return extents_; }
  index_t size() const { return extents_[0] * extents_[1]; }
  /// Bytes held: the bf16 values and, in the panel layout, the padding to 32 outputs and an even
  /// input count.
  std::size_t memory_bytes() const {
    return simd::native_bf16 ? std::size_t(panels_.size()) * 4 : std::size_t(rows_.size()) * sizeof(bf16);
  }

  /// The matrix row-major [out, in], as checkpoints store it (a copy, bit for bit).
  tensor<bf16, 2> unpacked() const {
    if constexpr (!simd::native_bf16) return rows_;
    tensor<bf16, 2> w(extents_);
    if (size() > 0) simd::unpack_bf16_panels(panels_.data(), w.view());
    return w;
  }

  /// Y[:, begin, end) (+)= X · W[begin, end)ᵀ for few rows of X (decode): each row of X reads the
  /// weights of those outputs once. `begin` must be a multiple of panel_rows.
  void gemv(tensor_view<const float, 2> X, tensor_view<float, 2> Y, index_t begin, index_t end) const {
    check_shape("bf16_matrix", "input", X.extents(), {X.extent(0), extent(1)});
    check_shape("bf16_matrix", "output", Y.extents(), {X.extent(0), extent(0)});
#if defined(SEQMIX_SIMD_BF16)
    simd::gemv_bf16_panels(X, panels_.data(), extent(0), Y, begin, end);
#else
    simd::gemv_bf16(X, rows_.view().subrange(0, begin, end - begin), Y.subrange(1, begin, end - begin));
#endif
  }

  /// Y = X · Wᵀ for many rows of X (prefill).
  void gemm(tensor_view<const float, 2> X, tensor_view<float, 2> Y) const {
    check_shape("bf16_matrix", "input", X.extents(), {X.extent(0), extent(1)});
#if defined(SEQMIX_SIMD_BF16)
    simd::gemm_nt_bf16_panels(X, panels_.data(), extent(0), Y);
#else
    simd::gemm_nt_bf16(X, rows_.view(), Y);
#endif
  }

 private:
  std::array<index_t, 2> extents_{0, 0};
  tensor<std::uint32_t, 1> panels_;  // AVX512_BF16: the panel layout
  tensor<bf16, 2> rows_;             // other targets: row-major
};

}  // namespace seqmix::nn
