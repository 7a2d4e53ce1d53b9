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
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "../../tensor/tensor.hpp"
#include "../common/decay.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::delta_rule {

namespace detail {

// Register budget: a pass keeps (3N + 1)·NV vectors live (pending u, w, r, one state row).
using simd::vector_registers;
inline constexpr index_t group_tokens = vector_registers >= 32 ? 4 : 2;
template <index_t N>
inline constexpr index_t tile_vectors = std::clamp<index_t>((vector_registers - 2) / (3 * N + 1), 1, 4);
inline constexpr index_t block_tokens = 32;  // tokens whose coefficients are shared by all tiles
inline constexpr index_t l1_state_bytes = 16384;  // L1 share of a state tile, or of a whole state

// The column arithmetic written once for batches and for plain scalars (tail columns).
using simd::vload, simd::vstore, simd::width;

// One group of up to N tokens, relative to the state S0 before it (G: cumulative log decay since
// S0, Γ_tj = e^{G_t - G_j} ≤ 1). Within a block the state tile holds S̃ with S = σ·S̃ (deferred
// decay; σ ≤ 1 per group, 1 at the block start), so w_t = σ S̃ᵀk_t and r_t = σ S̃ᵀq_t:
//   u_t = bv_t v_t + bw_t (S̃ᵀk_t) + Σ_{j<t} c_tj u_j      bv = β, bw = -β σ e^{G}, c = -β Γ k_t·k_j
//   o_t = dr_t (S̃ᵀq_t) + Σ_{j≤t} d_tj u_j                  dr = scale σ e^{G}, d = scale Γ q_t·k_j
// The group's own update, applied by the next pass, is S̃ <- mul·S̃ + Σ_j k_j (f_j u_j)ᵀ with either
//   deferred: mul = 1 (no multiply), f_j = Γ_last,j / σ', σ' = σ e^{G_last} ≥ scale_floor, or
//   explicit: mul = σ' and f_j = Γ_last,j, after which S̃ is the true state (σ = 1).
// (The factors scale u_j, N·NV multiplies per tile, rather than the key rows.)
// Tokens past m point at a zero row and have zero coefficients.
template <class T, index_t N>
struct group {
  index_t m = 0;
  const T *k[N], *q[N], *v[N];
  T* o[N];             // nullptr for padding
  bool scale = false;  // explicit update: multiply the state by mul
  T mul = 1;
  T bv[N], bw[N], c[N][N], dr[N], d[N][N], f[N];
};

// Cache lines of the next block's rows, fetched one at a time while the current block computes:
// rows of one head are H·K floats apart, too far for the hardware prefetcher, and a burst of
// prefetches would wait for free miss buffers. The lines are generated on the fly from up to six
// row sets (q, k, v, o, beta, g), so queueing a block costs nothing per line.
struct prefetcher {
  struct row_set {
    const char* p;
    index_t stride, bytes, count;  // row stride and bytes per row, in bytes
  };
  row_set sets[6];
  int count = 0, current = 0;
  index_t offset = 0;
  std::size_t lines = 0;  // lines queued in total

