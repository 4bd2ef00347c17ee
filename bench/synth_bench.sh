#!/usr/bin/env bash
# The synthetic benchmark table of docs/measurements.md: architectures and training variants on
# the same SynthSAEBench-16k-like stream (16,384 features in 768 dims, SAE width 4096, k 25 for
# the top-k family, the same seeds and samples for every row), scored by f1, mcc, uniqueness,
# precision, recall, ev, l0 on held-out samples. Not a test: about 6-7 min a row on an idle 2-core
# machine at 5M samples (the generator and the SAE share the cores); run it on a quiet one.
# Usage: bench/synth_bench.sh [build/cterp] [samples] [eval samples]
set -euo pipefail
bin=${1:-build/cterp}
samples=${2:-5000000}               # SynthSAEBench trains 200M
evals=${3:-200000}
log=${SYNTH_BENCH_LOG:-synth_bench_$(date -u +%Y%m%d_%H%M%S).jsonl}
echo "# $("$bin" --version | head -2 | tr '\n' ' ')" >&2
echo "# samples $samples, eval samples $evals, JSON lines -> $log" >&2
# jumprelu/standard/gated need their inputs on the scale their coefficients assume
# (docs/training.md, JumpReLU); the top-k family is unaffected by it
run() { # label, then flags: one table row per architecture of --archs
  echo "== $1" >&2
  shift
  "$bin" bench --synth --preset synth16k --samples "$samples" --eval-samples "$evals" \
      --normalize-activations true --json --quiet "$@" | tee >(grep '^{' >>"$log") | grep -v '^{'
}
run "the architectures at the preset's settings (lr 3e-4, batch 1024)" --archs topk,batchtopk
run "matryoshka, prefixes 128/512/2048/4096" --archs matryoshka_batchtopk --matryoshka-widths 128,512,2048,4096
run "k annealing 100 -> 25 over the first 1500 steps" --archs topk,batchtopk --k-anneal-steps 1500 --k-anneal-start 100
run "learning rate 1e-3" --archs topk --lr 1e-3
run "learning rate 1.5e-4" --archs topk --lr 1.5e-4
# not in the table: jumprelu, standard and gated at their default coefficients start dense here
# (L0 ~3,800 of 4,096 after 200 steps, ~20x slower a step); they need coefficients tuned to L0 25
# first: run "..." --archs jumprelu,standard,gated [--l0-coefficient C | --l1-coefficient C]
