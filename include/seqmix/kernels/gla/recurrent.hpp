// GLA, recurrent policy: one pass over the tokens with the [K,V] state kept in cache. This is the
// decode path and, for K = V = 64, the fastest prefill too.
//
// Deferred decay: within a run starting from state S0, the state is S_t = diag(e^{G_t}) · S~_t
// with G_t the cumulative log decay since the run started, so a token costs two FMAs per state
// element instead of three:
//   S~_t = S~_{t-1} + (k_t ⊙ e^{-G_t}) v_tᵀ,   o_t = S~_tᵀ (scale · q_t ⊙ e^{G_t}).
// A run lasts until G would drop below -run_span (then S = e^{G} ⊙ S~ is folded back and a new
// run starts; docs/common.md compares the deferred-decay schemes) or the sequence ends, where the last token takes the explicit step
// S_t = e^{G_t} ⊙ S~_{t-1} + k_t v_tᵀ. e^{-G} stays finite, and rounding is relative to the newest
// terms because e^{G_t - G_j} ≤ 1. Up to four deferred tokens share one pass over the state,
// which divides the state loads and stores among them. See docs/gla.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "../common/decay.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::gla {

namespace detail {

// Tokens of one head processed before moving to the next head (a multiple of the tokens per pass).
inline constexpr index_t block_tokens = 32;

// Largest |G| of a run (8: chosen for precision, common/decay.hpp).
template <class T>
inline constexpr T run_span = common::deferred::log_span<T>;

// Register budget: AVX-512 has 32 vector registers, AVX2 and SSE2 16. A pass over the state
// handles NT tokens on NV vectors of V and keeps 2·NT·NV of them (v and o) live.
using simd::vector_registers;
inline constexpr index_t max_tokens_per_pass = vector_registers >= 32 ? 4 : 2;
template <index_t NT>
inline constexpr index_t row_vectors = std::clamp<index_t>(vector_registers / 2 / (2 * NT), 1, 4);

// NT tokens (1 or 2) on a tile of NV vectors of the value axis. Per token n and state row i:
//   S[i, tile] = a[i] * S[i, tile] + b_n[i] * v_n[tile];  o_n[tile] = Σ_i c_n[i] * S[i, tile]
// with a = 1 unless Decay. v and o stay in registers; each state row is loaded and stored once.
// Kept out of line: inlined into a large caller, GCC spills the accumulators of the hot loop.
template <bool Decay, index_t NT, index_t NV, class T>
[[gnu::noinline]] void tokens_tile(index_t K, const T* a, const T* const* b, const T* const* c, const T* const* v, T* S,
                        index_t lds, T* const* o) {
  constexpr index_t L = simd::lanes<T>;
  simd::batch<T> vv[NT][NV], acc[NT][NV];
  SEQMIX_UNROLL for (index_t n = 0; n < NT; ++n)
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) vv[n][j] = simd::load(v[n] + j * L), acc[n][j] = T(0);
  for (index_t i = 0; i < K; ++i) {
    T* row = S + i * lds;
    simd::batch<T> s[NV];
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = simd::load(row + j * L);
    if constexpr (Decay) {
      const simd::batch<T> ai(a[i]);
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] *= ai;
    }
    SEQMIX_UNROLL for (index_t n = 0; n < NT; ++n) {
      const simd::batch<T> bi(b[n][i]), ci(c[n][i]);
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) {
        s[j] = simd::fma(bi, vv[n][j], s[j]);
        acc[n][j] = simd::fma(ci, s[j], acc[n][j]);
      }
    }
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) simd::store(row + j * L, s[j]);
  }
  SEQMIX_UNROLL for (index_t n = 0; n < NT; ++n)
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) simd::store(o[n] + j * L, acc[n][j]);
}

// NT tokens over the whole value axis: full tiles, single vectors, then scalar columns.
template <bool Decay, index_t NT, class T>
inline void tokens(index_t K, index_t V, const T* a, const T* const* b, const T* const* c, const T* const* v, T* S,
                   index_t lds, T* const* o) {
  constexpr index_t L = simd::lanes<T>, NV = row_vectors<NT>;
  const T* vj[NT];
  T* oj[NT];
  auto at = [&](index_t j) {
    for (index_t n = 0; n < NT; ++n) vj[n] = v[n] + j, oj[n] = o[n] + j;
  };
  index_t j = 0;
  for (; j + NV * L <= V; j += NV * L) at(j), tokens_tile<Decay, NT, NV>(K, a, b, c, vj, S + j, lds, oj);
  for (; j + L <= V; j += L) at(j), tokens_tile<Decay, NT, 1>(K, a, b, c, vj, S + j, lds, oj);
  for (; j < V; ++j)
    for (index_t n = 0; n < NT; ++n) {
      T acc = 0;
      for (index_t i = 0; i < K; ++i) {
        T& s = S[i * lds + j];
        s = (Decay && n == 0 ? a[i] * s : s) + b[n][i] * v[n][j];
        acc += c[n][i] * s;
      }
      o[n][j] = acc;
    }
}

