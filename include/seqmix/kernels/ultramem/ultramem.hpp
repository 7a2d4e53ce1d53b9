// UltraMem retrieval (spec/ultramem.md, "TDQKR" and "op"): row and column key scores of a tile of
// tokens as two matrix products, per head the rank-1 approximate scores and their top-m rows and
// columns, the exact m×m grid through the Tucker core and its top-m; then the weighted sum of the
// selected value rows, fetched one token ahead (see docs/ultramem.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/batch.hpp"
#include "../../simd/vec.hpp"
#include "../common/args.hpp"
#include "args.hpp"
#include "select.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ultramem {

/// Tokens scored together: their key scores S_row, S_col [tile, r·n] come from one product each.
inline constexpr index_t tile_tokens = 32;

/// Columns of a packed key panel: two vectors.
template <class T>
inline constexpr index_t panel_width = 2 * simd::lanes<T>;

/// The retrieval's parameters, prepared once: the keys [2, r, n, dk] packed for the score product
/// (per side, column panels [r·n / NR][dk][NR] of NR = panel_width keys, zero-padded past r·n),
/// the core [h, r, r] contiguous, the cores' rank-1 factors u, t [h, r] (from double).
template <class T>
struct retrieval {
  dims d;
  activation act = activation::identity;
  index_t panels = 0;  // column panels per side
  std::vector<T> kpack, core, u, t;

  retrieval() = default;
  retrieval(tensor_view<const T, 4> k, tensor_view<const T, 3> c, index_t m, activation a) : act(a) {
    d.r = k.extent(1), d.n = k.extent(2), d.dk = k.extent(3), d.h = c.extent(0), d.m = m;
    constexpr index_t NR = panel_width<T>;
    const index_t rn = d.r * d.n;
    panels = (rn + NR - 1) / NR;
    kpack.assign(static_cast<std::size_t>(2 * panels * d.dk * NR), T(0));
    core.resize(static_cast<std::size_t>(c.size()));
    for (index_t s = 0; s < 2; ++s)
      for (index_t col = 0; col < rn; ++col) {
        T* dst = kpack.data() + ((s * panels + col / NR) * d.dk) * NR + col % NR;
        for (index_t j = 0; j < d.dk; ++j) dst[j * NR] = k(s, col / d.n, col % d.n, j);
      }
    std::size_t o = 0;
    for (index_t i = 0; i < d.h; ++i)
      for (index_t a = 0; a < d.r; ++a)
        for (index_t b = 0; b < d.r; ++b) core[o++] = c(i, a, b);
    std::vector<double> ud, td;
    core_factors(c, ud, td);
    u.assign(ud.begin(), ud.end()), t.assign(td.begin(), td.end());
  }
  /// The packed row keys (s = 0) or column keys (s = 1).
  const T* key_panels(index_t s) const { return kpack.data() + s * panels * d.dk * panel_width<T>; }
  /// Row stride of a score matrix: the panels' columns.
  index_t score_stride() const { return panels * panel_width<T>; }
};

namespace detail {

// c[r][0 .. NP·NR) = Σ_p a[p][r] · b_q[p][0 .. NR) for MR rows of queries a packed [dk][MR] (row
// stride `as` between p) and NP key panels b_q = b + q·ps, each [dk][NR]. The same FMA chain over p
// per output as simd::gemm_nt's tile, so the scores equal that product's bit for bit.
template <class T, index_t MR, index_t NP>
[[gnu::noinline]] void score_tile(index_t dk, const T* a, index_t as, const T* b, index_t ps, T* c, index_t ldc) {
  constexpr index_t L = simd::lanes<T>, NR = panel_width<T>, NV = 2 * NP;
  simd::batch<T> acc[MR][NV];
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r)
    SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = simd::batch<T>(T(0));
  for (index_t p = 0; p < dk; ++p, a += as, b += NR) {
    simd::batch<T> bv[NV];
    SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) bv[v] = simd::load(b + (v / 2) * ps + (v % 2) * L);
    SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r) {
      const simd::batch<T> av(a[r]);
      SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) acc[r][v] = simd::fma(av, bv[v], acc[r][v]);
    }
  }
  SEQMIX_UNROLL for (index_t r = 0; r < MR; ++r)
    SEQMIX_UNROLL for (index_t v = 0; v < NV; ++v) simd::store(c + r * ldc + (v / 2) * NR + (v % 2) * L, acc[r][v]);
}

