// The only header that names xsimd's version-dependent API: the batch type of the compile-time
// target, loads/stores and horizontal reductions. xsimd 8.1 (Debian 12) spells the horizontal sum
// `hadd`; xsimd >= 11 spells it `reduce_add`.
#pragma once

#include "../config.hpp"  // first: it includes the intrinsic headers under a warning guard

#include <xsimd/xsimd.hpp>

namespace seqmix::simd {

/// The SIMD target chosen by the compiler flags (-march=native -> avx512bw here; SEQMIX_ARCH=avx2
/// -> avx2 + fma; generic -> sse2, the x86-64 baseline).
using arch = xsimd::default_arch;

template <class T>
using batch = xsimd::batch<T, arch>;

/// Lanes of batch<T>.
template <class T>
inline constexpr index_t lanes = static_cast<index_t>(batch<T>::size);

/// Name of the compile-time SIMD target ("avx512bw", "avx2", "sse2", ...).
inline const char* arch_name() { return arch::name(); }

template <class T>
inline batch<T> load(const T* p) { return batch<T>::load_unaligned(p); }
template <class T>
inline void store(T* p, const batch<T>& v) { v.store_unaligned(p); }

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

}  // namespace seqmix::simd
