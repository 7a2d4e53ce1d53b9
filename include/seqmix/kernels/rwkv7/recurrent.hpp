// RWKV-7, recurrent policy: the state [K,V] stays in cache and the tokens are taken a few at a time
// (blocks of `block_tokens`), which is the decode path and, for K = V = 64, the fastest prefill.
//
// A block of n tokens applied to the state S before it (docs/rwkv7.md):
//   sa_j = S_{j-1}ᵀ a_j = Sᵀ(a_j ⊙ P_{j-1}) + Σ_{l<j} [a_j·(G(l,j-1)⊙b_l)] sa_l + [a_j·(G(l,j-1)⊙k_l)] v_l
//   o_j  = S_jᵀ r_j     = Sᵀ(r_j ⊙ P_j)     + Σ_{l≤j} [r_j·(G(l,j)⊙b_l)] sa_l   + [r_j·(G(l,j)⊙k_l)] v_l
//   S'   = P_{n-1} ⊙ S + Σ_l (G(l,n-1)⊙b_l) sa_lᵀ + (G(l,n-1)⊙k_l) v_lᵀ
// with P_j = Π_{m≤j} e^{w_m} and G(l,j) = Π_{l<m≤j} e^{w_m}, explicit products of factors ≤ 1.
//
// Deferred decay: inside a run the state is held as S = diag(E) S~, E the product of the blocks'
// P_{n-1} since the run began, so a block adds (G(l,n-1)⊙b_l / E') sa_lᵀ + … to S~ and never
// multiplies it by the decay. A run ends (the decay is folded back: S = E' ⊙ S~ + …, in the same
// pass) when min E' would drop below e^{-16}, and at the end of the call, so the state handed
// back is exact (docs/common.md compares the deferred-decay schemes).
//
// One pass over the state per block: while a state row is updated by block b it is also reduced
// for block b+1 (Sᵀ ã, Sᵀ r̃ with the next block's coefficients), so each row is loaded and stored
// once per block and costs 4 multiply-adds per token. The reductions of the next block are kept
// per head between passes. Each head's coefficients are prepared just before the pass that needs
// them, into slots shared by all heads (so they stay in L1), and the next token block's rows are
// prefetched during the passes. A call of fewer tokens than a block (decode) takes explicit single-token steps, one
// pass each (plus one to start). See docs/rwkv7.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/math.hpp"
#include "../../simd/reduce.hpp"
#include "../../simd/softmax.hpp"
#include "../../simd/vec.hpp"
#include "../../tensor/tensor.hpp"
#include "../common/decay.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

namespace detail {

// simd::vector_registers (32 with AVX-512, 16 with AVX2 and SSE2). The block pass on NV vectors of
// the value axis keeps sa, v and the next block's two reductions live per token (4·NB·NV) plus the row.
using simd::vector_registers;
inline constexpr index_t block_tokens = vector_registers >= 32 ? 4 : 2;  // NB: tokens per pass
inline constexpr index_t token_block = 8;  // tokens of one head between switches to the next head
inline constexpr index_t pass_vectors = std::clamp<index_t>((vector_registers - 4) / (4 * block_tokens + 1), 1, 4);
inline constexpr index_t step_vectors = std::clamp<index_t>((vector_registers - 4) / 4, 1, 4);

// Smallest decay E of an open run (e^{-16}), and smallest E' for which the intra-block
// coefficients are formed as ratios (e^{-40}); common/decay.hpp gives the reasons.
using common::deferred::product_floor, common::deferred::ratio_floor;

// Forces a lambda inline (GCC otherwise keeps large generic lambdas out of line and reloads the
// captures from memory after every store).
#if defined(__GNUC__)
#define SEQMIX_RWKV7_INLINE __attribute__((always_inline))
#else
#define SEQMIX_RWKV7_INLINE
#endif

// e^{w} for a log decay w ≤ 0: simd::exp_nonpositive (float batches ~2e-7 relative; arguments
// below about -88 give 0).
template <class Vec>
inline Vec decay(const Vec& w) {
  return simd::exp_nonpositive(w);
}

// Vec is simd::batch<T> or T (scalar tail columns).
using simd::vload, simd::vstore;
template <class T, class Vec>
inline T vreduce_min(const Vec& a) {
  if constexpr (std::is_arithmetic_v<Vec>) return a;
  else {
    alignas(64) T tmp[simd::lanes<T>];
    simd::store(tmp, a);
    return *std::min_element(tmp, tmp + simd::lanes<T>);
  }
}

// Coefficients of one block of NB tokens of one head, as the pass reads them. Per-row coefficients
// are stored in groups of G = lanes rows, [K/G][rows][G]: the pass over the state reads row i's
// coefficients through one pointer at fixed offsets, and the preparation writes whole vectors.
// Lanes of a partial last group are never written and stay zero.
template <class T>
struct block_coefs {
  static constexpr index_t NB = block_tokens, G = simd::lanes<T>;
  static constexpr index_t NU = 2 * NB + 1;  // update rows: b̃_l, k̃_l and the fold factor f = E'
  static constexpr index_t NR = 2 * NB;      // reduction rows: ã_j, r̃_j
  T* red = nullptr;                          // [groups][NR][G]
  T* upd = nullptr;                          // [groups][NU][G]
  // Intra-block products, packed row by row as ratio_dots reduces them: A_ab, A_ak (l < j), then
  // A_rb, A_rk (l ≤ j).
  static constexpr index_t NA = NB * (NB - 1) / 2, ND = NB * (NB + 1) / 2, NAll = 2 * (NA + ND);
  alignas(64) T A[NAll];
  bool fold = false;
  T& ab(index_t j, index_t l) { return A[j * (j - 1) / 2 + l]; }
  T& ak(index_t j, index_t l) { return A[NA + j * (j - 1) / 2 + l]; }
  T& rb(index_t j, index_t l) { return A[2 * NA + j * (j + 1) / 2 + l]; }
  T& rk(index_t j, index_t l) { return A[2 * NA + ND + j * (j + 1) / 2 + l]; }
  T ab(index_t j, index_t l) const { return A[j * (j - 1) / 2 + l]; }
  T ak(index_t j, index_t l) const { return A[NA + j * (j - 1) / 2 + l]; }
  T rb(index_t j, index_t l) const { return A[2 * NA + j * (j + 1) / 2 + l]; }
  T rk(index_t j, index_t l) const { return A[2 * NA + ND + j * (j + 1) / 2 + l]; }

