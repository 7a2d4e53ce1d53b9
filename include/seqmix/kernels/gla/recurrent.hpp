// GLA, recurrent policy: one pass over the tokens with the [K,V] state kept in cache. This is the
// decode path and, for K = V = 64, the fastest prefill too.
//
// Deferred decay: within a run of up to `run_length` tokens starting from state S0, the state is
// S_t = diag(e^{G_t}) · S~_t with G_t the cumulative log decay since the run started, so a token
// costs two FMAs per state element instead of three:
//   S~_t = S~_{t-1} + (k_t ⊙ e^{-G_t}) v_tᵀ,   o_t = S~_tᵀ (scale · q_t ⊙ e^{G_t}).
// The last token of a run takes the explicit step S_t = e^{G_t} ⊙ S~_{t-1} + k_t v_tᵀ, which folds
// the decay back in. A run also ends before G would drop below -span_limit, so e^{-G} stays
// finite; rounding is relative to the newest terms because e^{G_t - G_j} ≤ 1. Two deferred tokens
// share one pass over the state, which halves the state loads and stores. See docs/gla.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "args.hpp"

namespace seqmix::kernels::gla {

namespace detail {

inline constexpr index_t run_length = 32;

// Register budget: AVX-512 has 32 vector registers, AVX2 and SSE2 16. A pass over the state
// handles NT tokens on NV vectors of V and keeps 2·NT·NV of them (v and o) live.
inline constexpr index_t vector_registers = sizeof(simd::batch<float>) >= 64 ? 32 : 16;
inline constexpr index_t max_tokens_per_pass = vector_registers >= 32 ? 4 : 2;
template <index_t NT>
inline constexpr index_t row_vectors = std::clamp<index_t>(vector_registers / 2 / (2 * NT), 1, 4);

// NT tokens (1 or 2) on a tile of NV vectors of the value axis. Per token n and state row i:
//   S[i, tile] = a[i] * S[i, tile] + b_n[i] * v_n[tile];  o_n[tile] = Σ_i c_n[i] * S[i, tile]
// with a = 1 unless Decay. v and o stay in registers; each state row is loaded and stored once.
template <bool Decay, index_t NT, index_t NV, class T>
inline void tokens_tile(index_t K, const T* a, const T* const* b, const T* const* c, const T* const* v, T* S,
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
        s[j] = xsimd::fma(bi, vv[n][j], s[j]);
        acc[n][j] = xsimd::fma(ci, s[j], acc[n][j]);
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

template <class T>
struct run_workspace {
  std::vector<T> G, kd, qd, Glog;  // G: e^{G} per token of the run; Glog: the running G
  explicit run_workspace(index_t K)
      : G(std::size_t(run_length * K)), kd(G.size()), qd(G.size()), Glog(std::size_t(K)) {}
};

// Runs tokens [t0, L) of one head (of L_total) in runs of at most run_length; S [K,V] (row stride lds) is the
// true state before and after.
template <class T>
void head(run_workspace<T>& w, index_t t0, index_t L, index_t L_total, index_t K, index_t V, T scale, head_rows<const T> q,
          head_rows<const T> k, head_rows<const T> v, head_rows<const T> g, head_rows<T> o, T* S, index_t lds) {
  auto& [G, kd, qd, Glog] = w;
  auto row = [K](std::vector<T>& buf, index_t n) { return buf.data() + n * K; };
  for (index_t t = t0; t < L;) {
    // Grow the run while the cumulative decay stays within span_limit.
    index_t n = 0;
    for (; n < run_length && t + n < L; ++n) {
      // Rows of one head are H·K apart, too far for the hardware prefetcher: fetch this head's
      // rows of the next block while this one computes, a few lines per token.
      if (const index_t ahead = t + n + run_length; ahead < L_total) {
        simd::prefetch(q.row(ahead), K), simd::prefetch(k.row(ahead), K);
        simd::prefetch(g.row(ahead), K), simd::prefetch(v.row(ahead), V);
        simd::prefetch_for_write(o.row(ahead), V);
      }
      T* Gn = row(G, n);
      if (n == 0) std::copy_n(g.row(t), K, Gn);
      else simd::transform(Glog.data(), g.row(t + n), Gn, K, [](auto a, auto b) { return a + b; });
      if (n > 0 && simd::min_element(Gn, K) < -span_limit<T>) break;
      std::copy_n(Gn, K, Glog.data());
      simd::transform(Gn, Gn, K, [](auto x) { return simd::exp(x); });  // G row now holds e^{G}
    }
    // Deferred tokens 0 .. n-2 carry k / e^{G} and scale · q · e^{G}.
    for (index_t i = 0; i + 1 < n; ++i) {
      const T* E = row(G, i);
      simd::transform(k.row(t + i), E, row(kd, i), K, [](auto x, auto e) { return x / e; });
      simd::transform(q.row(t + i), E, row(qd, i), K, [scale](auto x, auto e) { return x * e * scale; });
    }
    // Tokens 0 .. n-2 deferred, several per pass; token n-1 explicit with decay e^{G_{n-1}}.
    index_t i = 0;
    auto deferred = [&]<index_t NT>(std::integral_constant<index_t, NT>) {
      for (; i + NT <= n - 1; i += NT) {
        const T *b[NT], *c[NT], *vv[NT];
        T* oo[NT];
        for (index_t j = 0; j < NT; ++j)
          b[j] = row(kd, i + j), c[j] = row(qd, i + j), vv[j] = v.row(t + i + j), oo[j] = o.row(t + i + j);
        tokens<false, NT, T>(K, V, nullptr, b, c, vv, S, lds, oo);
      }
    };
    if constexpr (max_tokens_per_pass >= 4) deferred(std::integral_constant<index_t, 4>{});
    deferred(std::integral_constant<index_t, 2>{});
    deferred(std::integral_constant<index_t, 1>{});
    simd::transform(q.row(t + n - 1), row(qd, n - 1), K, [scale](auto x) { return x * scale; });
    const T* b[1] = {k.row(t + n - 1)};
    const T* c[1] = {row(qd, n - 1)};
    const T* vv[1] = {v.row(t + n - 1)};
    T* oo[1] = {o.row(t + n - 1)};
    tokens<true, 1, T>(K, V, row(G, n - 1), b, c, vv, S, lds, oo);
    t += n;
  }
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
  parallel_ranges(policy.threads, B * H, [&](index_t begin, index_t end) {
    detail::run_workspace<T> w(K);
    for (index_t t0 = 0; t0 < L; t0 += detail::run_length)
      for (index_t bh = begin; bh < end; ++bh) {
        const index_t b = bh / H, h = bh % H, t1 = std::min(L, t0 + detail::run_length);
        detail::head<T>(w, t0, t1, L, K, V, scale, {q.ptr(b, 0, h), q.stride(1)}, {k.ptr(b, 0, h), k.stride(1)},
                        {v.ptr(b, 0, h), v.stride(1)}, {g.ptr(b, 0, h), g.stride(1)},
                        {o.ptr(b, 0, h), o.stride(1)}, state.ptr(b, h), state.stride(2));
      }
  });
}

}  // namespace seqmix::kernels::gla
