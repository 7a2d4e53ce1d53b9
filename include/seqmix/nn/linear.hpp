// linear: y = x · Wᵀ (+ b) with W [out, in] as in torch checkpoints, held as a packed_matrix: the
// weights are packed for the products once, when the layer is built or loaded, never per call.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>

#include "../error.hpp"
#include "../policy/threads.hpp"
#include "../tensor/bf16.hpp"
#include "../tensor/eigen.hpp"
#include "../tensor/tensor.hpp"
#include "packed_matrix.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

/// A dense projection with weight [out, in] and an optional bias [out]. T is the type of the
/// activations, the bias and the accumulation; W the stored weight type: T, or bf16 with T = float
/// (half the weight bytes; see simd/bf16.hpp for what is rounded where). The weight is a
/// packed_matrix: built from (and saved as) the row-major [out, in] tensor, packed once.
template <class T, class W = T>
struct linear {
  static_assert(std::is_same_v<W, T> || (std::is_same_v<W, bf16> && std::is_same_v<T, float>),
                "nn::linear: the weights are T, or bf16 with float activations");
  using weight_type = W;

  packed_matrix<W> weight;
  std::optional<tensor<T, 1>> bias;

  /// Below this many rows each row reads the weights once (GEMV, decode); from it on the rows are
  /// packed too and multiplied with the weight panels (GEMM, prefill).
  static constexpr index_t gemv_max_rows = 3;

  index_t in_features() const { return weight.extent(1); }
  index_t out_features() const { return weight.extent(0); }

  /// y [N, out] = x [N, in] · Wᵀ + b. x and y need unit column stride (rows may be strided).
  /// With threads > 1 the rows are split over threads (each runs its own product); a few rows
  /// (decode) split the outputs instead, at panel boundaries.
  void operator()(tensor_view<const T, 2> x, tensor_view<T, 2> y, std::string_view who = "linear",
                  int threads = 1) const {
    check_shape(who, "input", x.extents(), {x.extent(0), in_features()});
    check_shape(who, "output", y.extents(), {x.extent(0), out_features()});
    const index_t rows = x.extent(0), min_rows = 64;  // below this a thread costs more than it saves
    if (rows <= gemv_max_rows) {
      // Decode: memory-bound, so the threads take slices of the outputs (whole panels).
      const int t = threads_for_work(threads, double(out_features()) * double(in_features()) * double(rows), 1 << 20);
      const index_t P = weight.panel_rows, panels = (out_features() + P - 1) / P;
      parallel_ranges(t, panels, [&](index_t p0, index_t p1) {
        const index_t begin = p0 * P, end = std::min(p1 * P, out_features());
        weight.gemv(x, y, begin, end);
        add_bias(y.subrange(1, begin, end - begin), begin);
      });
      return;
    }
    parallel_ranges(rows >= 2 * min_rows ? threads : 1, rows, [&](index_t begin, index_t end) {
      const auto ys = y.subrange(0, begin, end - begin);
      weight.gemm(x.subrange(0, begin, end - begin), ys);
      add_bias(ys, 0);
    });
  }

 private:
  // y[:, j] += b[first + j].
  void add_bias(tensor_view<T, 2> y, index_t first) const {
    if (bias) as_row_major(y).rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias->data() + first, y.extent(1));
  }
};

/// A linear's weight row-major [out, in] (a copy).
template <class W>
tensor<W, 2> unpacked(const packed_matrix<W>& w) {
  return w.unpacked();
}

}  // namespace seqmix::nn
