// Short causal depthwise conv1d with a carried state (spec/delta_net.md "short conv"; also used by
// Gated DeltaNet, Mamba-1/2 and Bi-Mamba). One implementation for every layer.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../error.hpp"
#include "../io/weights.hpp"
#include "../policy/threads.hpp"
#include "../simd/math.hpp"
#include "../tensor/tensor.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::nn {

/// y_t[c] = act(bias[c] + Σ_j w[c,j] · x_{t-(W-1)+j}[c]) over time-major activations [B, L, C],
/// where the W-1 inputs before x come from the state (oldest first; zeros for a fresh sequence).
/// `w[c, W-1]` multiplies the current token. The state [B, C, W-1] holds the last W-1 pre-conv
/// inputs, so a sequence split anywhere gives the same outputs.
template <class T>
struct causal_conv1d {
  tensor<T, 2> weight;              // [channels, width]: upstream conv1d.weight [C, 1, W] squeezed
  std::optional<tensor<T, 1>> bias;  // [channels]
  bool silu = true;                  // apply silu after the bias (every layer here does)

  index_t channels() const { return weight.extent(0); }
  index_t width() const { return weight.extent(1); }

  /// Loads `<name>.weight` [C, 1, W] and, when `with_bias`, `<name>.bias` [C] from `src`.
  static causal_conv1d load(const io::weight_source& src, std::string_view name, index_t channels, index_t width,
                            bool with_bias, bool silu = true) {
    const std::string n(name);
    auto w3 = src.load<T, 3>(n + ".weight", {channels, 1, width});
    causal_conv1d c{tensor<T, 2>(w3.view().template reshape<2>({channels, width})), std::nullopt, silu};
    if (with_bias) c.bias = src.load<T, 1>(n + ".bias", {channels});
    return c;
  }

  /// A zero state for `batch` sequences: [batch, C, W-1].
  tensor<T, 3> make_state(index_t batch) const { return tensor<T, 3>({batch, channels(), width() - 1}); }

  /// x, y [B, L, C] (unit channel stride; y must not overlap x); state [B, C, W-1] is read as the
  /// inputs before x and left as the last W-1 inputs of (state ++ x). Channel blocks are split over
  /// `threads` when the work is large enough to pay for them.
  void operator()(tensor_view<const T, 3> x, tensor_view<T, 3> y, tensor_view<T, 3> state,
                  std::string_view who = "causal_conv1d", int threads = 1) const {
    const index_t B = x.extent(0), L = x.extent(1), C = channels(), W = width(), P = W - 1;
    require(W >= 1, who, "conv width must be at least 1");
    check_shape(who, "conv input", x.extents(), {B, L, C});
    check_shape(who, "conv output", y.extents(), {B, L, C});
    check_shape(who, "conv state", state.extents(), {B, C, P});
    if (bias) check_shape(who, "conv bias", bias->extents(), {C});
    require(C == 0 || (x.stride(2) == 1 && y.stride(2) == 1), who, "conv input/output need unit channel stride");
    if (L == 0) return;

    // The weights transposed so that one vector load covers consecutive channels. Raw pointers:
    // element access through views cost 16% of an UltraMem decode step here.
    tensor<T, 2> wt({W, C});
    const T* w = weight.data();
    for (index_t c = 0; c < C; ++c)
      for (index_t j = 0; j < W; ++j) wt.data()[j * C + c] = w[c * W + j];
    tensor<T, 2> hist({std::max<index_t>(P, 1), C});  // old state, time-major
    const index_t sc = state.stride(1), sj = state.stride(2);
    for (index_t b = 0; b < B; ++b) {
      const T* sb = state.ptr(b);
      for (index_t c = 0; c < C; ++c)
        for (index_t j = 0; j < P; ++j) hist.data()[j * C + c] = sb[c * sc + j * sj];
      // Input row at time s (s < 0: from the old state).
      auto row = [&](index_t s) -> const T* { return s >= 0 ? x.ptr(b, s, 0) : hist.data() + (P + s) * C; };
      constexpr index_t block = 8 * simd::lanes<T>;
      const index_t blocks = (C + block - 1) / block;
      const int th = L * C >= (index_t(1) << 16) ? threads : 1;
      parallel_ranges(th, blocks, [&](index_t b0, index_t b1) {
        // Time tiles of `tile` rows; inside a tile each channel vector walks down the rows, so an
        // input line enters L1 once and serves the next W-1 outputs from there, and the weights
        // of the vector stay in registers (a row-at-a-time pass streamed the 4 weight rows and 4
        // input rows, 48 KB at C = 1536, through L1 for every output row).
        constexpr index_t tile = 32;
        std::vector<const T*> rows(static_cast<std::size_t>(tile + P));
        std::vector<T*> outs(static_cast<std::size_t>(tile));
        const index_t c0 = b0 * block, c1 = std::min(C, b1 * block);
        for (index_t t0 = 0; t0 < L; t0 += tile) {
          const index_t R = std::min(tile, L - t0);
          for (index_t k = 0; k < R + P; ++k) rows[std::size_t(k)] = row(t0 - P + k);
          for (index_t r = 0; r < R; ++r) outs[std::size_t(r)] = y.ptr(b, t0 + r, 0);
          // The next tile's input rows, fetched a line per row and channel vector while this
          // tile computes (the strided walk below is beyond the hardware prefetcher).
          const tile_rows next{t0 + R < L ? x.ptr(b, t0 + R, 0) : nullptr, x.stride(1), std::min(tile, L - t0 - R)};
          auto run = [&]<bool act>(std::bool_constant<act>) {
            const T* const* in = rows.data();
            T* const* out = outs.data();
            switch (W) {
              case 4: return conv_tile<4, act>(in, out, R, next, wt.data(), c0, c1, W, C);
              case 3: return conv_tile<3, act>(in, out, R, next, wt.data(), c0, c1, W, C);
              case 2: return conv_tile<2, act>(in, out, R, next, wt.data(), c0, c1, W, C);
              default: return conv_tile<0, act>(in, out, R, next, wt.data(), c0, c1, W, C);
            }
          };
          if (silu) run(std::true_type{});
          else run(std::false_type{});
        }
      });
      // New state: the last P inputs of (old state ++ x), oldest first.
      T* sw = state.ptr(b);
      for (index_t j = 0; j < P; ++j) {
        const T* src = row(L - P + j);
        for (index_t c = 0; c < C; ++c) sw[c * sc + j * sj] = src[c];
      }
    }
  }

