// Elementwise activations written once for scalars and batches (ADL picks std:: or xsimd::), and
// `transform`, which runs such a function over an array with a scalar tail.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <type_traits>

#include "batch.hpp"

namespace seqmix::inline SEQMIX_TARGET_NAMESPACE::simd {

using std::abs, std::exp, std::log1p, std::max, std::min, std::sqrt;
using xsimd::abs, xsimd::exp, xsimd::log1p, xsimd::max, xsimd::min, xsimd::sqrt;

/// 2^f for |f| <= 1/2 (float batches): 1 + f·P4(f), degree 5, fitted for least maximum relative
/// error (9e-8; 1.6e-7 evaluated in float).
inline batch<float> exp2_reduced(const batch<float>& f) {
  using F = batch<float>;
  F p = xsimd::fma(F(1.326473523e-3f), f, F(9.671517535e-3f));
  p = xsimd::fma(p, f, F(5.550733769e-2f));
  p = xsimd::fma(p, f, F(2.402224201e-1f));
  p = xsimd::fma(p, f, F(6.931469776e-1f));
  return xsimd::fma(p, f, F(1.f));
}

/// p · 2^n for integral n <= 127 (float batches; p near 1). AVX-512: vscalefps, exact, with
/// gradual underflow to 0. Elsewhere 2^n is built in the exponent bits, and n < -126 (down to
/// -FLT_MAX, whose integer conversion saturates) gives 0.
inline batch<float> scale_pow2(const batch<float>& p, const batch<float>& n) {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, arch>) return _mm512_scalef_ps(__m512(p), __m512(n));
#endif
  using ints = xsimd::batch<std::int32_t, arch>;
  const ints e = xsimd::max(xsimd::to_int(n) + ints(127), ints(0));
  return p * xsimd::bitwise_cast<batch<float>>(e << 23);
}

/// 2^x for x <= 64 (no overflow check): softmax scores, RWKV-7 and SSM decays. Arguments below
/// about -149 give 0 (-126 with AVX2 / SSE2), so a masked score (-FLT_MAX) gives 0. float:
/// n = round(x), exp2_reduced(x - n) (relative error 1.6e-7) and scale_pow2 (vscalefps with
/// AVX-512: 9 instructions in all). double and scalars: the library exp2.
inline batch<float> exp2_bounded(batch<float> x) {
  const batch<float> n = xsimd::nearbyint(x);
  return scale_pow2(exp2_reduced(x - n), n);
}

inline batch<double> exp2_bounded(batch<double> x) { return xsimd::exp2(x); }

inline float exp2_bounded(float x) { return std::exp2(x); }
inline double exp2_bounded(double x) { return std::exp2(x); }

/// 2^x for finite x <= 0 or NaN (decay factors, e.g. x = log2 e · A·dt with the rate
/// pre-scaled), scalars or batches: exp2_bounded, after min(127, x) in batches so that a positive
/// argument saturates near 2^127 instead of wrapping the exponent bits (one min per vector of
/// decays). Float batches: relative error 1.6e-7; arguments below about -149 give exactly 0 (-126
/// with AVX2 / SSE2). NaN stays NaN.
template <class V>
inline V exp2_nonpositive(const V& x) {
  if constexpr (is_batch_v<V>) return exp2_bounded(xsimd::min(V(127), x));  // min(c, NaN) is NaN
  else return exp2_bounded(x);
}

/// e^x for x <= 0 with a finite x·log2 e, or NaN (decay factors). Float batches:
/// exp2_nonpositive(x · log2 e), a third of the instructions of the general exp (arguments below
/// about -103, -87.4 with AVX2 / SSE2, give exactly 0); double batches: xsimd's exp; scalars: the
/// library exp.
template <class V>
inline V exp_nonpositive(const V& x) {
  if constexpr (!is_batch_v<V>) return std::exp(x);
  else if constexpr (std::is_same_v<typename V::value_type, float>)
    return exp2_nonpositive(x * V(std::numbers::log2e_v<float>));
  else return xsimd::exp(x);
}

