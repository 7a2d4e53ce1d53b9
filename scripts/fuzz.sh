#!/usr/bin/env bash
# Fuzzes the safetensors reader (fuzz/safetensors_fuzz.cpp): a bounded libFuzzer run (clang with
# -fsanitize=fuzzer,address,undefined; SEQMIX_FUZZ_SECONDS, default 60) from the seed corpus in
# fuzz/corpus/, then a replay of the seeds and of what the run found through a plain driver built
# with g++ and ASan/UBSan. Without clang only the replay runs. Exits non-zero on any finding; the
# crashing input is left in the build directory (crash-*) for fuzz/corpus/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SEQMIX_FUZZ_SECONDS:-60}
out=${SEQMIX_FUZZ_DIR:-build-fuzz}
mkdir -p "$out/corpus"
flags=(-std=c++20 -g -O1 -Iinclude -Wall -Wextra -Wpedantic -Werror)
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
  "$clang" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    fuzz/safetensors_fuzz.cpp -o "$out/safetensors_fuzz"
  echo "fuzz: ${seconds}s of libFuzzer"
  "$out/safetensors_fuzz" -max_total_time="$seconds" -dict=fuzz/safetensors.dict -max_len=8192 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" fuzz/corpus/safetensors
else
  echo "fuzz: no clang++ with libFuzzer found, replaying the corpus only"
fi

echo "fuzz: replaying the corpus with g++ and ASan/UBSan"
g++ "${flags[@]}" -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
  fuzz/safetensors_fuzz.cpp fuzz/replay.cpp -o "$out/safetensors_replay"
"$out/safetensors_replay" fuzz/corpus/safetensors "$out/corpus"
