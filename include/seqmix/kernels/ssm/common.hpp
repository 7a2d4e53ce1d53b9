// Helpers shared by the state-space kernels: loads and FMAs written once for scalars and batches,
// the decay exponential, and the time-step activation.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "../../simd/math.hpp"
#include "args.hpp"

namespace seqmix::kernels::ssm::detail {

template <class V>
inline constexpr bool is_scalar_v = std::is_arithmetic_v<V>;

template <class V, class T>
inline V vload(const T* p) {
  if constexpr (is_scalar_v<V>) return *p;
  else return simd::load(p);
}

template <class V, class T>
inline void vstore(T* p, const V& v) {
  if constexpr (is_scalar_v<V>) *p = v;
  else simd::store(p, v);
}

template <class V>
inline V vfma(const V& a, const V& b, const V& c) {
  if constexpr (is_scalar_v<V>) return a * b + c;
  else return xsimd::fma(a, b, c);
}

/// e^x for decay factors (x ≤ 0). float batches use 2^(x·log2 e) with a degree-6 polynomial on
/// [-1/2, 1/2] (relative error ~2e-7 plus the rounding of x·log2 e) and an exponent add: about
/// half the instructions of the general exp. Arguments below about -87.7 give exactly 0 (e^x is
/// below the normal float range), above 88 they saturate near 2^127. double and scalars use the
/// library exp.
template <class V>
inline V exp_decay(const V& x) {
  if constexpr (is_scalar_v<V>) {
    return std::exp(x);
  } else if constexpr (!std::is_same_v<typename V::value_type, float>) {
    return simd::exp(x);
  } else {
    // -127 maps to the exponent field 0, i.e. exactly 0. max(c, x) keeps a NaN x (the second
    // operand is returned when either is NaN).
    const V x2 = xsimd::min(xsimd::max(V(-127.f), x * V(1.44269504088896341f)), V(127.f));
    const V k = xsimd::nearbyint(x2);
    const V f = x2 - k;
    V p = V(1.535336188319500e-4f);
    p = xsimd::fma(p, f, V(1.339887440266574e-3f));
    p = xsimd::fma(p, f, V(9.618437357674640e-3f));
    p = xsimd::fma(p, f, V(5.550332471162809e-2f));
    p = xsimd::fma(p, f, V(2.402264791363012e-1f));
    p = xsimd::fma(p, f, V(6.931472028550421e-1f));
    p = xsimd::fma(p, f, V(1.f));
    return xsimd::ldexp(p, xsimd::to_int(k));
  }
}

/// out[r] = Σ_i rows[r][i] for r < lanes. (xsimd 8.1's haddp, which would do this in one fold,
/// permutes the lanes of its AVX-512 result, so each row is reduced on its own.)
template <class T>
inline void sum_rows(const simd::batch<T>* rows, T* out) {
  SEQMIX_UNROLL for (index_t r = 0; r < simd::lanes<T>; ++r) out[r] = simd::reduce_add(rows[r]);
}

/// The time step from its raw value (bias already added): softplus or identity, then a clamp.
template <class V>
inline V time_step(const V& raw, bool softplus) {
  return softplus ? simd::softplus(raw) : raw;
}

}  // namespace seqmix::kernels::ssm::detail
