// Softmax attention, chunkwise policy: blocks of C query tokens (times the query heads of a key
// head) walk the cache in 64-key tiles with an online softmax (flash attention); no T x T matrix.
#pragma once

#include <type_traits>

#include "../../policy/execution.hpp"
#include "flash.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// Appends k, v to the cache and attends q to everything the cache then holds, C query tokens at a
/// time. q [B,T,Hq,Dk], k [B,T,Hk,Dk], v [B,T,Hv,Dv], o [B,T,Hq,Dv]; the mask is the cache's.
template <index_t C, class S, class T = compute_t<S>>
void chunk(const exec::chunkwise<C>& policy, std::type_identity_t<tensor_view<const T, 4>> q,
           std::type_identity_t<tensor_view<const T, 4>> k, std::type_identity_t<tensor_view<const T, 4>> v,
           std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  detail::flash_run<T>("attention", policy.threads, q.extent(1), C, q, &k, &v, o, cache, opt);
}

/// Attend-only form (see attend()): q are the cache's last T positions.
template <index_t C, class S, class T = compute_t<S>>
void chunk(const exec::chunkwise<C>& policy, std::type_identity_t<tensor_view<const T, 4>> q,
           std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  detail::flash_run<T>("attention", policy.threads, q.extent(1), C, q, nullptr, nullptr, o, cache, opt);
}

}  // namespace seqmix::kernels::attention
