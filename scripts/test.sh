#!/usr/bin/env bash
# The whole test suite: installs missing packages, configures, builds (tests, refcheck tool,
# benchmarks and examples, so they are known to compile) and runs CTest. The reference tests are
# also built and run for a second, lower SIMD target (AVX2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${SEQMIX_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEQMIX_ARCH="${SEQMIX_ARCH:-native}" \
  -DSEQMIX_BUILD_TESTS=ON -DSEQMIX_BUILD_TOOLS=ON -DSEQMIX_BUILD_BENCHMARKS=ON -DSEQMIX_BUILD_EXAMPLES=ON
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
