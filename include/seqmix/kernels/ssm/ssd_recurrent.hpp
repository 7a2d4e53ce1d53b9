// Mamba-2 SSD scan, recurrent policy: token by token on the [P,N] state of each head, used in
// place, so a decode step reads and writes the state exactly once. Each state row p is updated as
// vectors over N (h = a·h + (dt·x_p)·B) and leaves the vector C ⊙ h; the sums of `lanes` rows
// come out of one parallel horizontal add.
#pragma once

#include <algorithm>
#include <cmath>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "common.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::ssd {

namespace detail {

using ssm::detail::present;
using ssm::detail::time_step;

/// The time step of head h at (b, t) after bias, activation and clamp.
template <class T>
inline T step_size(const inputs<T>& in, const options& opt, index_t b, index_t t, index_t h) {
  const T raw = in.dt(b, t, h) + (present(in.dt_bias) ? in.dt_bias(h) : T(0));
  return std::min(std::max(time_step(raw, opt.dt_softplus), T(opt.dt_min)), T(opt.dt_max));
}

// Rows [p0, p0 + rows) of the state for one token when a row is K whole vectors: B and C stay in
// registers for all the rows (2K vectors), so a row element costs one load and one store of the
// state and no reloads of B and C. The C ⊙ h sums go to `sums`.
template <index_t K, class T>
inline void rows_in_registers(T* S, index_t lds, index_t p0, index_t rows, const T* Bt, const T* Ct, const T* x, T dt,
                              T a, simd::row_sums<T>& sums) {
  using V = simd::batch<T>;
  constexpr index_t W = simd::lanes<T>;
  V bv[K], cv[K];
  SEQMIX_UNROLL for (index_t k = 0; k < K; ++k) bv[k] = simd::load(Bt + k * W), cv[k] = simd::load(Ct + k * W);
  const V av(a);
  for (index_t r = 0; r < rows; ++r) {
    T* row = S + (p0 + r) * lds;
    const V coef(dt * x[p0 + r]);
    V acc[2] = {V(T(0)), V(T(0))};  // two chains: half the latency of one
    SEQMIX_UNROLL for (index_t k = 0; k < K; ++k) {
      const V h = simd::fma(av, simd::load(row + k * W), coef * bv[k]);
      simd::store(row + k * W, h);
      acc[k % 2] = simd::fma(h, cv[k], acc[k % 2]);
    }
    sums.put(r, acc[0] + acc[1]);
  }
}

// Tokens [t0, t1) of head h of batch element b on its state S [P,N] (row stride lds).
template <class T>
void head_tokens(const inputs<T>& in, const options& opt, tensor_view<T, 4> y, index_t b, index_t h, index_t g,
                 index_t t0, index_t t1, index_t P, index_t N, T* S, index_t lds) {
  using V = simd::batch<T>;
  constexpr index_t W = simd::lanes<T>;
  const index_t NV = N / W * W;  // vectorised part of a row
  const T A = in.A(h), skip = present(in.D) ? in.D(h) : T(0);
  simd::row_sums<T> sums;
  alignas(64) T tails[W], xs[W], res[W];
  const bool ragged = NV < N;  // a scalar tail of each row
  for (index_t t = t0; t < t1; ++t) {
    const T dt = step_size(in, opt, b, t, h), a = std::exp(dt * A);
    const T* x = in.x.ptr(b, t, h);
    const T* Bt = in.B.ptr(b, t, g);
    const T* Ct = in.C.ptr(b, t, g);
    T* out = y.ptr(b, t, h);
    const V av(a);
    for (index_t p0 = 0; p0 < P; p0 += W) {
      const index_t rows = std::min(W, P - p0);
      // Rows of 4 or 8 vectors (N = 64, 128 with AVX-512): B and C in registers if they fit.
      constexpr bool wide = sizeof(V) >= 64;
      if (!ragged && NV == 8 * W && wide) rows_in_registers<8>(S, lds, p0, rows, Bt, Ct, x, dt, a, sums);
      else if (!ragged && NV == 4 * W) rows_in_registers<4>(S, lds, p0, rows, Bt, Ct, x, dt, a, sums);
      else
      for (index_t r = 0; r < rows; ++r) {
        T* row = S + (p0 + r) * lds;
        const T coef = dt * x[p0 + r];
        const V cv(coef);
        V acc0(T(0)), acc1(T(0));
        index_t n = 0;
        for (; n + 2 * W <= NV; n += 2 * W) {
          const V h0 = simd::fma(av, simd::load(row + n), cv * simd::load(Bt + n));
          const V h1 = simd::fma(av, simd::load(row + n + W), cv * simd::load(Bt + n + W));
          simd::store(row + n, h0), simd::store(row + n + W, h1);
          acc0 = simd::fma(h0, simd::load(Ct + n), acc0);
          acc1 = simd::fma(h1, simd::load(Ct + n + W), acc1);
        }
        for (; n < NV; n += W) {
          const V h0 = simd::fma(av, simd::load(row + n), cv * simd::load(Bt + n));
          simd::store(row + n, h0);
          acc0 = simd::fma(h0, simd::load(Ct + n), acc0);
        }
        if (ragged) {
          T tail = 0;
          for (; n < N; ++n) {
            row[n] = a * row[n] + coef * Bt[n];
            tail += row[n] * Ct[n];
          }
          tails[r] = tail;
        }
        sums.put(r, acc0 + acc1);
      }
      for (index_t r = rows; r < W; ++r) sums.put(r, V(T(0))), tails[r] = T(0);
      V total = sums.sums();
      if (ragged) total += simd::load(tails);
      if (rows == W) {
        simd::store(out + p0, simd::fma(V(skip), simd::load(x + p0), total));
      } else {
        for (index_t r = 0; r < W; ++r) xs[r] = r < rows ? x[p0 + r] : T(0);
        simd::store(res, simd::fma(V(skip), simd::load(xs), total));
        std::copy_n(res, rows, out + p0);
      }
    }
  }
}

}  // namespace detail

/// Mamba-2 SSD scan, token by token (see inputs<T>). y [B,T,H,P]; state [B,H,P,N] holds h before
/// the sequence and h after it on return.
template <class T>
void recurrent(const exec::recurrent& policy, const inputs<T>& in, tensor_view<T, 4> y, tensor_view<T, 4> state,
               options opt = {}) {
  const dims dm = check_args(in, y, state);
  if (dm.L == 0) return;
  const index_t heads_per_group = dm.H / dm.G;
  // A second thread pays from about 2^17 state updates (threads_for_work): a decode step of H24 P64
  // N128 (1.5·2^17) ran 1.2x faster on two threads.
  const int threads = threads_for_work(policy.threads, double(dm.B) * dm.L * dm.H * dm.P * dm.N);
  parallel_for(threads, dm.B * dm.H, [&](index_t bh) {
    const index_t b = bh / dm.H, h = bh % dm.H;
    detail::head_tokens<T>(in, opt, y, b, h, h / heads_per_group, 0, dm.L, dm.P, dm.N, state.ptr(b, h),
                           state.stride(2));
  });
}

}  // namespace seqmix::kernels::ssm::ssd
