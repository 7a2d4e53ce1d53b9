// Mamba-1 selective scan, chunkwise and parallel policies.
//
// chunkwise<C>: a blocked scan. Each unit of lanes channels walks the sequence in blocks of up to
// 16 tokens; a block first evaluates all its decay factors exp(dt_t·A[n]) (one vector exponential
// per token and state, independent of each other, so they pipeline freely), then runs the
// recurrence h = a·h + dt·u·B and the read-out C·h as FMAs only, then applies the D skip and the
// z gate. C sets how many tokens a unit takes before the next unit (cache locality only).
//
// parallel: the materialised decay form over the whole sequence,
//   y_t = Σ_n C_t[n] (e^{A[n] S(0..t)} h_0[n] + Σ_{j≤t} e^{A[n] S(j+1..t)} dt_j u_j B_j[n]) + D u_t,
// S(i..t) = Σ_{k=i..t} dt_k, evaluated row by row (O(T²·N) exponentials; for checking).
#pragma once

#include <algorithm>
#include <vector>

#include "selective_scan_recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::selective_scan {

namespace detail {

inline constexpr index_t block_tokens = 16;

// Tokens [t0, t1) of one unit in blocks: decays first, then the FMA-only recurrence.
template <class V, class T>
void scan_unit_blocked(const unit_args<T>& s, index_t t0, index_t t1, index_t N, V* h, std::vector<V>& decay,
                       std::vector<V>& du, std::vector<V>& out) {
  const V skip = vload<V>(s.skip), bias = vload<V>(s.bias);
  for (index_t b0 = t0; b0 < t1; b0 += block_tokens) {
    const index_t n_tok = std::min(block_tokens, t1 - b0);
    for (index_t i = 0; i < n_tok; ++i) {
      const V dt = time_step(vload<V>(s.delta.row(b0 + i)) + bias, s.softplus);
      du[std::size_t(i)] = dt * vload<V>(s.u.row(b0 + i));
      V* a = decay.data() + i * N;
      for (index_t n = 0; n < N; ++n) a[n] = simd::exp2_nonpositive(dt * vload<V>(s.At + n * s.lda));
    }
    for (index_t i = 0; i < n_tok; ++i) {
      const T* Bt = s.B + (b0 + i) * s.bts;
      const T* Ct = s.C + (b0 + i) * s.cts;
      const V* a = decay.data() + i * N;
      const V d = du[std::size_t(i)];
      V acc0(T(0)), acc1(T(0));
      index_t n = 0;
      for (; n + 2 <= N; n += 2) {
        h[n] = simd::fma(a[n], h[n], d * V(Bt[n * s.bns]));
        h[n + 1] = simd::fma(a[n + 1], h[n + 1], d * V(Bt[(n + 1) * s.bns]));
        acc0 = simd::fma(h[n], V(Ct[n * s.cns]), acc0);
        acc1 = simd::fma(h[n + 1], V(Ct[(n + 1) * s.cns]), acc1);
      }
      if (n < N) {
        h[n] = simd::fma(a[n], h[n], d * V(Bt[n * s.bns]));
        acc0 = simd::fma(h[n], V(Ct[n * s.cns]), acc0);
      }
      out[std::size_t(i)] = acc0 + acc1;
    }
    for (index_t i = 0; i < n_tok; ++i) {
      V o = simd::fma(skip, vload<V>(s.u.row(b0 + i)), out[std::size_t(i)]);
      if (s.z.p) o *= simd::silu(vload<V>(s.z.row(b0 + i)));
      vstore(s.y.row(b0 + i), o);
    }
  }
}

// Row t of the materialised form for one unit: returns y_t before the gate; leaves the state
// h_t in `acc` (N vectors).
template <class V, class T>
V materialised_row(const unit_args<T>& s, index_t t, index_t N, const V* h0, const std::vector<V>& dt,
                   const std::vector<V>& du, V* acc) {
  for (index_t n = 0; n < N; ++n) acc[n] = V(T(0));
  V seg(T(0));  // S(j+1..t)
  for (index_t j = t; j >= 0; --j) {
    const T* Bj = s.B + j * s.bts;
    for (index_t n = 0; n < N; ++n)
      acc[n] = simd::fma(simd::exp2_nonpositive(seg * vload<V>(s.At + n * s.lda)) * du[std::size_t(j)], V(Bj[n * s.bns]), acc[n]);
    seg += dt[std::size_t(j)];
  }
  const T* Ct = s.C + t * s.cts;
  V y = vload<V>(s.skip) * vload<V>(s.u.row(t));
  for (index_t n = 0; n < N; ++n) {
    acc[n] = simd::fma(simd::exp2_nonpositive(seg * vload<V>(s.At + n * s.lda)), h0[n], acc[n]);
    y = simd::fma(acc[n], V(Ct[n * s.cns]), y);
  }
  return y;
}

template <class V, class T>
void materialised_unit(const unit_args<T>& s, index_t L, index_t N, V* h) {
  const V bias = vload<V>(s.bias);
  std::vector<V> dt(static_cast<std::size_t>(L)), du(dt.size()), acc(static_cast<std::size_t>(N)), h0(h, h + N);
  for (index_t t = 0; t < L; ++t) {
    dt[std::size_t(t)] = time_step(vload<V>(s.delta.row(t)) + bias, s.softplus);
    du[std::size_t(t)] = dt[std::size_t(t)] * vload<V>(s.u.row(t));
  }
  for (index_t t = 0; t < L; ++t) {
    V y = materialised_row<V, T>(s, t, N, h0.data(), dt, du, acc.data());
    if (s.z.p) y *= simd::silu(vload<V>(s.z.row(t)));
    vstore(s.y.row(t), y);
  }
  std::copy(acc.begin(), acc.end(), h);
}

}  // namespace detail

/// Mamba-1 selective scan, blocked (see inputs<T>). y [B,T,D]; state [B,D,N] updated in place.
template <index_t C, class T>
void chunk(const exec::chunkwise<C>& policy, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state,
           options opt = {}) {
  const dims dm = check_args(in, y, state);
  if (dm.L == 0 || dm.D == 0) return;
  const index_t N = dm.N;
  detail::for_each_unit_state<T>(policy.threads, in, y, state, dm, opt.delta_softplus, [&](const auto& s, auto* h) {
    using V = std::remove_cvref_t<decltype(*h)>;
    constexpr auto block = static_cast<std::size_t>(detail::block_tokens);
    std::vector<V> decay(block * std::size_t(N)), du(block), out(block);
    for (index_t t0 = 0; t0 < dm.L; t0 += C)
      detail::scan_unit_blocked<V, T>(s, t0, std::min(dm.L, t0 + C), N, h, decay, du, out);
  });
}

/// Mamba-1 selective scan in the materialised decay form over the whole sequence (O(T²·D·N)
/// exponentials; for checking and short sequences). Shapes as in recurrent().
template <class T>
void parallel(const exec::parallel& policy, const inputs<T>& in, tensor_view<T, 3> y, tensor_view<T, 3> state,
              options opt = {}) {
  const dims dm = check_args(in, y, state);
  if (dm.L == 0 || dm.D == 0) return;
  detail::for_each_unit_state<T>(policy.threads, in, y, state, dm, opt.delta_softplus, [&](const auto& s, auto* h) {
    using V = std::remove_cvref_t<decltype(*h)>;
    detail::materialised_unit<V, T>(s, dm.L, dm.N, h);
  });
}

}  // namespace seqmix::kernels::ssm::selective_scan
