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
#include <limits>
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
// S0, Γ_tj = e^{G_t - G_j} ≤ 1). Within a block the state tile holds S̃ with S = σ·S̃ (deferred
// decay; σ ≤ 1 per group, 1 at the block start), so w_t = σ S̃ᵀk_t and r_t = σ S̃ᵀq_t:
//   u_t = bv_t v_t + bw_t (S̃ᵀk_t) + Σ_{j<t} c_tj u_j      bv = β, bw = -β σ e^{G}, c = -β Γ k_t·k_j
//   o_t = dr_t (S̃ᵀq_t) + Σ_{j≤t} d_tj u_j                  dr = scale σ e^{G}, d = scale Γ q_t·k_j
// The group's own update, applied by the next pass, is S̃ <- mul·S̃ + Σ_j kd_j u_jᵀ with either
//   deferred: mul = 1 (no multiply), kd_j = Γ_last,j k_j / σ', σ' = σ e^{G_last} ≥ min_scale, or
//   explicit: mul = σ' and kd_j = Γ_last,j k_j, after which S̃ is the true state (σ = 1).
// Tokens past m point at a zero row and have zero coefficients.
template <class T, index_t N>
struct group {
  index_t m = 0;
  const T *k[N], *q[N], *kd[N], *v[N];
  T* o[N];             // nullptr for padding
  bool scale = false;  // explicit update: multiply the state by mul
  T mul = 1;
  T bv[N], bw[N], c[N][N], dr[N], d[N][N];
};

// Cache lines of the next block's rows, fetched a few at a time while the current block computes:
// rows of one head are H·K floats apart, too far for the hardware prefetcher.
struct prefetcher {
  std::vector<const void*> reads;
  std::vector<void*> writes;
  std::size_t next_read = 0, next_write = 0;

  template <class T>
  void add_rows(const T* p, index_t count, index_t stride, index_t n) {
    for (index_t t = 0; t < count; ++t)
      for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) reads.push_back(p + t * stride + i);
  }
  template <class T>
  void add_write_rows(T* p, index_t count, index_t stride, index_t n) {
    for (index_t t = 0; t < count; ++t)
      for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) writes.push_back(p + t * stride + i);
  }
  void clear() { reads.clear(), writes.clear(), next_read = next_write = 0; }
  std::size_t size() const { return reads.size() + writes.size(); }
  // Issues the remaining prefetches at once.
  void issue_all() {
    for (; next_read < reads.size(); ++next_read) __builtin_prefetch(reads[next_read], 0, 2);
    for (; next_write < writes.size(); ++next_write) __builtin_prefetch(writes[next_write], 1, 2);
  }
};

// Up to `budget` queued prefetches, issued one read and one write per state row of a pass: spread
// out, they never wait for a free miss buffer.
struct prefetch_cursor {
  const void* const* r;
  const void* const* re;
  void* const* w;
  void* const* we;
  prefetch_cursor(prefetcher& pf, std::size_t budget)
      : r(pf.reads.data() + pf.next_read), re(pf.reads.data() + std::min(pf.reads.size(), pf.next_read + budget)),
        w(pf.writes.data() + pf.next_write),
        we(pf.writes.data() + std::min(pf.writes.size(), pf.next_write + budget)) {}
  [[gnu::always_inline]] void step() {
    if (r < re) __builtin_prefetch(*r++, 0, 2);
    if (w < we) __builtin_prefetch(*w++, 1, 2);
  }
  void commit(prefetcher& pf) const {
    pf.next_read = std::size_t(r - pf.reads.data()), pf.next_write = std::size_t(w - pf.writes.data());
  }
};

// Smallest σ the deferred form may reach: 1/σ scales keys, so S̃ stays far from overflow.
template <class T>
inline const T min_scale = std::sqrt(std::numeric_limits<T>::min());

// State rows of one column tile: S[i, c0 .. c0 + NV·width) = S + i·lds.
// Applies the pending update of group `prev` (u: its u_j; Mul: scale the rows by prev->mul first)
// to every row and, when Read, accumulates S̃ᵀk_t and S̃ᵀq_t of group `cur` from the updated rows.
template <bool Update, bool Mul, bool Read, index_t N, index_t NV, class W, class T>
[[gnu::always_inline]] inline void tile_pass(index_t K, T* S, index_t lds, const group<T, N>* prev, const W (&u)[N][NV],
                                             const group<T, N>* cur, W (&w)[N][NV], W (&r)[N][NV],
                                             prefetch_cursor& pf) {
  constexpr index_t L = width<W>;
  const T* kd[N];
  const T *k[N], *q[N];
  for (index_t n = 0; n < N; ++n) kd[n] = prev->kd[n], k[n] = cur->k[n], q[n] = cur->q[n];
  const W a(prev->mul);
  for (index_t i = 0; i < K; ++i) {
    pf.step();
    T* row = S + i * lds;
    W s[NV];
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = vload<W>(row + j * L);
    if constexpr (Update) {
      if constexpr (Mul) {
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] *= a;
      }
      SEQMIX_UNROLL for (index_t n = 0; n < N; ++n) {
        const W kn(kd[n][i]);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = vfma(kn, u[n][j], s[j]);
      }
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) vstore(row + j * L, s[j]);
    }
    if constexpr (Read) {
      SEQMIX_UNROLL for (index_t n = 0; n < N; ++n) {
        const W kn(k[n][i]), qn(q[n][i]);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) w[n][j] = vfma(kn, s[j], w[n][j]), r[n][j] = vfma(qn, s[j], r[n][j]);
      }
    }
  }
}

