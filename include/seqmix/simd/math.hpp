// Elementwise activations written once for scalars and batches (ADL picks std:: or xsimd::), and
// `transform`, which runs such a function over an array with a scalar tail.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "batch.hpp"

namespace seqmix::simd {

using std::abs, std::exp, std::log1p, std::max, std::min, std::sqrt;
using xsimd::abs, xsimd::exp, xsimd::log1p, xsimd::max, xsimd::min, xsimd::sqrt;

template <class V>
inline V sigmoid(const V& x) {
  return V(1) / (V(1) + exp(-x));
}

template <class V>
inline V silu(const V& x) {
  return x * sigmoid(x);
}

/// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)).
template <class V>
inline V softplus(const V& x) {
  return max(x, V(0)) + log1p(exp(-abs(x)));
}

/// log(sigmoid(x)) = -softplus(-x), stable for large |x|.
template <class V>
inline V logsigmoid(const V& x) {
  return min(x, V(0)) - log1p(exp(-abs(x)));
}

/// out[i] = f(in[i]) for i < n; f must accept T and batch<T>. `in` and `out` may alias.
template <class T, class F>
inline void transform(const T* in, T* out, index_t n, F f) {
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) store(out + i, f(load(in + i)));
  for (; i < n; ++i) out[i] = f(in[i]);
}

/// out[i] = f(a[i], b[i]) for i < n; f must accept (T, T) and (batch<T>, batch<T>).
template <class T, class F>
inline void transform(const T* a, const T* b, T* out, index_t n, F f) {
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) store(out + i, f(load(a + i), load(b + i)));
  for (; i < n; ++i) out[i] = f(a[i], b[i]);
}

/// Non-temporal ("streaming") stores, for outputs much larger than the caches: a full cache line
/// written this way skips the read for ownership and does not evict cached operands. `p` must
/// satisfy stream_aligned(p). Call stream_fence() after the last one (before the output is handed
/// to another thread).
template <class T>
inline bool stream_aligned(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % sizeof(batch<T>) == 0;
}

template <class T>
inline void store_stream(T* p, const batch<T>& v) {
  constexpr std::size_t bytes = sizeof(batch<T>);
  constexpr bool f = std::is_same_v<T, float>, d = std::is_same_v<T, double>;
#if defined(__AVX512F__)
  if constexpr (bytes == 64 && f) return _mm512_stream_ps(p, v);
  if constexpr (bytes == 64 && d) return _mm512_stream_pd(p, v);
#endif
#if defined(__AVX__)
  if constexpr (bytes == 32 && f) return _mm256_stream_ps(p, v);
  if constexpr (bytes == 32 && d) return _mm256_stream_pd(p, v);
#endif
#if defined(__SSE2__)
  if constexpr (bytes == 16 && f) return _mm_stream_ps(p, v);
  if constexpr (bytes == 16 && d) return _mm_stream_pd(p, v);
#endif
  store(p, v);
}

inline void stream_fence() {
#if defined(__SSE__)
  _mm_sfence();
#endif
}

/// dst[i] = src[i] for i < n, full vectors with store_stream (dst stream_aligned), the tail plain.
template <class T>
inline void copy_stream(const T* src, T* dst, index_t n) {
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) store_stream(dst + i, load(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

}  // namespace seqmix::simd
