#!/usr/bin/env bash
# The kernel variants side by side: TopK training steps (768/24576/32 and 64/2048/16, batch 4096)
# under every variant this CPU runs, with OpenBLAS's own kernels, and for the AVX2 and generic
# variants also with OpenBLAS pinned to its AVX2 kernels (OPENBLAS_CORETYPE=Haswell): what an
# AVX2-only CPU gets, roofline included. Optional second binary: an older build to compare with,
# run interleaved. Not a test (minutes on 2 cores).
# Usage: bench/isa_bench.sh [build/cterp] [steps] [other-cterp]
set -euo pipefail
bin=${1:-build/cterp}
S=${2:-5}
other=${3:-}
unset OPENBLAS_CORETYPE
lscpu | sed -n 's/^Model name: *//p'
"$bin" --version | sed -n '2,5p'
run() { # label, env..., then the bench arguments
  local label=$1; shift
  echo "== $label"
  env "$@" 2>&1 | grep -E "^(topk|standard|  ms/step|blas|cpu)" | sed 's/^/  /'
}
for size in "--d-in 768 --d-sae 24576 --k 32 --steps $S" "--d-in 64 --d-sae 2048 --k 16 --steps $((S * 20))"; do
  for v in $("$bin" --version | sed -n 's/^runs here: //p'); do
    run "CTERP_ISA=$v, OpenBLAS's choice" CTERP_ISA="$v" "$bin" bench --arch topk --batch 4096 $size
    case "$v" in avx2|generic)
      run "CTERP_ISA=$v, OPENBLAS_CORETYPE=Haswell" CTERP_ISA="$v" OPENBLAS_CORETYPE=Haswell "$bin" bench --arch topk --batch 4096 $size ;;
    esac
    if [ -n "$other" ] && [ "$v" = avx2 ]; then
      run "$other, OpenBLAS's choice" "$other" bench --arch topk --batch 4096 $size
      run "$other, OPENBLAS_CORETYPE=Haswell" OPENBLAS_CORETYPE=Haswell "$other" bench --arch topk --batch 4096 $size
    fi
  done
done