  static index_t at(index_t rows, index_t c, index_t x) { return (x / G) * rows * G + c * G + x % G; }
};

// Fills c for tokens [t, t+NB) of one head. E [K] is the decay of the open run before the block
// (S = diag(E) S~) and leaves as the decay after it (1 if the block closes the run); force closes
// the run with this block (the last block of a call). d [NB][K] is scratch.
template <class T>
void prepare(block_coefs<T>& c, index_t K, index_t t, const head_io<T>& io, T* E, bool force, T* d) {
  using B = simd::batch<T>;
  constexpr index_t NB = block_tokens, NU = block_coefs<T>::NU, NR = block_coefs<T>::NR, L = simd::lanes<T>;
  constexpr auto at = block_coefs<T>::at;
  // Rows through base pointer + stride, outputs through local pointers captured by value: the
  // SIMD stores may alias anything, so pointers held in memory would be reloaded after each one.
  const T *rp = io.r.row(t), *wp = io.w.row(t), *kp = io.k.row(t), *ap = io.a.row(t), *bp = io.b.row(t);
  const index_t rs = io.r.ts, ws = io.w.ts, ks = io.k.ts, as = io.a.ts, bs = io.b.ts;
  const bool same = rs == ws && rs == ks && rs == as && rs == bs;
  T *ou = c.upd, *orr = c.red;
  // 1. d = e^{w}; ã_j = a_j ⊙ E P_{j-1}, r̃_j = r_j ⊙ E P_j; E' = E P_{NB-1};
  //    b̃_l = b_l ⊙ Π_{m>l} d_m / E' (likewise k̃): the run-relative coefficients.
  //    Same: one token stride for all five inputs (separate [B,T,H,K] tensors), which leaves
  //    GCC enough registers to address the 4·5 rows without spilling pointers.
  auto cols = [=]<bool Same, class Vec>(index_t x, Vec& emin) SEQMIX_RWKV7_INLINE {
    const index_t sr = rs, sw = Same ? rs : ws, sk = Same ? rs : ks, sa = Same ? rs : as, sb = Same ? rs : bs;
    Vec pe = vload<Vec>(E + x), dj[NB];
    SEQMIX_UNROLL for (index_t j = 0; j < NB; ++j) {
      dj[j] = decay(vload<Vec>(wp + j * sw + x));
      vstore<Vec>(orr + at(NR, j, x), vload<Vec>(ap + j * sa + x) * pe);
      pe *= dj[j];
      vstore<Vec>(orr + at(NR, NB + j, x), vload<Vec>(rp + j * sr + x) * pe);
    }
    vstore<Vec>(E + x, pe);
    emin = simd::min(emin, pe);
    Vec sfx = Vec(T(1)) / pe;
    SEQMIX_UNROLL for (index_t l = NB - 1; l >= 0; --l) {
      vstore<Vec>(ou + at(NU, l, x), vload<Vec>(bp + l * sb + x) * sfx);
      vstore<Vec>(ou + at(NU, NB + l, x), vload<Vec>(kp + l * sk + x) * sfx);
      sfx *= dj[l];
    }
  };
  B vmin_(std::numeric_limits<T>::max());
  T smin = std::numeric_limits<T>::max();
  index_t x = 0;
  if (same)
    for (; x + L <= K; x += L) cols.template operator()<true, B>(x, vmin_);
  else
    for (; x + L <= K; x += L) cols.template operator()<false, B>(x, vmin_);
  for (; x < K; ++x) cols.template operator()<false, T>(x, smin);
  const T emin = std::min(vreduce_min<T>(vmin_), smin);
  c.fold = force || common::deferred::must_fold(emin, product_floor<T>);

  // 2. Intra-block dot products. While E' is far from underflow, a_j·(G(l,j-1) ⊙ b_l) = ã_j·b̃_l
  //    (E P_{j-1} / (E P_l) = G(l,j-1)) and r_j·(G(l,j) ⊙ b_l) = r̃_j·b̃_l, all factors normal;
  //    otherwise explicit products of factors ≤ 1.
  const bool ratio = emin >= ratio_floor<T>;
  if (!ratio || c.fold)  // the explicit products below need the decays again
    for (index_t j = 0; j < NB; ++j) simd::transform(wp + j * ws, d + j * K, K, [](auto x) { return decay(x); });
  if (ratio) ratio_dots(c, (K + L - 1) / L);
  else chain_dots(c, K, rp, rs, kp, ks, ap, as, bp, bs, d);

  // 3. A block that ends the run: b̂ = G(l,NB-1) ⊙ b_l, explicit products of factors ≤ 1, the
  //    fold factor f = E', and the run starts again from E = 1.
  if (c.fold) {
    auto rawcols = [=]<class Vec>(index_t x) SEQMIX_RWKV7_INLINE {
      Vec sfx(T(1));
      SEQMIX_UNROLL for (index_t l = NB - 1; l >= 0; --l) {
        vstore<Vec>(ou + at(NU, l, x), vload<Vec>(bp + l * bs + x) * sfx);
        vstore<Vec>(ou + at(NU, NB + l, x), vload<Vec>(kp + l * ks + x) * sfx);
        sfx *= vload<Vec>(d + l * K + x);
      }
      vstore<Vec>(ou + at(NU, 2 * NB, x), vload<Vec>(E + x));
      vstore<Vec>(E + x, Vec(T(1)));
    };
    for (x = 0; x + L <= K; x += L) rawcols.template operator()<B>(x);
    for (; x < K; ++x) rawcols.template operator()<T>(x);
  }
}

// Dot products of the stored rows over whole groups (unwritten lanes are zero): A_ab, A_ak from
// the ã rows (l < j), A_rb, A_rk from the r̃ rows (l ≤ j). The 2·NB² vector sums are packed
// densely and reduced together at the end, straight into c.A.
template <class T>
void ratio_dots(block_coefs<T>& c, index_t groups) {
  using B = simd::batch<T>;
  constexpr index_t NB = block_tokens, NU = block_coefs<T>::NU, NR = block_coefs<T>::NR, G = simd::lanes<T>;
  constexpr index_t NA = NB * (NB - 1) / 2, NRr = NB * (NB + 1) / 2, N = 2 * (NA + NRr);  // = 2·NB²
  static_assert(N == block_coefs<T>::NAll);
  alignas(64) B acc[N];  // Aab, Aak (l < j), then Arb, Ark (l ≤ j), packed row by row
  const T *rr = c.red, *sc = c.upd;
  // Diag = false: ã rows, l < j; true: r̃ rows, l ≤ j.
  auto part = [&]<bool Diag>(std::bool_constant<Diag>) SEQMIX_RWKV7_INLINE {
    constexpr index_t M = Diag ? NRr : NA;
    B ab[M], ak[M];
    SEQMIX_UNROLL for (index_t m = 0; m < M; ++m) ab[m] = ak[m] = B(T(0));
    for (index_t g = 0; g < groups; ++g) {
      const T *rg = rr + g * NR * G + (Diag ? NB * G : 0), *sg = sc + g * NU * G;
      index_t m = 0;
      SEQMIX_UNROLL for (index_t j = 0; j < NB; ++j) {
        if (!Diag && j == 0) continue;
        const B aj = simd::load(rg + j * G);
        SEQMIX_UNROLL for (index_t l = 0; l < (Diag ? j + 1 : j); ++l, ++m) {
          ab[m] = simd::fma(aj, simd::load(sg + l * G), ab[m]);
          ak[m] = simd::fma(aj, simd::load(sg + (NB + l) * G), ak[m]);
        }
      }
    }
    B* out = acc + (Diag ? 2 * NA : 0);
    SEQMIX_UNROLL for (index_t m = 0; m < M; ++m) out[m] = ab[m], out[M + m] = ak[m];
  };
  part(std::false_type{});
  part(std::true_type{});
  simd::sum_lanes<N>(acc, c.A);
}

// Extreme decays (E' near underflow): u = G(l,m) ⊙ b_l (and k_l) for m = l..NB-1 as explicit
// products of factors ≤ 1, never ratios; A_rb[m][l] = r_m·u, A_ab[m+1][l] = a_{m+1}·u.
template <class T>
void chain_dots(block_coefs<T>& c, index_t K, const T* rp, index_t rs, const T* kp, index_t ks, const T* ap,
                index_t as, const T* bp, index_t bs, const T* d) {
  using B = simd::batch<T>;
  constexpr index_t NB = block_tokens, L = simd::lanes<T>;
  for (index_t l = 0; l < NB; ++l) {
    auto dots = [=]<class Vec>(index_t x, Vec(&rb)[NB], Vec(&rk)[NB], Vec(&ab)[NB], Vec(&ak)[NB]) {
      Vec ub = vload<Vec>(bp + l * bs + x), uk = vload<Vec>(kp + l * ks + x);
      SEQMIX_UNROLL for (index_t m = 0; m < NB; ++m) {
        if (m < l) continue;
        if (m > l) {
          const Vec dm = vload<Vec>(d + m * K + x);
          ub *= dm, uk *= dm;
        }
        const Vec rm = vload<Vec>(rp + m * rs + x);
        rb[m] = simd::fma(rm, ub, rb[m]), rk[m] = simd::fma(rm, uk, rk[m]);
        if (m + 1 < NB) {
          const Vec an = vload<Vec>(ap + (m + 1) * as + x);
          ab[m + 1] = simd::fma(an, ub, ab[m + 1]), ak[m + 1] = simd::fma(an, uk, ak[m + 1]);
        }
      }
    };
    B vrb[NB], vrk[NB], vab[NB], vak[NB];
    T trb[NB], trk[NB], tab[NB], tak[NB];
    for (index_t m = 0; m < NB; ++m) {
      vrb[m] = vrk[m] = vab[m] = vak[m] = B(T(0));
      trb[m] = trk[m] = tab[m] = tak[m] = T(0);
    }
    index_t y = 0;
    for (; y + L <= K; y += L) dots.template operator()<B>(y, vrb, vrk, vab, vak);
    for (; y < K; ++y) dots.template operator()<T>(y, trb, trk, tab, tak);
    for (index_t m = l; m < NB; ++m) {
      c.rb(m, l) = simd::reduce_add(vrb[m]) + trb[m], c.rk(m, l) = simd::reduce_add(vrk[m]) + trk[m];
      if (m > l) c.ab(m, l) = simd::reduce_add(vab[m]) + tab[m], c.ak(m, l) = simd::reduce_add(vak[m]) + tak[m];
    }
  }
}

// Reductions of the first block of a call on NV vectors (of type Vec) of the value axis:
// pend[j] = Sᵀ ã_j, pend[NB+j] = Sᵀ r̃_j (rows of pend ldp apart). S points at the tile's column.
template <index_t NV, class Vec, class T>
[[gnu::noinline]] void reduce_tile(index_t K, const T* red, const T* S, index_t lds, T* pend, index_t ldp) {
  constexpr index_t NB = block_tokens, NR = 2 * NB, G = simd::lanes<T>;
  constexpr index_t W = std::is_same_v<Vec, T> ? 1 : simd::lanes<T>;
  Vec acc[NR][NV];
  SEQMIX_UNROLL for (index_t c = 0; c < NR; ++c)
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) acc[c][q] = Vec(T(0));
  for (index_t g = 0; g * G < K; ++g) {
    const T* rg = red + g * NR * G;
    for (index_t ii = 0, n = std::min(G, K - g * G); ii < n; ++ii) {
      const T* row = S + (g * G + ii) * lds;
      Vec s[NV];
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) s[q] = vload<Vec>(row + q * W);
      SEQMIX_UNROLL for (index_t c = 0; c < NR; ++c) {
        const Vec ci(rg[c * G + ii]);
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) acc[c][q] = simd::fma(ci, s[q], acc[c][q]);
      }
    }
  }
  SEQMIX_UNROLL for (index_t c = 0; c < NR; ++c)
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(pend + c * ldp + q * W, acc[c][q]);
}