 private:
  // Outputs outs[r] (r < R) for channels [c0, c1): rows[r + j] is the input at offset j of output
  // r's window. KW is the width when known at compile time (0: W at run time); Silu applies silu.
  struct tile_rows {
    const T* first;  // null: none
    index_t stride, count;
  };

  template <index_t KW, bool Silu>
  [[gnu::noinline]] void conv_tile(const T* const* rows, T* const* outs, index_t R, tile_rows next, const T* wt,
                                   index_t c0, index_t c1, index_t W, index_t C) const {
    using V = simd::batch<T>;
    constexpr index_t n = simd::lanes<T>;
    constexpr index_t group = 4;
    const index_t w = KW > 0 ? KW : W;
    const T* b = bias ? bias->data() : nullptr;
    index_t c = c0;
    for (; c + n <= c1; c += n) {
      if (next.first && (c * index_t(sizeof(T))) % 64 == 0)
        for (index_t r = 0; r < next.count; ++r) __builtin_prefetch(next.first + r * next.stride + c, 0, 2);
      const V bv = b ? simd::load(b + c) : V(T(0));
      if constexpr (KW > 0) {
        V wv[KW];
        SEQMIX_UNROLL for (index_t j = 0; j < KW; ++j) wv[j] = simd::load(wt + j * C + c);
        // Groups of rows, software-pipelined: the next group's inputs are loaded before this
        // group's outputs are stored. Rows of x and y are C floats apart, so with C = 1536 an
        // input row and an output row a few rows back often share their address bits 0-11; the
        // core then holds the load until the older store's data are ready, and loading after
        // the stores chained every row behind the previous row's silu (1.5x slower at T = 2048).
        auto conv_row = [&](index_t r) {
          V acc = bv;
          SEQMIX_UNROLL for (index_t j = 0; j < KW; ++j) acc = simd::fma(wv[j], simd::load(rows[r + j] + c), acc);
          return acc;
        };
        auto put = [&](index_t r, const V& acc) { simd::store(outs[r] + c, Silu ? simd::silu(acc) : acc); };
        index_t r = 0;
        if (R >= group) {
          V cur[group], nxt[group];
          SEQMIX_UNROLL for (index_t i = 0; i < group; ++i) cur[i] = conv_row(i);
          for (r = group; r + group <= R; r += group) {
            SEQMIX_UNROLL for (index_t i = 0; i < group; ++i) nxt[i] = conv_row(r + i);
            SEQMIX_UNROLL for (index_t i = 0; i < group; ++i) put(r - group + i, cur[i]), cur[i] = nxt[i];
          }
          SEQMIX_UNROLL for (index_t i = 0; i < group; ++i) put(r - group + i, cur[i]);
        }
        for (; r < R; ++r) put(r, conv_row(r));
      } else {
        for (index_t r = 0; r < R; ++r) {
          V acc = bv;
          for (index_t j = 0; j < w; ++j) acc = simd::fma(simd::load(wt + j * C + c), simd::load(rows[r + j] + c), acc);
          simd::store(outs[r] + c, Silu ? simd::silu(acc) : acc);
        }
      }
    }
    for (; c < c1; ++c)
      for (index_t r = 0; r < R; ++r) {
        T acc = b ? b[c] : T(0);
        for (index_t j = 0; j < w; ++j) acc += wt[j * C + c] * rows[r + j][c];
        outs[r][c] = Silu ? simd::silu(acc) : acc;
      }
  }
};

}  // namespace seqmix::nn
