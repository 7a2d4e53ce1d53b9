// BLAS-1 style vector kernels over contiguous arrays, each with a scalar tail for any length.
#pragma once

#include "batch.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

/// Hints the cache to fetch x[0 .. n) (one prefetch per 64-byte line) for reading soon.
template <class T>
inline void prefetch(const T* x, index_t n) {
  for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) __builtin_prefetch(x + i, 0, 2);
}

/// As prefetch(), into the first-level cache (for data needed within a few hundred cycles).
template <class T>
inline void prefetch_l1(const T* x, index_t n) {
  for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) __builtin_prefetch(x + i, 0, 3);
}

/// As prefetch(), with the lowest temporal hint (prefetcht2 on x86; the SSD chunks measured t0 and
/// t1 no better than no prefetch). An asm statement there, which GCC keeps even in a loop that has
/// no other effect.
template <class T>
inline void prefetch_t2(const T* x, index_t n) {
  for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm volatile("prefetcht2 %0" : : "m"(x[i]));
#else
    __builtin_prefetch(x + i, 0, 1);
#endif
  }
}

/// Hints the cache to fetch x[0 .. n) for writing soon.
template <class T>
inline void prefetch_for_write(T* x, index_t n) {
  for (index_t i = 0; i < n; i += 64 / index_t(sizeof(T))) __builtin_prefetch(x + i, 1, 2);
}

/// sum_i x[i] * y[i]; two accumulators to hide FMA latency.
template <class T>
inline T dot(const T* x, const T* y, index_t n) {
  constexpr index_t L = lanes<T>;
  batch<T> a0(T(0)), a1(T(0));
  index_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    a0 = xsimd::fma(load(x + i), load(y + i), a0);
    a1 = xsimd::fma(load(x + i + L), load(y + i + L), a1);
  }
  for (; i + L <= n; i += L) a0 = xsimd::fma(load(x + i), load(y + i), a0);
  T s = reduce_add(a0 + a1);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

/// y[i] += a * x[i]
template <class T>
inline void axpy(T a, const T* x, T* y, index_t n) {
  const batch<T> va(a);
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) store(y + i, xsimd::fma(va, load(x + i), load(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

/// x[i] *= a
template <class T>
inline void scale(T a, T* x, index_t n) {
  const batch<T> va(a);
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) store(x + i, va * load(x + i));
  for (; i < n; ++i) x[i] *= a;
}

/// z[i] = x[i] * y[i] (z may alias x or y)
template <class T>
inline void mul(const T* x, const T* y, T* z, index_t n) {
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) store(z + i, load(x + i) * load(y + i));
  for (; i < n; ++i) z[i] = x[i] * y[i];
}

/// sum_i x[i]
template <class T>
inline T sum(const T* x, index_t n) {
  batch<T> a(T(0));
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) a += load(x + i);
  T s = reduce_add(a);
  for (; i < n; ++i) s += x[i];
  return s;
}

namespace detail {
template <class T, class Pick>
inline T extreme(const T* x, index_t n, Pick pick) {
  index_t i = 0;
  T m = x[0];
  if (n >= lanes<T>) {
    batch<T> a = load(x);
    for (i = lanes<T>; i + lanes<T> <= n; i += lanes<T>) a = pick(a, load(x + i));
    alignas(64) T tmp[batch<T>::size];
    a.store_aligned(tmp);
    for (T t : tmp) m = pick(m, t);
  }
  for (; i < n; ++i) m = pick(m, x[i]);
  return m;
}
}  // namespace detail

/// max_i x[i] (n >= 1; NaN handling as std::max)
template <class T>
inline T max_element(const T* x, index_t n) {
  return detail::extreme(x, n, [](auto a, auto b) { return xsimd::max(a, b); });
}

/// True if some x[i] < bound or is NaN (is not ≥ bound): one vector compare per step and no
/// horizontal reduction, cheap enough for per-token checks. NaN counts so that a kernel which
/// takes a special path for small values cannot loop on a NaN that fails every test.
template <class T>
inline bool any_below(const T* x, index_t n, T bound) {
  const batch<T> b(bound);
  bool found = false;
  index_t i = 0;
  for (; i + lanes<T> <= n; i += lanes<T>) found |= !xsimd::all(load(x + i) >= b);
  for (; i < n; ++i) found |= !(x[i] >= bound);
  return found;
}

/// min_i x[i] (n >= 1)
template <class T>
inline T min_element(const T* x, index_t n) {
  return detail::extreme(x, n, [](auto a, auto b) { return xsimd::min(a, b); });
}

}  // namespace seqmix::simd
