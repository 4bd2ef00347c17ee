#!/usr/bin/env bash
# The measurements of docs/scaling.md ("Measured on this machine"): the gradient sum alone
# (bench_dist, 2 ranks) and training steps of SAEs A (d_sae 8192, k 32, batch 2048) and B
# (d_sae 2048, k 16, batch 512) on 20480 Gaussian rows of width 512, P = 1 and 2 alternated,
# REPS times, one OpenMP thread per rank, shared memory. Not a test (minutes); run it on a quiet
# machine. Usage: bench/dist_bench.sh [build] [REPS]
set -euo pipefail
build=${1:-build}
reps=${2:-3}
dir=$(mktemp -d /tmp/cterp-dist-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe --mca btl self,vader)
lscpu | sed -n 's/^Model name: *//p'
uptime
/usr/bin/python3 -c "
import numpy as np
np.save('$dir/big.npy', np.random.default_rng(0).standard_normal((20480, 512), dtype=np.float32))"
echo "== the sum alone (2 ranks)"
"${mpi[@]}" -np 2 "$build/bench_dist" --reps 9 --max-mb 70
run() { # name P args...
  local name=$1 p=$2
  shift 2
  rm -rf "$dir/m"
  "${mpi[@]}" -np "$p" "$build/cterp" train --acts "$dir/big.npy" "$@" --steps 12 --log-every 12 \
    --quiet --out "$dir/m" 2>&1 | grep 'MPI:' || true
  /usr/bin/python3 -c "
import json
m = [json.loads(l) for l in open('$dir/m/metrics.jsonl')][-1]
print('$name P=$p tokens/s %.0f' % m['tokens_per_s'])"
}
for r in $(seq "$reps"); do
  for p in 1 2; do
    run A "$p" --d-sae 8192 --k 32 --batch 2048
    run B "$p" --d-sae 2048 --k 16 --batch 512
  done
done
