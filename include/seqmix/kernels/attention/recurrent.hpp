// Softmax attention, recurrent policy: one token at a time, appended to the cache and then attended
// (its query heads together) against everything the cache holds. The decode path.
#pragma once

#include <type_traits>

#include "../../policy/execution.hpp"
#include "flash.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// Token by token: append k_t, v_t, attend q_t. Shapes as in chunk().
template <class S, class T = compute_t<S>>
void recurrent(const exec::recurrent& policy, std::type_identity_t<tensor_view<const T, 4>> q,
               std::type_identity_t<tensor_view<const T, 4>> k, std::type_identity_t<tensor_view<const T, 4>> v,
               std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  detail::flash_run<T>("attention", policy.threads, 1, 1, q, &k, &v, o, cache, opt);
}

/// Attend-only form (see attend()): q are the cache's last T positions, one query at a time.
template <class S, class T = compute_t<S>>
void recurrent(const exec::recurrent& policy, std::type_identity_t<tensor_view<const T, 4>> q,
               std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  detail::flash_run<T>("attention", policy.threads, 1, 1, q, nullptr, nullptr, o, cache, opt);
}

}  // namespace seqmix::kernels::attention
