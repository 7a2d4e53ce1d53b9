// RWKV-7 reference: the plain recurrence of spec/rwkv7.md with double accumulation. For tests only.
#pragma once

#include <cmath>
#include <vector>

#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

/// sa_t = S_{t-1}ᵀ a_t;  S_t = diag(exp(w_t)) S_{t-1} + b_t sa_tᵀ + k_t v_tᵀ;  o_t = S_tᵀ r_t.
/// r, w, k, a, b: [B,T,H,K] (w is the log decay, ≤ 0); v, o: [B,T,H,V]; state: [B,H,K,V], read as
/// S_{-1} and overwritten with S_{T-1}.
template <class T>
void ref(tensor_view<const T, 4> r, tensor_view<const T, 4> w, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
         tensor_view<const T, 4> a, tensor_view<const T, 4> b, tensor_view<T, 4> o, tensor_view<T, 4> state) {
  check_args(r, w, k, v, a, b, o, state);
  const index_t B = r.extent(0), L = r.extent(1), H = r.extent(2), K = r.extent(3), V = v.extent(3);
  std::vector<double> S(static_cast<std::size_t>(K * V)), sa(static_cast<std::size_t>(V));
  for (index_t bi = 0; bi < B; ++bi)
    for (index_t h = 0; h < H; ++h) {
      for (index_t i = 0; i < K; ++i)
        for (index_t j = 0; j < V; ++j) S[i * V + j] = state(bi, h, i, j);
      for (index_t t = 0; t < L; ++t) {
        for (index_t j = 0; j < V; ++j) {
          double acc = 0;
          for (index_t i = 0; i < K; ++i) acc += double(a(bi, t, h, i)) * S[i * V + j];
          sa[j] = acc;
        }
        for (index_t i = 0; i < K; ++i) {
          const double d = std::exp(double(w(bi, t, h, i))), bb = b(bi, t, h, i), kk = k(bi, t, h, i);
          for (index_t j = 0; j < V; ++j) S[i * V + j] = d * S[i * V + j] + bb * sa[j] + kk * double(v(bi, t, h, j));
        }
        for (index_t j = 0; j < V; ++j) {
          double acc = 0;
          for (index_t i = 0; i < K; ++i) acc += double(r(bi, t, h, i)) * S[i * V + j];
          o(bi, t, h, j) = static_cast<T>(acc);
        }
      }
      for (index_t i = 0; i < K; ++i)
        for (index_t j = 0; j < V; ++j) state(bi, h, i, j) = static_cast<T>(S[i * V + j]);
    }
}

}  // namespace seqmix::kernels::rwkv7
