// Softmax attention, parallel policy: per query head the whole masked score matrix
// [tokens x cached keys] is materialised, softmaxed row by row and multiplied by V (simd::gemm).
// Kept for checking the fused kernels and for short inputs; memory O(T·S) per thread. With a
// ring-buffer cache the tokens go in steps of the cache's step size.
#pragma once

#include <limits>
#include <type_traits>
#include <vector>

#include "../../policy/execution.hpp"
#include "../../simd/gemm.hpp"
#include "../../simd/math.hpp"
#include "../../simd/vec.hpp"
#include "common.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::kernels::attention {

namespace detail {

// The n elements at p as T: p itself when the cache stores T, else widened into buf (bf16).
template <class T, class S>
const T* as_compute(const S* p, index_t n, std::vector<T>& buf) {
  if constexpr (std::is_same_v<S, T>) return p;
  else {
    buf.resize(std::size_t(n));
    for (index_t i = 0; i < n; ++i) buf[std::size_t(i)] = from_storage<T>(p[i]);
    return buf.data();
  }
}

template <class T, class Store>
void parallel_run(const exec::parallel& policy, tensor_view<const T, 4> q, const tensor_view<const T, 4>* k,
                  const tensor_view<const T, 4>* v, tensor_view<T, 4> o, kv_cache<Store>& cache, const options<T>& opt) {
  const head_map hm = detail::check_args("attention", q, k, v, o, cache);
  const index_t Dk = cache.dims().key_dim, Dv = cache.dims().value_dim, G = hm.q_per_k();
  const T scale = scale_of(opt, Dk);
  const mask m = cache.visibility();
  struct workspace {
    std::vector<T> s, kb, vb;  // kb, vb: a bf16 cache's blocks widened (unused for a float cache)
    std::vector<index_t> pos;
  };
  detail::run_tasks<T>(
      policy.threads, q.extent(1), hm, q.extent(0), q.extent(1), k, v, cache, [] { return workspace{}; },
      [&](workspace& w, const detail::task_step& st) {
        const index_t nb = cache.used_blocks(st.len), cols = nb * block_keys, n = st.n;
        w.s.resize(std::size_t(n * cols)), w.pos.resize(std::size_t(cols));
        for (index_t c = 0; c < cols; ++c) w.pos[std::size_t(c)] = cache.position(c, st.len);
        const tensor_view<T, 2> S(w.s.data(), {n, cols});
        // The blocks of a head are contiguous in the cache (blocks of one (b, head) follow each other).
        const T* Vs = as_compute<T>(cache.value_block(st.b, st.vh, 0), cols * Dv, w.vb);
        for (index_t kh = st.kh0; kh < st.kh0 + st.nk; ++kh) {
          const T* Ks = as_compute<T>(cache.key_block(st.b, kh, 0), cols * Dk, w.kb);
          for (index_t h = kh * G; h < (kh + 1) * G; ++h) {
            const tensor_view<const T, 2> Q(q.ptr(st.b, st.t0, h), {n, Dk}, {q.stride(1), 1});
            for (index_t blk = 0; blk < nb; ++blk)
              simd::gemm<T>(Q, tensor_view<const T, 2>(Ks + blk * block_keys * Dk, {Dk, block_keys}),
                            S.subrange(1, blk * block_keys, block_keys));
            for (index_t i = 0; i < n; ++i) {
              T* row = S.ptr(i);
              const index_t p = st.base + st.t0 + i;
              for (index_t c = 0; c < cols; ++c)
                row[c] = m.sees(p, w.pos[std::size_t(c)]) ? row[c] * scale : -std::numeric_limits<T>::infinity();
              const T top = simd::max_element(row, cols);
              simd::transform(row, row, cols, [top](auto x) { return simd::exp(x - top); });
              simd::scale(T(1) / simd::sum(row, cols), row, cols);
            }
            const tensor_view<T, 2> O(o.ptr(st.b, st.t0, h), {n, Dv}, {o.stride(1), 1});
            for (index_t blk = 0; blk < nb; ++blk)
              simd::gemm<T>(S.subrange(1, blk * block_keys, block_keys),
                            tensor_view<const T, 2>(Vs + blk * block_keys * Dv, {block_keys, Dv}), O,
                            blk == 0 ? simd::gemm_mode::overwrite : simd::gemm_mode::accumulate);
          }
        }
      });
}

}  // namespace detail

/// Shapes as in chunk().
template <class S, class T = compute_t<S>>
void parallel(const exec::parallel& policy, std::type_identity_t<tensor_view<const T, 4>> q,
              std::type_identity_t<tensor_view<const T, 4>> k, std::type_identity_t<tensor_view<const T, 4>> v,
              std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  detail::parallel_run<T>(policy, q, &k, &v, o, cache, opt);
}

/// Attend-only form (see attend()): q are the cache's last T positions.
template <class S, class T = compute_t<S>>
void parallel(const exec::parallel& policy, std::type_identity_t<tensor_view<const T, 4>> q,
              std::type_identity_t<tensor_view<T, 4>> o, kv_cache<S>& cache, std::type_identity_t<options<T>> opt = {}) {
  detail::parallel_run<T>(policy, q, nullptr, nullptr, o, cache, opt);
}

}  // namespace seqmix::kernels::attention
