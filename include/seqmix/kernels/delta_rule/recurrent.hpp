// Delta rule, recurrent policy: token by token, exact, with the [K,V] state walked in column tiles
// that stay in L1. This is the decode path and the fastest prefill on one core.
//
// Two properties of the rule make it fast (docs/delta_rule.md):
// - Columns are independent: column c of S only needs k, q, beta, g and v[c], so a tile of columns
//   can run through a whole block of tokens while it sits in L1.
// - A group of N tokens needs one pass over the state: with S0 the state before the group,
//   w_t = S0ᵀk_t and r_t = S0ᵀq_t come from one read, and the group's u_t, o_t follow from them and
//   the small Gram products k_t·k_j, q_t·k_j (forward substitution over N tokens). The update
//   S = e^{G_last} S0 + Σ_j e^{G_last-G_j} k_j u_jᵀ is applied in the next group's pass.
// Every decay factor is e^{x} with x ≤ 0, so nothing overflows.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/batch.hpp"
#include "../../simd/vec.hpp"
#include "args.hpp"

namespace seqmix::kernels::delta_rule {

namespace detail {

// Register budget: a pass keeps (3N + 1)·NV vectors live (pending u, w, r, one state row).
inline constexpr index_t vector_registers = sizeof(simd::batch<float>) >= 64 ? 32 : 16;
inline constexpr index_t group_tokens = vector_registers >= 32 ? 4 : 2;
template <index_t N>
inline constexpr index_t tile_vectors = std::clamp<index_t>((vector_registers - 2) / (3 * N + 1), 1, 4);
inline constexpr index_t block_tokens = 64;  // tokens whose coefficients are shared by all tiles

// The column arithmetic written once for batches and for plain scalars (tail columns).
template <class W>
inline constexpr index_t width = 1;
template <class T, class A>
inline constexpr index_t width<xsimd::batch<T, A>> = static_cast<index_t>(xsimd::batch<T, A>::size);

template <class W, class T>
[[gnu::always_inline]] inline W vload(const T* p) {
  if constexpr (std::is_arithmetic_v<W>) return *p;
  else return simd::load(p);
}
template <class W, class T>
[[gnu::always_inline]] inline void vstore(T* p, const W& x) {
  if constexpr (std::is_arithmetic_v<W>) *p = x;
  else simd::store(p, x);
}
template <class W>
[[gnu::always_inline]] inline W vfma(const W& a, const W& b, const W& c) {
  if constexpr (std::is_arithmetic_v<W>) return a * b + c;
  else return xsimd::fma(a, b, c);
}

// One group of up to N tokens, relative to the state S0 before it (G: cumulative log decay since
// S0, Γ_tj = e^{G_t - G_j} ≤ 1):
//   u_t = bv_t v_t + bw_t (S0ᵀk_t) + Σ_{j<t} c_tj u_j      bv = β, bw = -β e^{G}, c = -β Γ k_t·k_j
//   o_t = dr_t (S0ᵀq_t) + Σ_{j≤t} d_tj u_j                  dr = scale e^{G}, d = scale Γ q_t·k_j
//   S   = a_last S0 + Σ_j kd_j u_jᵀ                         a_last = e^{G_last}, kd_j = Γ_last,j k_j
// Tokens past m point at a zero row and have zero coefficients.
template <class T, index_t N>
struct group {
  index_t m = 0;
  const T *k[N], *q[N], *kd[N], *v[N];
  T* o[N];  // nullptr for padding
  T a_last = 1;
  T bv[N], bw[N], c[N][N], dr[N], d[N][N];
};

// State rows of one column tile: S[i, c0 .. c0 + NV·width) = S + i·lds.
// Applies the pending update of group `prev` (u: its u_j) to every row and, when Read, accumulates
// w_t = S0ᵀk_t and r_t = S0ᵀq_t of group `cur` from the updated rows.
template <bool Update, bool Read, bool Gated, index_t N, index_t NV, class W, class T>
[[gnu::always_inline]] inline void tile_pass(index_t K, T* S, index_t lds, const group<T, N>* prev, const W (&u)[N][NV],
                                             const group<T, N>* cur, W (&w)[N][NV], W (&r)[N][NV]) {
  constexpr index_t L = width<W>;
  for (index_t i = 0; i < K; ++i) {
    T* row = S + i * lds;
    W s[NV];
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = vload<W>(row + j * L);
    if constexpr (Update) {
      if constexpr (Gated) {
        const W a(prev->a_last);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] *= a;
      }
      SEQMIX_UNROLL for (index_t n = 0; n < N; ++n) {
        const W kn(prev->kd[n][i]);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = vfma(kn, u[n][j], s[j]);
      }
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) vstore(row + j * L, s[j]);
    }
    if constexpr (Read) {
      SEQMIX_UNROLL for (index_t n = 0; n < N; ++n) {
        const W kn(cur->k[n][i]), qn(cur->q[n][i]);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) w[n][j] = vfma(kn, s[j], w[n][j]), r[n][j] = vfma(qn, s[j], r[n][j]);
      }
    }
  }
}

