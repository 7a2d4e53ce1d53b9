#!/usr/bin/env bash
# Fuzzes the safetensors reader (fuzz/safetensors_fuzz.cpp) and the reference-case runner
# (fuzz/refcheck_fuzz.cpp, tools/refcheck/): a bounded libFuzzer run of each (clang with
# -fsanitize=fuzzer,address,undefined; SEQMIX_FUZZ_SECONDS in all, default 60, split between the
# two) from its seed corpus in fuzz/corpus/<target>/, then a replay of the seeds and of what the
# run found through a plain driver built with g++ and ASan/UBSan. Without clang only the replays
# run. Exits non-zero on any finding; the crashing input is left in the build directory
# (<target>-crash-*) for fuzz/corpus/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SEQMIX_FUZZ_SECONDS:-60}
out=${SEQMIX_FUZZ_DIR:-build-fuzz}
mkdir -p "$out/corpus/safetensors" "$out/corpus/refcheck"
# The refcheck target needs the runner's headers (tools/) and Eigen, as a system header.
flags=(-std=c++20 -g -O1 -Iinclude -Itools -isystem /usr/include/eigen3 -Wall -Wextra -Wpedantic -Werror)
# The refcheck seconds: runs of a case are slower than reads, so it gets the larger share.
refcheck_seconds=$((seconds * 3 / 5))
safetensors_seconds=$((seconds - refcheck_seconds))
# Sizes that are merely absurd must give seqmix::error, so the allocator may fail instead of
# aborting on them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# A clang whose libFuzzer runtime links (Debian: clang-14 and libclang-rt-14-dev).
clang=""
probe='extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }'
for c in clang++-14 clang++; do
  if command -v "$c" >/dev/null &&
     echo "$probe" | "$c" -x c++ -fsanitize=fuzzer - -o "$out/probe" 2>/dev/null; then
    clang=$c
    break
  fi
done
rm -f "$out/probe"
if [ -n "$clang" ]; then
  echo "fuzz: building with $clang"
  for target in safetensors refcheck; do
    "$clang" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      "fuzz/${target}_fuzz.cpp" -o "$out/${target}_fuzz"
  done
  echo "fuzz: ${safetensors_seconds}s of libFuzzer on safetensors"
  "$out/safetensors_fuzz" -max_total_time="$safetensors_seconds" -dict=fuzz/safetensors.dict -max_len=8192 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/safetensors-" "$out/corpus/safetensors" \
    fuzz/corpus/safetensors
  echo "fuzz: ${refcheck_seconds}s of libFuzzer on refcheck"
  "$out/refcheck_fuzz" -max_total_time="$refcheck_seconds" -dict=fuzz/refcheck.dict -max_len=16384 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/refcheck-" "$out/corpus/refcheck" \
    fuzz/corpus/refcheck
else
  echo "fuzz: no clang++ with libFuzzer found, replaying the corpora only"
fi

echo "fuzz: replaying the corpora with g++ and ASan/UBSan"
for target in safetensors refcheck; do
  g++ "${flags[@]}" -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
    "fuzz/${target}_fuzz.cpp" fuzz/replay.cpp -o "$out/${target}_replay"
  "$out/${target}_replay" "fuzz/corpus/$target" "$out/corpus/$target"
done
