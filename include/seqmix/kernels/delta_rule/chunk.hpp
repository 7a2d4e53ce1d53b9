// Delta rule, chunkwise and parallel policies: the WY / UT-transform form. A chunk of L tokens
// (L = C for chunkwise<C>, L = T for parallel) with state S0 before it and cumulative log decay
// G_t (0 without a gate), Γ_tj = e^{G_t - G_j} for t ≥ j:
//   (I + M) U = diag(β) V - diag(β e^{G}) K S0,    M_tj = β_t Γ_tj k_t·k_j  (j < t)
//   U = Ũ - W S0  with  Ũ = (I + M)^-1 diag(β) V,  W = (I + M)^-1 diag(β e^{G}) K
//   O = diag(scale e^{G}) Q S0 + (scale Γ ⊙ Q Kᵀ)_{j ≤ t} U
//   S = e^{G_last} S0 + (diag(Γ_last,·) K)ᵀ U
// U holds the per-token corrections u_t = β_t (v_t - S'_{t-1}ᵀ k_t). See docs/delta_rule.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "../common/chunk.hpp"
#include "../common/triangular.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::delta_rule {

namespace detail {

inline constexpr index_t gram_rows = 16;  // row block of the causal Gram products

// Scratch for one chunk of at most C tokens of one head.
template <class T>
struct chunk_workspace {
  index_t C, K, V;
  std::vector<T> kT, M, P, X, qs, kd, f;
  std::vector<double> G;
  chunk_workspace(index_t C_, index_t K_, index_t V_) : C(C_), K(K_), V(V_) {
    const auto c = std::size_t(C), k = std::size_t(K), v = std::size_t(V);
    kT.resize(k * c), M.resize(c * c), P.resize(c * c), X.resize(c * (v + k));
    qs.resize(c * k), kd.resize(c * k), G.resize(c), f.resize(c);
  }
};

// Tokens [t0, t0 + L) of value head (b, hv): writes o and advances the state.
template <class T>
void chunk_block(chunk_workspace<T>& w, const problem<T>& p, index_t b, index_t hv, index_t t0, index_t L) {
  const index_t C = w.C, K = p.K, V = p.V, ldx = V + K;
  const auto q = p.q_rows(b, hv), k = p.k_rows(b, hv), v = p.v_rows(b, hv);
  const auto o = p.o_rows(b, hv);  // rows of T, the others of const T
  const auto beta = p.beta_of(b, hv);
  const tensor_view<const T, 2> Q(q.row(t0), {L, K}, {q.ts, 1}), Kc(k.row(t0), {L, K}, {k.ts, 1});
  const tensor_view<T, 2> O(o.row(t0), {L, V}, {o.ts, 1});
  const tensor_view<T, 2> S(p.state.ptr(b, hv), {K, V}, {p.state.stride(2), 1});
  double* G = p.gated() ? w.G.data() : nullptr;
  if (G) common::cumsum(p.g.ptr(b, t0, hv), p.g.stride(1), L, G);
  auto decay = [&](index_t t) { return G ? T(std::exp(G[t])) : T(1); };

  // Gram blocks: M = K Kᵀ, P = Q Kᵀ (row t, column j), then masked and scaled.
  for (index_t t = 0; t < L; ++t)
    for (index_t i = 0; i < K; ++i) w.kT[i * C + t] = Kc(t, i);
  const tensor_view<const T, 2> kT(w.kT.data(), {K, L}, {C, 1});
  const tensor_view<T, 2> M(w.M.data(), {L, L}, {C, 1}), P(w.P.data(), {L, L}, {C, 1});
  // Only the blocks on and below the diagonal (rows [s, e) need columns [0, e)).
  for (index_t s = 0; s < L; s += gram_rows) {
    const index_t e = std::min(L, s + gram_rows);
    const tensor_view<const T, 2> kTe = kT.subrange(1, 0, e);
    simd::gemm<T>(Kc.subrange(0, s, e - s), kTe, M.subrange(0, s, e - s).subrange(1, 0, e));
    simd::gemm<T>(Q.subrange(0, s, e - s), kTe, P.subrange(0, s, e - s).subrange(1, 0, e));
  }
  for (index_t t = 0; t < L; ++t) w.f[t] = beta[t0 + t];
  common::decay_mask(w.M.data(), C, G, w.f.data(), T(1), L, /*diagonal=*/false);
  common::decay_mask(w.P.data(), C, G, static_cast<const T*>(nullptr), p.scale, L, /*diagonal=*/true);

  // X = [β v | -β e^{G} k], then X <- (I + M)^-1 X = [Ũ | -W]  (the UT transform).
  for (index_t t = 0; t < L; ++t) {
    T* x = w.X.data() + t * ldx;
    const T bt = w.f[t], bk = -bt * decay(t);
    simd::transform(v.row(t0 + t), x, V, [bt](auto a) { return a * bt; });
    simd::transform(k.row(t0 + t), x + V, K, [bk](auto a) { return a * bk; });
  }
  common::solve_unit_lower(w.M.data(), C, w.X.data(), ldx, L, ldx);
  const tensor_view<T, 2> U(w.X.data(), {L, V}, {ldx, 1});
  const tensor_view<const T, 2> negW(w.X.data() + V, {L, K}, {ldx, 1});
  simd::gemm<T>(negW, S, U, simd::gemm_mode::accumulate);  // U = Ũ - W S0

  // O = diag(scale e^{G}) Q S0 + P U.
  for (index_t t = 0; t < L; ++t) {
    const T f = p.scale * decay(t);
    simd::transform(q.row(t0 + t), w.qs.data() + t * K, K, [f](auto a) { return a * f; });
  }
  simd::gemm<T>(tensor_view<const T, 2>(w.qs.data(), {L, K}), S, O);
  simd::gemm<T>(tensor_view<const T, 2>(P), U, O, simd::gemm_mode::accumulate, /*lower_triangular_a=*/true);

  // S = e^{G_last} S0 + (Γ_last,· k)ᵀ U.
  const double Glast = G ? G[L - 1] : 0.0;
  for (index_t t = 0; t < L; ++t) {
    const T f = G ? T(std::exp(Glast - G[t])) : T(1);
    simd::transform(k.row(t0 + t), w.kd.data() + t * K, K, [f](auto a) { return a * f; });
  }
  common::chunk_state_step<T>(S, T(std::exp(Glast)), tensor_view<const T, 2>(w.kd.data(), {L, K}), U);
}

template <class T>
void chunks(int threads, index_t C, const problem<T>& p) {
  C = std::max<index_t>(1, std::min(C, p.L));
  parallel_for(threads, p.B * p.HV, [&](index_t bh) {
    const index_t b = bh / p.HV, hv = bh % p.HV;
    chunk_workspace<T> w(C, p.K, p.V);
    for (index_t t0 = 0; t0 < p.L; t0 += C) chunk_block(w, p, b, hv, t0, std::min(C, p.L - t0));
  });
}

}  // namespace detail

