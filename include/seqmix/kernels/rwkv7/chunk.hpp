// RWKV-7, chunkwise and parallel policies: the diagonal-plus-low-rank (DPLR) chunk form. A block of
// tokens is applied to the state as small matrix products; the rank-one terms are resolved by one
// unit-lower-triangular solve (the UT transform, kernels/common/triangular.hpp). The decays inside
// a block are applied relative to a reference point chosen per 16-token tile, so no factor exceeds
// 1 except on diagonal tiles, whose decay span is checked first. Derivation in docs/rwkv7.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "../common/triangular.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

namespace detail {

inline constexpr index_t tile = 16;  // tokens per tile; bounds the decay span a diagonal tile can carry

// Largest decay span (log space) a diagonal tile may factorise as e^{-c}·e^{c}: e^{span} times a
// coefficient stays far from overflow and e^{-span} is a normal number.
template <class T>
inline const T span_limit = std::log(std::numeric_limits<T>::max()) / 2;

// Scratch for one head and one block of at most C tokens.
template <class T>
struct chunk_workspace {
  index_t C, K, V;
  std::vector<T> c, cprev, at, rt, bt, kt, bT, kT, ag, rg, sa, Aab, Aak, Arb, Ark, tmpa, tmpr, rhsb, rhsk, Gpre, Gend, f;
  chunk_workspace(index_t C_, index_t K_, index_t V_) : C(C_), K(K_), V(V_) {
    const auto ck = std::size_t(C * K), cc = std::size_t(C * C), tk = std::size_t(tile * K);
    const auto nt = std::size_t((C + tile - 1) / tile + 1) * std::size_t(K);
    for (auto* x : {&c, &cprev, &at, &rt, &bt, &kt, &bT, &kT, &ag, &rg}) x->resize(ck);
    sa.resize(std::size_t(C * V));
    for (auto* x : {&Aab, &Aak, &Arb, &Ark}) x->resize(cc);
    for (auto* x : {&tmpa, &tmpr, &rhsb, &rhsk}) x->resize(tk);
    Gpre.resize(nt), Gend.resize(nt), f.resize(std::size_t(K));
  }
};

// One block of L tokens of one head: o from the running state S [K,V] (row stride lds) and the
// intra-block terms; S is advanced past the block.
template <class T>
void chunk_block(chunk_workspace<T>& w, index_t L, head_rows<const T> r, head_rows<const T> lw, head_rows<const T> k,
                 head_rows<const T> v, head_rows<const T> a, head_rows<const T> b, head_rows<T> o, T* S, index_t lds) {
  const index_t C = w.C, K = w.K, V = w.V, nt = (L + tile - 1) / tile;
  auto row = [K](std::vector<T>& buf, index_t i) { return buf.data() + i * K; };
  auto add = [](auto x, auto y) { return x + y; };
  auto ex = [](auto x) { return simd::exp(x); };
  using cview = tensor_view<const T, 2>;
  using mview = tensor_view<T, 2>;

  // 1. Per tile I = [s, e): c_i = Σ_{m=s..i} w_m and cprev_i = c_{i-1} (0 at s), both ≤ 0;
  //    at_i = a_i e^{cprev_i}, rt_i = r_i e^{c_i} (relative to the tile start),
  //    bt_i = b_i e^{c_{e-1} - c_i}, kt_i = k_i e^{c_{e-1} - c_i} (relative to the tile end).
  //    Gpre[I] / Gend[I]: cumulative log decay of the block before / at the end of tile I.
  std::fill_n(row(w.Gpre, 0), K, T(0));
  for (index_t I = 0; I < nt; ++I) {
    const index_t s = I * tile, e = std::min(L, s + tile);
    std::copy_n(lw.row(s), K, row(w.c, s));
    std::fill_n(row(w.cprev, s), K, T(0));
    for (index_t i = s + 1; i < e; ++i) {
      simd::transform(row(w.c, i - 1), lw.row(i), row(w.c, i), K, add);
      std::copy_n(row(w.c, i - 1), K, row(w.cprev, i));
    }
    const T* cend = row(w.c, e - 1);
    for (index_t i = s; i < e; ++i) {
      simd::transform(row(w.cprev, i), w.f.data(), K, ex);
      simd::mul(a.row(i), w.f.data(), row(w.at, i), K);
      simd::transform(row(w.c, i), w.f.data(), K, ex);
      simd::mul(r.row(i), w.f.data(), row(w.rt, i), K);
      simd::transform(cend, row(w.c, i), w.f.data(), K, [](auto x, auto y) { return simd::exp(x - y); });
      simd::mul(b.row(i), w.f.data(), row(w.bt, i), K);
      simd::mul(k.row(i), w.f.data(), row(w.kt, i), K);
    }
    simd::transform(row(w.Gpre, I), cend, row(w.Gend, I), K, add);
    std::copy_n(row(w.Gend, I), K, row(w.Gpre, I + 1));
  }
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < K; ++j) w.bT[j * C + i] = w.bt[i * K + j], w.kT[j * C + i] = w.kt[i * K + j];