// MR rows of q (packed into ap when MR > 1) against every panel: NP panels at a time, then singly.
template <class T, index_t MR, index_t NP>
void score_rows(const T* kp, index_t panels, index_t dk, const T* q, index_t ldq, T* S, index_t ldS, T* ap) {
  constexpr index_t NR = panel_width<T>;
  const T* a = q;
  index_t as = 1;
  if constexpr (MR > 1) {
    for (index_t p = 0; p < dk; ++p)
      for (index_t r = 0; r < MR; ++r) ap[p * MR + r] = q[r * ldq + p];
    a = ap, as = MR;
  }
  const index_t ps = dk * NR;
  index_t j = 0;
  for (; j + NP <= panels; j += NP) score_tile<T, MR, NP>(dk, a, as, kp + j * ps, ps, S + j * NR, ldS);
  for (; j < panels; ++j) score_tile<T, MR, 1>(dk, a, as, kp + j * ps, ps, S + j * NR, ldS);
}

}  // namespace detail

/// S [M, score_stride] = q [M, dk] (unit column stride) · keys(s)ᵀ against the pre-packed keys:
/// blocks of 12 rows (6 with 16 vector registers), then 4, then single rows (decode), each against
/// several panels at once. ap: scratch of 12·dk.
template <class T>
void key_scores(const retrieval<T>& R, index_t s, tensor_view<const T, 2> q, T* S, std::vector<T>& ap) {
  constexpr bool wide = simd::vector_registers >= 32;
  constexpr index_t MR = wide ? 12 : 6;
  const index_t M = q.extent(0), dk = R.d.dk, ldq = q.stride(0), ldS = R.score_stride();
  ap.resize(static_cast<std::size_t>(MR * dk));
  const T* kp = R.key_panels(s);
  index_t i = 0;
  for (; i + MR <= M; i += MR)
    detail::score_rows<T, MR, 1>(kp, R.panels, dk, q.data() + i * ldq, ldq, S + i * ldS, ldS, ap.data());
  for (; i + 4 <= M; i += 4)
    detail::score_rows<T, 4, wide ? 2 : 1>(kp, R.panels, dk, q.data() + i * ldq, ldq, S + i * ldS, ldS, ap.data());
  for (; i < M; ++i)
    detail::score_rows<T, 1, wide ? 4 : 2>(kp, R.panels, dk, q.data() + i * ldq, ldq, S + i * ldS, ldS, ap.data());
}

/// One thread's scratch for retrieve_tile.
template <class T>
struct workspace {
  std::vector<T> srow, scol;  // [rows, score_stride]
  std::vector<T> apack;       // queries packed for key_scores
  std::vector<T> gather;      // the caller's buffer for a tile's gathered rows
  selection_scratch<T> sel;
  std::vector<index_t> I, J;
  std::vector<T> P;
  /// For tiles of up to `rows` tokens (tile_tokens by default; a decode step needs one).
  explicit workspace(const retrieval<T>& R, index_t rows = tile_tokens)
      : workspace(R.d, R.score_stride(), rows) {}
  workspace(const dims& d, index_t stride, index_t rows)
      : srow(static_cast<std::size_t>(std::min(rows, tile_tokens) * stride)), scol(srow.size()), I(std::size_t(d.m)),
        J(I.size()), P(std::size_t(d.r)) {
    sel.rows.resize(std::size_t(d.m)), sel.cols.resize(std::size_t(d.m)), sel.grid.resize(std::size_t(d.m));
    sel.approx_row.resize(std::size_t(d.n)), sel.approx_col.resize(std::size_t(d.n));
    sel.grid_scores.resize(std::size_t(d.m * d.m)), sel.scol.resize(std::size_t(d.r * d.m));
  }
};

/// TDQKR for M <= tile_tokens tokens: q_row, q_col [M, dk] (unit column stride) → idx, sc [M, h, m]
/// (contiguous): the virtual indices i·n + j and exact scores of each head's top-m, best first
/// (ties: smaller index first). after_token(k) runs once token k's selections are written.
/// (the default of retrieve_tile's per-token hook: nothing)
struct no_hook {
  void operator()(index_t) const {}
};