/// Gated delta rule in chunks of C tokens. Shapes as in ref(); state [B,HV,K,V] updated in place.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
           tensor_view<const T, 4> v, tensor_view<const T, 3> g, tensor_view<const T, 3> beta, tensor_view<T, 4> o,
           tensor_view<T, 4> state, options<T> opt = {}) {
  detail::chunks(policy.threads, C, detail::check_args<T>("gated_delta_net", q, k, v, g, beta, o, state, opt));
}

/// Delta rule without decay (DeltaNet) in chunks of C tokens.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
           tensor_view<const T, 4> v, tensor_view<const T, 3> beta, tensor_view<T, 4> o, tensor_view<T, 4> state,
           options<T> opt = {}) {
  detail::chunks(policy.threads, C, detail::check_args<T>("delta_net", q, k, v, {}, beta, o, state, opt));
}

/// Gated delta rule with the whole sequence as one block (T x T Gram matrices per head).
template <class T>
void parallel(const exec::parallel& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
              tensor_view<const T, 4> v, tensor_view<const T, 3> g, tensor_view<const T, 3> beta,
              tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  detail::chunks(policy.threads, q.extent(1),
                 detail::check_args<T>("gated_delta_net", q, k, v, g, beta, o, state, opt));
}

/// Delta rule without decay (DeltaNet) with the whole sequence as one block.
template <class T>
void parallel(const exec::parallel& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
              tensor_view<const T, 4> v, tensor_view<const T, 3> beta, tensor_view<T, 4> o,
              tensor_view<T, 4> state, options<T> opt = {}) {
  detail::chunks(policy.threads, q.extent(1), detail::check_args<T>("delta_net", q, k, v, {}, beta, o, state, opt));
}

}  // namespace seqmix::kernels::delta_rule
