// RWKV-7 op entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include "chunk.hpp"
#include "recurrent.hpp"

namespace seqmix::kernels::rwkv7 {

/// RWKV-7 generalized delta rule (spec/rwkv7.md): per head
///   S_t = diag(exp(w_t)) S_{t-1} + b_t (S_{t-1}ᵀ a_t)ᵀ + k_t v_tᵀ,  o_t = S_tᵀ r_t.
/// r, w, k, a, b: [B,T,H,K] (w is the log decay, ≤ 0); v, o: [B,T,H,V]; state [B,H,K,V] holds S
/// before the sequence and S after it on return. exec::automatic runs the recurrent kernel, the
/// fastest at every length measured (docs/rwkv7.md).
template <exec::policy P, class T>
void forward(const P& policy, tensor_view<const T, 4> r, tensor_view<const T, 4> w, tensor_view<const T, 4> k,
             tensor_view<const T, 4> v, tensor_view<const T, 4> a, tensor_view<const T, 4> b, tensor_view<T, 4> o,
             tensor_view<T, 4> state) {
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, r, w, k, v, a, b, o, state);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, r, w, k, v, a, b, o, state);
  else if constexpr (std::same_as<P, exec::automatic>) recurrent(exec::recurrent{policy.threads}, r, w, k, v, a, b, o, state);
  else chunk(policy, r, w, k, v, a, b, o, state);
}

}  // namespace seqmix::kernels::rwkv7
