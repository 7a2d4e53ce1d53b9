// parallel_ranges / parallel_for: split [0, n) over up to `threads` std::threads (serial when
// threads <= 1). No pool and no global state: a thread costs tens of microseconds, so kernels use
// this for prefill-sized work and run decode steps on the calling thread.
#pragma once

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "../config.hpp"

namespace seqmix {

/// Calls fn(begin, end) once per worker on contiguous, near-equal ranges covering [0, n); the
/// first exception thrown by any worker is rethrown on the caller.
template <class Fn>
void parallel_ranges(int threads, index_t n, Fn&& fn) {
  const index_t workers = std::min<index_t>(std::max(threads, 1), n);
  if (workers <= 1) {
    if (n > 0) fn(index_t(0), n);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(workers));
  auto run = [&](index_t w) {
    try {
      fn(n * w / workers, n * (w + 1) / workers);
    } catch (...) {
      errors[static_cast<std::size_t>(w)] = std::current_exception();
    }
  };
  {
    std::vector<std::jthread> pool;
    for (index_t w = 1; w < workers; ++w) pool.emplace_back(run, w);
    run(0);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Calls fn(i) for every i in [0, n), split over up to `threads` threads as parallel_ranges does.
template <class Fn>
void parallel_for(int threads, index_t n, Fn&& fn) {
  parallel_ranges(threads, n, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

}  // namespace seqmix
