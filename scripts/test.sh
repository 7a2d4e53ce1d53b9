#!/usr/bin/env bash
# The whole test suite: installs missing packages, configures, builds (tests, refcheck tool,
# benchmarks and examples, so they are known to compile) and runs CTest. The kernel and reference
# tests are also built and run for two lower SIMD targets (AVX2 and the x86-64 baseline, SSE2).
# Then: the SIMD boundary check (scripts/check_simd_boundary.sh, when present), the clang header
# check (scripts/check_headers.sh: every header and the layer, reference and demo units), the sanitizer job
# (scripts/sanitize.sh) and a bounded fuzz run with the corpus replay (scripts/fuzz.sh), each timed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${SEQMIX_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEQMIX_ARCH="${SEQMIX_ARCH:-native}" \
  -DSEQMIX_BUILD_TESTS=ON -DSEQMIX_BUILD_TOOLS=ON -DSEQMIX_BUILD_BENCHMARKS=ON -DSEQMIX_BUILD_EXAMPLES=ON \
  -DSEQMIX_TEST_SECOND_ARCH="avx2;generic" -DSEQMIX_TEST_OPT=-O2 -DSEQMIX_TEST_SANITIZE=OFF
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"

step() {
  local start=$SECONDS
  echo "== $*"
  "$@"
  echo "== $* passed in $((SECONDS - start)) s"
}
if [ -f scripts/check_simd_boundary.sh ]; then
  step bash scripts/check_simd_boundary.sh
fi
step bash scripts/check_headers.sh
SEQMIX_SANITIZE_DIR=${SEQMIX_SANITIZE_DIR:-$build-sanitize} step bash scripts/sanitize.sh
SEQMIX_FUZZ_DIR=${SEQMIX_FUZZ_DIR:-$build-fuzz} step bash scripts/fuzz.sh
