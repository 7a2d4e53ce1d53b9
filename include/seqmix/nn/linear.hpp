// linear: y = x · Wᵀ (+ b) with W [out, in] as in torch checkpoints. Float weights run in
// simd::gemm_nt or Eigen; bf16 weights (linear<float, bf16>) are a bf16_matrix, packed once for
// simd/bf16.hpp's products.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>

#include "../error.hpp"
#include "../policy/threads.hpp"
#include "../simd/gemm_nt.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/eigen.hpp"
#include "../tensor/tensor.hpp"
#include "bf16_matrix.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

/// A dense projection with weight [out, in] and an optional bias [out]. T is the type of the
/// activations, the bias and the accumulation; W the stored weight type: T, or bf16 with T = float
/// (half the weight bytes; see simd/bf16.hpp for what is rounded where), held as a bf16_matrix:
/// built from (and saved as) the row-major [out, in] tensor, packed for the products once.
template <class T, class W = T>
struct linear {
  static_assert(std::is_same_v<W, T> || (std::is_same_v<W, bf16> && std::is_same_v<T, float>),
                "nn::linear: the weights are T, or bf16 with float activations");
  using weight_type = W;

  std::conditional_t<std::is_same_v<W, bf16>, bf16_matrix, tensor<W, 2>> weight;
  std::optional<tensor<T, 1>> bias;

  /// With at least this many rows (per thread), outputs and inputs the product runs in
  /// simd::gemm_nt, otherwise in Eigen.
  static constexpr index_t packed_min = 64;
  /// bf16 weights: below this many rows each row reads the weights once (GEMV), from it on they
  /// are packed into panels (GEMM).
  static constexpr index_t bf16_packed_min = 4;

  index_t in_features() const { return weight.extent(1); }
  index_t out_features() const { return weight.extent(0); }

  /// y [N, out] = x [N, in] · Wᵀ + b. x and y need unit column stride (rows may be strided).
  /// With threads > 1 the rows are split over threads (each runs its own product); a single row
  /// with bf16 weights splits the outputs instead.
  void operator()(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who = "linear",
                  int threads = 1) const {
    check_shape(who, "input", x.extents(), {x.extent(0), in_features()});
    check_shape(who, "output", y.extents(), {x.extent(0), out_features()});
    const index_t rows = x.extent(0), min_rows = 64;  // below this a thread costs more than it saves
    if constexpr (std::is_same_v<W, bf16>) {
      if (rows < bf16_packed_min) {
        // Decode: memory-bound, so the threads take slices of the outputs (whole panels).
        const int t = threads_for_work(threads, double(out_features()) * double(in_features()) * double(rows), 1 << 20);
        const index_t P = bf16_matrix::panel_rows, panels = (out_features() + P - 1) / P;
        parallel_ranges(t, panels, [&](index_t p0, index_t p1) {
          const index_t begin = p0 * P, end = std::min(p1 * P, out_features());
          weight.gemv(x, y, begin, end);
          add_bias(y.subrange(1, begin, end - begin), begin);
        });
        return;
      }
    }
    parallel_ranges(rows >= 2 * min_rows ? threads : 1, rows, [&](index_t begin, index_t end) {
      const auto xs = x.subrange(0, begin, end - begin);
      const auto ys = y.subrange(0, begin, end - begin);
      if constexpr (std::is_same_v<W, bf16>) {
        weight.gemm(xs, ys);
      } else if (end - begin >= packed_min && out_features() >= packed_min && in_features() >= packed_min) {
        // Prefill: the packed, register-blocked product (10-20% faster than Eigen's here). A few
        // rows (decode) do not repay packing the weights, nor a narrow or shallow product (low-rank
        // factors) packing the rows: Eigen takes those.
        simd::gemm_nt<T>(xs, weight.view(), ys);
      } else {
        as_row_major(ys).noalias() = as_row_major(xs) * as_row_major(weight.view()).transpose();
      }
      add_bias(ys, 0);
    });
  }

 private:
  // y[:, j] += b[first + j].
  void add_bias(tensor_view<T, 2> y, index_t first) const {
    if (bias) as_row_major(y).rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data() + first, y.extent(1));
  }
};

/// A linear's weight row-major [out, in]: the tensor itself, or the bf16_matrix unpacked (a copy).
template <class W>
const tensor<W, 2>& unpacked(const tensor<W, 2>& w) {
  return w;
}
inline tensor<bf16, 2> unpacked(const bf16_matrix& w) { return w.unpacked(); }

}  // namespace seqmix::nn