  void clear() { count = current = 0, offset = 0, lines = 0; }
  /// `rows` rows of `n` elements, `stride` elements apart, starting at p.
  template <class T>
  void add(const T* p, index_t rows, index_t stride, index_t n) {
    if (rows <= 0 || n <= 0) return;
    const index_t bytes = n * index_t(sizeof(T));
    sets[count++] = {reinterpret_cast<const char*>(p), stride * index_t(sizeof(T)), bytes, rows};
    lines += std::size_t(rows * ((bytes + 63) / 64));
  }
  /// Prefetches the next queued line (into L2), if any.
  [[gnu::always_inline]] void step() {
    if (current == count) return;
    row_set& r = sets[current];
    __builtin_prefetch(r.p + offset, 0, 2);
    if ((offset += 64) >= r.bytes) {
      offset = 0, r.p += r.stride;
      if (--r.count == 0) ++current;
    }
  }
  void issue_all() {
    while (current != count) step();
  }
};

// At most `budget` steps of the prefetcher, one per state row of a pass.
struct prefetch_cursor {
  prefetcher* pf;
  index_t budget;
  [[gnu::always_inline]] void step(index_t row) {
    if (row < budget) pf->step();
  }
};

// Smallest σ the deferred form may reach, sqrt(FLT_MIN): 1/σ scales keys, so S̃ stays far from
// overflow (common/decay.hpp; docs/common.md compares the deferred-decay schemes).
using common::deferred::scale_floor;

// State rows of one column tile: S[i, c0 .. c0 + NV·width) = S + i·lds.
// Applies the pending update of group `prev` (u: its u_j; Mul: scale the rows by prev->mul first)
// to every row and, when Read, accumulates S̃ᵀk_t and S̃ᵀq_t of group `cur` from the updated rows.
template <bool Update, bool Mul, bool Read, index_t N, index_t NV, class W, class T>
[[gnu::always_inline]] inline void tile_pass(index_t K, T* S, index_t lds, const group<T, N>* prev, const W (&u)[N][NV],
                                             const group<T, N>* cur, W (&w)[N][NV], W (&r)[N][NV],
                                             prefetch_cursor& pf) {
  constexpr index_t L = width<W>;
  const T *kp[N], *k[N], *q[N];  // keys of the previous group; keys and queries of this one
  for (index_t n = 0; n < N; ++n) kp[n] = prev->k[n], k[n] = cur->k[n], q[n] = cur->q[n];
  const W a(prev->mul);
  for (index_t ii = 0; ii < K; ++ii) {
    // An update-only pass (the last of a block) follows a read of the same rows: backwards, it
    // starts on the rows that read left in L1.
    const index_t i = Read ? ii : K - 1 - ii;
    pf.step(ii);
    T* row = S + i * lds;
    W s[NV];
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = vload<W>(row + j * L);
    if constexpr (Update) {
      if constexpr (Mul) {
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] *= a;
      }
      SEQMIX_UNROLL for (index_t n = 0; n < N; ++n) {
        const W kn(kp[n][i]);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) s[j] = simd::fma(kn, u[n][j], s[j]);
      }
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) vstore(row + j * L, s[j]);
    }
    if constexpr (Read) {
      SEQMIX_UNROLL for (index_t n = 0; n < N; ++n) {
        const W kn(k[n][i]), qn(q[n][i]);
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) w[n][j] = simd::fma(kn, s[j], w[n][j]), r[n][j] = simd::fma(qn, s[j], r[n][j]);
      }
    }
  }
}

