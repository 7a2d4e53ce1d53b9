// Differential attention (DIFF Transformer, spec/diff_attn.md) on the softmax-attention kernels:
// the 2H component maps are ordinary attention heads (query head j on key head j / n_rep and value
// head j / (2·n_rep)), combined afterwards as o_h = RMSNorm(O_2h − λ·O_2h+1) ⊙ w · (1 − λ_init).
// Because A·V is linear in A, combining the outputs equals applying (A_2h − λ·A_2h+1) to V.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "attention.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// The learned parameters of differential attention.
template <class T>
struct diff_params {
  tensor_view<const T, 1> lambda_q1, lambda_k1, lambda_q2, lambda_k2;  ///< [d]
  tensor_view<const T, 1> subln;                                       ///< sub-layer norm weight [2d]
  double lambda_init = 0.8;  ///< 0.8 − 0.6·exp(−0.3·depth); scales the output by (1 − lambda_init)
  double eps = 1e-5;

  /// λ = exp(Σ λq1⊙λk1) − exp(Σ λq2⊙λk2) + λ_init (one scalar per layer).
  double lambda() const {
    double a = 0, b = 0;
    for (index_t i = 0; i < lambda_q1.extent(0); ++i)
      a += double(lambda_q1(i)) * double(lambda_k1(i)), b += double(lambda_q2(i)) * double(lambda_k2(i));
    return std::exp(a) - std::exp(b) + lambda_init;
  }
};

/// lambda_init of a layer at `depth` (0-based), as in the paper.
inline double diff_lambda_init(index_t depth) { return 0.8 - 0.6 * std::exp(-0.3 * double(depth)); }

/// q [B,T,2H,d], k [B,T,2Hkv,d], v [B,T,Hkv,2d] (projected and rotated), o [B,T,H,2d]; the cache
/// has 2Hkv key heads of dim d and Hkv value heads of dim 2d, and gets k, v appended. T follows
/// from `cache` (q, k, v and o may be tensors or views).
template <exec::policy P, class T>
void differential(const P& policy, common::in_view<T, 4> q, common::in_view<T, 4> k, common::in_view<T, 4> v,
                  common::out_view<T, 4> o, kv_cache<T>& cache, const diff_params<T>& dp, options<T> opt = {}) {
  const index_t B = q.extent(0), L = q.extent(1), H2 = q.extent(2), d = q.extent(3), Dv = cache.dims().value_dim;
  require(H2 % 2 == 0, "diff_attn", "q needs an even number of component heads, got " + std::to_string(H2));
  const index_t H = H2 / 2;
  check_shape("diff_attn", "o", o.extents(), {B, L, H, Dv});
  require(Dv <= 1 || o.stride(3) == 1, "diff_attn", "o needs unit stride along its last axis");
  check_shape("diff_attn", "subln.weight", dp.subln.extents(), {Dv});
  for (const auto* w : {&dp.lambda_q1, &dp.lambda_k1, &dp.lambda_q2, &dp.lambda_k2})
    check_shape("diff_attn", "lambda vector", w->extents(), {d});
  tensor<T, 4> comp({B, L, H2, Dv});
  forward<P, T>(policy, q, k, v, comp, cache, opt);

  const T lambda = T(dp.lambda()), out_scale = T(1 - dp.lambda_init), eps = T(dp.eps);
  std::vector<T> w(static_cast<std::size_t>(Dv));
  for (index_t e = 0; e < Dv; ++e) w[std::size_t(e)] = dp.subln(e) * out_scale;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t h = 0; h < H; ++h) {
        T* out = o.ptr(b, t, h);
        simd::transform(comp.view().ptr(b, t, 2 * h), comp.view().ptr(b, t, 2 * h + 1), out, Dv,
                        [lambda](auto a, auto c) { return a - c * lambda; });
        const T r = T(1) / std::sqrt(simd::dot(out, out, Dv) / T(Dv) + eps);
        simd::transform(out, w.data(), out, Dv, [r](auto x, auto g) { return x * r * g; });
      }
}

}  // namespace seqmix::kernels::attention
