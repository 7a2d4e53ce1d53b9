// RWKV-7, recurrent policy: the state [K,V] stays in cache and the tokens are taken a few at a time
// (up to `block_tokens` per pass), which is the decode path and, for K = V = 64, the fastest prefill.
//
// A block of n tokens applied to the state S before it (docs/rwkv7.md):
//   sa_j = S_{j-1}ᵀ a_j = Sᵀ(a_j ⊙ P_{j-1}) + Σ_{l<j} [a_j·(G(l,j-1)⊙b_l)] sa_l + [a_j·(G(l,j-1)⊙k_l)] v_l
//   o_j  = S_jᵀ r_j     = Sᵀ(r_j ⊙ P_j)     + Σ_{l≤j} [r_j·(G(l,j)⊙b_l)] sa_l   + [r_j·(G(l,j)⊙k_l)] v_l
//   S'   = P_{n-1} ⊙ S + Σ_l (G(l,n-1)⊙b_l) sa_lᵀ + (G(l,n-1)⊙k_l) v_lᵀ
// with P_j = Π_{m≤j} e^{w_m} and G(l,j) = Π_{l<m≤j} e^{w_m}, both formed as explicit products of
// factors ≤ 1 (never as ratios), so no term can overflow whatever the decay. Per tile of the value
// axis, one pass over the state gathers the 2n reductions, a small triangular solve in registers
// gives sa and o, and a second pass applies the n updates: the state is loaded twice and stored
// once per block instead of per token.
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "args.hpp"

namespace seqmix::kernels::rwkv7 {

namespace detail {

inline constexpr index_t block_tokens = 4;  // tokens per pass over the state
inline constexpr index_t token_block = 32;  // tokens of one head between switches to the next head

// AVX-512 has 32 vector registers, AVX2 and SSE2 16. A pass over NT tokens on NV vectors of the
// value axis keeps 3·NT·NV of them live (two reductions and v per token) plus the state row.
inline constexpr index_t vector_registers = sizeof(simd::batch<float>) >= 64 ? 32 : 16;
template <index_t NT>
inline constexpr index_t tile_vectors = std::clamp<index_t>((vector_registers - 4) / (3 * NT + 1), 1, 4);

// Vec is simd::batch<T> or T (scalar tail columns).
template <class Vec, class T>
inline Vec vload(const T* p) {
  if constexpr (std::is_same_v<Vec, T>) return *p;
  else return simd::load(p);
}
template <class Vec, class T>
inline void vstore(T* p, const Vec& x) {
  if constexpr (std::is_same_v<Vec, T>) *p = x;
  else simd::store(p, x);
}
template <class Vec>
inline Vec vfma(const Vec& a, const Vec& b, const Vec& c) {
  if constexpr (std::is_arithmetic_v<Vec>) return a * b + c;
  else return xsimd::fma(a, b, c);
}

// Per-block coefficients of one head, shared by every tile of the value axis.
template <class T>
struct block_coefs {
  index_t K;
  std::vector<T> buf;       // one allocation (decode calls this per token) holding:
  T *ca, *cr, *bh, *kh, *pend;  // [block_tokens][K] each; pend [K]
  T Aab[block_tokens][block_tokens], Aak[block_tokens][block_tokens];
  T Arb[block_tokens][block_tokens], Ark[block_tokens][block_tokens];

  explicit block_coefs(index_t K_)
      : K(K_), buf(std::size_t((4 * block_tokens + 1) * K_)) {
    ca = buf.data(), cr = ca + block_tokens * K, bh = cr + block_tokens * K, kh = bh + block_tokens * K;
    pend = kh + block_tokens * K;
  }
  block_coefs(const block_coefs&) = delete;
  block_coefs& operator=(const block_coefs&) = delete;
  const T* at(const T* x, index_t j) const { return x + j * K; }

