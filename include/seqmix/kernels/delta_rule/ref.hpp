// Delta-rule reference: the plain recurrences of spec/delta_net.md and spec/gated_delta_net.md
// with double accumulation. For tests only.
#pragma once

#include <cmath>
#include <vector>

#include "../common/ref.hpp"
#include "args.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::delta_rule {

namespace detail {

// Per (b, value head j), with q, k of head j / (HV/H) and a = exp(g_t) (1 without a gate):
//   S' = a S;  u = beta (v - S'ᵀ k);  S = S' + k uᵀ;  o = scale · Sᵀ q.
template <class T>
void ref_impl(const problem<T>& p) {
  const index_t K = p.K, V = p.V;
  std::vector<double> S, u(static_cast<std::size_t>(V));
  for (index_t b = 0; b < p.B; ++b)
    for (index_t hv = 0; hv < p.HV; ++hv) {
      const index_t h = p.qk_head(hv);
      common::load_state(p.state, b, hv, S);
      for (index_t t = 0; t < p.L; ++t) {
        const double a = p.gated() ? std::exp(double(p.g(b, t, hv))) : 1.0, beta = p.beta(b, t, hv);
        for (auto& s : S) s *= a;
        for (index_t j = 0; j < V; ++j) {
          double kS = 0;
          for (index_t i = 0; i < K; ++i) kS += double(p.k(b, t, h, i)) * S[i * V + j];
          u[j] = beta * (double(p.v(b, t, hv, j)) - kS);
        }
        for (index_t i = 0; i < K; ++i)
          for (index_t j = 0; j < V; ++j) S[i * V + j] += double(p.k(b, t, h, i)) * u[j];
        common::read_out(p.q, h, p.o, hv, b, t, S, double(p.scale));
      }
      common::store_state(S, p.state, b, hv);
    }
}

}  // namespace detail

/// Gated delta rule. q, k: [B,T,H,K]; v, o: [B,T,HV,V]; g (log decay ≤ 0), beta: [B,T,HV];
/// state: [B,HV,K,V], read as S before the sequence and overwritten with S after it.
template <class T>
void ref(tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v, tensor_view<const T, 3> g,
         tensor_view<const T, 3> beta, tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  detail::ref_impl(detail::check_args<T>("gated_delta_net", q, k, v, g, beta, o, state, opt));
}

/// Delta rule without decay (DeltaNet); shapes as above.
template <class T>
void ref(tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
         tensor_view<const T, 3> beta, tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  detail::ref_impl(detail::check_args<T>("delta_net", q, k, v, {}, beta, o, state, opt));
}

}  // namespace seqmix::kernels::delta_rule
