// Attention references: masked softmax attention and differential attention exactly as in
// spec/attention.md and spec/diff_attn.md, with double accumulation. For tests only.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// o[t,h] = Σ_j softmax_j(scale · q[t,h]·k[j,kh]) · v[j,vh] over the keys j that query t sees.
/// q [B,T,Hq,Dk]; k [B,S,Hk,Dk] and v [B,S,Hv,Dv] hold every key (earlier cache first, then the
/// T new ones), so query t sits at position S - T + t; o [B,T,Hq,Dv].
template <class T>
void ref(tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v, tensor_view<T, 4> o,
         options<T> opt = {}, mask m = {}) {
  const index_t B = q.extent(0), L = q.extent(1), Dk = q.extent(3), S = k.extent(1), Dv = v.extent(3);
  const head_map hm{q.extent(2), k.extent(2), v.extent(2)};
  hm.check("attention");
  check_shape("attention", "k", k.extents(), {B, S, hm.k, Dk});
  check_shape("attention", "v", v.extents(), {B, S, hm.v, Dv});
  check_shape("attention", "o", o.extents(), {B, L, hm.q, Dv});
  require(S >= L, "attention", "keys must include the queries' own");
  const double scale = scale_of(opt, Dk);
  std::vector<double> s(static_cast<std::size_t>(S));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t h = 0; h < hm.q; ++h) {
        const index_t p = S - L + t, kh = hm.key_head(h), vh = hm.value_head(h);
        double top = -std::numeric_limits<double>::infinity();
        for (index_t j = 0; j < S; ++j) {
          double acc = 0;
          for (index_t d = 0; d < Dk; ++d) acc += double(q(b, t, h, d)) * double(k(b, j, kh, d));
          s[j] = m.sees(p, j) ? scale * acc : -std::numeric_limits<double>::infinity();
          top = std::max(top, s[j]);
        }
        double sum = 0;
        for (index_t j = 0; j < S; ++j) sum += (s[j] = std::exp(s[j] - top));
        for (index_t e = 0; e < Dv; ++e) {
          double acc = 0;
          for (index_t j = 0; j < S; ++j) acc += s[j] * double(v(b, j, vh, e));
          o(b, t, h, e) = static_cast<T>(acc / sum);
        }
      }
}

/// λ = exp(Σ λq1⊙λk1) − exp(Σ λq2⊙λk2) + λ_init (spec/diff_attn.md step 3), in double.
template <class T>
double diff_lambda(tensor_view<const T, 1> q1, tensor_view<const T, 1> k1, tensor_view<const T, 1> q2,
                   tensor_view<const T, 1> k2, double lambda_init) {
  double a = 0, b = 0;
  for (index_t i = 0; i < q1.extent(0); ++i) a += double(q1(i)) * double(k1(i)), b += double(q2(i)) * double(k2(i));
  return std::exp(a) - std::exp(b) + lambda_init;
}

/// Differential attention: q [B,T,2H,d], k [B,S,2Hkv,d], v [B,S,Hkv,2d] (all keys, cache first),
/// subln [2d]; o [B,T,H,2d] = RMSNorm(A_2h·V − λ·A_2h+1·V) ⊙ subln · (1 − λ_init), where A_j is
/// the causal softmax map of component head j on key head j / n_rep.
template <class T>
void diff_ref(tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
              tensor_view<const T, 1> subln, tensor_view<T, 4> o, double lambda, double lambda_init, double eps,
              options<T> opt = {}) {
  const index_t B = q.extent(0), L = q.extent(1), H2 = q.extent(2), S = k.extent(1), Dv = v.extent(3);
  const index_t H = H2 / 2, Dk = q.extent(3);
  require(H2 % 2 == 0, "diff_attn", "q needs an even number of component heads");
  check_shape("diff_attn", "o", o.extents(), {B, L, H, Dv});
  check_shape("diff_attn", "subln.weight", subln.extents(), {Dv});
  const double scale = scale_of(opt, Dk);
  const head_map hm{H2, k.extent(2), v.extent(2)};
  hm.check("diff_attn");
  std::vector<double> s(static_cast<std::size_t>(S)), w(static_cast<std::size_t>(S)), acc(static_cast<std::size_t>(Dv));
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < L; ++t)
      for (index_t h = 0; h < H; ++h) {
        const index_t p = S - L + t;
        std::fill(w.begin(), w.end(), 0.0);
        for (index_t c = 0; c < 2; ++c) {  // the two component maps 2h, 2h+1
          const index_t j_head = 2 * h + c, kh = hm.key_head(j_head);
          double top = -std::numeric_limits<double>::infinity();
          for (index_t j = 0; j < S; ++j) {
            double a = 0;
            for (index_t d = 0; d < Dk; ++d) a += double(q(b, t, j_head, d)) * double(k(b, j, kh, d));
            s[j] = j <= p ? scale * a : -std::numeric_limits<double>::infinity();
            top = std::max(top, s[j]);
          }
          double sum = 0;
          for (index_t j = 0; j < S; ++j) sum += (s[j] = std::exp(s[j] - top));
          for (index_t j = 0; j < S; ++j) w[j] += (c == 0 ? 1.0 : -lambda) * s[j] / sum;
        }
        const index_t vh = hm.value_head(2 * h);
        double ms = 0;
        for (index_t e = 0; e < Dv; ++e) {
          acc[e] = 0;
          for (index_t j = 0; j < S; ++j) acc[e] += w[j] * double(v(b, j, vh, e));
          ms += acc[e] * acc[e];
        }
        const double r = 1 / std::sqrt(ms / double(Dv) + eps);
        for (index_t e = 0; e < Dv; ++e) o(b, t, h, e) = static_cast<T>(acc[e] * r * double(subln(e)) * (1 - lambda_init));
      }
}

}  // namespace seqmix::kernels::attention
