// GLA op entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include "../../policy/automatic.hpp"
#include "../../policy/threads.hpp"
#include "chunk.hpp"
#include "recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::gla {

/// Gated linear attention (spec/gla.md). q, k, g: [B,T,H,K]; v, o: [B,T,H,V]; g is the log decay
/// (≤ 0) per key channel; state [B,H,K,V] holds S before the sequence and S after it on return.
/// The element type T follows from q (a tensor or view); exec::automatic resolves by
/// exec::rules::gla (policy/automatic.hpp).
template <exec::policy P, class T_ = void, class Q, class T = common::element_t<T_, Q>>
void forward(const P& policy, const Q& q, common::in_view<T, 4> k, common::in_view<T, 4> v, common::in_view<T, 4> g,
             common::out_view<T, 4> o, common::out_view<T, 4> state, options<T> opt = {}) {
  exec::check(policy, "gla");
  const pool_scope scope(policy.pool);
  const tensor_view<const T, 4> qv = q;
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, qv, k, v, g, o, state, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, qv, k, v, g, o, state, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::gla>(policy, {qv.extent(1), qv.extent(3), v.extent(3)},
                                          [&](const auto& p) { forward(p, qv, k, v, g, o, state, opt); });
  } else chunk(policy, qv, k, v, g, o, state, opt);
}

}  // namespace seqmix::kernels::gla
