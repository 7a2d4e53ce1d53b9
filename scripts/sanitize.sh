#!/usr/bin/env bash
# The sanitizer job: the core, kernel, layer and reference tests built with
# -fsanitize=address,undefined -fno-sanitize-recover=all at -O1 (SEQMIX_TEST_OPT, which the test
# targets put after the build type's flags, so -O1 is what they are compiled with) in their own
# build directory, then run. Any sanitizer report fails the test that triggered it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SEQMIX_SANITIZE_DIR:-build-sanitize}
jobs=${SEQMIX_JOBS:-$(nproc)}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEQMIX_ARCH="${SEQMIX_ARCH:-native}" \
  -DSEQMIX_BUILD_TESTS=ON -DSEQMIX_BUILD_TOOLS=OFF -DSEQMIX_BUILD_BENCHMARKS=OFF -DSEQMIX_BUILD_EXAMPLES=OFF \
  -DSEQMIX_TEST_SANITIZE=ON -DSEQMIX_TEST_OPT=-O1 -DSEQMIX_TEST_SECOND_ARCH=
# Every test executable (seqmix-tests-*).
mapfile -t targets < <(cmake --build "$build" --target help | sed -n 's/^\(seqmix-tests-[a-z0-9_-]*\):.*/\1/p' | sort -u)
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
# Absurd sizes must raise seqmix::error: with allocator_may_return_null a refused allocation is a
# null pointer (which tensor turns into seqmix::error) instead of the end of the process.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The package tests build consumer projects and the seqmix-refcheck tool is not built here (the
# reference tests run the same cases).
ctest --test-dir "$build" --output-on-failure -j "$jobs" -E '^(package|seqmix-refcheck)\.'
