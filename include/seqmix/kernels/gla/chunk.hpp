// GLA, chunkwise and parallel policies: a block of tokens at a time as small matrix products.
// The decays inside a block are applied relative to a reference point chosen per 16-token tile
// (common::tile_decays), so no factor ever exceeds 1 except on diagonal tiles whose decay span is
// checked first; see docs/gla.md for the derivation and docs/common.md for the tile decays.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "../common/tile_decay.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::gla {

namespace detail {

// Scratch for one head and one block of at most C tokens (C*K floats per buffer, C*C for A).
template <class T>
struct block_workspace {
  index_t C, K;
  common::tile_decays<T> d;
  std::vector<T> qt, kt, kT, qg, A, tmp, kinvT;
  block_workspace(index_t C_, index_t K_) : C(C_), K(K_), d(C_, K_) {
    const auto ck = static_cast<std::size_t>(C * K);
    qt.resize(ck), kt.resize(ck), kT.resize(ck), qg.resize(ck);
    A.resize(static_cast<std::size_t>(C * C));
    const auto tk = static_cast<std::size_t>(common::decay_tile * K);
    tmp.resize(tk), kinvT.resize(tk);
  }
};

// One block of L tokens of one head: o = (scale q) applied to the running state S [K,V] and the
// causal intra-block terms; S is advanced past the block.
template <class T>
void block(block_workspace<T>& w, index_t L, index_t K, index_t V, T scale, head_rows<const T> q,
           head_rows<const T> k, head_rows<const T> v, head_rows<const T> g, head_rows<T> o, T* S, index_t lds) {
  constexpr index_t tile = common::decay_tile;
  const index_t C = w.C, nt = common::tile_decays<T>::tiles(L);
  auto row = [K](std::vector<T>& buf, index_t i) { return buf.data() + i * K; };
  auto& d = w.d;

  // 1. Tile decays c, Gpre, Gend (common::tile_decays); per tile I = [s, e):
  //    qt_i = scale q_i e^{c_i}; kt_i = k_i e^{c_e - c_i}.
  d.build(g, L);
  for (index_t I = 0; I < nt; ++I) {
    const index_t s = I * tile, e = std::min(L, s + tile);
    const T* cend = d.last(I, L);
    for (index_t i = s; i < e; ++i) {
      simd::transform(q.row(i), d.at(i), row(w.qt, i), K, [scale](auto x, auto ci) { return x * simd::exp(ci) * scale; });
      simd::transform(cend, d.at(i), row(w.kt, i), K, [](auto ce, auto ci) { return simd::exp(ce - ci); });
      simd::mul(row(w.kt, i), k.row(i), row(w.kt, i), K);
    }
  }
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < K; ++j) w.kT[j * C + i] = w.kt[i * K + j];

  // 2. Inter-block: o_i = (qt_i ⊙ e^{Gpre[I]}) · S, all factors ≤ 1.
  for (index_t I = 0; I < nt; ++I) {
    const T* f = d.from_start(I);
    for (index_t i = I * tile, e = std::min(L, i + tile); i < e; ++i) simd::mul(row(w.qt, i), f, row(w.qg, i), K);
  }
  const tensor_view<T, 2> out(o.p, {L, V}, {o.ts, 1});
  simd::gemm<T>(tensor_view<const T, 2>(w.qg.data(), {L, K}), tensor_view<const T, 2>(S, {K, V}, {lds, 1}), out);

