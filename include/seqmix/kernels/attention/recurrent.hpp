// Softmax attention, recurrent policy: one token at a time, appended to the cache and then attended
// (its query heads together) against everything the cache holds. The decode path.
#pragma once

#include "../../policy/execution.hpp"
#include "flash.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// Token by token: append k_t, v_t, attend q_t. Shapes as in chunk().
template <class T>
void recurrent(const exec::recurrent& policy, tensor_view<const T, 4> q, tensor_view<const T, 4> k,
               tensor_view<const T, 4> v, tensor_view<T, 4> o, kv_cache<T>& cache, options<T> opt = {}) {
  detail::flash_run<T>("attention", policy.threads, 1, 1, q, &k, &v, o, cache, opt);
}

/// Attend-only form (see attend()): q are the cache's last T positions, one query at a time.
template <class T>
void recurrent(const exec::recurrent& policy, tensor_view<const T, 4> q, tensor_view<T, 4> o, kv_cache<T>& cache,
               options<T> opt = {}) {
  detail::flash_run<T>("attention", policy.threads, 1, 1, q, nullptr, nullptr, o, cache, opt);
}

}  // namespace seqmix::kernels::attention
