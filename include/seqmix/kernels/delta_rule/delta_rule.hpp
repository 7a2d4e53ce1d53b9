// Delta-rule op entry points: forward(policy, ...) picks the kernel by the policy type. With a
// gate g it is Gated DeltaNet's rule; without, DeltaNet's.
#pragma once

#include "../../policy/automatic.hpp"
#include "../../policy/threads.hpp"
#include "chunk.hpp"
#include "recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::delta_rule {

namespace detail {

template <exec::policy P, class T>
void dispatch(const P& policy, const problem<T>& p) {
  const pool_scope scope(policy.pool);
  if constexpr (std::same_as<P, exec::recurrent>) recurrent_impl(policy.threads, p);
  else if constexpr (std::same_as<P, exec::parallel>) chunks(policy.threads, p.L, p);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::delta_rule>(policy, {p.L, p.K, p.V}, [&](const auto& r) { dispatch(r, p); });
  } else chunks(policy.threads, P::chunk, p);
}

}  // namespace detail

/// Gated DeltaNet's rule (spec/gated_delta_net.md). q, k: [B,T,H,K] (L2-normalised); v, o:
/// [B,T,HV,V] with HV a multiple of H (value head j uses q/k head j / (HV/H)); g: [B,T,HV] log
/// decay (≤ 0); beta: [B,T,HV]; state [B,HV,K,V] holds S before the sequence and S after it.
/// The element type T follows from q (a tensor or view); exec::automatic resolves by
/// exec::rules::delta_rule (policy/automatic.hpp).
template <exec::policy P, class T_ = void, class Q, class T = common::element_t<T_, Q>>
void forward(const P& policy, const Q& q, common::in_view<T, 4> k, common::in_view<T, 4> v, common::in_view<T, 3> g,
             common::in_view<T, 3> beta, common::out_view<T, 4> o, common::out_view<T, 4> state, options<T> opt = {}) {
  exec::check(policy, "gated_delta_net");
  detail::dispatch(policy, detail::check_args<T>("gated_delta_net", q, k, v, g, beta, o, state, opt));
}

/// DeltaNet's rule (spec/delta_net.md): the same without decay.
template <exec::policy P, class T_ = void, class Q, class T = common::element_t<T_, Q>>
void forward(const P& policy, const Q& q, common::in_view<T, 4> k, common::in_view<T, 4> v, common::in_view<T, 3> beta,
             common::out_view<T, 4> o, common::out_view<T, 4> state, options<T> opt = {}) {
  exec::check(policy, "delta_net");
  detail::dispatch(policy, detail::check_args<T>("delta_net", q, k, v, {}, beta, o, state, opt));
}

}  // namespace seqmix::kernels::delta_rule
