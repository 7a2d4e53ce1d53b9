// RWKV-7, chunkwise and parallel policies: the diagonal-plus-low-rank (DPLR) chunk form. A block of
// tokens is applied to the state as small matrix products; the rank-one terms are resolved by one
// unit-lower-triangular solve (the UT transform, kernels/common/triangular.hpp). The decays inside
// a block are applied relative to a reference point chosen per 16-token tile (common::tile_decays,
// docs/common.md), so no factor exceeds 1 except on diagonal tiles, whose decay span is checked
// first. Derivation in docs/rwkv7.md.
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
#include "../common/triangular.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

namespace detail {

// Scratch for one head and one block of at most C tokens.
template <class T>
struct chunk_workspace {
  index_t C, K, V;
  common::tile_decays<T> d;
  std::vector<T> cprev, at, rt, bt, kt, bT, kT, ag, rg, sa, Aab, Aak, Arb, Ark, tmpa, tmpr, rhsb, rhsk, f;
  chunk_workspace(index_t C_, index_t K_, index_t V_) : C(C_), K(K_), V(V_), d(C_, K_) {
    const auto ck = std::size_t(C * K), cc = std::size_t(C * C), tk = std::size_t(common::decay_tile * K);
    for (auto* x : {&cprev, &at, &rt, &bt, &kt, &bT, &kT, &ag, &rg}) x->resize(ck);
    sa.resize(std::size_t(C * V));
    for (auto* x : {&Aab, &Aak, &Arb, &Ark}) x->resize(cc);
    for (auto* x : {&tmpa, &tmpr, &rhsb, &rhsk}) x->resize(tk);
    f.resize(std::size_t(K));
  }
};

// One block of L tokens of one head (io: its rows from the block's first token, and its state S
// [K,V] with row stride lds): o from the running state and the intra-block terms; S is advanced
// past the block.
template <class T>
void chunk_block(chunk_workspace<T>& w, index_t L, const head_io<T>& io, index_t lds) {
  constexpr index_t tile = common::decay_tile;
  const index_t C = w.C, K = w.K, V = w.V, nt = common::tile_decays<T>::tiles(L);
  const head_rows<const T> r = io.r, k = io.k, v = io.v, a = io.a, b = io.b;  // copies: kept in registers
  const head_rows<T> o = io.o;
  T* const S = io.S;
  auto& d = w.d;
  auto row = [K](std::vector<T>& buf, index_t i) { return buf.data() + i * K; };
  auto ex = [](auto x) { return simd::exp(x); };
  using cview = tensor_view<const T, 2>;
  using mview = tensor_view<T, 2>;

  // 1. Tile decays c, Gpre, Gend of the log decays w (common::tile_decays); per tile I = [s, e):
  //    cprev_i = c_{i-1} (0 at s, ≤ 0); at_i = a_i e^{cprev_i}, rt_i = r_i e^{c_i} (relative to the
  //    tile start), bt_i = b_i e^{c_{e-1} - c_i}, kt_i = k_i e^{c_{e-1} - c_i} (relative to the tile end).
  d.build(io.w, L);
  for (index_t I = 0; I < nt; ++I) {
    const index_t s = I * tile, e = std::min(L, s + tile);
    std::fill_n(row(w.cprev, s), K, T(0));
    for (index_t i = s + 1; i < e; ++i) std::copy_n(d.at(i - 1), K, row(w.cprev, i));
    const T* cend = d.last(I, L);
    for (index_t i = s; i < e; ++i) {
      simd::transform(row(w.cprev, i), w.f.data(), K, ex);
      simd::mul(a.row(i), w.f.data(), row(w.at, i), K);
      simd::transform(d.at(i), w.f.data(), K, ex);
      simd::mul(r.row(i), w.f.data(), row(w.rt, i), K);
      simd::transform(cend, d.at(i), w.f.data(), K, [](auto x, auto y) { return simd::exp(x - y); });
      simd::mul(b.row(i), w.f.data(), row(w.bt, i), K);
      simd::mul(k.row(i), w.f.data(), row(w.kt, i), K);
    }
  }
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < K; ++j) w.bT[j * C + i] = w.bt[i * K + j], w.kT[j * C + i] = w.kt[i * K + j];

