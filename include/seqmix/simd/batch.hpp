// The only header that names xsimd's version-dependent API: the batch type of the compile-time
// target, loads/stores and horizontal reductions. xsimd 8.1 (Debian 12) spells the horizontal sum
// `hadd`; xsimd >= 11 spells it `reduce_add`. Intrinsics go here too: the streaming stores.
#pragma once

#include "../config.hpp"  // first: it includes the intrinsic headers under a warning guard

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

/// The SIMD target chosen by the compiler flags (-march=native -> avx512bw here; SEQMIX_ARCH=avx2
/// -> avx2 + fma; generic -> sse2, the x86-64 baseline).
using arch = xsimd::default_arch;

template <class T>
using batch = xsimd::batch<T, arch>;

/// Lanes of batch<T>: the lane count of the element type T. Code written once for scalars and
/// batches asks width<V> instead (below), which is lanes<T> for V = batch<T> and 1 for V = T.
template <class T>
inline constexpr index_t lanes = static_cast<index_t>(batch<T>::size);

/// Architectural vector registers of the target: 32 with AVX-512, 16 with AVX2 and SSE2 (x86-64).
/// Kernels size their register tiles from it.
inline constexpr index_t vector_registers = sizeof(batch<float>) >= 64 ? 32 : 16;

/// True for xsimd batches of any element type and target, false for scalars.
template <class V>
inline constexpr bool is_batch_v = false;
template <class T, class A>
inline constexpr bool is_batch_v<xsimd::batch<T, A>> = true;

/// Lanes of a V that is either a scalar (1) or a batch (its lanes).
template <class V>
inline constexpr index_t width = 1;
template <class T, class A>
inline constexpr index_t width<xsimd::batch<T, A>> = static_cast<index_t>(xsimd::batch<T, A>::size);

/// Name of the compile-time SIMD target ("avx512bw", "avx2", "sse2", ...).
inline const char* arch_name() { return arch::name(); }

template <class T>
inline batch<T> load(const T* p) { return batch<T>::load_unaligned(p); }
template <class T>
inline void store(T* p, const batch<T>& v) { v.store_unaligned(p); }

// Loads, stores and arithmetic written once for a V that is a batch or a plain scalar (the tail
// columns of a kernel): the scalar forms are the plain expressions, which the compiler contracts
// to a scalar FMA where the target has one, as it does for the code they replace.

/// *p as a V (V = T or batch<T>).
template <class V, class T>
[[gnu::always_inline]] inline V vload(const T* p) {
  if constexpr (is_batch_v<V>) return load(p);
  else return *p;
}
/// Stores x (a T or a batch<T>) at p.
template <class V, class T>
[[gnu::always_inline]] inline void vstore(T* p, const V& x) {
  if constexpr (is_batch_v<V>) store(p, x);
  else *p = x;
}
/// a · b + c, fused for batches (one rounding); a * b + c for scalars.
template <class V>
[[gnu::always_inline]] inline V fma(const V& a, const V& b, const V& c) {
  if constexpr (is_batch_v<V>) return xsimd::fma(a, b, c);
  else return a * b + c;
}
/// The lanes of a where mask is set, else of b.
template <class M, class V>
[[gnu::always_inline]] inline V select(const M& mask, const V& a, const V& b) {
  return xsimd::select(mask, a, b);
}
/// Whether any lane of a batch comparison is set.
template <class M>
[[gnu::always_inline]] inline bool any(const M& mask) {
  return xsimd::any(mask);
}

/// Pins a batch into a register at this point (an empty asm with the register as operand): GCC
/// otherwise folds a tile's vector loads into every FMA that uses them, so a value reused by R
/// rows is loaded R times and the loads, not the FMAs, become the limit.
template <class V>
[[gnu::always_inline]] inline void pin(V& x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+v"(x.data));
#else
  (void)x;
#endif
}

/// Horizontal sum of the lanes.
template <class T>
inline T reduce_add(const batch<T>& v) {
#if XSIMD_VERSION_MAJOR >= 11
  return xsimd::reduce_add(v);
#else
  return xsimd::hadd(v);
#endif
}

/// Horizontal maximum of the lanes.
template <class T>
inline T reduce_max(const batch<T>& v) {
#if XSIMD_VERSION_MAJOR >= 11
  return xsimd::reduce_max(v);
#else
  alignas(64) T tmp[batch<T>::size];
  v.store_aligned(tmp);
  T m = tmp[0];
  for (std::size_t i = 1; i < batch<T>::size; ++i) m = tmp[i] > m ? tmp[i] : m;
  return m;
#endif
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
