// Helpers shared by the state-space kernels: loads and FMAs written once for scalars and batches,
// the decay exponential, and the time-step activation.
#pragma once

#include <algorithm>
#include <array>
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

/// 2^x for decay factors (x ≤ 0, i.e. x = log2 e · A·dt): simd::exp2_bounded (float batches:
/// relative error 1.6e-7, about a third of the instructions of the general exp; arguments below
/// about -149 give exactly 0, below -126 with AVX2 / SSE2); in batches x above 127 saturates near
/// 2^127. NaN stays NaN.
template <class V>
inline V pow2_decay(const V& x) {
  if constexpr (is_scalar_v<V>) return simd::exp2_bounded(x);
  else return simd::exp2_bounded(xsimd::min(V(127), x));  // min(c, NaN) is NaN
}

/// e^x for decay factors (x ≤ 0): pow2_decay(x · log2 e) for float batches (arguments below
/// about -103, -87.4 with AVX2 / SSE2, give exactly 0), the library exp otherwise.
template <class V>
inline V exp_decay(const V& x) {
  if constexpr (is_scalar_v<V>) {
    return std::exp(x);
  } else if constexpr (std::is_same_v<typename V::value_type, float>) {
    return pow2_decay(x * V(1.44269504088896341f));
  } else {
    return simd::exp(x);
  }
}

/// log2 e, to pre-scale decay rates for pow2_decay.
inline constexpr double log2e = 1.44269504088896340736;

// haddp(rows) returns the lanes row sums in *some* order: xsimd 8.1's AVX-512 version permutes
// them (lanes 2..5 and 10..13 come out as rows 4, 5, 2, 3 and 12, 13, 10, 11), later versions do
// not. The order is measured once by summing rows r of constant value r, so the same code is right
// with either behaviour: slot_of(r) is the input slot whose sum lands in lane r.
template <class T>
inline const index_t* haddp_slots() {
  static const auto slots = [] {
    constexpr index_t W = simd::lanes<T>;
    std::array<index_t, std::size_t(W)> s{};
    alignas(64) simd::batch<T> rows[W];
    for (index_t r = 0; r < W; ++r) rows[r] = simd::batch<T>(T(r));
    alignas(64) T out[W];
    simd::store(out, xsimd::haddp(rows));
    for (index_t lane = 0; lane < W; ++lane) s[std::size_t(lane)] = index_t(std::lround(double(out[lane]) / double(W)));
    return s;  // the sum of slot s[r] lands in lane r
  }();
  return slots.data();
}

/// Collects vectors whose lane sums are wanted, lanes at a time: put(r, v) for r < lanes, then
/// sums() returns the vector of the lanes row sums (lane r = Σ of the vector put at r) with one
/// parallel horizontal add.
template <class T>
struct row_sums {
  alignas(64) simd::batch<T> rows[simd::lanes<T>];
  const index_t* slot = haddp_slots<T>();
  void put(index_t r, const simd::batch<T>& v) { rows[slot[r]] = v; }
  simd::batch<T> sums() const { return xsimd::haddp(rows); }
};

/// The time step from its raw value (bias already added): softplus or identity, then a clamp.
template <class V>
inline V time_step(const V& raw, bool softplus) {
  return softplus ? simd::softplus(raw) : raw;
}

}  // namespace seqmix::kernels::ssm::detail
