// uniform_tensor: a tensor of reproducible uniform random values, for tests, benchmarks and demos.
#pragma once

#include <random>

#include "tensor.hpp"

namespace seqmix {

/// A tensor of `shape` filled with values uniform in [lo, hi) from std::mt19937(seed).
template <class T, std::size_t R>
tensor<T, R> uniform_tensor(const std::array<index_t, R>& shape, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(d(rng));
  return t;
}

}  // namespace seqmix
