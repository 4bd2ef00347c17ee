#!/usr/bin/env bash
# cterp's forward against llama.cpp's on the same synthetic GGUFs (docs/measurements.md): the
# 12x768 llama in F32, Q8_0, Q4_K and Q6_K and the Llama-3.2-1B-shaped Q4_K_M model, written once
# into DIR with a filler vocabulary (llama.cpp loads no model without one). Each is run by
# `cterp bench --batch 1 --context T --decode N` and by bench/llamacpp_forward.c (llama.cpp's
# prebuilt CPU libraries, from scripts/oracle/setup.sh): one sequence of T tokens through the
# logits, then N single tokens, taking turns, ROUNDS times, all the machine's threads. cterp runs
# with OPENBLAS_CORETYPE unset (some machines here pin OpenBLAS to its AVX2 kernels; llama.cpp
# picks its own best). Not a test (minutes on 2 cores).
# Usage: bench/llamacpp_forward.sh [DIR] [build] [N] [ROUNDS] [T]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/tmp/cterp-model-bench}
build=${2:-$ROOT/build}
n=${3:-32}
rounds=${4:-3}
T=${5:-128}
mkdir -p "$dir"
# shellcheck source=../scripts/oracle/setup.sh
source "$ROOT/scripts/oracle/setup.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
oracle_cc "$tmp/llamacpp_forward" "$ROOT/bench/llamacpp_forward.c" -Wall -Wextra -Werror
lscpu | sed -n 's/^Model name: *//p'
models=()
for t in F32 Q8_0 Q4_K Q6_K; do
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
    env -u OPENBLAS_CORETYPE "$build/cterp" bench --model "$m" --batch 1 --context "$T" --decode "$n" |
      sed -n 's/^prefill B=1 T=[0-9]* to the logits[^:]*: \([0-9.]*\) tokens\/s.*/cterp     prefill \1 tokens\/s/p;
               s/^decode: \([0-9.]*\) tokens\/s.*/cterp     decode  \1 tokens\/s/p'
    "$tmp/llamacpp_forward" "$m" "$n" "$(nproc)" "$T" 5 |
      sed -n 's/^llama.cpp \(prefill\|decode\): \([0-9.]*\) tokens\/s.*/llama.cpp \1 \2 tokens\/s/p'
  done
done