  // 2. Inter-block: xa_i = (at_i ⊙ e^{Gpre[I]}) · S into sa, xr_i = (rt_i ⊙ e^{Gpre[I]}) · S into o.
  for (index_t I = 0; I < nt; ++I) {
    const T* f = d.from_start(I);
    for (index_t i = I * tile, e = std::min(L, i + tile); i < e; ++i)
      simd::mul(row(w.at, i), f, row(w.ag, i), K), simd::mul(row(w.rt, i), f, row(w.rg, i), K);
  }
  const cview Sv(S, {K, V}, {lds, 1});
  const mview out(o.p, {L, V}, {o.ts, 1}), sa(w.sa.data(), {L, V});
  const cview vv(v.p, {L, V}, {v.ts, 1});
  simd::gemm<T>(cview(w.ag.data(), {L, K}), Sv, sa);
  simd::gemm<T>(cview(w.rg.data(), {L, K}), Sv, out);

  // 3. Intra-block coefficients, lower triangular [L, L]:
  //    Aab[i,j] = a_i·(e^{C_{i-1}-C_j} ⊙ b_j), Aak likewise with k (j < i);
  //    Arb[i,j] = r_i·(e^{C_i-C_j} ⊙ b_j),     Ark likewise with k (j ≤ i).
  //    Tile pair (I, J < I) uses the reference point at the end of J, every factor ≤ 1.
  const mview Aab(w.Aab.data(), {L, L}, {C, 1}), Aak(w.Aak.data(), {L, L}, {C, 1});
  const mview Arb(w.Arb.data(), {L, L}, {C, 1}), Ark(w.Ark.data(), {L, L}, {C, 1});
  for (const auto& M : {Aab, Aak, Arb, Ark})
    for (index_t i = 0; i < L; ++i) std::fill_n(M.ptr(i), L, T(0));
  for (index_t I = 0; I < nt; ++I) {
    const index_t s = I * tile, n = std::min(L, s + tile) - s;
    auto blk = [&](const mview& M, index_t col, index_t m) { return M.subrange(0, s, n).subrange(1, col, m); };
    for (index_t J = 0; J < I; ++J) {
      const T* f = d.between(I, J);
      for (index_t i = 0; i < n; ++i) {
        simd::mul(row(w.at, s + i), f, w.tmpa.data() + i * K, K);
        simd::mul(row(w.rt, s + i), f, w.tmpr.data() + i * K, K);
      }
      const cview la(w.tmpa.data(), {n, K}), lr(w.tmpr.data(), {n, K});
      const cview rb(w.bT.data() + J * tile, {K, tile}, {C, 1}), rk(w.kT.data() + J * tile, {K, tile}, {C, 1});
      simd::gemm<T>(la, rb, blk(Aab, J * tile, tile)), simd::gemm<T>(la, rk, blk(Aak, J * tile, tile));
      simd::gemm<T>(lr, rb, blk(Arb, J * tile, tile)), simd::gemm<T>(lr, rk, blk(Ark, J * tile, tile));
    }
    // Diagonal tile: reference at the tile start, so b and k carry e^{-c_j} ≤ e^{span}.
    if (const T* f = d.inverse(I, L)) {
      for (index_t j = 0; j < K; ++j)
        for (index_t i = 0; i < n; ++i)
          w.rhsb[j * tile + i] = w.bT[j * C + s + i] * f[j], w.rhsk[j * tile + i] = w.kT[j * C + s + i] * f[j];
      const cview la(row(w.at, s), {n, K}), lr(row(w.rt, s), {n, K});
      const cview rb(w.rhsb.data(), {K, n}, {tile, 1}), rk(w.rhsk.data(), {K, n}, {tile, 1});
      simd::gemm<T>(la, rb, blk(Aab, s, n)), simd::gemm<T>(la, rk, blk(Aak, s, n));
      simd::gemm<T>(lr, rb, blk(Arb, s, n)), simd::gemm<T>(lr, rk, blk(Ark, s, n));
      for (index_t i = 0; i < n; ++i) {
        std::fill(Aab.ptr(s + i) + s + i, Aab.ptr(s + i) + s + n, T(0));
        std::fill(Aak.ptr(s + i) + s + i, Aak.ptr(s + i) + s + n, T(0));
        std::fill(Arb.ptr(s + i) + s + i + 1, Arb.ptr(s + i) + s + n, T(0));
        std::fill(Ark.ptr(s + i) + s + i + 1, Ark.ptr(s + i) + s + n, T(0));
      }
    } else {
      // Extreme decay inside the tile: exact pairwise exponentials (rare; n² · K exps).
      for (index_t i = s; i < s + n; ++i)
        for (index_t j = s; j <= i; ++j) {
          T ab = 0, ak = 0, rb = 0, rk = 0;
          for (index_t x = 0; x < K; ++x) {
            const T cj = d.at(j)[x], fr = std::exp(d.at(i)[x] - cj), fa = std::exp(w.cprev[i * K + x] - cj);
            rb += r.row(i)[x] * b.row(j)[x] * fr, rk += r.row(i)[x] * k.row(j)[x] * fr;
            ab += a.row(i)[x] * b.row(j)[x] * fa, ak += a.row(i)[x] * k.row(j)[x] * fa;
          }
          Arb(i, j) = rb, Ark(i, j) = rk;
          if (j < i) Aab(i, j) = ab, Aak(i, j) = ak;
        }
    }
  }