template <class T, class Hook = no_hook>
void retrieve_tile(const retrieval<T>& R, tensor_view<const T, 2> q_row, tensor_view<const T, 2> q_col,
                   std::int64_t* idx, T* sc, workspace<T>& ws, Hook&& after_token = {}) {
  const dims& d = R.d;
  const index_t M = q_row.extent(0), rn = R.score_stride(), n = d.n, m = d.m, r = d.r;
  key_scores(R, 0, q_row, ws.srow.data(), ws.apack);
  key_scores(R, 1, q_col, ws.scol.data(), ws.apack);
  auto& s = ws.sel;
  for (index_t tk = 0; tk < M; ++tk) {
    const T* Sr = ws.srow.data() + tk * rn;
    const T* Sc = ws.scol.data() + tk * rn;
    for (index_t hh = 0; hh < d.h; ++hh) {
      const T* u = R.u.data() + hh * r;
      const T* t = R.t.data() + hh * r;
      // Rank-1 approximate scores of the rows and columns, and their top-m.
      std::fill(s.approx_row.begin(), s.approx_row.end(), T(0));
      std::fill(s.approx_col.begin(), s.approx_col.end(), T(0));
      for (index_t a = 0; a < r; ++a) {
        simd::axpy(u[a], Sr + a * n, s.approx_row.data(), n);
        simd::axpy(t[a], Sc + a * n, s.approx_col.data(), n);
      }
      // In index order, so that grid position order is virtual index order (ties: smaller index).
      top_m(s.approx_row.data(), n, m, s.rows.data(), s.top, ws.I.data());
      top_m(s.approx_col.data(), n, m, s.cols.data(), s.top, ws.J.data());
      // Exact grid: s(i, j) = Σ_ab S_row[a,i] C[a,b] S_col[b,j].
      for (index_t b = 0; b < r; ++b)
        for (index_t jj = 0; jj < m; ++jj) s.scol[std::size_t(b * m + jj)] = Sc[b * n + ws.J[std::size_t(jj)]];
      const T* C = R.core.data() + hh * r * r;
      for (index_t ii = 0; ii < m; ++ii) {
        const index_t i = ws.I[std::size_t(ii)];
        T* g = s.grid_scores.data() + ii * m;
        for (index_t b = 0; b < r; ++b) {
          T p = 0;
          for (index_t a = 0; a < r; ++a) p += Sr[a * n + i] * C[a * r + b];
          ws.P[std::size_t(b)] = p;
        }
        std::fill(g, g + m, T(0));
        for (index_t b = 0; b < r; ++b) simd::axpy(ws.P[std::size_t(b)], s.scol.data() + b * m, g, m);
      }
      top_m(s.grid_scores.data(), m * m, m, s.grid.data(), s.top);
      std::int64_t* io = idx + (tk * d.h + hh) * m;
      T* so = sc + (tk * d.h + hh) * m;
      for (index_t k = 0; k < m; ++k) {
        const auto& c = s.grid[std::size_t(k)];
        io[k] = std::int64_t(ws.I[std::size_t(c.index / m)]) * n + ws.J[std::size_t(c.index % m)];
        so[k] = c.value;
      }
    }
    after_token(tk);
  }
}

/// Tokens between a token's selection (and the prefetch of its rows) and the gather of its rows.
inline constexpr index_t gather_lag = 2;

/// retrieve_tile with the gather interleaved: after token k's selection, prefetch(k) hints its
/// rows and gather(k − gather_lag) sums rows fetched while the selections in between ran, so the
/// DRAM latency of the random rows hides behind the scoring arithmetic; the last tokens are
/// gathered at the end.
template <class T, class Prefetch, class Gather>
void retrieve_and_gather(const retrieval<T>& R, tensor_view<const T, 2> q_row, tensor_view<const T, 2> q_col,
                         std::int64_t* idx, T* sc, workspace<T>& ws, Prefetch&& prefetch, Gather&& gather) {
  const index_t M = q_row.extent(0);
  retrieve_tile(R, q_row, q_col, idx, sc, ws, [&](index_t k) {
    prefetch(k);
    if (k >= gather_lag) gather(k - gather_lag);
  });
  for (index_t k = std::max<index_t>(0, M - gather_lag); k < M; ++k) gather(k);
}

/// Calls fn(begin, end, workspace) for the tiles of tokens [0, M), the tiles split over `threads`.
template <class T, class Fn>
void for_each_tile(int threads, const retrieval<T>& R, index_t M, Fn&& fn) {
  const index_t tiles = (M + tile_tokens - 1) / tile_tokens;
  parallel_ranges(int(std::clamp<index_t>(tiles, 1, threads)), tiles, [&](index_t t0, index_t t1) {
    workspace<T> ws(R, M);
    for (index_t t = t0; t < t1; ++t) fn(t * tile_tokens, std::min(M, (t + 1) * tile_tokens), ws);
  });
}