// One block of NB tokens on NV vectors of the value axis. From the block's reductions in pend it
// solves sa and o (intra-block terms in registers), then in one pass over the state rows applies
// the block (S~ += Σ_l b̃_l sa_lᵀ + k̃_l v_lᵀ, or with Fold S = f ⊙ S~ + …) and, with Next, reduces
// each updated row for the next block (coefficients red_next) into pend. v[j], o[j], S and pend
// point at the tile's first column. Kept out of line: inlined into a large caller, GCC spills the
// accumulators of the hot loop.
template <index_t NV, bool Fold, bool Next, class Vec, class T>
[[gnu::noinline]] void pass_tile(index_t K, const block_coefs<T>& c, const T* red_next, const T* const* v, T* const* o,
                                 T* S, index_t lds, T* pend, index_t ldp) {
  constexpr index_t NB = block_tokens, NU = 2 * NB + 1, NR = 2 * NB, G = simd::lanes<T>;
  constexpr index_t W = std::is_same_v<Vec, T> ? 1 : simd::lanes<T>;
  Vec sa[NB][NV], vv[NB][NV];
  {
    Vec xr[NB][NV];
    SEQMIX_UNROLL for (index_t j = 0; j < NB; ++j)
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) {
        sa[j][q] = vload<Vec>(pend + j * ldp + q * W), xr[j][q] = vload<Vec>(pend + (NB + j) * ldp + q * W);
        vv[j][q] = vload<Vec>(v[j] + q * W);
      }
    // Intra-block: xa_j becomes sa_j (forward substitution), then o_j.
    SEQMIX_UNROLL for (index_t j = 1; j < NB; ++j)
      SEQMIX_UNROLL for (index_t l = 0; l < j; ++l) {
        const Vec ab(c.ab(j, l)), ak(c.ak(j, l));
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) sa[j][q] = simd::fma(ab, sa[l][q], simd::fma(ak, vv[l][q], sa[j][q]));
      }
    SEQMIX_UNROLL for (index_t j = 0; j < NB; ++j) {
      SEQMIX_UNROLL for (index_t l = 0; l <= j; ++l) {
        const Vec rb(c.rb(j, l)), rk(c.rk(j, l));
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) xr[j][q] = simd::fma(rb, sa[l][q], simd::fma(rk, vv[l][q], xr[j][q]));
      }
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(o[j] + q * W, xr[j][q]);
    }
  }
  Vec na[NR][NV];
  if constexpr (Next)
    SEQMIX_UNROLL for (index_t j = 0; j < NR; ++j)
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) na[j][q] = Vec(T(0));
  for (index_t g = 0; g * G < K; ++g) {
    const T* ug = c.upd + g * NU * G;
    const T* rg = Next ? red_next + g * NR * G : nullptr;
    for (index_t ii = 0, n = std::min(G, K - g * G); ii < n; ++ii) {
      T* row = S + (g * G + ii) * lds;
      // u = Σ_l b̃_l[i] sa_l + k̃_l[i] v_l as two interleaved chains (half the latency of one).
      Vec u[NV];
      {
        Vec uc[2][NV];
        SEQMIX_UNROLL for (index_t l = 0; l < NB; ++l) {
          const Vec bl(ug[l * G + ii]), kl(ug[(NB + l) * G + ii]);
          SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q)
            uc[l % 2][q] = l < 2 ? simd::fma(kl, vv[l][q], bl * sa[l][q]) : simd::fma(kl, vv[l][q], simd::fma(bl, sa[l][q], uc[l % 2][q]));
        }
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) u[q] = NB > 1 ? uc[0][q] + uc[1][q] : uc[0][q];
      }
      Vec s[NV];
      if constexpr (Fold) {
        const Vec f(ug[2 * NB * G + ii]);
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) s[q] = simd::fma(f, vload<Vec>(row + q * W), u[q]);
      } else {
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) s[q] = vload<Vec>(row + q * W) + u[q];
      }
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(row + q * W, s[q]);
      if constexpr (Next)
        SEQMIX_UNROLL for (index_t j = 0; j < NR; ++j) {
          const Vec cj(rg[j * G + ii]);
          SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) na[j][q] = simd::fma(cj, s[q], na[j][q]);
        }
    }
  }
  if constexpr (Next)
    SEQMIX_UNROLL for (index_t j = 0; j < NR; ++j)
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(pend + j * ldp + q * W, na[j][q]);
}