  // Coefficients of tokens [t, t+NT) of one head (see the header comment), one pass over the key
  // axis: per vector of key channels the NT decays, prefix and suffix products, the four
  // coefficient vectors and partial sums of the 2·NT² intra-block dot products.
  template <index_t NT>
  void prepare(index_t t, head_rows<const T> r, head_rows<const T> w, head_rows<const T> k, head_rows<const T> a,
               head_rows<const T> b) {
    // Rows through base pointer + stride, outputs through local pointers captured by value: the
    // SIMD stores may alias anything, so pointers held in memory would be reloaded after each one.
    const T *rp = r.row(t), *wp = w.row(t), *kp = k.row(t), *ap = a.row(t), *bp = b.row(t);
    const index_t rs = r.ts, ws = w.ts, ks = k.ts, as = a.ts, bs = b.ts, KK = K;
    T *oca = ca, *ocr = cr, *obh = bh, *okh = kh, *op = pend;
    auto cols = [=]<class Vec>(index_t x, Vec(&sab)[NT][NT], Vec(&sak)[NT][NT], Vec(&srb)[NT][NT], Vec(&srk)[NT][NT]) {
      Vec dj[NT], p(T(1));
      SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j) {
        dj[j] = simd::exp(vload<Vec>(wp + j * ws + x));
        vstore<Vec>(oca + j * KK + x, vload<Vec>(ap + j * as + x) * p);
        p *= dj[j];
        vstore<Vec>(ocr + j * KK + x, vload<Vec>(rp + j * rs + x) * p);
      }
      vstore<Vec>(op + x, p);
      // u = G(l,m) ⊙ b_l and G(l,m) ⊙ k_l for m = l..NT-1: products of factors ≤ 1, never ratios.
      SEQMIX_UNROLL for (index_t l = 0; l < NT; ++l) {
        Vec ub = vload<Vec>(bp + l * bs + x), uk = vload<Vec>(kp + l * ks + x);
        SEQMIX_UNROLL for (index_t m = l; m < NT; ++m) {
          if (m > l) ub *= dj[m], uk *= dj[m];
          const Vec rm = vload<Vec>(rp + m * rs + x);
          srb[m][l] = vfma(rm, ub, srb[m][l]), srk[m][l] = vfma(rm, uk, srk[m][l]);
          if (m + 1 < NT) {
            const Vec an = vload<Vec>(ap + (m + 1) * as + x);
            sab[m + 1][l] = vfma(an, ub, sab[m + 1][l]), sak[m + 1][l] = vfma(an, uk, sak[m + 1][l]);
          }
        }
        vstore<Vec>(obh + l * KK + x, ub), vstore<Vec>(okh + l * KK + x, uk);
      }
    };
    using B = simd::batch<T>;
    constexpr index_t L = simd::lanes<T>;
    B vab[NT][NT], vak[NT][NT], vrb[NT][NT], vrk[NT][NT];
    T tab[NT][NT], tak[NT][NT], trb[NT][NT], trk[NT][NT];
    for (index_t j = 0; j < NT; ++j)
      for (index_t l = 0; l < NT; ++l) {
        vab[j][l] = vak[j][l] = vrb[j][l] = vrk[j][l] = B(T(0));
        tab[j][l] = tak[j][l] = trb[j][l] = trk[j][l] = T(0);
      }
    index_t x = 0;
    for (; x + L <= K; x += L) cols.template operator()<B>(x, vab, vak, vrb, vrk);
    for (; x < K; ++x) cols.template operator()<T>(x, tab, tak, trb, trk);
    for (index_t j = 0; j < NT; ++j)
      for (index_t l = 0; l <= j; ++l) {
        Arb[j][l] = simd::reduce_add(vrb[j][l]) + trb[j][l], Ark[j][l] = simd::reduce_add(vrk[j][l]) + trk[j][l];
        if (l < j) Aab[j][l] = simd::reduce_add(vab[j][l]) + tab[j][l], Aak[j][l] = simd::reduce_add(vak[j][l]) + tak[j][l];
      }
  }
};

// One block of NT tokens on NV vectors (of type Vec) of the value axis; v[j], o[j], S point at the
// tile's first column.
template <index_t NT, index_t NV, class Vec, class T>
inline void block_tile(const block_coefs<T>& c, const T* const* v, T* S, index_t lds, T* const* o) {
  constexpr index_t W = std::is_same_v<Vec, T> ? 1 : simd::lanes<T>;
  const index_t K = c.K;
  Vec xa[NT][NV], xr[NT][NV], vv[NT][NV];
  SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j)
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) xa[j][q] = Vec(T(0)), xr[j][q] = Vec(T(0));
  // Pass 1: xa_j = Sᵀ ca_j, xr_j = Sᵀ cr_j.
  const T *ca[NT], *cr[NT];
  SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j) ca[j] = c.at(c.ca, j), cr[j] = c.at(c.cr, j);
  for (index_t i = 0; i < K; ++i) {
    Vec s[NV];
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) s[q] = vload<Vec>(S + i * lds + q * W);
    SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j) {
      const Vec ai(ca[j][i]), ri(cr[j][i]);
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) xa[j][q] = vfma(ai, s[q], xa[j][q]), xr[j][q] = vfma(ri, s[q], xr[j][q]);
    }
  }
  // Intra-block: xa_j becomes sa_j (forward substitution), then o_j.
  SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j)
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vv[j][q] = vload<Vec>(v[j] + q * W);
  SEQMIX_UNROLL for (index_t j = 1; j < NT; ++j)
    SEQMIX_UNROLL for (index_t l = 0; l < j; ++l) {
      const Vec ab(c.Aab[j][l]), ak(c.Aak[j][l]);
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) xa[j][q] = vfma(ab, xa[l][q], vfma(ak, vv[l][q], xa[j][q]));
    }
  SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j) {
    SEQMIX_UNROLL for (index_t l = 0; l <= j; ++l) {
      const Vec rb(c.Arb[j][l]), rk(c.Ark[j][l]);
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) xr[j][q] = vfma(rb, xa[l][q], vfma(rk, vv[l][q], xr[j][q]));
    }
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(o[j] + q * W, xr[j][q]);
  }
  // Pass 2: S = pend ⊙ S + Σ_l bh_l sa_lᵀ + kh_l v_lᵀ.
  const T *bh[NT], *kh[NT];
  SEQMIX_UNROLL for (index_t j = 0; j < NT; ++j) bh[j] = c.at(c.bh, j), kh[j] = c.at(c.kh, j);
  for (index_t i = 0; i < K; ++i) {
    T* row = S + i * lds;
    const Vec p(c.pend[i]);
    Vec s[NV];
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) s[q] = vload<Vec>(row + q * W) * p;
    SEQMIX_UNROLL for (index_t l = 0; l < NT; ++l) {
      const Vec bi(bh[l][i]), ki(kh[l][i]);
      SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) s[q] = vfma(bi, xa[l][q], vfma(ki, vv[l][q], s[q]));
    }
    SEQMIX_UNROLL for (index_t q = 0; q < NV; ++q) vstore<Vec>(row + q * W, s[q]);
  }
}