/// Hints the caches to fetch the value rows of token k's selections (`rows` of `width` elements at
/// base + v·row_stride for v = idx[k·count .. (k+1)·count)), per head of `count / h` selections.
template <class T>
inline void prefetch_rows(const T* base, index_t head_stride, index_t row_stride, index_t width, const std::int64_t* idx,
                          index_t h, index_t m, index_t row_divisor = 1) {
  for (index_t hh = 0; hh < h; ++hh)
    for (index_t k = 0; k < m; ++k)
      simd::prefetch(base + hh * head_stride + (idx[hh * m + k] / row_divisor) * row_stride, width);
}

/// Checks the op's tensors (check_retrieval plus values [h, n², dv] with unit row stride and o
/// [B,T,h,dv] with unit stride along dv). Returns the sizes.
template <class T>
dims check_args(const char* who, const tensor_view<const T, 3>& q_row, const tensor_view<const T, 3>& q_col,
                const tensor_view<const T, 4>& keys, const tensor_view<const T, 3>& core,
                const tensor_view<const T, 3>& values, const tensor_view<T, 4>& o,
                const tensor_view<std::int64_t, 4>& indices, const tensor_view<T, 4>& scores) {
  const dims d = check_retrieval(who, q_row, q_col, keys, core, indices, scores);
  const index_t dv = values.extent(2);
  check_shape(who, "values", values.extents(), {d.h, d.n * d.n, dv});
  check_shape(who, "o", o.extents(), {q_row.extent(0), q_row.extent(1), d.h, dv});
  require(dv <= 1 || (values.stride(2) == 1 && o.stride(3) == 1), who, "values and o need unit stride along dv");
  return d;
}

/// The op of spec/ultramem.md: for q_row, q_col [B,T,dk], keys [2,r,n,dk], core [h,r,r], values
/// [h,n²,dv]: indices, scores [B,T,h,m] (each head's top-m virtual indices i·n + j and exact
/// scores, best first; m = indices.extent(3)) and o [B,T,h,dv] = Σ_k act(score_k)·values[h, v_k].
/// The same for every policy; policy.threads splits tiles of tokens.
template <exec::policy P, class T_ = void, class Q, class T = common::element_t<T_, Q>>
void forward(const P& policy, const Q& q_row_in, common::in_view<T, 3> q_col, common::in_view<T, 4> keys,
             common::in_view<T, 3> core, common::in_view<T, 3> values, common::out_view<T, 4> o,
             tensor_view<std::int64_t, 4> indices, common::out_view<T, 4> scores, options opt = {}) {
  const tensor_view<const T, 3> q_row = q_row_in;
  constexpr const char* who = "ultramem";
  exec::check(policy, who);
  const pool_scope scope(policy.pool);
  const dims d = check_args(who, q_row, q_col, keys, core, values, o, indices, scores);
  const index_t B = q_row.extent(0), L = q_row.extent(1), dv = values.extent(2), h = d.h, m = d.m;
  if (B == 0 || L == 0) return;
  const retrieval<T> R(keys, core, m, opt.act);
  for (index_t b = 0; b < B; ++b) {
    const tensor_view<const T, 2> qr(q_row.ptr(b, 0, 0), {L, d.dk}, {q_row.stride(1), 1});
    const tensor_view<const T, 2> qc(q_col.ptr(b, 0, 0), {L, d.dk}, {q_col.stride(1), 1});
    for_each_tile<T>(policy.threads, R, L, [&](index_t t0, index_t t1, workspace<T>& ws) {
      const index_t M = t1 - t0, hm = h * m;
      std::vector<std::int64_t> idx(static_cast<std::size_t>(M * hm));
      std::vector<T> sc(idx.size());
      const T* base = values.data();
      const index_t hs = values.stride(0), rs = values.stride(1);
      auto prefetch = [&](index_t k) { prefetch_rows(base, hs, rs, dv, idx.data() + k * hm, h, m); };
      auto gather = [&](index_t k) {
        for (index_t hh = 0; hh < h; ++hh) {
          T* out = o.ptr(b, t0 + k, hh, 0);
          std::fill(out, out + dv, T(0));
          for (index_t j = 0; j < m; ++j) {
            const std::size_t at = std::size_t(k * hm + hh * m + j);
            indices(b, t0 + k, hh, j) = idx[at];
            scores(b, t0 + k, hh, j) = sc[at];
            simd::axpy(activate(opt.act, sc[at]), base + hh * hs + idx[at] * rs, out, dv);
          }
        }
      };
      retrieve_and_gather(R, qr.subrange(0, t0, M), qc.subrange(0, t0, M), idx.data(), sc.data(), ws, prefetch,
                          gather);
    });
  }
}

}  // namespace seqmix::kernels::ultramem
