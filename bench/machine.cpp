// The machine's own yardstick: the single-core floating-point peak, measured in the same run as the
// layers, so that their GFLOPS can be read as a fraction of what this core delivered at the time
// (the clock of a VM moves between runs). A register-only loop of independent FMAs on full vectors.
#include <seqmix/simd/batch.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

const bool registered = [] {
  // Independent accumulators: at least the FMA latency (4 cycles) times the FMAs per cycle (up to
  // 2) of current cores, and few enough to stay in registers (32 with AVX-512, 16 otherwise).
  constexpr index_t chains = sizeof(simd::batch<float>) >= 64 ? 16 : 12, steps = 1 << 16, L = simd::lanes<float>;
  add(name("machine/fma_peak/float", {{"lanes", L}, {"threads", 1}}), 0, 2.0 * chains * L * steps,
      [](benchmark::State& state) {
        using V = simd::batch<float>;
        V acc[chains];
        for (index_t i = 0; i < chains; ++i) acc[i] = V(float(i) * 1e-3f);
        V a(0.999f), b(1e-3f);
        benchmark::DoNotOptimize(a), benchmark::DoNotOptimize(b);
        for (auto _ : state) {
          for (index_t s = 0; s < steps; ++s)
            SEQMIX_UNROLL for (index_t i = 0; i < chains; ++i) acc[i] = xsimd::fma(acc[i], a, b);
          float sum = 0;
          for (index_t i = 0; i < chains; ++i) sum += simd::reduce_add(acc[i]);
          benchmark::DoNotOptimize(sum);
        }
      });
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
