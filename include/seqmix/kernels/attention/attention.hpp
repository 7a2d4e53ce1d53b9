// Softmax attention op entry point: forward(policy, ...) picks the kernel by the policy type.
#pragma once

#include <type_traits>

#include "../../policy/automatic.hpp"
#include "../../policy/threads.hpp"
#include "chunk.hpp"
#include "parallel.hpp"
#include "recurrent.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

/// Causal softmax attention with grouped KV heads, an optional sliding window / sink (the cache's
/// mask) and a KV-cache prefix (spec/attention.md). Appends k [B,T,Hk,Dk] and v [B,T,Hv,Dv] to
/// `cache`, then o [B,T,Hq,Dv] = softmax(scale · q Kᵀ + mask) V over every cached key, with query
/// t at position cache.length() + t. q [B,T,Hq,Dk]; query head h reads key head h / (Hq/Hk) and
/// value head h / (Hq/Hv). T follows from `cache`; exec::automatic resolves by
/// exec::rules::attention (policy/automatic.hpp).
template <exec::policy P, class S, class T = compute_t<S>>
void forward(const P& policy, std::type_identity_t<tensor_view<const T, 4>> q,
             std::type_identity_t<tensor_view<const T, 4>> k, std::type_identity_t<tensor_view<const T, 4>> v,
             std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  exec::check(policy, "attention");
  const pool_scope scope(policy.pool);
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, q, k, v, o, cache, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, q, k, v, o, cache, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::attention>(policy, {q.extent(1), q.extent(3), v.extent(3)},
                                                [&](const auto& p) { forward(p, q, k, v, o, cache, opt); });
  } else chunk(policy, q, k, v, o, cache, opt);
}

/// Attention of queries whose keys and values are already in the cache (another layer's shared
/// cache, e.g. Hymba's KV reuse, or keys appended with kv_cache::append): q [B,T,Hq,Dk] are the
/// cache's last T positions, length() − T + t; o [B,T,Hq,Dv]. The cache is not modified.
template <exec::policy P, class S, class T = compute_t<S>>
void attend(const P& policy, std::type_identity_t<tensor_view<const T, 4>> q, std::type_identity_t<tensor_view<T, 4>> o,
            kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  exec::check(policy, "attention");
  const pool_scope scope(policy.pool);
  if constexpr (std::same_as<P, exec::recurrent>) recurrent(policy, q, o, cache, opt);
  else if constexpr (std::same_as<P, exec::parallel>) parallel(policy, q, o, cache, opt);
  else if constexpr (std::same_as<P, exec::automatic>) {
    exec::run_automatic<exec::rules::attention>(policy, {q.extent(1), q.extent(3), cache.dims().value_dim},
                                                [&](const auto& p) { attend(p, q, o, cache, opt); });
  } else chunk(policy, q, o, cache, opt);
}

}  // namespace seqmix::kernels::attention
