// Mamba-1 selective scan entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include <type_traits>

#include "../../policy/automatic.hpp"
#include "../../policy/threads.hpp"
#include "selective_scan_chunk.hpp"
#include "selective_scan_recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::selective_scan {

/// Mamba-1 selective scan (spec/mamba.md; see inputs<T>). y [B,T,D]; state [B,D,N] holds h before
/// the sequence and h after it on return. T follows from `in`; exec::automatic resolves by
/// exec::rules::selective_scan (policy/automatic.hpp).
template <exec::policy P, class T>
void forward(const P& policy, const inputs<T>& in, std::type_identity_t<tensor_view<T, 3>> y,
             std::type_identity_t<tensor_view<T, 3>> state, options opt = {}) {
  exec::check(policy, "selective_scan");
  const pool_scope scope(policy.pool);
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::selective_scan>(policy, {in.u.extent(1), in.A.extent(1), 1},
                                                     [&](const auto& p) { forward(p, in, y, state, opt); });
  } else chunk(policy, in, y, state, opt);
}

}  // namespace seqmix::kernels::ssm::selective_scan