// Runs groups gs[0 .. ng) on the column tile starting at column c0 (S points at the state's column
// c0); the state is exact on return.
template <bool Gated, index_t N, index_t NV, class W, class T>
void tile_run(const group<T, N>* gs, index_t ng, index_t K, T* S, index_t lds, index_t c0) {
  constexpr index_t L = width<W>;
  W u[N][NV];
  for (index_t gi = 0; gi < ng; ++gi) {
    const group<T, N>& cur = gs[gi];
    W w[N][NV], r[N][NV];
    SEQMIX_UNROLL for (index_t n = 0; n < N; ++n)
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) w[n][j] = W(T(0)), r[n][j] = W(T(0));
    if (gi == 0) tile_pass<false, true, Gated>(K, S, lds, &cur, u, &cur, w, r);
    else tile_pass<true, true, Gated>(K, S, lds, &gs[gi - 1], u, &cur, w, r);
    SEQMIX_UNROLL for (index_t t = 0; t < N; ++t) {
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) {
        W x = vfma(W(cur.bw[t]), w[t][j], W(cur.bv[t]) * vload<W>(cur.v[t] + c0 + j * L));
        SEQMIX_UNROLL for (index_t p = 0; p < t; ++p) x = vfma(W(cur.c[t][p]), u[p][j], x);
        u[t][j] = x;
      }
      if (cur.o[t] != nullptr) {
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) {
          W y = W(cur.dr[t]) * r[t][j];
          SEQMIX_UNROLL for (index_t p = 0; p <= t; ++p) y = vfma(W(cur.d[t][p]), u[p][j], y);
          vstore(cur.o[t] + c0 + j * L, y);
        }
      }
    }
  }
  if (ng > 0) {
    W w[N][NV], r[N][NV];
    tile_pass<true, false, Gated>(K, S, lds, &gs[ng - 1], u, &gs[ng - 1], w, r);
  }
}

// Scratch of one thread: the groups of a block, their decayed key rows and a zero row for padding.
template <class T, index_t N>
struct block_workspace {
  std::vector<group<T, N>> groups;
  std::vector<T> kd, zero;
  block_workspace(index_t K, index_t V)
      : groups(std::size_t(block_tokens / N + 1)), kd(std::size_t(block_tokens * K)),
        zero(std::size_t(std::max(K, V)), T(0)) {}
};

