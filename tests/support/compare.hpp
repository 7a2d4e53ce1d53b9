// Test helpers: NaN-poisoned outputs, random inputs and a max-abs / relative-RMS comparison.
#pragma once

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

}  // namespace seqmix::test
