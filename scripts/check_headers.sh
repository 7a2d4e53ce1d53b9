#!/usr/bin/env bash
# Header check with a second compiler: every header under include/ compiles on its own (it includes
# what it uses) with clang++ and no warnings; then the translation units that instantiate every
# layer, op and policy (the layer concept test, the reference tests, the demo) pass clang's
# semantic analysis for the native target and the x86-64 baseline, so template code that g++
# accepts and clang rejects is caught here. Skipped (exit 0, with a message) when clang++
# is not installed.
#
# Usage: scripts/check_headers.sh [repository root]   (default: this script's parent folder)
set -euo pipefail

root=${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
cd "$root"

cxx=${SEQMIX_CLANG:-clang++}
if ! command -v "$cxx" >/dev/null; then
  echo "header check: $cxx not installed, skipped"
  exit 0
fi

flags=(-std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror -Iinclude -Itools
       -isystem /usr/include/eigen3)
jobs=$(nproc)

check_one() {  # <arch flag> <header>
  local arch=$1 header=$2
  if ! out=$(echo "#include <${header#include/}>" | "$cxx" "${flags[@]}" "$arch" -x c++ - 2>&1); then
    echo "FAILED ($arch): $header"
    echo "$out" | head -20
    return 1
  fi
}
export -f check_one
export cxx
export flags_str="${flags[*]}"

headers=$(find include -name '*.hpp' | sort)
fail=0
# xargs runs one compiler per header, $jobs at a time; a failing header prints its first errors.
if ! echo "$headers" | xargs -P "$jobs" -I{} bash -c 'flags=($flags_str); check_one "$0" "$1"' -march=native {}; then
  fail=1
fi

# Whole translation units, for the native target and the x86-64 baseline (each target has its own
# simd/ code paths): they instantiate the templates, which a header on its own does not.
units=(tests/layers/test_layer_concept.cpp tests/refs/test_refs.cpp tests/models/test_models.cpp examples/gla_demo.cpp)
for arch in -march=native -march=x86-64; do
  for unit in "${units[@]}"; do
    [[ -f $unit ]] || continue
    if ! "$cxx" "${flags[@]}" "$arch" -Itests -DSEQMIX_TEST_DATA_DIR=\"\" -DSEQMIX_DEMO_LAYER_FILE=\"\" "$unit"; then
      echo "FAILED ($arch): $unit"
      fail=1
    fi
  done
done

if [[ $fail -ne 0 ]]; then
  echo "header check: clang++ rejected the code above" >&2
  exit 1
fi
echo "header check: ok ($(echo "$headers" | wc -l) headers, ${#units[@]} units on 2 targets, $("$cxx" --version | head -1))"
