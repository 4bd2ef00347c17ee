#!/usr/bin/env bash
# The synthetic benchmark table for docs/measurements.md: every architecture on the same
# SynthSAEBench-16k-like stream (16,384 features in 768 dims, SAE width 4096, k 25), scored by
# f1, mcc, uniqueness, precision, recall, ev, l0. Not a test: hours on a small machine (the
# generator and the SAE share the cores); run it on a quiet one.
# Usage: bench/synth_bench.sh [build/cterp] [samples] [archs]
set -euo pipefail
bin=${1:-build/cterp}
samples=${2:-20000000}              # SynthSAEBench trains 200M; 20M is the quick comparison
archs=${3:-topk,batchtopk,jumprelu,standard}
log=${SYNTH_BENCH_LOG:-synth_bench_$(date -u +%Y%m%d_%H%M%S).jsonl}
echo "# $("$bin" --version | head -2 | tr '\n' ' ')" >&2
echo "# samples $samples, archs $archs, JSON lines -> $log" >&2
# the JSON lines go to the log, the table to the terminal; jumprelu/standard need their inputs on
# the scale their coefficients assume (docs/training.md, JumpReLU)
"$bin" bench --synth --preset synth16k --archs "$archs" --samples "$samples" --eval-samples 500000 \
    --normalize-activations true --quiet | tee >(grep '^{' >"$log") | grep -v '^{'
