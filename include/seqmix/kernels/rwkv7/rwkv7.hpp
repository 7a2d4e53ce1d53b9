// RWKV-7 op entry point: forward(policy, inputs, o, state) picks the kernel by the policy type.
#pragma once

#include <type_traits>

#include "../../policy/automatic.hpp"
#include "../../policy/threads.hpp"
#include "args.hpp"
#include "chunk.hpp"
#include "recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::rwkv7 {

/// RWKV-7 generalized delta rule (spec/rwkv7.md): per head
///   S_t = diag(exp(w_t)) S_{t-1} + b_t (S_{t-1}ᵀ a_t)ᵀ + k_t v_tᵀ,  o_t = S_tᵀ r_t.
/// in.r, w, k, a, b: [B,T,H,K] (w is the log decay, ≤ 0); in.v, o: [B,T,H,V]; state [B,H,K,V]
/// holds S before the sequence and S after it on return. T follows from `in`; exec::automatic
/// resolves by exec::rules::rwkv7 (policy/automatic.hpp).
template <exec::policy P, class T>
void forward(const P& policy, const inputs<T>& in, std::type_identity_t<tensor_view<T, 4>> o,
             std::type_identity_t<tensor_view<T, 4>> state) {
  exec::check(policy, "rwkv7");
  const pool_scope scope(policy.pool);
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, in, o, state);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, in, o, state);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::rwkv7>(policy, {in.r.extent(1), in.r.extent(3), in.v.extent(3)},
                                            [&](const auto& p) { forward(p, in, o, state); });
  } else chunk(policy, in, o, state);
}

}  // namespace seqmix::kernels::rwkv7
