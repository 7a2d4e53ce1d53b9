// Elementwise activations written once for scalars and batches (ADL picks std:: or xsimd::), and
// `transform`, which runs such a function over an array with a scalar tail.
#pragma once

#include <cmath>
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

}  // namespace seqmix::simd