// Runs f.template operator()<NV, Vec>(col) over the value axis: tiles of pass_vectors (or NVmax)
// vectors, single vectors, then scalar columns.
template <index_t NVmax, class T, class F>
inline void over_columns(index_t V, F&& f) {
  constexpr index_t L = simd::lanes<T>;
  using B = simd::batch<T>;
  index_t col = 0;
  for (; col + NVmax * L <= V; col += NVmax * L) f.template operator()<NVmax, B>(col);
  if constexpr (NVmax > 1)
    for (; col + L <= V; col += L) f.template operator()<1, B>(col);
  for (index_t rem = V - col; rem > 0; --rem, ++col) f.template operator()<1, T>(col);
}

// One block over the whole value axis.
// between() runs before each tile (the caller spreads its prefetches over the passes with it).
template <bool Fold, bool Next, class T, class F>
inline void pass_all(index_t K, index_t V, const block_coefs<T>& c, const T* red_next, const T* const* v, T* const* o,
                     T* S, index_t lds, T* pend, F&& between) {
  constexpr index_t NB = block_tokens;
  over_columns<pass_vectors, T>(V, [&]<index_t NV, class Vec>(index_t col) {
    const T* vj[NB];
    T* oj[NB];
    for (index_t n = 0; n < NB; ++n) vj[n] = v[n] + col, oj[n] = o[n] + col;
    between();
    pass_tile<NV, Fold, Next, Vec>(K, c, red_next, vj, oj, S + col, lds, pend + col, V);
  });
}

