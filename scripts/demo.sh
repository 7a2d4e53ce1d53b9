#!/usr/bin/env bash
# The main demo: installs missing packages, builds seqmix-demo and runs it (loads a GLA layer from
# a safetensors file, chunkwise prefill, step() decoding, per-layer timings).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${SEQMIX_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEQMIX_BUILD_EXAMPLES=ON
cmake --build "$build" --target seqmix-demo
"$build/examples/seqmix-demo" "$@"
