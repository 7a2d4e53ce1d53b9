// Shared benchmark conventions: names `<layer>/<level>/<policy>/<phase>/<arg>:<value>/...`,
// tokens/s as items_per_second, a GFLOPS counter and wall-clock timing (ops may use threads).
#pragma once

#include <benchmark/benchmark.h>

#include <seqmix/tensor/random.hpp>
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
/// `flops` are per iteration (no tokens/s when `tokens` is 0).
template <class Fn>
void add(const std::string& name, double tokens, double flops, Fn fn) {
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    fn(state);
    if (tokens > 0) state.SetItemsProcessed(static_cast<int64_t>(tokens * double(state.iterations())));
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  })->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace seqmix::bench
