// Shared benchmark conventions: names `<layer>/<level>/<policy>/<phase>/<arg>:<value>/...`,
// tokens/s as items_per_second, a GFLOPS counter and wall-clock timing (ops may use threads).
#pragma once

#include <benchmark/benchmark.h>

#include <random>
#include <seqmix/tensor/tensor.hpp>
#include <string>
#include <utility>
#include <vector>

namespace seqmix::bench {

/// "gla/op/chunkwise/prefill/B:1/T:2048/H:8/K:64/V:64/threads:1"
inline std::string name(const std::string& prefix, const std::vector<std::pair<const char*, long>>& args) {
  std::string s = prefix;
  for (const auto& [k, v] : args) s += "/" + std::string(k) + ":" + std::to_string(v);
  return s;
}

/// Registers fn(state) under `name`; fn runs the timed loop and returns nothing. `tokens` and
/// `flops` are per iteration.
template <class Fn>
void add(const std::string& name, double tokens, double flops, Fn fn) {
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    fn(state);
    state.SetItemsProcessed(static_cast<int64_t>(tokens * double(state.iterations())));
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  })->UseRealTime()->Unit(benchmark::kMicrosecond);
}

/// Uniform random tensor in [lo, hi).
template <class T, std::size_t R>
tensor<T, R> random(const std::array<index_t, R>& shape, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(d(rng));
  return t;
}

}  // namespace seqmix::bench