// Runs groups gs[g0 .. g1) of gs[0 .. ng) on the column tile starting at column c0 (S points at
// the state's column c0). The pending u of the tile lives in registers and is saved to `u_save`
// between calls; after the last group the (explicit) pending update is applied, so the state is
// exact on return.
template <index_t N, index_t NV, class W, class T>
void tile_run(const group<T, N>* gs, index_t g0, index_t g1, index_t ng, index_t K, T* S, index_t lds, index_t c0,
              T* u_save, prefetcher& queue, std::size_t prefetch_per_group) {
  constexpr index_t L = width<W>;
  W u[N][NV];
  SEQMIX_UNROLL for (index_t n = 0; n < N; ++n)
    SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) u[n][j] = g0 > 0 ? vload<W>(u_save + (n * NV + j) * L) : W(T(0));
  for (index_t gi = g0; gi < g1; ++gi) {
    const group<T, N>& cur = gs[gi];
    W w[N][NV], r[N][NV];
    SEQMIX_UNROLL for (index_t n = 0; n < N; ++n)
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) w[n][j] = W(T(0)), r[n][j] = W(T(0));
    prefetch_cursor pf{&queue, index_t(prefetch_per_group)};
    if (gi == 0) tile_pass<false, false, true>(K, S, lds, &cur, u, &cur, w, r, pf);
    else if (gs[gi - 1].scale) tile_pass<true, true, true>(K, S, lds, &gs[gi - 1], u, &cur, w, r, pf);
    else tile_pass<true, false, true>(K, S, lds, &gs[gi - 1], u, &cur, w, r, pf);
    SEQMIX_UNROLL for (index_t t = 0; t < N; ++t) {
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) {
        W x = simd::fma(W(cur.bw[t]), w[t][j], W(cur.bv[t]) * vload<W>(cur.v[t] + c0 + j * L));
        SEQMIX_UNROLL for (index_t p = 0; p < t; ++p) x = simd::fma(W(cur.c[t][p]), u[p][j], x);
        u[t][j] = x;
      }
      if (cur.o[t] != nullptr) {
        SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) {
          W y = W(cur.dr[t]) * r[t][j];
          SEQMIX_UNROLL for (index_t p = 0; p <= t; ++p) y = simd::fma(W(cur.d[t][p]), u[p][j], y);
          vstore(cur.o[t] + c0 + j * L, y);
        }
      }
    }
    SEQMIX_UNROLL for (index_t t = 0; t < N; ++t)  // u_t -> f_t u_t, what the update adds
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) u[t][j] *= W(cur.f[t]);
  }
  if (g1 < ng) {
    SEQMIX_UNROLL for (index_t n = 0; n < N; ++n)
      SEQMIX_UNROLL for (index_t j = 0; j < NV; ++j) vstore(u_save + (n * NV + j) * L, u[n][j]);
  } else if (ng > 0) {
    W w[N][NV], r[N][NV];
    prefetch_cursor pf{&queue, 0};
    if (gs[ng - 1].scale) tile_pass<true, true, false>(K, S, lds, &gs[ng - 1], u, &gs[ng - 1], w, r, pf);
    else tile_pass<true, false, false>(K, S, lds, &gs[ng - 1], u, &gs[ng - 1], w, r, pf);
  }
}

// Scratch of one thread: the groups of a block, their decayed key rows, per-token decays and betas,
// a zero row for padding and the prefetch queue of the next block. Kept per thread and grown on
// demand, so a decode step allocates nothing.
template <class T, index_t N>
struct block_workspace {
  std::vector<group<T, N>> groups;
  std::vector<T> zero, a, b, u_save;
  tensor<T, 1> k_rows, q_rows;  // the block's keys and queries, packed (64-byte aligned)
  prefetcher pf;
  struct {
    index_t b, hv, t0, n, ng;
  } block{};   // the block being run
  T sigma = 1;  // S = σ·S̃ before the next group to prepare

  // Room for blocks of n tokens with key dim K and value dim V.
  void reserve(index_t n, index_t K, index_t V) {
    const auto tokens = std::size_t(n + N), rows = std::size_t(std::max(K, V));
    if (groups.size() < tokens / N + 1) groups.resize(tokens / N + 1);
    if (zero.size() < rows) zero.assign(rows, T(0));
    if (a.size() < tokens) a.resize(tokens), b.resize(tokens);
    if (k_rows.size() < n * K) k_rows = tensor<T, 1>({n * K}), q_rows = tensor<T, 1>({n * K});
    // Pending u of every tile: at most V tiles of N x (NV·lanes) values.
    const auto u_size = std::size_t(V * N * tile_vectors<N> * simd::lanes<T>);
    if (u_save.size() < u_size) u_save.resize(u_size);
  }
  static block_workspace& of_this_thread(index_t n, index_t K, index_t V) {
    thread_local block_workspace ws;
    ws.reserve(n, K, V);
    return ws;
  }
};

