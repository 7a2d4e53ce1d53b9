// Delta-rule op entry points: forward(policy, ...) picks the kernel by the policy type. With a
// gate g it is Gated DeltaNet's rule; without, DeltaNet's.
#pragma once

#include "chunk.hpp"
#include "recurrent.hpp"

namespace seqmix::kernels::delta_rule {

namespace detail {

template <exec::policy P, class T>
void dispatch(const P& policy, const problem<T>& p) {
  if constexpr (std::same_as<P, exec::recurrent>) recurrent_impl(policy.threads, p);
  else if constexpr (std::same_as<P, exec::parallel>) chunks(policy.threads, p.L, p);
  else if constexpr (std::same_as<P, exec::automatic>) {
    // The recurrent kernel does the least arithmetic (3 FMAs per state element and token) and keeps
    // its state tile in L1; it is the fastest at every length measured (docs/delta_rule.md).
    recurrent_impl(policy.threads, p);
  } else chunks(policy.threads, P::chunk, p);
}

}  // namespace detail

/// Gated DeltaNet's rule (spec/gated_delta_net.md). q, k: [B,T,H,K] (L2-normalised); v, o:
/// [B,T,HV,V] with HV a multiple of H (value head j uses q/k head j / (HV/H)); g: [B,T,HV] log
/// decay (≤ 0); beta: [B,T,HV]; state [B,HV,K,V] holds S before the sequence and S after it.
template <exec::policy P, class T>
void forward(const P& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
             tensor_view<const T, 3> g, tensor_view<const T, 3> beta, tensor_view<T, 4> o, tensor_view<T, 4> state,
             options<T> opt = {}) {
  detail::dispatch(policy, detail::check_args<T>("gated_delta_net", q, k, v, g, beta, o, state, opt));
}

/// DeltaNet's rule (spec/delta_net.md): the same without decay.
template <exec::policy P, class T>
void forward(const P& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k, tensor_view<const T, 4> v,
             tensor_view<const T, 3> beta, tensor_view<T, 4> o, tensor_view<T, 4> state, options<T> opt = {}) {
  detail::dispatch(policy, detail::check_args<T>("delta_net", q, k, v, {}, beta, o, state, opt));
}

}  // namespace seqmix::kernels::delta_rule