  // 2. Inter-block: xa_i = (at_i ⊙ e^{Gpre[I]}) · S into sa, xr_i = (rt_i ⊙ e^{Gpre[I]}) · S into o.
  for (index_t I = 0; I < nt; ++I) {
    simd::transform(row(w.Gpre, I), w.f.data(), K, ex);
    for (index_t i = I * tile, e = std::min(L, i + tile); i < e; ++i)
      simd::mul(row(w.at, i), w.f.data(), row(w.ag, i), K), simd::mul(row(w.rt, i), w.f.data(), row(w.rg, i), K);
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
      simd::transform(row(w.Gpre, I), row(w.Gend, J), w.f.data(), K, [](auto x, auto y) { return simd::exp(x - y); });
      for (index_t i = 0; i < n; ++i) {
        simd::mul(row(w.at, s + i), w.f.data(), w.tmpa.data() + i * K, K);
        simd::mul(row(w.rt, s + i), w.f.data(), w.tmpr.data() + i * K, K);
      }
      const cview la(w.tmpa.data(), {n, K}), lr(w.tmpr.data(), {n, K});
      const cview rb(w.bT.data() + J * tile, {K, tile}, {C, 1}), rk(w.kT.data() + J * tile, {K, tile}, {C, 1});
      simd::gemm<T>(la, rb, blk(Aab, J * tile, tile)), simd::gemm<T>(la, rk, blk(Aak, J * tile, tile));
      simd::gemm<T>(lr, rb, blk(Arb, J * tile, tile)), simd::gemm<T>(lr, rk, blk(Ark, J * tile, tile));
    }
    // Diagonal tile: reference at the tile start, so b and k carry e^{-c_j} ≤ e^{span}.
    const T* cend = row(w.c, s + n - 1);
    if (-simd::min_element(cend, K) <= span_limit<T>) {
      simd::transform(cend, w.f.data(), K, [](auto x) { return simd::exp(-x); });
      for (index_t j = 0; j < K; ++j)
        for (index_t i = 0; i < n; ++i)
          w.rhsb[j * tile + i] = w.bT[j * C + s + i] * w.f[j], w.rhsk[j * tile + i] = w.kT[j * C + s + i] * w.f[j];
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
            const T cj = w.c[j * K + x], fr = std::exp(w.c[i * K + x] - cj), fa = std::exp(w.cprev[i * K + x] - cj);
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
  const T* Gtot = row(w.Gend, nt - 1);
  for (index_t i = 0; i < K; ++i) simd::scale(std::exp(Gtot[i]), S + i * lds, V);
  for (index_t J = 0; J < nt; ++J) {
    simd::transform(Gtot, row(w.Gend, J), w.f.data(), K, [](auto x, auto y) { return simd::exp(x - y); });
    for (index_t i = J * tile, e = std::min(L, i + tile); i < e; ++i)
      simd::mul(row(w.bt, i), w.f.data(), row(w.ag, i), K), simd::mul(row(w.kt, i), w.f.data(), row(w.rg, i), K);
  }
  const mview Sm(S, {K, V}, {lds, 1});
  simd::gemm<T>(transposed(cview(w.ag.data(), {L, K})), cview(sa), Sm, simd::gemm_mode::accumulate);
  simd::gemm<T>(transposed(cview(w.rg.data(), {L, K})), vv, Sm, simd::gemm_mode::accumulate);
}

// Runs every head over the sequence in blocks of `C` tokens.
template <class T>
void chunk_blocks(int threads, index_t C, tensor_view<const T, 4> r, tensor_view<const T, 4> w, tensor_view<const T, 4> k,
                  tensor_view<const T, 4> v, tensor_view<const T, 4> a, tensor_view<const T, 4> b, tensor_view<T, 4> o,
                  tensor_view<T, 4> state) {
  check_args(r, w, k, v, a, b, o, state);
  const index_t B = r.extent(0), L = r.extent(1), H = r.extent(2), K = r.extent(3), V = v.extent(3);
  if (L == 0) return;
  C = std::max<index_t>(1, std::min(C, L));
  parallel_for(threads, B * H, [&](index_t bh) {
    const index_t bi = bh / H, h = bh % H;
    chunk_workspace<T> ws(C, K, V);
    for (index_t t0 = 0; t0 < L; t0 += C)
      chunk_block<T>(ws, std::min(C, L - t0), {r.ptr(bi, t0, h), r.stride(1)}, {w.ptr(bi, t0, h), w.stride(1)},
                     {k.ptr(bi, t0, h), k.stride(1)}, {v.ptr(bi, t0, h), v.stride(1)}, {a.ptr(bi, t0, h), a.stride(1)},
                     {b.ptr(bi, t0, h), b.stride(1)}, {o.ptr(bi, t0, h), o.stride(1)}, state.ptr(bi, h), state.stride(2));
  });
}

}  // namespace detail

/// RWKV-7 op in chunks of C tokens. Shapes as in ref(); state [B,H,K,V] is updated in place.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, tensor_view<const T, 4> r, tensor_view<const T, 4> w,
           tensor_view<const T, 4> k, tensor_view<const T, 4> v, tensor_view<const T, 4> a, tensor_view<const T, 4> b,
           tensor_view<T, 4> o, tensor_view<T, 4> state) {
  detail::chunk_blocks<T>(policy.threads, C, r, w, k, v, a, b, o, state);
}

/// RWKV-7 op with the whole sequence as one block (T x T coefficient matrices per head).
template <class T>
void parallel(const exec::parallel& policy, tensor_view<const T, 4> r, tensor_view<const T, 4> w,
              tensor_view<const T, 4> k, tensor_view<const T, 4> v, tensor_view<const T, 4> a, tensor_view<const T, 4> b,
              tensor_view<T, 4> o, tensor_view<T, 4> state) {
  detail::chunk_blocks<T>(policy.threads, r.extent(1), r, w, k, v, a, b, o, state);
}

}  // namespace seqmix::kernels::rwkv7
