// Shared benchmark conventions: names `<layer>/<level>/<policy>/<phase>/<arg>:<value>/...`,
// tokens/s as items_per_second, a GFLOPS counter and wall-clock timing (ops may use threads).
#pragma once

#include <benchmark/benchmark.h>

#include <seqmix/tensor/bf16.hpp>
#include <seqmix/tensor/random.hpp>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace seqmix::bench {

/// "gla/op/chunkwise/prefill/B:1/T:2048/H:8/K:64/V:64/threads:1"
inline std::string name(const std::string& prefix, const std::vector<std::pair<const char*, long>>& args) {
  std::string s = prefix;
  for (const auto& [k, v] : args) s += "/" + std::string(k) + ":" + std::to_string(v);
  return s;
}

/// The weights argument of a layer row, "weights:f32" or "weights:bf16", inserted before its
/// threads argument: "gla/layer/.../V:128/weights:bf16/threads:1".
template <class W>
std::string with_weights(std::string row) {
  const char* tag = std::is_same_v<W, bf16> ? "/weights:bf16" : "/weights:f32";
  const auto at = row.rfind("/threads:");
  return at == std::string::npos ? row + tag : row.insert(at, tag);
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
