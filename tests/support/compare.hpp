// Test helpers: NaN-poisoned outputs, a max-abs / relative-RMS comparison and the one tolerance
// formula of the op tests.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <seqmix/tensor/random.hpp>
#include <seqmix/tensor/tensor.hpp>

namespace seqmix::test {

/// A tensor filled with quiet NaN, so any element a kernel forgets to write fails the comparison.
template <class T, std::size_t R>
tensor<T, R> nan_tensor(const std::array<index_t, R>& shape) {
  return tensor<T, R>(shape, std::numeric_limits<T>::quiet_NaN());
}

struct difference {
  double max_abs = 0;   ///< max |a - b|; NaN if any element is NaN
  double rel_rms = 0;   ///< rms(a - b) / rms(b), the flash-linear-attention metric
};

template <class T, std::size_t R>
tensor_view<const T, R> cview(const tensor<T, R>& t) { return t.view(); }
template <class T, std::size_t R>
tensor_view<const std::remove_const_t<T>, R> cview(tensor_view<T, R> v) { return v; }

template <class T, class U, std::size_t R>
difference diff_views(tensor_view<const T, R> a, tensor_view<const U, R> b) {
  REQUIRE(a.extents() == b.extents());
  const tensor<double, R> x(a), y(b);
  difference d;
  double num = 0, den = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    const double e = x.data()[i] - y.data()[i];
    d.max_abs = std::isnan(e) ? e : std::max(d.max_abs, std::abs(e));
    num += e * e, den += y.data()[i] * y.data()[i];
  }
  d.rel_rms = std::sqrt(num / std::max(den, 1e-300));
  return d;
}

template <class A, class B>
difference diff(const A& a, const B& b) {
  return diff_views(cview(a), cview(b));
}

/// Passes when max_abs <= atol or rel_rms <= ratio (and nothing is NaN).
#define SEQMIX_CHECK_CLOSE(a, b, atol, ratio)                                                     \
  do {                                                                                            \
    const auto d_ = ::seqmix::test::diff(a, b);                                                   \
    INFO("max_abs=" << d_.max_abs << " rel_rms=" << d_.rel_rms << " atol=" << (atol)              \
                    << " ratio=" << (ratio));                                                     \
    CHECK(!std::isnan(d_.max_abs));                                                               \
    CHECK((d_.max_abs <= (atol) || d_.rel_rms <= (ratio)));                                       \
  } while (0)

/// The tolerance of every numerical comparison in the op tests:
///
///     tolerance<T>(n) = tolerance_margin · eps(T) · sqrt(n)
///
/// n is the reduction length of one output element: the number of rounded terms that reach it (a
/// dot product over the key / state axis plus a recurrence, or softmax sum, over the tokens:
/// K + T for the linear recurrences, Dk + keys for attention). Inputs are O(1), so rounding errors
/// of independent terms add like a random walk, ~eps·sqrt(n) relative; the margin covers the few
/// rounded operations per term (exp, scale, fused multiply-add) and the spread of that walk. It is
/// the bound for max |a − b| and for rms(a − b) / rms(b) (SEQMIX_CHECK_CLOSE passes on either).
inline constexpr double tolerance_margin = 8;

template <class T>
double tolerance(double n) {
  return tolerance_margin * double(std::numeric_limits<T>::epsilon()) * std::sqrt(std::max(n, 1.0));
}

/// SEQMIX_CHECK_CLOSE with one bound for both metrics, usually tolerance<T>(n).
#define SEQMIX_CHECK_WITHIN(a, b, tol) SEQMIX_CHECK_CLOSE(a, b, tol, tol)

/// Bit-identical (and no NaN): for results that must not depend on how the work was run.
#define SEQMIX_CHECK_IDENTICAL(a, b) SEQMIX_CHECK_CLOSE(a, b, 0.0, 0.0)

template <class T, std::size_t R>
bool all_finite(const tensor<T, R>& t) {
  return std::all_of(t.data(), t.data() + t.size(), [](T x) { return std::isfinite(x); });
}

}  // namespace seqmix::test