namespace detail {
/// 1/d for positive normal d with a normal reciprocal (float batches), within an ulp: AVX-512's
/// 14-bit estimate and one Newton step (a division has ~10x the latency); a division elsewhere.
inline batch<float> reciprocal(const batch<float>& d) {
#if defined(__AVX512F__)
  if constexpr (std::is_base_of_v<xsimd::avx512f, arch>) {
    const batch<float> r = _mm512_rcp14_ps(__m512(d));
    return xsimd::fma(r, xsimd::fnma(d, r, batch<float>(1.f)), r);
  }
#endif
  return batch<float>(1.f) / d;
}

/// e^-|x| in [0, 1] (float batches; NaN stays NaN), the one exponential of sigmoid, silu,
/// softplus and logsigmoid, which therefore never overflow. The exponent is reduced Cody-Waite
/// style, -|x| = n·ln 2 + r with ln 2 split into a 16-bit head (n·head is exact) and a tail, so
/// the result keeps its accuracy up to |x| = 104 (the rounded product -|x|·log2 e alone is off by
/// up to 2^-17 relatively there). Below e^-104 (no float) the result is 0.
inline batch<float> exp_neg_abs(const batch<float>& x) {
  using F = batch<float>;
  const F y = xsimd::max(F(-104.f), -xsimd::abs(x));  // max(c, NaN) is NaN
  const F n = xsimd::nearbyint(y * F(std::numbers::log2e_v<float>));
  const F r = (y - n * F(0.693145751953125f)) - n * F(1.428606765330187e-6f);
  return scale_pow2(exp2_reduced(r * F(std::numbers::log2e_v<float>)), n);
}

/// log(1 + e) for e in [0, 1] (float batches): 2·atanh(s) with s = e / (2 + e) <= 1/3, as
/// 2s·(1 + s²/3 + ... + s¹²/13) (the next term is below 2e-8 relatively); no 1 + e is rounded, so
/// tiny e keep full relative accuracy.
inline batch<float> log1p_unit(const batch<float>& e) {
  using F = batch<float>;
  const F s = e * reciprocal(F(2.f) + e), s2 = s * s;
  F p = xsimd::fma(F(1.f / 13), s2, F(1.f / 11));
  p = xsimd::fma(p, s2, F(1.f / 9));
  p = xsimd::fma(p, s2, F(1.f / 7));
  p = xsimd::fma(p, s2, F(1.f / 5));
  p = xsimd::fma(p, s2, F(1.f / 3));
  p = xsimd::fma(p, s2, F(1.f));
  return (s + s) * p;
}
}  // namespace detail

/// 1 / (1 + e^-x). Float batches: e = e^-|x|, then 1/(1 + e) and, for x < 0, e/(1 + e), with no
/// division (about 3 ulp at most); other types: the library exp and a division.
template <class V>
inline V sigmoid(const V& x) {
  return V(1) / (V(1) + exp(-x));
}
inline batch<float> sigmoid(const batch<float>& x) {
  using F = batch<float>;
  const F e = detail::exp_neg_abs(x);
  const F d = detail::reciprocal(F(1.f) + e);
  return xsimd::select(x >= F(0.f), d, e * d);
}

/// x · sigmoid(x).
template <class V>
inline V silu(const V& x) {
  return x * sigmoid(x);
}

/// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)).
template <class V>
inline V softplus(const V& x) {
  return max(x, V(0)) + log1p(exp(-abs(x)));
}
inline batch<float> softplus(const batch<float>& x) {
  return xsimd::max(x, batch<float>(0.f)) + detail::log1p_unit(detail::exp_neg_abs(x));
}

/// log(sigmoid(x)) = -softplus(-x), stable for large |x|.
template <class V>
inline V logsigmoid(const V& x) {
  return min(x, V(0)) - log1p(exp(-abs(x)));
}
inline batch<float> logsigmoid(const batch<float>& x) {
  return xsimd::min(x, batch<float>(0.f)) - detail::log1p_unit(detail::exp_neg_abs(x));
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

}  // namespace seqmix::simd