// One block of NT tokens over the whole value axis: full tiles, single vectors, scalar columns.
template <index_t NT, class T>
inline void block_all(const block_coefs<T>& c, index_t V, const T* const* v, T* S, index_t lds, T* const* o) {
  constexpr index_t L = simd::lanes<T>, NV = tile_vectors<NT>;
  const T* vj[NT];
  T* oj[NT];
  auto at = [&](index_t col) {
    for (index_t n = 0; n < NT; ++n) vj[n] = v[n] + col, oj[n] = o[n] + col;
  };
  index_t col = 0;
  for (; col + NV * L <= V; col += NV * L) at(col), block_tile<NT, NV, simd::batch<T>>(c, vj, S + col, lds, oj);
  for (; col + L <= V; col += L) at(col), block_tile<NT, 1, simd::batch<T>>(c, vj, S + col, lds, oj);
  for (; col < V; ++col) at(col), block_tile<NT, 1, T>(c, vj, S + col, lds, oj);
}

// The rows of one head from token t0 on (inputs and output), and how many tokens they have.
template <class T>
struct head_io {
  head_rows<const T> r, w, k, v, a, b;
  head_rows<T> o;
  index_t tokens = 0;

  // Hints the cache to fetch tokens [t, t+n) of these rows (clipped to `tokens`).
  void prefetch(index_t t, index_t n, index_t K, index_t V) const {
    for (index_t j = t; j < t + n && j < tokens; ++j) {
      simd::prefetch(r.row(j), K), simd::prefetch(w.row(j), K), simd::prefetch(k.row(j), K);
      simd::prefetch(a.row(j), K), simd::prefetch(b.row(j), K), simd::prefetch(v.row(j), V);
      simd::prefetch_for_write(o.row(j), V);
    }
  }
};