// Gram products of one group: kk[t][j] = k_t·k_j (j < t) and kq[t][j] = q_t·k_j (j ≤ t). Each
// vector of every row is loaded once and feeds all products.
template <index_t N, class T>
void group_gram(const T* const* k, const T* const* q, index_t K, T (&kk)[N][N], T (&kq)[N][N]) {
  using B = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>;
  B akk[N][N], akq[N][N];
  SEQMIX_UNROLL for (index_t t = 0; t < N; ++t)
    SEQMIX_UNROLL for (index_t j = 0; j < N; ++j) akk[t][j] = B(T(0)), akq[t][j] = B(T(0));
  index_t i = 0;
  for (; i + L <= K; i += L) {
    B kv[N], qv[N];
    SEQMIX_UNROLL for (index_t t = 0; t < N; ++t) kv[t] = simd::load(k[t] + i), qv[t] = simd::load(q[t] + i);
    SEQMIX_UNROLL for (index_t t = 0; t < N; ++t)
      SEQMIX_UNROLL for (index_t j = 0; j <= t; ++j) {
        if (j < t) akk[t][j] = simd::fma(kv[t], kv[j], akk[t][j]);
        akq[t][j] = simd::fma(qv[t], kv[j], akq[t][j]);
      }
  }
  for (index_t t = 0; t < N; ++t)
    for (index_t j = 0; j <= t; ++j) {
      T sk = j < t ? simd::reduce_add(akk[t][j]) : T(0), sq = simd::reduce_add(akq[t][j]);
      for (index_t x = i; x < K; ++x) sk += k[t][x] * k[j][x], sq += q[t][x] * k[j][x];
      kk[t][j] = sk, kq[t][j] = sq;
    }
}

// Starts the block of tokens [t0, t0 + n) of value head (b, hv): e^{g} and beta of its tokens
// (padding tokens: e^{g} = 1, beta = 0). Returns the number of groups.
template <class T, index_t N>
index_t begin_block(block_workspace<T, N>& ws, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t n) {
  const auto g = p.g_of(b, hv), beta = p.beta_of(b, hv);
  const index_t ng = (n + N - 1) / N, padded = ng * N;
  for (index_t t = 0; t < n; ++t) ws.b[std::size_t(t)] = beta[t0 + t];
  std::fill(ws.b.begin() + n, ws.b.begin() + padded, T(0));
  if (p.gated()) {
    for (index_t t = 0; t < n; ++t) ws.a[std::size_t(t)] = g[t0 + t];
    simd::transform(ws.a.data(), ws.a.data(), n, [](auto x) { return simd::exp(x); });
  } else {
    std::fill(ws.a.begin(), ws.a.begin() + n, T(1));
  }
  std::fill(ws.a.begin() + n, ws.a.begin() + padded, T(1));
  // Rows of one head are H·K floats apart; at 4 KB (H·K = 1024) every row of the block falls in
  // the same L1 sets, so the passes read packed copies.
  const auto q = p.q_rows(b, hv), k = p.k_rows(b, hv);
  for (index_t t = 0; t < n; ++t) {
    std::copy_n(k.row(t0 + t), p.K, ws.k_rows.data() + t * p.K);
    std::copy_n(q.row(t0 + t), p.K, ws.q_rows.data() + t * p.K);
  }
  ws.block = {b, hv, t0, n, ng}, ws.sigma = T(1);
  return ng;
}

