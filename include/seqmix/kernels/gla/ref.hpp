// GLA reference: the plain recurrence of spec/gla.md with double accumulation. For tests only.
#pragma once

#include <cmath>
#include <vector>

#include "../common/ref.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::gla {

/// S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ ;  o_t = scale · q_tᵀ S_t.
/// q, k, g: [B,T,H,K]; v, o: [B,T,H,V]; state: [B,H,K,V], read as S_{-1} and overwritten with S_{T-1}.
template <class T>
void ref(tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
         tensor_view<const T, 4> g, tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  const double scale = check_args(q, k, v, g, o, state, opt);
  const index_t B = q.extent(0), L = q.extent(1), H = q.extent(2), K = q.extent(3), V = v.extent(3);
  std::vector<double> S;
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      common::load_state(state, b, h, S);
      for (index_t t = 0; t < L; ++t) {
        for (index_t i = 0; i < K; ++i) {
          const double decay = std::exp(double(g(b, t, h, i)));
          for (index_t j = 0; j < V; ++j)
            S[i * V + j] = decay * S[i * V + j] + double(k(b, t, h, i)) * double(v(b, t, h, j));
        }
        common::read_out(q, h, o, h, b, t, S, scale);
      }
      common::store_state(S, state, b, h);
    }
}

}  // namespace seqmix::kernels::gla
