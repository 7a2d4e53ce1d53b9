// seqmix-bench: every family's benchmarks in one Google Benchmark executable.
#include <benchmark/benchmark.h>

#include <seqmix/simd/batch.hpp>

int main(int argc, char** argv) {
  benchmark::AddCustomContext("seqmix_simd", seqmix::simd::arch_name());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
