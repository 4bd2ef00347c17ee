#!/usr/bin/env bash
# The training-kernel benchmark of issue "training kernels": every size it names, batch 4096.
# Not a test (minutes on 2 cores). Usage: [BF16=1] bench/run_bench.sh [build/cterp] [steps]
# (BF16=1 adds the TopK sizes with the bf16 encoder GEMM).
# OpenBLAS's own choice of kernels is measured: an OPENBLAS_CORETYPE in the environment is set
# aside (this workplace's machines set OPENBLAS_CORETYPE=Haswell, AVX2 kernels at half the SGEMM
# rate on their AVX-512 CPUs). KEEP_BLAS_ENV=1 keeps it.
set -euo pipefail
bin=${1:-build/cterp}
S=${2:-5}
if [ -z "${KEEP_BLAS_ENV:-}" ] && [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  echo "run_bench: measuring without OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE (KEEP_BLAS_ENV=1 keeps it)"
  unset OPENBLAS_CORETYPE
fi
"$bin" bench --arch topk --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps "$S"
"$bin" bench --arch topk --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps "$S" --dead-fraction 0.1 --aux-k 0  # k_aux d_in/2 = 384, as sparsify
"$bin" bench --arch topk --d-in 512 --d-sae 16384 --k 64 --batch 4096 --steps "$S"
"$bin" bench --arch topk --d-in 64 --d-sae 2048 --k 16 --batch 4096 --steps $((S * 20))
# a tiny lr keeps L0 near its initial 64 (this measures speed, not learning)
"$bin" bench --arch standard --d-in 768 --d-sae 24576 --batch 4096 --steps "$S" --l0 64 --lr 1e-7
# The bf16 encoder GEMM (encoder_bf16, AVX-512 BF16 CPUs only): the same TopK sizes.
if [ -n "${BF16:-}" ]; then
  "$bin" bench --arch topk --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps "$S" --encoder-bf16 true
  "$bin" bench --arch topk --d-in 768 --d-sae 24576 --k 32 --batch 4096 --steps "$S" --dead-fraction 0.1 --aux-k 0 --encoder-bf16 true
  "$bin" bench --arch topk --d-in 512 --d-sae 16384 --k 64 --batch 4096 --steps "$S" --encoder-bf16 true
  "$bin" bench --arch topk --d-in 64 --d-sae 2048 --k 16 --batch 4096 --steps $((S * 20)) --encoder-bf16 true
fi
