#!/usr/bin/env bash
# The main demo: installs missing packages, builds seqmix-demo and runs it (loads a GLA layer from
# a safetensors file, chunkwise prefill, step() decoding, per-layer timings). Then a whole model:
# seqmix-hybrid-example writes two random hybrid models (Mamba-2 + attention 7:1, Gated DeltaNet +
# attention 3:1) and seqmix-run loads each, prefills, generates and prints per-block bytes and time;
# seqmix-redundancy ranks the Jamba-like model's parts and drops its two least important mixers.
# Arguments go to seqmix-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build=${SEQMIX_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSEQMIX_BUILD_EXAMPLES=ON
cmake --build "$build" --target seqmix-demo seqmix-hybrid-example seqmix-run seqmix-redundancy
"$build/examples/seqmix-demo" "$@"

models="$build/examples/hybrid-models"
echo
"$build/examples/seqmix-hybrid-example" "$models"
for name in jamba-like qwen3next-like; do
  echo
  echo "== seqmix-run $name (prompt 256 tokens, 64 generated, 2 threads)"
  "$build/tools/seqmix-run" "$models/$name.safetensors" "$models/$name.json" --prompt-length 256 --tokens 64 --threads 2
done

echo
echo "== seqmix-redundancy jamba-like (4 sampled sequences of 128 tokens; drops the 2 least important mixers)"
"$build/tools/seqmix-redundancy" "$models/jamba-like.safetensors" "$models/jamba-like.json" --threads 2 \
  --drop 2 --what mixer --out "$models/jamba-like-dropped.json"