// Coefficients of group gi of the current block (see group); groups are prepared in order (σ
// carries over). The decays Γ_tj = Π_{j<s≤t} e^{g_s} are products of factors ≤ 1: no overflow, no
// cancellation, and a decay that underflows simply cuts the chain.
template <class T, index_t N>
void prepare_group(block_workspace<T, N>& ws, const problem<T>& p, index_t gi) {
  const auto [b, hv, t0, n, ng] = ws.block;
  const auto v = p.v_rows(b, hv);
  const auto o = p.o_rows(b, hv);
  const index_t K = p.K;
  const T sigma = ws.sigma;  // S = σ·S̃ before the group
  group<T, N>& gr = ws.groups[std::size_t(gi)];
  const index_t s = t0 + gi * N, m = std::min(N, t0 + n - s);
  const T* a = ws.a.data() + gi * N;
  const T* bt = ws.b.data() + gi * N;
  gr.m = m;
  for (index_t t = 0; t < N; ++t) {
    const bool real = t < m;
    gr.k[t] = real ? ws.k_rows.data() + (s + t - t0) * K : ws.zero.data();
    gr.q[t] = real ? ws.q_rows.data() + (s + t - t0) * K : ws.zero.data();
    gr.v[t] = real ? v.row(s + t) : ws.zero.data();
    gr.o[t] = real ? o.row(s + t) : nullptr;
  }
  T decay[N][N];  // Γ_tj for j ≤ t
  for (index_t t = 0; t < N; ++t) {
    decay[t][t] = T(1);
    for (index_t j = 0; j < t; ++j) decay[t][j] = decay[t - 1][j] * a[t];
  }
  T kk[N][N], kq[N][N];
  group_gram<N>(gr.k, gr.q, K, kk, kq);
  for (index_t t = 0; t < N; ++t) {
    const T A = sigma * decay[t][0] * a[0];  // σ e^{G_t}
    gr.bv[t] = bt[t], gr.bw[t] = -bt[t] * A, gr.dr[t] = t < m ? p.scale * A : T(0);
    for (index_t j = 0; j < N; ++j) {
      const bool lower = t < m && j <= t;
      gr.c[t][j] = lower && j < t ? -bt[t] * decay[t][j] * kk[t][j] : T(0);
      gr.d[t][j] = lower ? p.scale * decay[t][j] * kq[t][j] : T(0);
    }
  }
  // The group's update: deferred while σ' stays above scale_floor, explicit for the block's last group.
  const T next = sigma * decay[N - 1][0] * a[0];
  const bool deferred = gi + 1 < ng && !common::deferred::must_fold(next, scale_floor<T>);
  gr.scale = !deferred && next != T(1), gr.mul = next;
  const T inv = deferred ? T(1) / next : T(1);
  for (index_t j = 0; j < N; ++j) gr.f[j] = decay[N - 1][j] * inv;
  ws.sigma = deferred ? next : T(1);
}

// All column tiles of one value head through the groups of the current block: full tiles of NV
// vectors, single vectors, then scalar columns. When the whole state fits in L1 the tiles take
// turns group by group, so one tile's forward substitution (a latency chain) overlaps the next
// tile's pass, and each group is prepared just before its passes; otherwise every group is
// prepared first and each tile runs through the block while it sits in L1. The queued prefetches
// of the next block are spread over the passes.
template <index_t N, class T>
void run_block(block_workspace<T, N>& ws, const problem<T>& p) {
  using B = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>, NV = tile_vectors<N>;
  const index_t K = p.K, V = p.V, ng = ws.block.ng, lds = p.state.stride(2);
  T* S = p.state.ptr(ws.block.b, ws.block.hv);
  const group<T, N>* gs = ws.groups.data();
  const index_t tiles = V / (NV * L) + (V % (NV * L)) / L + V % L;
  const std::size_t per_group = ws.pf.lines / std::size_t(std::max<index_t>(1, ng * tiles)) + 1;
  const bool turns = K * V * index_t(sizeof(T)) <= l1_state_bytes;
  if (!turns)
    for (index_t gi = 0; gi < ng; ++gi) prepare_group(ws, p, gi);
  const index_t step = turns ? 1 : ng;
  T* u_save = ws.u_save.data();
  for (index_t g0 = 0; g0 < ng; g0 += step) {
    const index_t g1 = std::min(ng, g0 + step);
    if (turns) prepare_group(ws, p, g0);
    index_t c = 0, slot = 0;
    auto save = [&](index_t width) { return u_save + (slot++) * N * width; };
    for (; c + NV * L <= V; c += NV * L) tile_run<N, NV, B>(gs, g0, g1, ng, K, S + c, lds, c, save(NV * L), ws.pf, per_group);
    for (; c + L <= V; c += L) tile_run<N, 1, B>(gs, g0, g1, ng, K, S + c, lds, c, save(NV * L), ws.pf, per_group);
    for (; c < V; ++c) tile_run<N, 1, T>(gs, g0, g1, ng, K, S + c, lds, c, save(NV * L), ws.pf, per_group);
  }
  ws.pf.issue_all();
}