// Runs groups gs[0 .. ng) on the column tile starting at column c0 (S points at the state's column
// c0); the state is exact on return (the last group's update is explicit).
template <index_t N, index_t NV, class W, class T>
void tile_run(const group<T, N>* gs, index_t ng, index_t K, T* S, index_t lds, index_t c0, prefetcher& queue,
              std::size_t prefetch_per_group) {
  constexpr index_t L = width<W>;
  W u[N][NV];
  for (index_t gi = 0; gi < ng; ++gi) {
    const group<T, N>& cur = gs[gi];
    W w[N][NV], r[N][NV];
    SEQMIX_UNROLL for (index_t n = 0; n < N; ++n)
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) w[n][j] = W(T(0)), r[n][j] = W(T(0));
    prefetch_cursor pf(queue, prefetch_per_group);
    if (gi == 0) tile_pass<false, false, true>(K, S, lds, &cur, u, &cur, w, r, pf);
    else if (gs[gi - 1].scale) tile_pass<true, true, true>(K, S, lds, &gs[gi - 1], u, &cur, w, r, pf);
    else tile_pass<true, false, true>(K, S, lds, &gs[gi - 1], u, &cur, w, r, pf);
    pf.commit(queue);
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
    prefetch_cursor pf(queue, 0);
    if (gs[ng - 1].scale) tile_pass<true, true, false>(K, S, lds, &gs[ng - 1], u, &gs[ng - 1], w, r, pf);
    else tile_pass<true, false, false>(K, S, lds, &gs[ng - 1], u, &gs[ng - 1], w, r, pf);
  }
}

// Scratch of one thread: the groups of a block, their decayed key rows, per-token decays and betas,
// a zero row for padding and the prefetch queue of the next block.
template <class T, index_t N>
struct block_workspace {
  std::vector<group<T, N>> groups;
  std::vector<T> kd, zero, a, b;
  prefetcher pf;
  block_workspace(index_t K, index_t V)
      : groups(std::size_t(block_tokens / N + 1)), kd(std::size_t(block_tokens * K)),
        zero(std::size_t(std::max(K, V)), T(0)), a(std::size_t(block_tokens + N), T(1)),
        b(std::size_t(block_tokens + N), T(0)) {}
};

