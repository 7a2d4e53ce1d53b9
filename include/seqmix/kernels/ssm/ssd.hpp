// Mamba-2 SSD entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include <type_traits>

#include "../../policy/automatic.hpp"
#include "../../policy/threads.hpp"
#include "ssd_chunk.hpp"
#include "ssd_recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::ssm::ssd {

/// Mamba-2 SSD scan (spec/mamba2.md; see inputs<T>). y [B,T,H,P]; state [B,H,P,N] holds h before
/// the sequence and h after it on return. T follows from `in`; exec::automatic resolves by
/// exec::rules::ssd (policy/automatic.hpp).
template <exec::policy P, class T>
void forward(const P& policy, const inputs<T>& in, std::type_identity_t<tensor_view<T, 4>> y,
             std::type_identity_t<tensor_view<T, 4>> state, options opt = {}) {
  exec::check(policy, "ssd");
  const pool_scope scope(policy.pool);
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, in, y, state, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::ssd>(policy, {in.x.extent(1), in.B.extent(3), in.x.extent(3)},
                                          [&](const auto& p) { forward(p, in, y, state, opt); });
  } else chunk(policy, in, y, state, opt);
}

}  // namespace seqmix::kernels::ssm::ssd
