#!/usr/bin/env bash
# A cache larger than the memory a process may use trains (docs/reliability.md): writes a real
# cache over stories260K, grows it to SIZE_MB by repeating its rows (a valid cache: the header's
# count patched, no tokens.bin), then under `ulimit -v LIMIT_MB` (address space, smaller than
# the file) maps the file with Python to show a mapping cannot, and runs `cterp train --acts` on
# it for every row of the cache once (STEPS to change): it streams and reports its peak RSS.
# Then, where this user may make a memory cgroup (v1 memory.limit_in_bytes or v2 memory.max, as
# root), the same training in one limited to CGROUP_MB (default 400) of memory, page cache
# included: a limit on memory used, not on address space reserved.
# Usage: scripts/cache_ulimit.sh [build/cterp] [SIZE_MB=2048] [LIMIT_MB=1000] [CGROUP_MB=400]
# Note: OpenBLAS reserves 128 MB buffers and glibc 64 MB malloc arenas per thread; below about
# 600 MB of address space (2 threads) OpenBLAS's start-up (a library constructor, before cterp's
# main) retries its allocation for ever, so keep a ulimit -v above that (OMP_NUM_THREADS=2 here);
# a cgroup counts only the pages used, so it has no such floor.
set -eu
bin=${1:-build/cterp}
size_mb=${2:-2048}
limit_mb=${3:-1000}
cgroup_mb=${4:-400}
data=${CTERP_TESTDATA:-$(dirname "$0")/../../shared/testdata}
m=$data/models/stories260K.gguf
[ -f "$m" ] || { echo "needs $m (set CTERP_TESTDATA)"; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" generate --model "$m" -n 200 --temp 1 --samples 64 --seed 1 > "$tmp/s.txt" 2>/dev/null
"$bin" cache --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 64 --tokens 100000 \
    --out "$tmp/small" >/dev/null
mkdir "$tmp/big"
/usr/bin/python3 - "$tmp/small/activations.bin" "$tmp/big/activations.bin" "$size_mb" <<'PY'
import struct, sys
src, dst, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
hdr, rows = bytearray(data[:4096]), data[4096:]
d_in, count = struct.unpack_from("<qq", hdr, 16)
reps = max(1, (size_mb << 20) // len(rows))
struct.pack_into("<q", hdr, 24, count * reps)
with open(dst, "wb") as f:
    f.write(hdr)
    for _ in range(reps):
        f.write(rows)
print("cache: %d rows x %d (f32), %.0f MB" % (count * reps, d_in, (4096 + reps * len(rows)) / 2**20))
open(dst + ".rows", "w").write("%d" % (count * reps))
PY
steps=${STEPS:-$(( $(cat "$tmp/big/activations.bin.rows") / 4096 + 1 ))} # every row once
rm "$tmp/big/activations.bin.rows"
echo "ulimit -v $((limit_mb * 1024)) (${limit_mb} MB of address space)"
(
    ulimit -v $((limit_mb * 1024))
    /usr/bin/python3 -c 'import mmap, sys; f = open(sys.argv[1], "rb"); mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)' \
        "$tmp/big/activations.bin" 2>&1 | tail -1 | sed 's/^/mmap of the whole file: /'
    OMP_NUM_THREADS=2 "$bin" train --acts "$tmp/big" --d-sae 512 --k 16 --batch 4096 --steps $steps --buffer-rows 65536 \
        --quiet --out "$tmp/sae" | tail -2
    echo "exit $?"
)
sed -n '$p' "$tmp/sae/metrics.jsonl" | grep -o '"tokens": [0-9]*\|"peak_rss_mb": [0-9.]*' | tr '\n' ' '
echo

# the cgroup: v1's memory controller or v2's, whichever this machine lets us write
cg=""
for root in /sys/fs/cgroup/memory /sys/fs/cgroup; do
  if [ -w "$root" ] && mkdir "$root/cterp-cache-ulimit.$$" 2>/dev/null; then
    cg=$root/cterp-cache-ulimit.$$
    if [ -f "$cg/memory.limit_in_bytes" ]; then echo $((cgroup_mb << 20)) >"$cg/memory.limit_in_bytes"
    elif [ -f "$cg/memory.max" ]; then echo $((cgroup_mb << 20)) >"$cg/memory.max"
    else rmdir "$cg"; cg=""; continue; fi
    break
  fi
done
if [ -z "$cg" ]; then
  echo "no memory cgroup this user may make: the cgroup run skipped"
  exit 0
fi
trap 'rmdir "$cg" 2>/dev/null; rm -rf "$tmp"' EXIT
echo "memory cgroup of ${cgroup_mb} MB ($cg)"
(
    echo $BASHPID >"$cg/cgroup.procs"
    OMP_NUM_THREADS=2 "$bin" train --acts "$tmp/big" --d-sae 512 --k 16 --batch 4096 --steps $steps --buffer-rows 65536 \
        --quiet --out "$tmp/sae2" | tail -2
    echo "exit $?"
)
peak=$(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || cat "$cg/memory.peak" 2>/dev/null || echo 0)
echo "cgroup's peak memory (page cache included): $((peak >> 20)) MB"
sed -n '$p' "$tmp/sae2/metrics.jsonl" | grep -o '"tokens": [0-9]*\|"peak_rss_mb": [0-9.]*' | tr '\n' ' '
echo