// Tokens of a head prepared together before their passes: the preparations of consecutive tokens
// then overlap (their exponentials and divisions have long latencies), and kd, qd stay in L1.
inline constexpr index_t segment_tokens = 16;

template <class T>
struct run_workspace {
  std::vector<T> G;       // per head of the worker: G, the cumulative log decay since its run started
  std::vector<T> kd, qd;  // the prepared tokens of a segment: k / e^{G}, scale · q · e^{G}
  std::vector<T> E;       // scratch row
  run_workspace(index_t heads, index_t K)
      : G(std::size_t(heads * K)), kd(std::size_t(segment_tokens * K)), qd(kd.size()), E(std::size_t(K)) {}
};

// E = G + g; returns whether E stays inside the run's span.
template <class T>
inline bool extend_run(const T* G, const T* g, T* E, index_t K) {
  constexpr index_t L = simd::lanes<T>;
  const simd::batch<T> bound(-run_span<T>);
  auto low = bound != bound;  // all false
  index_t i = 0;
  for (; i + L <= K; i += L) {
    const auto e = simd::load(G + i) + simd::load(g + i);
    simd::store(E + i, e);
    low = low || e < bound;
  }
  bool inside = !simd::any(low);
  for (; i < K; ++i) E[i] = G[i] + g[i], inside = inside && E[i] >= -run_span<T>;
  return inside;
}

// One fused pass over a token's K channels: G = E, kd = k / e^{G}, qd = scale · q · e^{G}.
template <class T>
inline void prepare_token(const T* E, T* G, const T* k, const T* q, T scale, T* kd, T* qd, index_t K) {
  constexpr index_t L = simd::lanes<T>;
  index_t i = 0;
  for (; i + L <= K; i += L) {
    const auto x = simd::load(E + i), e = simd::exp(x);
    simd::store(G + i, x);
    simd::store(kd + i, simd::load(k + i) / e);
    simd::store(qd + i, simd::load(q + i) * e * scale);
  }
  for (; i < K; ++i) {
    const T e = std::exp(E[i]);
    G[i] = E[i], kd[i] = k[i] / e, qd[i] = q[i] * e * scale;
  }
}