template <index_t NT, class T>
inline void run_block(block_coefs<T>& c, index_t t, index_t V, const head_io<T>& io, T* S, index_t lds) {
  c.template prepare<NT>(t, io.r, io.w, io.k, io.a, io.b);
  const T* vv[NT];
  T* oo[NT];
  for (index_t j = 0; j < NT; ++j) vv[j] = io.v.row(t + j), oo[j] = io.o.row(t + j);
  block_all<NT>(c, V, vv, S, lds, oo);
}

// The tokens of `io` on one head; S [K,V] (row stride lds) is the state before and after. The rows
// of the head that runs next (`next`) are fetched into cache a block at a time meanwhile: rows of
// one head are H·K apart, too far for the hardware prefetcher.
template <class T>
void head(block_coefs<T>& c, index_t V, const head_io<T>& io, const head_io<T>& next, T* S, index_t lds) {
  index_t t = 0;
  const index_t n = io.tokens;
  for (; t + block_tokens <= n; t += block_tokens) {
    next.prefetch(t, block_tokens, c.K, V);
    run_block<block_tokens>(c, t, V, io, S, lds);
  }
  next.prefetch(t, token_block, c.K, V);
  switch (n - t) {
    case 3: run_block<3>(c, t, V, io, S, lds); break;
    case 2: run_block<2>(c, t, V, io, S, lds); break;
    case 1: run_block<1>(c, t, V, io, S, lds); break;
    default: break;
  }
}

}  // namespace detail

/// RWKV-7 op, a few tokens per pass over the state. Shapes as in ref(); state [B,H,K,V] is updated
/// in place.
template <class T>
void recurrent(const exec::recurrent& policy, tensor_view<const T, 4> r, tensor_view<const T, 4> w,
               tensor_view<const T, 4> k, tensor_view<const T, 4> v, tensor_view<const T, 4> a,
               tensor_view<const T, 4> b, tensor_view<T, 4> o, tensor_view<T, 4> state) {
  check_args(r, w, k, v, a, b, o, state);
  const index_t B = r.extent(0), L = r.extent(1), H = r.extent(2), K = r.extent(3), V = v.extent(3);
  // Token blocks outermost, heads inside: the rows of all heads of a token are adjacent in memory.
  auto rows = [&](index_t bh, index_t t0) {
    const index_t bi = bh / H, h = bh % H;
    if (t0 >= L) return detail::head_io<T>{};
    return detail::head_io<T>{{r.ptr(bi, t0, h), r.stride(1)}, {w.ptr(bi, t0, h), w.stride(1)},
                              {k.ptr(bi, t0, h), k.stride(1)}, {v.ptr(bi, t0, h), v.stride(1)},
                              {a.ptr(bi, t0, h), a.stride(1)}, {b.ptr(bi, t0, h), b.stride(1)},
                              {o.ptr(bi, t0, h), o.stride(1)}, std::min(detail::token_block, L - t0)};
  };
  // Token blocks outermost, heads inside: the rows of all heads of a token are adjacent in memory.
  parallel_ranges(policy.threads, B * H, [&](index_t begin, index_t end) {
    detail::block_coefs<T> c(K);
    for (index_t t0 = 0; t0 < L; t0 += detail::token_block)
      for (index_t bh = begin; bh < end; ++bh) {
        const auto next = bh + 1 < end ? rows(bh + 1, t0) : rows(begin, t0 + detail::token_block);
        detail::head<T>(c, V, rows(bh, t0), next, state.ptr(bh / H, bh % H), state.stride(2));
      }
  });
}

}  // namespace seqmix::kernels::rwkv7
