// The frame every attention policy shares: argument checks, the split into independent tasks (one
// per batch row and value head, each owning the cache rows it writes) and the append-then-attend
// steps a ring-buffer cache needs.
#pragma once

#include <algorithm>
#include <vector>

#include "../../policy/threads.hpp"
#include "cache.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

namespace detail {

/// What one task attends: batch row b, the key heads [kh0, kh0 + nk) that share value head vh,
/// and the query tokens [t0, t0 + n) of this call, whose absolute positions are base + t.
struct task_step {
  index_t b, vh, kh0, nk, t0, n, base, len;  // len: cache length the step attends (base + t0 + n)
};

/// Validates q [B,T,Hq,Dk], o [B,T,Hq,Dv] and, when given, the new keys k [B,T,Hk,Dk] and values
/// v [B,T,Hv,Dv] against the cache. Without k and v the queries are the cache's last T positions.
template <class T, class S>
head_map check_args(const char* who, const tensor_view<const T, 4>& q, const tensor_view<const T, 4>* k,
                    const tensor_view<const T, 4>* v, const tensor_view<T, 4>& o, const kv_cache<S>& cache) {
  const auto& s = cache.dims();
  const index_t B = q.extent(0), L = q.extent(1);
  const head_map hm{q.extent(2), s.key_heads, s.value_heads};
  hm.check(who);
  check_shape(who, "q", q.extents(), {s.batch, L, hm.q, s.key_dim});
  check_shape(who, "o", o.extents(), {B, L, hm.q, s.value_dim});
  require((s.key_dim <= 1 || q.stride(3) == 1) && (s.value_dim <= 1 || o.stride(3) == 1), who,
          "q and o need unit stride along their last axis");
  if (k) {
    cache.check_rows(who, *k, *v, L);
    cache.check_room(who, L);
  } else {
    require(L <= cache.length(), who,
            "attending " + std::to_string(L) + " queries needs as many cached positions, the cache holds " +
                std::to_string(cache.length()));
    require(!cache.is_ring() || cache.holds_windows_of(L), who,
            "a ring-buffer cache of step " + std::to_string(cache.step()) + " no longer holds the keys of its last " +
                std::to_string(L) + " queries (kv_cache::set_step makes room for longer calls)");
  }
  return hm;
}

/// Splits the call into tasks (b, vh) over `threads`. With new keys and values, each task walks
/// the L tokens in steps of at most `step` (the cache's step for a ring buffer, else all of them),
/// writes its heads' keys and values for the step into the cache, then calls
/// attend(workspace, task_step), and the tokens are committed at the end. Without them the
/// queries are the cache's last L positions and are attended in one step. The workspace is made
/// once per task by make_workspace().
template <class T, class S, class MakeWorkspace, class Attend>
void run_tasks(int threads, index_t step, const head_map& hm, index_t B, index_t L, const tensor_view<const T, 4>* k,
               const tensor_view<const T, 4>* v, kv_cache<S>& cache, MakeWorkspace&& make_workspace,
               Attend&& attend) {
  // Nothing to attend (B = 0 or L = 0, whatever the other extent): no task to run, and none of
  // the products below may be formed (B · heads could overflow for a huge B with L = 0).
  if (B == 0 || L == 0) {
    if (k) cache.commit(L);
    return;
  }
  const index_t base = k ? cache.length() : cache.length() - L, kpv = hm.k_per_v(), tasks = B * hm.v;
  if (!cache.is_ring() && threads > tasks && L > 1) {
    // More threads than (b, vh) tasks and a linear cache: write every key and value first, then
    // split each task's queries into parts of equal causal cost (token t sees ~base + t + 1 keys).
    if (k)
      parallel_for(threads, B * (hm.k + hm.v), [&](index_t i) {
        const index_t b = i / (hm.k + hm.v), h = i % (hm.k + hm.v);
        if (h < hm.k) cache.write_keys(b, h, base, L, k->ptr(b, 0, h), k->stride(1), k->stride(3));
        else
          for (index_t t = 0; t < L; ++t) cache.write_value(b, h - hm.k, base + t, v->ptr(b, t, h - hm.k), v->stride(3));
      });
    const index_t parts = std::min(L, (threads + tasks - 1) / tasks);
    std::vector<index_t> cut(static_cast<std::size_t>(parts + 1), L);
    cut[0] = 0;
    const index_t W = cache.visibility().window;
    auto keys = [&](index_t t) { return double(W > 0 ? std::min(base + t + 1, W) : base + t + 1); };
    double total = 0, acc = 0;
    for (index_t t = 0; t < L; ++t) total += keys(t);
    for (index_t t = 0, p = 1; t < L && p < parts; ++t)
      if ((acc += keys(t)) >= total * double(p) / double(parts)) cut[std::size_t(p++)] = t + 1;
    parallel_for(threads, tasks * parts, [&](index_t i) {
      const index_t task = i / parts, part = i % parts, b = task / hm.v, vh = task % hm.v;
      const index_t t0 = cut[std::size_t(part)], n = cut[std::size_t(part + 1)] - t0;
      if (n <= 0) return;
      auto ws = make_workspace();
      attend(ws, task_step{b, vh, vh * kpv, kpv, t0, n, base, base + L});
    });
    if (k) cache.commit(L);
    return;
  }
  if (cache.is_ring()) step = std::min(step, cache.step());
  step = k ? std::max<index_t>(1, std::min(step, L)) : std::max<index_t>(L, 1);
  parallel_for(threads, B * hm.v, [&](index_t task) {
    const index_t b = task / hm.v, vh = task % hm.v;
    auto ws = make_workspace();
    for (index_t t0 = 0; t0 < L; t0 += step) {
      const index_t n = std::min(step, L - t0);
      if (k) {
        for (index_t kh = vh * kpv; kh < (vh + 1) * kpv; ++kh)
          cache.write_keys(b, kh, base + t0, n, k->ptr(b, t0, kh), k->stride(1), k->stride(3));
        for (index_t t = t0; t < t0 + n; ++t) cache.write_value(b, vh, base + t, v->ptr(b, t, vh), v->stride(3));
      }
      attend(ws, task_step{b, vh, vh * kpv, kpv, t0, n, base, base + t0 + n});
    }
  });
  if (k) cache.commit(L);
}

}  // namespace detail

}  // namespace seqmix::kernels::attention
