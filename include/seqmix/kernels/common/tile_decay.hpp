// Per-channel decays of a block of tokens split into tiles, for the chunk kernels whose log decay
// has one value per key channel (GLA, RWKV-7). Within a tile I = [s, e) the cumulative log decay
// c_i = Σ_{m=s..i} g_m (≤ 0) is counted from the tile start; Gpre[I] and Gend[I] are the block's
// cumulative log decay before and at the end of tile I. A factor e^{G_t - G_j} (t ≥ j) between
// tiles J < I is then e^{c_t} · e^{Gpre[I] - Gend[J]} · e^{c_{e_J-1} - c_j}: every factor ≤ 1.
// Inside a diagonal tile the kernels factorise e^{c_t - c_j} = e^{c_t} · e^{-c_j}, which is safe
// while the tile's span -min c_{e-1} stays within span_limit (decay.hpp); see docs/common.md.
#pragma once

#include <algorithm>
#include <vector>

#include "../../config.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "args.hpp"
#include "decay.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::common {

/// Tokens per tile: bounds the decay span a diagonal tile can carry.
inline constexpr index_t decay_tile = 16;

/// The tile decays of a block of at most C tokens and K channels (rows K apart). The factor rows
/// it returns live in one scratch row, valid until the next call.
template <class T>
struct tile_decays {
  static constexpr index_t tile = decay_tile;
  index_t K;
  std::vector<T> c;           // [C][K]: c_i, counted from the start of i's tile
  std::vector<T> Gpre, Gend;  // [tiles + 1][K]
  std::vector<T> f;           // [K]: the factors last returned

  tile_decays(index_t C, index_t K_) : K(K_) {
    const auto k = static_cast<std::size_t>(K), rows = static_cast<std::size_t>(tiles(C) + 1);
    c.resize(static_cast<std::size_t>(C) * k), Gpre.resize(rows * k), Gend.resize(rows * k), f.resize(k);
  }
  static index_t tiles(index_t L) { return (L + tile - 1) / tile; }

  T* at(index_t i) { return c.data() + i * K; }
  const T* at(index_t i) const { return c.data() + i * K; }
  const T* pre(index_t I) const { return Gpre.data() + I * K; }
  const T* end(index_t I) const { return Gend.data() + I * K; }
  /// c of the last token of tile I of a block of L tokens (the tile's total log decay).
  const T* last(index_t I, index_t L) const { return at(std::min(L, (I + 1) * tile) - 1); }

  /// Fills c, Gpre, Gend for the L tokens whose log decays are g.row(0 .. L).
  void build(head_rows<const T> g, index_t L) {
    auto add = [](auto x, auto y) { return x + y; };
    std::fill_n(Gpre.data(), K, T(0));
    for (index_t I = 0, nt = tiles(L); I < nt; ++I) {
      const index_t s = I * tile, e = std::min(L, s + tile);
      std::copy_n(g.row(s), K, at(s));
      for (index_t i = s + 1; i < e; ++i) simd::transform(at(i - 1), g.row(i), at(i), K, add);
      simd::transform(pre(I), at(e - 1), Gend.data() + I * K, K, add);
      std::copy_n(end(I), K, Gpre.data() + (I + 1) * K);
    }
  }

  /// e^{Gpre[I]}: from the block start to the start of tile I.
  const T* from_start(index_t I) {
    simd::transform(pre(I), f.data(), K, [](auto x) { return simd::exp(x); });
    return f.data();
  }
  /// e^{Gpre[I] - Gend[J]} for J < I: from the end of tile J to the start of tile I (I = the
  /// number of tiles: to the end of the block).
  const T* between(index_t I, index_t J) {
    simd::transform(pre(I), end(J), f.data(), K, [](auto x, auto y) { return simd::exp(x - y); });
    return f.data();
  }
  /// S [K rows of V, stride lds] <- e^{G_L} ⊙ S, the decay of the whole block of nt tiles.
  void decay_state(index_t nt, T* S, index_t lds, index_t V) const {
    const T* G = end(nt - 1);
    for (index_t i = 0; i < K; ++i) simd::scale(std::exp(G[i]), S + i * lds, V);
  }
  /// e^{-c_{e-1}} ≤ e^{span} for the diagonal tile I, whose keys then carry e^{-c_j}; nullptr when
  /// its span -min c_{e-1} exceeds span_limit (or is NaN): that tile is computed pairwise.
  const T* inverse(index_t I, index_t L) {
    const T* ce = last(I, L);
    if (!(-simd::min_element(ce, K) <= span_limit<T>)) return nullptr;
    simd::transform(ce, f.data(), K, [](auto x) { return simd::exp(-x); });
    return f.data();
  }
};

}  // namespace seqmix::kernels::common