// Tokens [t0, t1) of one head. The run (S~ in S, its G in G) stays open across calls, so the decay
// is folded back into S only when G would leave the span (or at the end of the sequence, where
// `last` makes the final token the explicit step). S [K,V] has row stride lds; L_total bounds
// the prefetch.
template <class T>
void head(run_workspace<T>& w, T* G, index_t t0, index_t t1, bool last, index_t L_total, index_t K, index_t V,
          T scale, head_rows<const T> q, head_rows<const T> k, head_rows<const T> v, head_rows<const T> g,
          head_rows<T> o, T* S, index_t lds) {
  T* E = w.E.data();
  auto kd = [&](index_t n) { return w.kd.data() + n * K; };
  auto qd = [&](index_t n) { return w.qd.data() + n * K; };
  // NT prepared tokens from slot n, which is token t, through one pass over the state.
  auto apply = [&]<index_t NT>(std::integral_constant<index_t, NT>, index_t n, index_t t) {
    const T *b[NT], *c[NT], *vv[NT];
    T* oo[NT];
    for (index_t j = 0; j < NT; ++j) b[j] = kd(n + j), c[j] = qd(n + j), vv[j] = v.row(t + j), oo[j] = o.row(t + j);
    tokens<false, NT, T>(K, V, nullptr, b, c, vv, S, lds, oo);
  };
  // The explicit step S = e^{G + g_t} ⊙ S~ + k_t v_tᵀ, which leaves S true (G is then spent).
  auto explicit_step = [&](index_t t) {
    simd::transform(G, g.row(t), E, K, [](auto a, auto b) { return simd::exp(a + b); });
    simd::transform(q.row(t), qd(0), K, [scale](auto x) { return x * scale; });
    const T* b[1] = {k.row(t)};
    const T* c[1] = {qd(0)};
    const T* vv[1] = {v.row(t)};
    T* oo[1] = {o.row(t)};
    tokens<true, 1, T>(K, V, E, b, c, vv, S, lds, oo);
    std::fill_n(G, K, T(0));
  };
  const index_t deferred_end = last ? t1 - 1 : t1;
  for (index_t t = t0; t < deferred_end;) {
    // Prepare the tokens of a segment while they stay inside the run's span.
    const index_t end = std::min(deferred_end, t + segment_tokens);
    index_t n = 0;
    for (; t + n < end; ++n) {
      const index_t u = t + n;
      // Rows of one head are H·K apart, too far for the hardware prefetcher: fetch this head's
      // rows of the next block while this one computes, and into L1 a few tokens ahead.
      if (const index_t ahead = u + block_tokens; ahead < L_total) {
        simd::prefetch(q.row(ahead), K), simd::prefetch(k.row(ahead), K);
        simd::prefetch(g.row(ahead), K), simd::prefetch(v.row(ahead), V);
        simd::prefetch_for_write(o.row(ahead), V);
      }
      if (const index_t next = u + max_tokens_per_pass; next < t1) {
        simd::prefetch_l1(q.row(next), K), simd::prefetch_l1(k.row(next), K), simd::prefetch_l1(g.row(next), K);
        simd::prefetch_l1(v.row(next), V);
      }
      if (!extend_run(G, g.row(u), E, K)) break;
      prepare_token(E, G, k.row(u), q.row(u), scale, kd(n), qd(n), K);
    }
    index_t m = 0;
    if constexpr (max_tokens_per_pass >= 4)
      for (; m + 4 <= n; m += 4) apply(std::integral_constant<index_t, 4>{}, m, t + m);
    for (; m + 2 <= n; m += 2) apply(std::integral_constant<index_t, 2>{}, m, t + m);
    for (; m < n; ++m) apply(std::integral_constant<index_t, 1>{}, m, t + m);
    t += n;
    if (t < end) {
      // Token t would leave the span: fold S = e^{G} ⊙ S~ and start a new run, which token t
      // begins (then the next segment prepares it) unless its own decay leaves the span, when
      // it takes the explicit step.
      simd::transform(G, E, K, [](auto x) { return simd::exp(x); });
      for (index_t i = 0; i < K; ++i) simd::scale(E[i], S + i * lds, V);
      std::fill_n(G, K, T(0));
      if (simd::any_below(g.row(t), K, -run_span<T>)) explicit_step(t++);
    }
  }
  if (last) explicit_step(t1 - 1);
}

}  // namespace detail

/// GLA op, token by token. Shapes as in ref(); state [B,H,K,V] is updated in place.
template <class T>
void recurrent(const exec::recurrent& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
               tensor_view<const T, 4> v, tensor_view<const T, 4> g, tensor_view<T, 4> o,
               tensor_view<T, 4> state, options<T> opt = {}) {
  const T scale = check_args(q, k, v, g, o, state, opt);
  const index_t B = q.extent(0), L = q.extent(1), H = q.extent(2), K = q.extent(3), V = v.extent(3);
  // Token blocks outermost, heads inside: the rows of all heads of a token are adjacent in memory,
  // so each block streams through the inputs once instead of once per head.
  // A second thread pays only for enough state updates (threads_for_work: a decode step of H8 K64
  // V64 ran 2.4x slower on two threads).
  const int threads = threads_for_work(policy.threads, double(B) * H * K * V * L);
  parallel_ranges(threads, B * H, [&](index_t begin, index_t end) {
    detail::run_workspace<T> w(end - begin, K);
    for (index_t t0 = 0; t0 < L; t0 += detail::block_tokens)
      for (index_t bh = begin; bh < end; ++bh) {
        const index_t b = bh / H, h = bh % H, t1 = std::min(L, t0 + detail::block_tokens);
        detail::head<T>(w, w.G.data() + (bh - begin) * K, t0, t1, t1 == L, L, K, V, scale,
                        {q.ptr(b, 0, h), q.stride(1)}, {k.ptr(b, 0, h), k.stride(1)}, {v.ptr(b, 0, h), v.stride(1)},
                        {g.ptr(b, 0, h), g.stride(1)}, {o.ptr(b, 0, h), o.stride(1)}, state.ptr(b, h), state.stride(2));
      }
  });
}

}  // namespace seqmix::kernels::gla