// Queues the rows of tokens [t0, t0 + n) of value head (b, hv) for prefetching.
template <class T, index_t N>
void queue_rows(block_workspace<T, N>& ws, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t n) {
  ws.pf.clear();
  const auto q = p.q_rows(b, hv), k = p.k_rows(b, hv), v = p.v_rows(b, hv);
  const auto o = p.o_rows(b, hv);
  ws.pf.add(q.row(t0), n, q.ts, p.K), ws.pf.add(k.row(t0), n, k.ts, p.K);
  ws.pf.add(v.row(t0), n, v.ts, p.V), ws.pf.add(o.row(t0), n, o.ts, p.V);  // o: read-prefetched, then owned
  ws.pf.add(p.beta.ptr(b, t0, hv), n, p.beta.stride(1), 1);
  if (p.gated()) ws.pf.add(p.g.ptr(b, t0, hv), n, p.g.stride(1), 1);
}

// Every head and block with groups of N tokens (N = 1 for single-token blocks).
template <index_t N, class T>
void run_all(int threads, const problem<T>& p) {
  // A second thread pays only for enough state updates (threads_for_work: a decode step of K64
  // ran 2.1x slower on two threads, K128 even).
  const double work = double(p.B) * p.HV * p.K * p.V * p.L;
  parallel_ranges(threads_for_work(threads, work), p.B * p.HV, [&](index_t begin, index_t end) {
    const index_t n_max = std::min(block_tokens, p.L);
    auto& ws = block_workspace<T, N>::of_this_thread(n_max, p.K, p.V);
    auto& ws1 = block_workspace<T, 1>::of_this_thread(1, p.K, p.V);
    // Token blocks outermost, heads inside: the rows of all heads of a token are adjacent.
    for (index_t t0 = 0; t0 < p.L; t0 += block_tokens) {
      const index_t n = std::min(block_tokens, p.L - t0);
      for (index_t bh = begin; bh < end; ++bh) {
        const index_t b = bh / p.HV, hv = bh % p.HV;
        if (n == 1) {  // decode: no padding tokens, nothing to prefetch
          begin_block(ws1, p, b, hv, t0, n);
          run_block<1>(ws1, p);
          continue;
        }
        // The next work item of this thread: the next head of this block or the first of the next.
        const index_t nbh = bh + 1 < end ? bh + 1 : begin, nt0 = bh + 1 < end ? t0 : t0 + block_tokens;
        if (nt0 < p.L) queue_rows(ws, p, nbh / p.HV, nbh % p.HV, nt0, std::min(block_tokens, p.L - nt0));
        else ws.pf.clear();
        begin_block(ws, p, b, hv, t0, n);
        run_block<N>(ws, p);
      }
    }
  });
}

// Group size: with 32 registers, 2 tokens on 4-vector tiles when such a tile (K rows) fits in
// 16 KB of L1 — half the broadcasts per FMA of 4 tokens on 2-vector tiles, measured 3–5% faster
// at K = V = 64 — else 4 tokens on 2-vector tiles (K = V = 128: 16 KB tiles instead of 32 KB).
template <class T>
void recurrent_impl(int threads, const problem<T>& p) {
  constexpr index_t wide_tile = tile_vectors<2> * simd::lanes<T> * index_t(sizeof(T));
  if (group_tokens == 2 || p.K * wide_tile <= l1_state_bytes) run_all<2>(threads, p);
  else run_all<group_tokens>(threads, p);
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