// Coefficients of the groups of tokens [t0, t0 + n) of one value head (see group). The decays
// Γ_tj = Π_{j<s≤t} e^{g_s} are products of factors ≤ 1: no overflow, no cancellation, and a decay
// that underflows simply cuts the chain.
template <class T, index_t N>
index_t prepare_block(block_workspace<T, N>& ws, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t n) {
  const auto q = p.q_rows(b, hv), k = p.k_rows(b, hv), v = p.v_rows(b, hv);
  const auto o = p.o_rows(b, hv);
  const auto g = p.g_of(b, hv), beta = p.beta_of(b, hv);
  const index_t K = p.K, ng = (n + N - 1) / N;
  // e^{g} and beta of the block; padding tokens have e^{g} = 1, beta = 0.
  std::fill(ws.a.begin(), ws.a.end(), T(1)), std::fill(ws.b.begin(), ws.b.end(), T(0));
  for (index_t t = 0; t < n; ++t) ws.b[std::size_t(t)] = beta[t0 + t];
  if (p.gated()) {
    for (index_t t = 0; t < n; ++t) ws.a[std::size_t(t)] = g[t0 + t];
    simd::transform(ws.a.data(), ws.a.data(), n, [](auto x) { return simd::exp(x); });
  }
  T sigma = 1;  // S = σ·S̃ before the group
  for (index_t gi = 0; gi < ng; ++gi) {
    group<T, N>& gr = ws.groups[std::size_t(gi)];
    const index_t s = t0 + gi * N, m = std::min(N, t0 + n - s);
    const T* a = ws.a.data() + gi * N;
    const T* bt = ws.b.data() + gi * N;
    gr.m = m;
    for (index_t t = 0; t < N; ++t) {
      const bool real = t < m;
      gr.k[t] = real ? k.row(s + t) : ws.zero.data();
      gr.q[t] = real ? q.row(s + t) : ws.zero.data();
      gr.v[t] = real ? v.row(s + t) : ws.zero.data();
      gr.o[t] = real ? o.row(s + t) : nullptr;
    }
    T decay[N][N];  // Γ_tj for j ≤ t
    for (index_t t = 0; t < N; ++t) {
      decay[t][t] = T(1);
      for (index_t j = 0; j < t; ++j) decay[t][j] = decay[t - 1][j] * a[t];
    }
    for (index_t t = 0; t < N; ++t) {
      const T A = sigma * decay[t][0] * a[0];  // σ e^{G_t}
      gr.bv[t] = bt[t], gr.bw[t] = -bt[t] * A, gr.dr[t] = t < m ? p.scale * A : T(0);
      for (index_t j = 0; j < N; ++j) {
        const bool lower = t < m && j <= t;
        gr.c[t][j] = lower && j < t ? -bt[t] * decay[t][j] * simd::dot(gr.k[t], gr.k[j], K) : T(0);
        gr.d[t][j] = lower ? p.scale * decay[t][j] * simd::dot(gr.q[t], gr.k[j], K) : T(0);
      }
    }
    // The group's update: deferred while σ' stays above min_scale, explicit for the block's last group.
    const T next = sigma * decay[N - 1][0] * a[0];
    const bool deferred = gi + 1 < ng && next >= min_scale<T>;
    gr.scale = !deferred && next != T(1), gr.mul = next;
    const T inv = deferred ? T(1) / next : T(1);
    for (index_t j = 0; j < N; ++j) {
      const T f = decay[N - 1][j] * inv;
      if (f == T(1) || j >= m) {
        gr.kd[j] = gr.k[j];
        continue;
      }
      T* dst = ws.kd.data() + (gi * N + j) * K;
      simd::transform(gr.k[j], dst, K, [f](auto x) { return x * f; });
      gr.kd[j] = dst;
    }
    sigma = deferred ? next : T(1);
  }
  return ng;
}

// All column tiles of one value head through the prepared groups: full tiles of NV vectors,
// single vectors, then scalar columns. The queued prefetches are spread over the groups.
template <index_t N, class T>
void run_block(block_workspace<T, N>& ws, index_t ng, index_t K, index_t V, T* S, index_t lds) {
  using B = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>, NV = tile_vectors<N>;
  const group<T, N>* gs = ws.groups.data();
  const index_t tiles = V / (NV * L) + (V % (NV * L)) / L + V % L;
  const std::size_t per_group = ws.pf.size() / std::size_t(std::max<index_t>(1, ng * tiles)) + 1;
  index_t c = 0;
  for (; c + NV * L <= V; c += NV * L) tile_run<N, NV, B>(gs, ng, K, S + c, lds, c, ws.pf, per_group);
  for (; c + L <= V; c += L) tile_run<N, 1, B>(gs, ng, K, S + c, lds, c, ws.pf, per_group);
  for (; c < V; ++c) tile_run<N, 1, T>(gs, ng, K, S + c, lds, c, ws.pf, per_group);
  ws.pf.issue_all();
}

// Queues the rows of tokens [t0, t0 + n) of value head (b, hv) for prefetching.
template <class T, index_t N>
void queue_rows(block_workspace<T, N>& ws, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t n) {
  ws.pf.clear();
  const auto q = p.q_rows(b, hv), k = p.k_rows(b, hv), v = p.v_rows(b, hv);
  const auto o = p.o_rows(b, hv);
  ws.pf.add_rows(q.row(t0), n, q.ts, p.K), ws.pf.add_rows(k.row(t0), n, k.ts, p.K);
  ws.pf.add_rows(v.row(t0), n, v.ts, p.V), ws.pf.add_write_rows(o.row(t0), n, o.ts, p.V);
  ws.pf.add_rows(p.beta.ptr(b, t0, hv), n, p.beta.stride(1), 1);
  if (p.gated()) ws.pf.add_rows(p.g.ptr(b, t0, hv), n, p.g.stride(1), 1);
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
        T* S = p.state.ptr(b, hv);
        const index_t lds = p.state.stride(2);
        if (n == 1) {  // decode: no padding tokens, nothing to prefetch
          const index_t ng = prepare_block(ws1, p, b, hv, t0, n);
          run_block<1>(ws1, ng, p.K, p.V, S, lds);
          continue;
        }
        // The next work item of this thread: the next block of this head or the first of the next.
        const index_t nt0 = t0 + block_tokens < p.L ? t0 + block_tokens : 0, nbh = nt0 > 0 ? bh : bh + 1;
        if (nbh < end) queue_rows(ws, p, nbh / p.HV, nbh % p.HV, nt0, std::min(block_tokens, p.L - nt0));
        else ws.pf.clear();
        const index_t ng = prepare_block(ws, p, b, hv, t0, n);
        run_block<group_tokens>(ws, ng, p.K, p.V, S, lds);
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