// The number of tiles over_columns<NVmax, T> visits for V columns.
template <index_t NVmax, class T>
inline index_t column_tiles(index_t V) {
  constexpr index_t L = simd::lanes<T>;
  const index_t full = V / (NVmax * L), rest = V - full * NVmax * L;
  return full + (NVmax > 1 ? rest / L + rest % L : rest);
}

// Explicit single tokens, for calls shorter than a block (decode) and the tokens after a call's
// last full block:  sa = Sᵀ a;  S = d ⊙ S + b saᵀ + k vᵀ;  o = Sᵀ r.  The reduction sa of each
// token is fused into the update pass of the token before it, so every token costs one pass over
// its state (plus one reduction pass before the first): `Next` says where the next token's state
// is, `same` (this one, as it leaves the update) or `other` (another head's state, loaded), or
// `none`. All pointers are at the tile's first column; sa_in / sa_out hold sa of this / the next
// token on the tile.
enum class step_next { none, same, other };

template <index_t NV, class Vec, class T>
[[gnu::noinline]] void step_reduce_tile(index_t K, const T* a, const T* S, index_t lds, T* sa_out) {
  constexpr index_t W = std::is_same_v<Vec, T> ? 1 : simd::lanes<T>;
  Vec sa[2][NV];  // two sets of accumulators: the FMA latency is off the critical path
  SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) sa[0][q] = sa[1][q] = Vec(T(0));
  index_t i = 0;
  for (; i + 2 <= K; i += 2)
    SEQMIX_UNROLL for (index_t n = 0; n < 2; ++n) {
      const Vec ai(a[i + n]);
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) sa[n][q] = simd::fma(ai, vload<Vec>(S + (i + n) * lds + q * W), sa[n][q]);
    }
  if (i < K) {
    const Vec ai(a[i]);
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) sa[0][q] = simd::fma(ai, vload<Vec>(S + i * lds + q * W), sa[0][q]);
  }
  SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(sa_out + q * W, sa[0][q] + sa[1][q]);
}