// Coefficients of the groups of tokens [t0, t0 + n) of one value head (see group).
template <class T, index_t N>
index_t prepare_block(block_workspace<T, N>& ws, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t n) {
  const auto q = p.q_rows(b, hv), k = p.k_rows(b, hv), v = p.v_rows(b, hv);
  const auto o = p.o_rows(b, hv);
  const auto g = p.g_of(b, hv), beta = p.beta_of(b, hv);
  const index_t K = p.K, ng = (n + N - 1) / N;
  for (index_t gi = 0; gi < ng; ++gi) {
    group<T, N>& gr = ws.groups[std::size_t(gi)];
    const index_t s = t0 + gi * N, m = std::min(N, t0 + n - s);
    gr.m = m;
    double G[N];  // in double: differences of nearby tokens stay exact after a huge step
    for (index_t t = 0; t < N; ++t) {
      const bool real = t < m;
      gr.k[t] = real ? k.row(s + t) : ws.zero.data();
      gr.q[t] = real ? q.row(s + t) : ws.zero.data();
      gr.v[t] = real ? v.row(s + t) : ws.zero.data();
      gr.o[t] = real ? o.row(s + t) : nullptr;
      G[t] = (t > 0 ? G[t - 1] : 0.0) + (real ? double(g[s + t]) : 0.0);
    }
    for (index_t t = 0; t < N; ++t) {
      const bool real = t < m;
      const T beta_t = real ? beta[s + t] : T(0), A = T(std::exp(G[t]));
      gr.bv[t] = beta_t, gr.bw[t] = -beta_t * A, gr.dr[t] = real ? p.scale * A : T(0);
      for (index_t j = 0; j < N; ++j) {
        const bool lower = real && j <= t;
        const T decay = lower ? T(std::exp(G[t] - G[j])) : T(0);
        gr.c[t][j] = lower && j < t ? -beta_t * decay * simd::dot(gr.k[t], gr.k[j], K) : T(0);
        gr.d[t][j] = lower ? p.scale * decay * simd::dot(gr.q[t], gr.k[j], K) : T(0);
      }
    }
    gr.a_last = T(std::exp(G[N - 1]));
    for (index_t j = 0; j < N; ++j) {
      if (!p.gated() || j >= m) {
        gr.kd[j] = gr.k[j];
        continue;
      }
      T* dst = ws.kd.data() + (gi * N + j) * K;
      const T f = T(std::exp(G[N - 1] - G[j]));
      for (index_t i = 0; i < K; ++i) dst[i] = f * gr.k[j][i];
      gr.kd[j] = dst;
    }
  }
  return ng;
}

// All column tiles of one value head through the prepared groups: full tiles of NV vectors,
// single vectors, then scalar columns.
template <bool Gated, index_t N, class T>
void run_block(const block_workspace<T, N>& ws, index_t ng, index_t K, index_t V, T* S, index_t lds) {
  using B = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>, NV = tile_vectors<N>;
  const group<T, N>* gs = ws.groups.data();
  index_t c = 0;
  for (; c + NV * L <= V; c += NV * L) tile_run<Gated, N, NV, B>(gs, ng, K, S + c, lds, c);
  for (; c + L <= V; c += L) tile_run<Gated, N, 1, B>(gs, ng, K, S + c, lds, c);
  for (; c < V; ++c) tile_run<Gated, N, 1, T>(gs, ng, K, S + c, lds, c);
}

template <index_t N, class T>
void head(block_workspace<T, N>& ws, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t n) {
  const index_t ng = prepare_block(ws, p, b, hv, t0, n);
  T* S = p.state.ptr(b, hv);
  if (p.gated()) run_block<true, N>(ws, ng, p.K, p.V, S, p.state.stride(2));
  else run_block<false, N>(ws, ng, p.K, p.V, S, p.state.stride(2));
}

template <class T>
void recurrent_impl(int threads, const problem<T>& p) {
  parallel_ranges(threads, p.B * p.HV, [&](index_t begin, index_t end) {
    block_workspace<T, group_tokens> ws(p.K, p.V);
    block_workspace<T, 1> ws1(p.K, p.V);
    for (index_t bh = begin; bh < end; ++bh) {
      const index_t b = bh / p.HV, hv = bh % p.HV;
      for (index_t t0 = 0; t0 < p.L; t0 += block_tokens) {
        const index_t n = std::min(block_tokens, p.L - t0);
        if (n == 1) head<1>(ws1, p, b, hv, t0, n);  // decode: no padding tokens
        else head<group_tokens>(ws, p, b, hv, t0, n);
      }
    }
  });
}

}  // namespace detail

/// Gated delta rule, token by token. Shapes as in ref(); state [B,HV,K,V] is updated in place.
template <class T>
void recurrent(const exec::recurrent& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
               tensor_view<const T, 4> v, tensor_view<const T, 3> g, tensor_view<const T, 3> beta,
               tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  detail::recurrent_impl(policy.threads, detail::check_args<T>("gated_delta_net", q, k, v, g, beta, o, state, opt));
}

/// Delta rule without decay (DeltaNet), token by token.
template <class T>
void recurrent(const exec::recurrent& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
               tensor_view<const T, 4> v, tensor_view<const T, 3> beta, tensor_view<T, 4> o,
               tensor_view<T, 4> state, options<T> opt = {}) {
  detail::recurrent_impl(policy.threads, detail::check_args<T>("delta_net", q, k, v, {}, beta, o, state, opt));
}

}  // namespace seqmix::kernels::delta_rule
