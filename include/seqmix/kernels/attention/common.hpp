// The frame every attention policy shares: argument checks, the split into independent tasks (one
// per batch row and value head, each owning the cache rows it writes) and the append-then-attend
// steps a ring-buffer cache needs.
#pragma once

#include <algorithm>

#include "../../policy/threads.hpp"
#include "cache.hpp"

namespace seqmix::kernels::attention {

namespace detail {

/// What one task attends: batch row b, the key heads [kh0, kh0 + nk) that share value head vh,
/// and the query tokens [t0, t0 + n) of this call, whose absolute positions are base + t.
struct task_step {
  index_t b, vh, kh0, nk, t0, n, base, len;  // len: cache length the step attends (base + t0 + n)
};

/// Validates q [B,T,Hq,Dk], o [B,T,Hq,Dv] and, when given, the new keys k [B,T,Hk,Dk] and values
/// v [B,T,Hv,Dv] against the cache. Without k and v the queries are the cache's last T positions.
template <class T>
head_map check_args(const char* who, const tensor_view<const T, 4>& q, const tensor_view<const T, 4>* k,
                    const tensor_view<const T, 4>* v, const tensor_view<T, 4>& o, const kv_cache<T>& cache) {
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
    require(!cache.is_ring() || L <= cache.step(), who,
            "a ring-buffer cache attends at most its step (" + std::to_string(cache.step()) + ") cached queries at once");
  }
  return hm;
}

/// Splits the call into tasks (b, vh) over `threads`. With new keys and values, each task walks
/// the L tokens in steps of at most `step` (the cache's step for a ring buffer, else all of them),
/// writes its heads' keys and values for the step into the cache, then calls
/// attend(workspace, task_step), and the tokens are committed at the end. Without them the
/// queries are the cache's last L positions and are attended in one step. The workspace is made
/// once per task by make_workspace().
template <class T, class MakeWorkspace, class Attend>
void run_tasks(int threads, index_t step, const head_map& hm, index_t B, index_t L, const tensor_view<const T, 4>* k,
               const tensor_view<const T, 4>* v, kv_cache<T>& cache, MakeWorkspace&& make_workspace,
               Attend&& attend) {
  const index_t base = k ? cache.length() : cache.length() - L, kpv = hm.k_per_v();
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