template <index_t NV, step_next Next, class Vec, class T>
[[gnu::noinline]] void step_tile(index_t K, const T* d, const T* b, const T* k, const T* r, const T* v, const T* sa_in,
                                 T* S, index_t lds, T* o, const T* a_next, const T* S_next, T* sa_out) {
  constexpr index_t W = std::is_same_v<Vec, T> ? 1 : simd::lanes<T>;
  Vec sa[NV], vv[NV], acc[NV], nx[NV];
  SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) {
    sa[q] = vload<Vec>(sa_in + q * W), vv[q] = vload<Vec>(v + q * W);
    acc[q] = nx[q] = Vec(T(0));
  }
  // The other state's rows are read `shift` rows ahead (cyclically) of the rows being written,
  // so that a load never shares its address bits 0-11 with the store just before it.
  index_t shift = 0;
  if constexpr (Next == step_next::other) {
    const auto dist = reinterpret_cast<std::uintptr_t>(S_next) - reinterpret_cast<std::uintptr_t>(S);
    for (index_t m = 0; m < K; ++m) {
      const auto off = (dist + std::uintptr_t(m * lds) * sizeof(T)) % 4096;
      if (off >= 1024 && off <= 3072) { shift = m; break; }
    }
  }
  for (index_t i = 0, in = shift; i < K; ++i, in = in + 1 == K ? 0 : in + 1) {
    T* row = S + i * lds;
    const Vec di(d[i]), bi(b[i]), ki(k[i]), ri(r[i]);
    Vec s[NV];
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) {
      s[q] = simd::fma(di, vload<Vec>(row + q * W), simd::fma(ki, vv[q], bi * sa[q]));
      vstore<Vec>(row + q * W, s[q]);
      acc[q] = simd::fma(ri, s[q], acc[q]);
    }
    if constexpr (Next != step_next::none) {
      if constexpr (Next == step_next::same) {
        const Vec ai(a_next[i]);
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) nx[q] = simd::fma(ai, s[q], nx[q]);
      } else {
        const Vec ai(a_next[in]);
        SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) nx[q] = simd::fma(ai, vload<Vec>(S_next + in * lds + q * W), nx[q]);
      }
    }
  }
  SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(o + q * W, acc[q]);
  if constexpr (Next != step_next::none)
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(sa_out + q * W, nx[q]);
}

