// GLA op entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include "chunk.hpp"
#include "recurrent.hpp"

namespace seqmix::kernels::gla {

/// Gated linear attention (spec/gla.md). q, k, g: [B,T,H,K]; v, o: [B,T,H,V]; g is the log decay
/// (≤ 0) per key channel; state [B,H,K,V] holds S before the sequence and S after it on return.
template <exec::policy P, class T>
void forward(const P& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
             tensor_view<const T, 4> g, tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, q, k, v, g, o, state, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, q, k, v, g, o, state, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    if (q.extent(1) < policy.recurrent_below) recurrent(exec::recurrent{policy.threads}, q, k, v, g, o, state, opt);
    else chunk(exec::chunkwise<64>{policy.threads}, q, k, v, g, o, state, opt);
  } else chunk(policy, q, k, v, g, o, state, opt);
}

}  // namespace seqmix::kernels::gla
