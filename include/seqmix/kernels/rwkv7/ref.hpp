// RWKV-7 reference: the plain recurrence of spec/rwkv7.md with double accumulation. For tests only.
#pragma once

#include <cmath>
#include <type_traits>
#include <vector>

#include "../common/ref.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

/// sa_t = S_{t-1}ᵀ a_t;  S_t = diag(exp(w_t)) S_{t-1} + b_t sa_tᵀ + k_t v_tᵀ;  o_t = S_tᵀ r_t.
/// in.r, w, k, a, b: [B,T,H,K] (w is the log decay, ≤ 0); in.v, o: [B,T,H,V]; state: [B,H,K,V],
/// read as S_{-1} and overwritten with S_{T-1}.
template <class T>
void ref(const inputs<T>& in, std::type_identity_t<tensor_view<T, 4>> o, std::type_identity_t<tensor_view<T, 4>> state) {
  check_args(in, o, state);
  const auto &r = in.r, &w = in.w, &k = in.k, &v = in.v, &a = in.a, &b = in.b;
  const index_t B = r.extent(0), L = r.extent(1), H = r.extent(2), K = r.extent(3), V = v.extent(3);
  std::vector<double> S, sa(static_cast<std::size_t>(V));
  for (index_t bi = 0; bi < B; ++bi)
    for (index_t h = 0; h < H; ++h) {
      common::load_state(state, bi, h, S);
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
        common::read_out(r, h, o, h, bi, t, S, 1.0);
      }
      common::store_state(S, state, bi, h);
    }
}

}  // namespace seqmix::kernels::rwkv7