// Explicit tokens [t0, t1) of each of n heads, head after head (states exact before and after):
// io[h] gives the rows and the state (row stride lds) of head h. Each token's decays
// are computed before the pass of the token before it, whose work hides their latency.
// scratch: steps_scratch(K, V) values, 64-byte aligned.
inline index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }
inline index_t steps_scratch(index_t K, index_t V) { return 2 * round_up(V, 16) + 2 * round_up(K, 16); }
template <class T>
void steps(index_t n, const head_io<T>* io, index_t lds, index_t t0, index_t t1, index_t K, index_t V,
           T* scratch) {
  if (t1 <= t0 || n == 0) return;
  T *sa_cur = scratch, *sa_nxt = scratch + round_up(V, 16);
  T *d_cur = scratch + 2 * round_up(V, 16), *d_nxt = d_cur + round_up(K, 16);
  const auto decays = [K](const T* w, T* d) { simd::transform(w, d, K, [](auto x) { return decay(x); }); };
  decays(io[0].w.row(t0), d_cur);
  over_columns<step_vectors, T>(V, [&]<index_t NV, class Vec>(index_t col) {
    step_reduce_tile<NV, Vec>(K, io[0].a.row(t0), io[0].S + col, lds, sa_cur + col);
  });
  for (index_t h = 0; h < n; ++h) {
    const head_io<T>& x = io[h];
    for (index_t t = t0; t < t1; ++t) {
      const T *b = x.b.row(t), *k = x.k.row(t), *r = x.r.row(t), *v = x.v.row(t);
      T* o = x.o.row(t);
      const bool same = t + 1 < t1, other = !same && h + 1 < n;
      const T* a_next = same ? x.a.row(t + 1) : other ? io[h + 1].a.row(t0) : nullptr;
      if (same || other) decays(same ? x.w.row(t + 1) : io[h + 1].w.row(t0), d_nxt);
      over_columns<step_vectors, T>(V, [&]<index_t NV, class Vec>(index_t col) {
        if (same)
          step_tile<NV, step_next::same, Vec>(K, d_cur, b, k, r, v + col, sa_cur + col, x.S + col, lds, o + col,
                                              a_next, static_cast<const T*>(nullptr), sa_nxt + col);
        else if (other)
          step_tile<NV, step_next::other, Vec>(K, d_cur, b, k, r, v + col, sa_cur + col, x.S + col, lds, o + col,
                                               a_next, io[h + 1].S + col, sa_nxt + col);
        else
          step_tile<NV, step_next::none, Vec>(K, d_cur, b, k, r, v + col, sa_cur + col, x.S + col, lds, o + col,
                                              a_next, static_cast<const T*>(nullptr), sa_nxt + col);
      });
      std::swap(sa_cur, sa_nxt), std::swap(d_cur, d_nxt);
    }
  }
}

// Per worker (a range of heads): block coefficients, per head the open run's decay E [K] and the
// reductions of its next block pend [2·NB][V], and scratch. A head's blocks are prepared just
// before their passes, into two slots shared by all heads (so they stay in L1); only the first
// block of the next token block, prepared by the last pass of a token block, is kept per head
// (two slots per head, alternating by token block).
template <class T>
struct worker {
  static constexpr index_t NB = block_tokens;
  index_t heads, K, V;
  tensor<T, 1> mem, E, pend, d, sa;
  std::vector<block_coefs<T>> slots;  // [2] shared, then [heads][2]
  std::vector<head_io<T>> io;         // the rows of each head
  worker(index_t heads_, index_t K_, index_t V_)
      : heads(heads_), K(K_), V(V_), E({heads_ * K_}, T(1)), pend({heads_ * 2 * NB * V_}), d({NB * K_}),
        sa({steps_scratch(K_, V_)}), slots(std::size_t(2 * heads_ + 2)) {
    constexpr index_t G = simd::lanes<T>;
    const index_t rows = (K + G - 1) / G * G, red = block_coefs<T>::NR * rows, upd = block_coefs<T>::NU * rows;
    mem = tensor<T, 1>({(2 * heads + 2) * (red + upd)});
    for (index_t n = 0; n < 2 * heads + 2; ++n)
      slots[std::size_t(n)].red = mem.data() + n * (red + upd), slots[std::size_t(n)].upd = slots[std::size_t(n)].red + red;
  }
  block_coefs<T>& shared(index_t blk) { return slots[std::size_t(blk % 2)]; }
  block_coefs<T>& kept(index_t h, index_t tb) { return slots[std::size_t(2 + 2 * h + tb % 2)]; }
};

}  // namespace detail

