// Hymba op (spec/hymba.md, "op"): the head combination of the hybrid-head block
//   y = (RMSNorm₁(attn) + RMSNorm₂(ssm)) / 2,   o = y W_outᵀ + b,
// RMSNorm(x) = x · rsqrt(mean(x²) + eps) · w. One pass over each row before the projection: the
// first sweep sums the squares of both branches together (the two reductions fused), the second
// reads the row again from L1 (2·I floats, 16 KiB at I = 2048) and writes y. A thread combines its
// rows and then projects them (simd::gemm_nt for a prefill, dot products for a few rows), so the
// rows it just wrote are still in its cache. The same for every policy; policy.threads splits rows.
#pragma once

#include <cmath>

#include "../../policy/execution.hpp"
#include "../../policy/threads.hpp"
#include "../../simd/gemm_nt.hpp"
#include "../../simd/vec.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::hymba {

namespace detail {

/// One row: y = (a·r₁ ⊙ w₁ + s·r₂ ⊙ w₂) / 2 over I features (y may alias a or s).
template <class T>
void combine_row(const T* a, const T* s, const T* w1, const T* w2, T* y, index_t I, T eps) {
  using V = simd::batch<T>;
  constexpr index_t L = simd::lanes<T>;
  V sa0(T(0)), sa1(T(0)), ss0(T(0)), ss1(T(0));
  index_t i = 0;
  for (; i + 2 * L <= I; i += 2 * L) {
    const V a0 = simd::load(a + i), a1 = simd::load(a + i + L), s0 = simd::load(s + i), s1 = simd::load(s + i + L);
    sa0 = simd::fma(a0, a0, sa0), sa1 = simd::fma(a1, a1, sa1);
    ss0 = simd::fma(s0, s0, ss0), ss1 = simd::fma(s1, s1, ss1);
  }
  for (; i + L <= I; i += L) {
    const V a0 = simd::load(a + i), s0 = simd::load(s + i);
    sa0 = simd::fma(a0, a0, sa0), ss0 = simd::fma(s0, s0, ss0);
  }
  T qa = simd::reduce_add(V(sa0 + sa1)), qs = simd::reduce_add(V(ss0 + ss1));
  for (; i < I; ++i) qa += a[i] * a[i], qs += s[i] * s[i];
  // The halving folded into the two row scales.
  const T n = T(I > 0 ? I : 1), ra = T(0.5) / std::sqrt(qa / n + eps), rs = T(0.5) / std::sqrt(qs / n + eps);
  const V vra(ra), vrs(rs);
  i = 0;
  for (; i + L <= I; i += L)
    simd::store(y + i, simd::fma(V(simd::load(a + i) * vra), simd::load(w1 + i),
                                 V(simd::load(s + i) * vrs * simd::load(w2 + i))));
  for (; i < I; ++i) y[i] = simd::fma(a[i] * ra, w1[i], s[i] * rs * w2[i]);
}

/// o rows [r0, r1) = y rows · W_outᵀ + b (y, o as [N, I] / [N, C] matrices).
template <class T>
void project(tensor_view<const T, 2> y, const inputs<T>& in, tensor_view<T, 2> o, index_t r0, index_t r1) {
  const index_t n = r1 - r0, C = in.w_out.extent(0), I = in.w_out.extent(1);
  if (n >= 64 && C >= 64 && I >= 64) {
    simd::gemm_nt<T>(y.subrange(0, r0, n), in.w_out, o.subrange(0, r0, n));
  } else {
    for (index_t r = r0; r < r1; ++r)
      for (index_t c = 0; c < C; ++c) o(r, c) = simd::dot(y.ptr(r, 0), in.w_out.ptr(c, 0), I);
  }
  if (in.bias.data())
    for (index_t r = r0; r < r1; ++r) {
      T* row = o.ptr(r, 0);
      for (index_t c = 0; c < C; ++c) row[c] += in.bias(c);
    }
}

}  // namespace detail

/// y [B,T,I] = (RMSNorm₁(attn) + RMSNorm₂(ssm)) / 2 for attn, ssm [B,T,I], norm weights [I]
/// (in.w_out and in.bias are not read). y may alias attn or ssm. The same for every policy.
template <exec::policy P, class T>
void combine(const P& policy, const inputs<T>& in, std::type_identity_t<tensor_view<T, 3>> y, options<T> opt = {}) {
  exec::check(policy, "hymba::combine");
  const pool_scope scope(policy.pool);
  const index_t N = check_args<T>("hymba::combine", in, &y, nullptr), L = in.attn.extent(1), I = in.attn.extent(2);
  if (N == 0) return;
  parallel_ranges(threads_for_work(policy.threads, double(N) * double(I), 1 << 15), N, [&](index_t b0, index_t b1) {
    for (index_t n = b0; n < b1; ++n) {
      const index_t b = n / L, t = n % L;
      detail::combine_row(in.attn.ptr(b, t), in.ssm.ptr(b, t), in.norm1.data(), in.norm2.data(), y.ptr(b, t), I, opt.eps);
    }
  });
}

/// The op of spec/hymba.md: y [B,T,I] = (RMSNorm₁(attn) + RMSNorm₂(ssm)) / 2 and o [B,T,C] =
/// y W_outᵀ + b. y is the combination before the projection (it may alias attn or ssm; a layer
/// passes one of its branch buffers); y and o must be contiguous. The same for every policy;
/// policy.threads splits the rows, each thread combining then projecting its own.
template <exec::policy P, class T>
void forward(const P& policy, const inputs<T>& in, std::type_identity_t<tensor_view<T, 3>> y,
             std::type_identity_t<tensor_view<T, 3>> o, options<T> opt = {}) {
  exec::check(policy, "hymba");
  const pool_scope scope(policy.pool);
  const index_t N = check_args("hymba", in, &y, &o), L = in.attn.extent(1), I = in.attn.extent(2),
                C = in.w_out.extent(0);
  require(y.is_contiguous() && o.is_contiguous(), "hymba", "y and o must be contiguous");
  if (N == 0) return;
  const tensor_view<const T, 2> y2(y.data(), {N, I}, {I, 1});
  const tensor_view<T, 2> o2(o.data(), {N, C}, {C, 1});
  // At least 64 rows a thread (the packed product's tile), as nn::linear splits.
  const int th = N >= 128 ? policy.threads : 1;
  parallel_ranges(th, N, [&](index_t r0, index_t r1) {
    for (index_t n = r0; n < r1; ++n) {
      const index_t b = n / L, t = n % L;
      detail::combine_row(in.attn.ptr(b, t), in.ssm.ptr(b, t), in.norm1.data(), in.norm2.data(), y.ptr(b, t), I, opt.eps);
    }
    detail::project(y2, in, o2, r0, r1);
  });
}

}  // namespace seqmix::kernels::hymba
