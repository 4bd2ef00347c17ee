#!/usr/bin/env bash
# cterp's decode against llama.cpp's on the same synthetic GGUFs (docs/measurements.md): the
# 12x768 llama in Q8_0, Q4_K and Q6_K and the Llama-3.2-1B-shaped Q4_K_M model, written once into
# DIR with a filler vocabulary (llama.cpp loads no model without one), each decoded N tokens by
# `cterp bench --decode` and by bench/llamacpp_decode.c (llama.cpp's prebuilt CPU libraries, from
# scripts/oracle/setup.sh), taking turns, ROUNDS times. Not a test (minutes on 2 cores).
# Usage: bench/llamacpp_decode.sh [DIR] [build] [N] [ROUNDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/tmp/cterp-model-bench}
build=${2:-$ROOT/build}
n=${3:-32}
rounds=${4:-3}
mkdir -p "$dir"
# shellcheck source=../scripts/oracle/setup.sh
source "$ROOT/scripts/oracle/setup.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
oracle_cc "$tmp/llamacpp_decode" "$ROOT/bench/llamacpp_decode.c" -Wall -Wextra -Werror
lscpu | sed -n 's/^Model name: *//p'
models=()
for t in Q8_0 Q4_K Q6_K; do
  f=$dir/lcpp-l768-$t.gguf
  [ -f "$f" ] || "$build/bench_synth_gguf" "$f" --shape llama768 --type "$t" --filler-vocab
  models+=("$f")
done
f=$dir/lcpp-l1b-Q4_K_M.gguf
[ -f "$f" ] || "$build/bench_synth_gguf" "$f" --shape llama1b --type Q4_K_M --filler-vocab
models+=("$f")
for m in "${models[@]}"; do
  echo "== $(basename "$m")"
  for r in $(seq "$rounds"); do
    "$build/cterp" bench --model "$m" --batch 1 --context 4 --decode "$n" --seconds 0.05 |
      sed -n 's/^decode: \([0-9.]*\) tokens\/s.*/cterp     \1 tokens\/s/p'
    "$tmp/llamacpp_decode" "$m" "$n" "$(nproc)" | sed -n 's/^llama.cpp decode: \([0-9.]*\) tokens\/s.*/llama.cpp \1 tokens\/s/p'
  done
done