  // 4. sa = (I - Aab)^-1 (xa + Aak v): forward substitution with the strictly lower -Aab.
  simd::gemm<T>(cview(Aak), vv, sa, simd::gemm_mode::accumulate, /*lower_triangular_a=*/true);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < i; ++j) Aab(i, j) = -Aab(i, j);
  common::solve_unit_lower<T>(w.Aab.data(), C, w.sa.data(), V, L, V);

  // 5. o = xr + Arb sa + Ark v.
  simd::gemm<T>(cview(Arb), cview(sa), out, simd::gemm_mode::accumulate, true);
  simd::gemm<T>(cview(Ark), vv, out, simd::gemm_mode::accumulate, true);

  // 6. State: S = e^{C_{L-1}} ⊙ S + Σ_j (bt_j ⊙ e^{C_{L-1} - Gend[J]}) sa_jᵀ + (kt_j ⊙ …) v_jᵀ.
  d.decay_state(nt, S, lds, V);
  for (index_t J = 0; J < nt; ++J) {
    const T* f = d.between(nt, J);
    for (index_t i = J * tile, e = std::min(L, i + tile); i < e; ++i)
      simd::mul(row(w.bt, i), f, row(w.ag, i), K), simd::mul(row(w.kt, i), f, row(w.rg, i), K);
  }
  const mview Sm(S, {K, V}, {lds, 1});
  simd::gemm<T>(transposed(cview(w.ag.data(), {L, K})), cview(sa), Sm, simd::gemm_mode::accumulate);
  simd::gemm<T>(transposed(cview(w.rg.data(), {L, K})), vv, Sm, simd::gemm_mode::accumulate);
}

// Runs every head over the sequence in blocks of `C` tokens.
template <class T>
void chunk_blocks(int threads, index_t C, const inputs<T>& in, tensor_view<T, 4> o, tensor_view<T, 4> state) {
  check_args(in, o, state);
  const index_t B = in.r.extent(0), L = in.r.extent(1), H = in.r.extent(2), K = in.r.extent(3), V = in.v.extent(3);
  if (L == 0) return;
  C = std::max<index_t>(1, std::min(C, L));
  parallel_for(threads, B * H, [&](index_t bh) {
    const head_io<T> io = head_of(in, o, state, bh / H, bh % H);
    chunk_workspace<T> ws(C, K, V);
    for (index_t t0 = 0; t0 < L; t0 += C) chunk_block<T>(ws, std::min(C, L - t0), io.from(t0), state.stride(2));
  });
}

}  // namespace detail

/// RWKV-7 op in chunks of C tokens. Shapes as in ref(); state [B,H,K,V] is updated in place.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, const inputs<T>& in, tensor_view<T, 4> o, tensor_view<T, 4> state) {
  detail::chunk_blocks<T>(policy.threads, C, in, o, state);
}

/// RWKV-7 op with the whole sequence as one block (T x T coefficient matrices per head).
template <class T>
void parallel(const exec::parallel& policy, const inputs<T>& in, tensor_view<T, 4> o, tensor_view<T, 4> state) {
  detail::chunk_blocks<T>(policy.threads, in.r.extent(1), in, o, state);
}

}  // namespace seqmix::kernels::rwkv7