  // 3. Intra-block scores A [L, L], lower triangular. Tile pair (I, J < I) uses the reference point
  //    at the end of J: A_IJ = (qt_I ⊙ e^{Gpre[I] - Gend[J]}) · ktᵀ_J, every factor ≤ 1.
  const tensor_view<T, 2> A(w.A.data(), {L, L}, {C, 1});
  for (index_t i = 0; i < L; ++i) std::fill_n(A.ptr(i), L, T(0));
  for (index_t I = 0; I < nt; ++I) {
    const index_t s = I * tile, n = std::min(L, s + tile) - s;
    const tensor_view<const T, 2> qtI(row(w.qt, s), {n, K});
    for (index_t J = 0; J < I; ++J) {
      const T* f = d.between(I, J);
      for (index_t i = 0; i < n; ++i) simd::mul(row(w.qt, s + i), f, w.tmp.data() + i * K, K);
      simd::gemm<T>(tensor_view<const T, 2>(w.tmp.data(), {n, K}),
                    tensor_view<const T, 2>(w.kT.data() + J * tile, {K, tile}, {C, 1}),
                    A.subrange(0, s, n).subrange(1, J * tile, tile));
    }
    // Diagonal tile: reference at the tile start, so k carries e^{-c_j} ≤ e^{span}.
    const auto AII = A.subrange(0, s, n).subrange(1, s, n);
    if (const T* f = d.inverse(I, L)) {
      for (index_t j = 0; j < K; ++j)
        for (index_t i = 0; i < n; ++i) w.kinvT[j * tile + i] = w.kT[j * C + s + i] * f[j];
      simd::gemm<T>(qtI, tensor_view<const T, 2>(w.kinvT.data(), {K, n}, {tile, 1}), AII);
      for (index_t i = 0; i < n; ++i) std::fill(AII.ptr(i) + i + 1, AII.ptr(i) + n, T(0));
    } else {
      // Extreme decay inside the tile: exact pairwise exponentials (rare; n²/2 · K exps).
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j <= i; ++j) {
          T acc = 0;
          for (index_t x = 0; x < K; ++x)
            acc += q.row(s + i)[x] * k.row(s + j)[x] * std::exp(d.at(s + i)[x] - d.at(s + j)[x]);
          AII(i, j) = scale * acc;
        }
    }
  }
  simd::gemm<T>(tensor_view<const T, 2>(A), tensor_view<const T, 2>(v.p, {L, V}, {v.ts, 1}), out,
                simd::gemm_mode::accumulate, /*lower_triangular_a=*/true);

  // 4. State: S = e^{G_L} ⊙ S + Σ_j (kt_j ⊙ e^{G_L - Gend[J]}) v_jᵀ.
  d.decay_state(nt, S, lds, V);
  for (index_t J = 0; J < nt; ++J) {
    const T* f = d.between(nt, J);
    for (index_t i = J * tile, e = std::min(L, i + tile); i < e; ++i) simd::mul(row(w.kt, i), f, row(w.qg, i), K);
  }
  simd::gemm<T>(transposed(tensor_view<const T, 2>(w.qg.data(), {L, K})), tensor_view<const T, 2>(v.p, {L, V}, {v.ts, 1}),
                tensor_view<T, 2>(S, {K, V}, {lds, 1}), simd::gemm_mode::accumulate);
}

// Runs every head over the sequence in blocks of `C` tokens.
template <class T>
void blocks(int threads, index_t C, tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
            tensor_view<const T, 4> g, tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt) {
  const T scale = check_args(q, k, v, g, o, state, opt);
  const index_t B = q.extent(0), L = q.extent(1), H = q.extent(2), K = q.extent(3), V = v.extent(3);
  C = std::max<index_t>(1, std::min(C, L));
  parallel_for(threads, B * H, [&](index_t bh) {
    const index_t b = bh / H, h = bh % H;
    block_workspace<T> w(C, K);
    for (index_t t0 = 0; t0 < L; t0 += C)
      block<T>(w, std::min(C, L - t0), K, V, scale, {q.ptr(b, t0, h), q.stride(1)}, {k.ptr(b, t0, h), k.stride(1)},
               {v.ptr(b, t0, h), v.stride(1)}, {g.ptr(b, t0, h), g.stride(1)}, {o.ptr(b, t0, h), o.stride(1)},
               state.ptr(b, h), state.stride(2));
  });
}

}  // namespace detail

/// GLA op in chunks of C tokens. Shapes as in ref(); state [B,H,K,V] is updated in place.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
           tensor_view<const T, 4> v, tensor_view<const T, 4> g, tensor_view<T, 4> o, tensor_view<T, 4> state,
           options<T> opt = {}) {
  detail::blocks<T>(policy.threads, C, q, k, v, g, o, state, opt);
}

/// GLA op with the whole sequence as one block (a T x T score matrix per head).
template <class T>
void parallel(const exec::parallel& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
              tensor_view<const T, 4> v, tensor_view<const T, 4> g, tensor_view<T, 4> o, tensor_view<T, 4> state,
              options<T> opt = {}) {
  detail::blocks<T>(policy.threads, q.extent(1), q, k, v, g, o, state, opt);
}

}  // namespace seqmix::kernels::gla
