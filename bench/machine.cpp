// The machine's own yardsticks, measured in the same run as the layers, so that their figures can be
// read as a fraction of what this core delivered at the time (the clock of a VM moves between runs):
// - fma_peak: the single-core floating-point peak, a register-only loop of independent FMAs on full
//   vectors (for compute-bound rows' GFLOPS);
// - triad/L2 and triad/DRAM: the single-core bandwidth of a = b + s·c over a working set that fits
//   in L2 and one far larger than the last-level cache (for bandwidth-bound rows: bytes/s counts
//   the two reads and the write, 12 bytes per float element).
#include <seqmix/simd/batch.hpp>
#include <seqmix/tensor/tensor.hpp>

#include "common.hpp"

namespace seqmix::bench {
namespace {

// a[i] = b[i] + s · c[i], full vectors (n is a multiple of the lanes).
void triad(float* a, const float* b, const float* c, float s, index_t n) {
  constexpr index_t L = simd::lanes<float>;
  const simd::batch<float> sv(s);
  for (index_t i = 0; i < n; i += L) simd::store(a + i, simd::fma(sv, simd::load(c + i), simd::load(b + i)));
}

void add_triad(const char* level, index_t n) {
  add(name(std::string("machine/triad/") + level + "/float", {{"n", long(n)}, {"threads", 1}}), 0, 2.0 * double(n),
      [n](benchmark::State& state) {
        tensor<float, 1> a({n}), b({n}), c({n});
        float *pa = a.data(), *pb = b.data(), *pc = c.data();
        for (index_t i = 0; i < n; ++i) pa[i] = 0.f, pb[i] = float(i % 7), pc[i] = float(i % 5);
        for (auto _ : state) {
          triad(pa, pb, pc, 0.5f, n);
          benchmark::DoNotOptimize(pa);
          benchmark::ClobberMemory();
        }
        state.SetBytesProcessed(int64_t(state.iterations()) * 3 * int64_t(sizeof(float)) * int64_t(n));
      });
}

const bool registered = [] {
  // Independent accumulators: at least the FMA latency (4 cycles) times the FMAs per cycle (up to
  // 2) of current cores, and few enough to stay in registers (32 with AVX-512, 16 otherwise).
  constexpr index_t chains = simd::vector_registers >= 32 ? 16 : 12, steps = 1 << 16, L = simd::lanes<float>;
  add(name("machine/fma_peak/float", {{"lanes", L}, {"threads", 1}}), 0, 2.0 * chains * L * steps,
      [](benchmark::State& state) {
        using V = simd::batch<float>;
        V acc[chains];
        for (index_t i = 0; i < chains; ++i) acc[i] = V(float(i) * 1e-3f);
        V a(0.999f), b(1e-3f);
        benchmark::DoNotOptimize(a), benchmark::DoNotOptimize(b);
        for (auto _ : state) {
          for (index_t s = 0; s < steps; ++s)
            SEQMIX_UNROLL for (index_t i = 0; i < chains; ++i) acc[i] = simd::fma(acc[i], a, b);
          float sum = 0;
          for (index_t i = 0; i < chains; ++i) sum += simd::reduce_add(acc[i]);
          benchmark::DoNotOptimize(sum);
        }
      });
  // L2: 3 arrays of 40 Ki floats (480 KiB; Zen 4's L2 is 1 MiB per core, Intel's 1.25-2 MiB).
  // DRAM: 3 arrays of 16 Mi floats (192 MiB, well beyond any last-level cache of this class).
  add_triad("L2", index_t(40) << 10);
  add_triad("DRAM", index_t(16) << 20);
  return true;
}();

}  // namespace
}  // namespace seqmix::bench
