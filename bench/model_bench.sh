#!/usr/bin/env bash
# The model forward on the synthetic models of docs/measurements.md ("Model forward"): prefill
# tokens/s against the same-run SGEMM roofline of each model's matmul shapes, and decode against
# the read-bandwidth bound, for the 12-layer d_model-768 llama in F32, F16, Q8_0, Q4_K and Q6_K,
# and the Llama-3.2-1B-shaped Q4_K_M model to blocks.12.hook_mlp_out (the seed's hook). Writes the
# models once into DIR (about 1.5 GB). Not a test (minutes on 2 cores).
# Usage: bench/model_bench.sh [DIR] [build]
set -euo pipefail
dir=${1:-/tmp/cterp-model-bench}
build=${2:-build}
mkdir -p "$dir"
lscpu | sed -n 's/^Model name: *//p'
for t in F32 F16 Q8_0 Q4_K Q6_K; do
  [ -f "$dir/l768-$t.gguf" ] || "$build/bench_synth_gguf" "$dir/l768-$t.gguf" --shape llama768 --type "$t"
done
[ -f "$dir/l1b-Q4_K_M.gguf" ] || "$build/bench_synth_gguf" "$dir/l1b-Q4_K_M.gguf" --shape llama1b --type Q4_K_M
"$build/cterp" --version | sed -n '2,5p'
for t in F32 F16 Q8_0 Q4_K Q6_K; do
  echo "== llama 12x768 $t"
  "$build/cterp" bench --model "$dir/l768-$t.gguf" --batch 4 --context 128 --decode 32 | grep -E "^(prefill|decode|peak)"
done
echo "== Llama-3.2-1B shape, Q4_K_M, to blocks.12.hook_mlp_out"
"$build/cterp" bench --model "$dir/l1b-Q4_K_M.gguf" --batch 4 --context 128 --hook blocks.12.hook_mlp_out \
  --decode 16 | grep -E "^(prefill|decode|peak)"