/// RWKV-7 op, a few tokens per pass over the state. Shapes as in ref(); state [B,H,K,V] is updated
/// in place.
template <class T>
void recurrent(const exec::recurrent& policy, const inputs<T>& in, tensor_view<T, 4> o, tensor_view<T, 4> state) {
  check_args(in, o, state);
  constexpr index_t NB = detail::block_tokens;
  const index_t B = in.r.extent(0), L = in.r.extent(1), H = in.r.extent(2), K = in.r.extent(3), V = in.v.extent(3);
  if (L == 0) return;
  auto rows = [&](index_t bi, index_t h) SEQMIX_RWKV7_INLINE { return detail::head_of(in, o, state, bi, h); };
  const index_t lds = state.stride(2), nb = L / NB;
  if (nb == 0) {  // fewer tokens than a block (decode): explicit steps, head after head
    // Typical decode shapes need no allocation.
    constexpr index_t local_heads = 32, local_scratch = 1024;
    const index_t n = B * H, need = detail::steps_scratch(K, V);
    detail::head_io<T> local_io[local_heads];
    alignas(64) T local[local_scratch];
    std::vector<detail::head_io<T>> heap_io(n > local_heads ? std::size_t(n) : 0);
    std::vector<T> heap(need > local_scratch ? std::size_t(need + 64 / sizeof(T)) : 0);
    detail::head_io<T>* io = n > local_heads ? heap_io.data() : local_io;
    for (index_t bi = 0, bh = 0; bi < B; ++bi)
      for (index_t h = 0; h < H; ++h, ++bh) io[bh] = rows(bi, h);
    T* scratch = need > local_scratch ? heap.data() + (64 - reinterpret_cast<std::uintptr_t>(heap.data()) % 64) % 64 / sizeof(T) : local;
    detail::steps<T>(n, io, lds, 0, L, K, V, scratch);
    return;
  }
  parallel_ranges(threads_for_work(policy.threads, double(B) * H * K * V * L), B * H, [&](index_t begin, index_t end) {
    constexpr index_t TB = detail::token_block;
    detail::worker<T> wk(end - begin, K, V);
    const index_t nh = end - begin;
    for (index_t h = 0; h < nh; ++h) wk.io.push_back(rows((begin + h) / H, (begin + h) % H));
    // Prefetches tokens [j0, j1) of the input rows of head h.
    auto fetch = [&](index_t h, index_t j0, index_t j1) {
      const auto& io = wk.io[std::size_t(h)];
      for (index_t j = j0; j < j1; ++j) {
        simd::prefetch(io.r.row(j), K), simd::prefetch(io.w.row(j), K), simd::prefetch(io.k.row(j), K);
        simd::prefetch(io.a.row(j), K), simd::prefetch(io.b.row(j), K);
        simd::prefetch(io.v.row(j), V), simd::prefetch_for_write(io.o.row(j), V);
      }
    };
    auto prep = [&](detail::block_coefs<T>& c, index_t h, index_t blk) {
      const auto& io = wk.io[std::size_t(h)];
      detail::prepare<T>(c, K, blk * NB, io, wk.E.data() + h * K, blk + 1 == nb, wk.d.data());
    };
    // The first block: its coefficients and its reductions of the state as it enters.
    for (index_t h = 0; h < nh; ++h) fetch(h, 0, std::min(L, TB + NB));
    for (index_t h = 0; h < nh; ++h) {
      prep(wk.kept(h, 0), h, 0);
      detail::over_columns<detail::pass_vectors, T>(V, [&]<index_t NV, class Vec>(index_t col) {
        detail::reduce_tile<NV, Vec>(K, wk.kept(h, 0).red, wk.io[std::size_t(h)].S + col, lds, wk.pend.data() + h * 2 * NB * V + col, V);
      });
    }
    for (index_t t0 = 0, tb = 0; t0 < L; t0 += TB, ++tb) {
      const index_t t1 = std::min(L, t0 + TB), b0 = t0 / NB, b1 = std::min(nb, t1 / NB);
      // The passes are FMA-bound: spread over their tiles, fetch the rows the next token block
      // reads (inputs of its blocks after the first, values and outputs of its passes), one token of
      // one head at a time. Fetched all at once, they would wait for memory; fetched further ahead,
      // they would leave L2 before they are used.
      const index_t f0 = std::min(L, t1 + NB), f1 = std::min(L, t1 + TB + NB);
      const index_t pairs = (f1 - f0) * nh;
      const index_t calls = std::max<index_t>(1, nh * (b1 - b0) * detail::column_tiles<detail::pass_vectors, T>(V));
      index_t fetched = 0, call = 0, fh = 0, fj = f0;
      auto between = [&] {
        for (const index_t upto = pairs * ++call / calls; fetched < upto; ++fetched) {
          const auto& io = wk.io[std::size_t(fh)];
          simd::prefetch(io.r.row(fj), K), simd::prefetch(io.w.row(fj), K), simd::prefetch(io.k.row(fj), K);
          simd::prefetch(io.a.row(fj), K), simd::prefetch(io.b.row(fj), K);
          simd::prefetch(io.v.row(fj - NB), V), simd::prefetch_for_write(io.o.row(fj - NB), V);
          if (++fh == nh) fh = 0, ++fj;
        }
      };
      // Per head: its blocks in [b0, b1), each pass preceded by the coefficients of the block after
      // it, then the tokens after the last full block.
      for (index_t h = 0; h < nh; ++h) {
        const auto& io = wk.io[std::size_t(h)];
        T* Sh = io.S;
        T* pend = wk.pend.data() + h * 2 * NB * V;
        for (index_t blk = b0; blk < b1; ++blk) {
          const T* vj[NB];
          T* oj[NB];
          for (index_t j = 0; j < NB; ++j) vj[j] = io.v.row(blk * NB + j), oj[j] = io.o.row(blk * NB + j);
          const auto& c = blk == b0 ? wk.kept(h, tb) : wk.shared(blk);
          if (blk + 1 < nb) {
            auto& cn = blk + 1 == b1 ? wk.kept(h, tb + 1) : wk.shared(blk + 1);
            prep(cn, h, blk + 1);
            if (c.fold) detail::pass_all<true, true>(K, V, c, cn.red, vj, oj, Sh, lds, pend, between);
            else detail::pass_all<false, true>(K, V, c, cn.red, vj, oj, Sh, lds, pend, between);
          } else {
            detail::pass_all<true, false>(K, V, c, static_cast<const T*>(nullptr), vj, oj, Sh, lds, pend, between);
          }
        }
        if (t1 == L)
          detail::steps<T>(1, &io, lds, nb * NB, L, K, V, wk.sa.data());
      }
    }
  });
}

}  // namespace seqmix::kernels::rwkv7

#undef SEQMIX_RWKV7_INLINE
