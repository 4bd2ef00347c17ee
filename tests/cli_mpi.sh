#!/usr/bin/env bash
# MPI data parallelism (docs/scaling.md), 2 ranks on this machine over shared memory: P ranks
# train the SAE one process trains (within the documented tolerance; every architecture but the
# transcoders, refused; several hooks from one forward too), --dist-reduce ordered is
# the same bits run to run, rank 0 alone writes, resume works across P, a sharded cache reads
# back as the single-process cache, a sharded cache killed (either rank, at named points) and
# resumed with --resume is byte-identical to an uninterrupted one, and a rank killed with SIGKILL
# stops the job within seconds with the last checkpoint intact. Skips, saying why, without an MPI
# build or mpirun (and the model tests without the shared test data).
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-}}
if ! "$bin" --version | grep -q '^mpi: yes'; then
    echo "skip: cterp was built without MPI (install libopenmpi-dev openmpi-bin and rebuild)"
    exit 0
fi
if ! command -v mpirun >/dev/null; then
    echo "skip: mpirun not found (Debian: openmpi-bin)"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
# one OpenMP thread a rank: two ranks on two cores; CI runs as root
export OMP_NUM_THREADS=1
mpiflags=(--oversubscribe --allow-run-as-root --mca btl self,vader)
if [ -n "${CTERP_SANITIZED:-}" ]; then
    # ASan build: Open MPI's own allocations live to exit (tests/lsan_openmpi.supp); its components
    # stay mapped (tests/nodlclose.c) so that LeakSanitizer can name them; cterp's are checked
    cc -shared -fPIC -o "$tmp/nodlclose.so" "$here/nodlclose.c" || exit 1
    export LSAN_OPTIONS="suppressions=$here/lsan_openmpi.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
    mpiflags+=(-x "LD_PRELOAD=$tmp/nodlclose.so")
fi
mpi() { mpirun "${mpiflags[@]}" "$@"; }
py=/usr/bin/python3
# activations: sparse sums of 512 random directions in 64 dimensions, 4096 rows (.npy)
$py - "$tmp/x.npy" <<'PYEOF'
import sys
import numpy as np
r = np.random.default_rng(1)
F = r.standard_normal((512, 64)); F /= np.linalg.norm(F, axis=1, keepdims=True)
a = (r.random((4096, 512)) < 0.01) * r.random((4096, 512))
np.save(sys.argv[1], (a @ F).astype(np.float32))
PYEOF
# The tolerances of docs/scaling.md, per tensor (T = ||a - b|| / ||a||, M = max |a - b| / max |a|):
# 10 steps: T <= 1e-5, M <= 1e-3 (measured: T <= 1e-6); a longer run, where a near-tie of the
# top-k or a threshold may go the other way and Adam carries it on: T <= 1e-2. A gradient summed
# without its 1/P is T ~ 1e-2 after 10 steps; a changed weight fails both.
cmp_sae() { $py "$here/sae_compare.py" "$3/sae_weights.safetensors" "$4/sae_weights.safetensors" --tol "$1" "$2" >"$tmp/cmp.txt" || { cat "$tmp/cmp.txt"; return 1; }; }
close() { cmp_sae 1e-5 1e-3 "$@"; }
near() { cmp_sae 1e-2 1 "$@"; }

toy="--acts $tmp/x.npy --steps 10 --batch 256 --d-sae 256 --k 8 --quiet"
for arch in "topk" "batchtopk" "jumprelu --normalize-activations true" \
            "standard --b-dec-init geometric_median --use-ghost-grads true" \
            "gated" "matryoshka_batchtopk --matryoshka-widths 64,128"; do
    "$bin" train $toy --arch $arch --out "$tmp/a1" >/dev/null 2>&1
    mpi -np 2 "$bin" train $toy --arch $arch --out "$tmp/a2" >"$tmp/a2.out" 2>&1; rc=$?
    check "2 ranks, --arch $arch, 10 steps: exit 0, within 1e-5 of one process" '[ $rc -eq 0 ] && close "$tmp/a1" "$tmp/a2"'
    [ "$arch" = topk ] && cp -r "$tmp/a1" "$tmp/t1"
    rm -rf "$tmp/a1" "$tmp/a2"
done
# k annealing (64 = d_in -> 8 over 6 of the 10 steps): the schedule is the step's alone, so the
# ranks agree on every k and on the whole batch's cut
for arch in topk batchtopk; do
    "$bin" train $toy --arch $arch --k-anneal-steps 6 --log-every 1 --out "$tmp/a1" >/dev/null 2>&1
    mpi -np 2 "$bin" train $toy --arch $arch --k-anneal-steps 6 --log-every 1 --out "$tmp/a2" >/dev/null 2>&1; rc=$?
    check "2 ranks, --arch $arch --k-anneal-steps 6: within 1e-5 of one process, the same k in metrics.jsonl" '[ $rc -eq 0 ] && close "$tmp/a1" "$tmp/a2" && [ "$(grep -o "\"k\": [0-9]*" "$tmp/a1/metrics.jsonl" | tr "\n" " ")" = "\"k\": 64 \"k\": 54 \"k\": 45 \"k\": 36 \"k\": 26 \"k\": 17 \"k\": 8 \"k\": 8 \"k\": 8 \"k\": 8 " ] && cmp -s <(grep -o "\"k\": [0-9]*" "$tmp/a1/metrics.jsonl") <(grep -o "\"k\": [0-9]*" "$tmp/a2/metrics.jsonl")'
    rm -rf "$tmp/a1" "$tmp/a2"
done
mpi -np 1 "$bin" train $toy --arch topk --out "$tmp/p1" >/dev/null 2>&1
check "mpirun -np 1: the single process's bits (no collective runs)" 'cmp -s "$tmp/t1/sae_weights.safetensors" "$tmp/p1/sae_weights.safetensors"'
err=$(mpi -np 2 "$bin" eval --model x.gguf 2>&1); rc=$?
check "commands other than train and cache are refused under mpirun, saying why" '[ $rc -ne 0 ] && [[ "$err" == *"cterp eval: runs in one process"* ]]'
mpi -np 2 "$bin" train --toy --steps 4 --batch 256 --d-sae 256 --k 8 --quiet >"$tmp/toy.out" 2>&1; rc=$?
check "train --toy over 2 ranks: rank 0 alone prints its report" '[ $rc -eq 0 ] && [ "$(grep -c "^Recovery of the" "$tmp/toy.out")" -eq 1 ]'
mkdir -p "$tmp/bad1" "$tmp/bad2"
$py - "$tmp/t1/sae_weights.safetensors" "$tmp/bad1/sae_weights.safetensors" "$tmp/bad2/sae_weights.safetensors" <<'PYEOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
s, e = json.loads(b[8:8 + n])['W_dec']['data_offsets']; o = 8 + n + s
c = bytearray(b)
struct.pack_into('<f', b, o, struct.unpack_from('<f', b, o)[0] + 1e-3)  # one weight moved
open(sys.argv[2], 'wb').write(b)
for q in range(o, 8 + n + e, 4):  # every weight of W_dec 3% larger
    struct.pack_into('<f', c, q, struct.unpack_from('<f', c, q)[0] * 1.03)
open(sys.argv[3], 'wb').write(c)
PYEOF
check "the comparisons fail on one weight moved by 1e-3 (10 steps), on W_dec 3% larger (longer runs)" '! close "$tmp/t1" "$tmp/bad1" >/dev/null && ! near "$tmp/t1" "$tmp/bad2" >/dev/null'

toy="--acts $tmp/x.npy --steps 40 --batch 256 --d-sae 256 --k 8 --quiet"
"$bin" train $toy --out "$tmp/t1" >/dev/null 2>&1

mpi -np 2 "$bin" train $toy --dist-reduce ordered --out "$tmp/o1" >/dev/null 2>&1
mpi -np 2 "$bin" train $toy --dist-reduce ordered --out "$tmp/o2" >/dev/null 2>&1
check "--dist-reduce ordered: two runs, the same bits" 'cmp -s "$tmp/o1/sae_weights.safetensors" "$tmp/o2/sae_weights.safetensors"'
check "--dist-reduce ordered, 40 steps: within 1e-2 of one process" 'near "$tmp/t1" "$tmp/o1"'

# checkpoints by rank 0; resume with another P
ck="--acts $tmp/x.npy --steps 40 --batch 256 --d-sae 256 --k 8 --quiet --checkpoint-every 20"
"$bin" train $ck --out "$tmp/c1" >/dev/null 2>&1
mpi -np 2 "$bin" train $ck --out "$tmp/c2" >/dev/null 2>&1
check "rank 0 writes the checkpoints and the SAE (one set of files)" '[ "$(ls "$tmp/c2")" = "$(ls "$tmp/c1")" ] && [ "$(ls "$tmp/c2/checkpoints")" = step_20 ] && "$bin" inspect "$tmp/c2/checkpoints/step_20" >/dev/null'
"$bin" train --acts "$tmp/x.npy" --quiet --resume "$tmp/c2/checkpoints/step_20" --out "$tmp/r21" >/dev/null 2>&1
mpi -np 2 "$bin" train --acts "$tmp/x.npy" --quiet --resume "$tmp/c1/checkpoints/step_20" --out "$tmp/r12" >/dev/null 2>&1
mpi -np 2 "$bin" train --acts "$tmp/x.npy" --quiet --resume "$tmp/c2/checkpoints/step_20" --out "$tmp/r22" >/dev/null 2>&1
check "a checkpoint of 2 ranks resumed by one process: within 1e-2" 'near "$tmp/c1" "$tmp/r21"'
check "a checkpoint of one process resumed by 2 ranks: within 1e-2" 'near "$tmp/c1" "$tmp/r12"'
check "a checkpoint of 2 ranks resumed by 2 ranks: the straight run's bits" 'cmp -s "$tmp/c2/sae_weights.safetensors" "$tmp/r22/sae_weights.safetensors"'

err=$(mpi -np 2 "$bin" train --acts "$tmp/x.npy" --steps 5 --batch 256 --arch transcoder --quiet 2>&1); rc=$?
check "transcoders are refused under mpirun, saying so" '[ $rc -ne 0 ] && [[ "$err" == *"architecture transcoder: not available with 2 MPI ranks"* ]]'
err=$(mpi -np 2 "$bin" train --acts "$tmp/x.npy" --steps 5 --batch 255 --quiet 2>&1); rc=$?
check "a batch that does not split over the ranks is refused, naming it" '[ $rc -ne 0 ] && [[ "$err" == *"batch_size: 255 rows do not split evenly over 2 MPI ranks"* ]]'

# a rank killed (SIGKILL, between steps 7 and 8: checkpoints every 5) stops the job in seconds
k="--acts $tmp/x.npy --steps 400 --batch 256 --d-sae 256 --k 8 --quiet --checkpoint-every 5 --out $tmp/k"
t0=$(date +%s)
timeout 60 mpirun "${mpiflags[@]}" -np 1 "$bin" train $k : -np 1 env CTERP_TEST_KILL_AT=step:7 "$bin" train $k \
    >"$tmp/k.out" 2>&1; rc=$?
dt=$(( $(date +%s) - t0 ))
check "a rank killed: the job ends (exit $rc, not the timeout) within 20 s ($dt s)" '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $dt -le 20 ]'
check "mpirun names the killed rank" 'grep -q "rank 1 .*signal 9" "$tmp/k.out"'
check "the last checkpoint is complete and resumes" '"$bin" inspect "$tmp/k/checkpoints/step_5" >/dev/null && "$bin" train --acts "$tmp/x.npy" --quiet --resume "$tmp/k/checkpoints/step_5" --out "$tmp/k" >/dev/null 2>&1 && [ -f "$tmp/k/sae_weights.safetensors" ]'
# the same from outside: kill -9 of rank 1 while both train
(timeout 60 mpirun "${mpiflags[@]}" -np 2 "$bin" train --acts "$tmp/x.npy" --steps 1000000 --batch 256 --d-sae 256 \
    --k 8 --quiet --out "$tmp/x" >"$tmp/x.out" 2>&1; echo $? >"$tmp/x.rc") &
victim=
for _ in $(seq 100); do
    for p in $(pgrep -f "train --acts $tmp/x.npy --steps 1000000"); do
        tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
    done
    [ -n "$victim" ] && [ -f "$tmp/x/metrics.jsonl" ] && break
    sleep 0.1
done
t0=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait
dt=$(( $(date +%s) - t0 ))
check "kill -9 of rank 1 from outside: every rank gone within 10 s ($dt s), exit $(cat "$tmp/x.rc")" '[ -n "$victim" ] && [ "$(cat "$tmp/x.rc")" -ne 0 ] && [ "$(cat "$tmp/x.rc")" -ne 124 ] && [ $dt -le 10 ] && ! pgrep -f "train --acts $tmp/x.npy --steps 1000000" >/dev/null'

if [ -z "$data" ] || [ ! -f "$data/models/stories260K.gguf" ]; then
    echo "skip: shared test data not found (set CTERP_TESTDATA): the model and cache tests"
    exit $fail
fi
m=$data/models/stories260K.gguf
"$bin" generate --model "$m" -n 100 --temp 1 --samples 24 --seed 1 >"$tmp/s.txt" 2>/dev/null
live="--model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --d-sae 256 --k 8 --batch 128 --steps 10 --buffer-rows 1024 --seed 5 --quiet --eval-windows 4"
"$bin" train $live --out "$tmp/l1" >/dev/null 2>&1
mpi -np 2 "$bin" train $live --out "$tmp/l2" >"$tmp/l2.out" 2>&1
check "train --model over 2 ranks (each runs half the forwards), 10 steps: within 1e-5" 'close "$tmp/l1" "$tmp/l2"'
check "rank 0 evaluates and prints once" '[ "$(grep -c "^explained_variance: " "$tmp/l2.out")" -eq 1 ]'
# a live run's checkpoint resumed by the other P: the store replays its rows in rounds of P batches
"$bin" train $live --eval-windows 0 --steps 20 --checkpoint-every 10 --out "$tmp/lc1" >/dev/null 2>&1
mpi -np 2 "$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 32 \
    --buffer-rows 1024 --quiet --eval-windows 0 --resume "$tmp/lc1/checkpoints/step_10" --out "$tmp/lr12" >/dev/null 2>&1
check "train --model: one process's checkpoint resumed by 2 ranks, within 1e-2" 'near "$tmp/lc1" "$tmp/lr12"'
# several hooks from one forward: every hook's trainer sums its own gradients over the ranks
hk="--model $m --layers 1-2 --component resid --data $tmp/s.txt --context-size 32 --d-sae 256 --k 8 --batch 128 --steps 10 --buffer-rows 1024 --seed 5 --quiet --eval-windows 0"
"$bin" train $hk --out "$tmp/h1" >/dev/null 2>&1
mpi -np 2 "$bin" train $hk --out "$tmp/h2" >"$tmp/h2.out" 2>&1; rc=$?
check "train --layers 1-2 over 2 ranks, 10 steps: exit 0, each hook within 1e-5 of one process" '[ $rc -eq 0 ] && close "$tmp/h1/blocks.1.hook_resid_post" "$tmp/h2/blocks.1.hook_resid_post" && close "$tmp/h1/blocks.2.hook_resid_post" "$tmp/h2/blocks.2.hook_resid_post"'
err=$(mpi -np 2 "$bin" cache --model "$m" --layers 1-2 --component resid --data "$tmp/s.txt" --context-size 32 --tokens 1000 --out "$tmp/hc" 2>&1); rc=$?
check "cache --layers (several hooks) under mpirun is refused, saying why" '[ $rc -ne 0 ] && [[ "$err" == *"a sharded cache holds one hook"* ]]'
for n in 100000 1000; do
    rm -rf "$tmp/ca1" "$tmp/ca2"
    cache="--model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --tokens $n"
    o1=$("$bin" cache $cache --out "$tmp/ca1" 2>/dev/null | sed 's/ in .* tokens\/s)//; s/ca1/DIR/')
    o2=$(mpi -np 2 "$bin" cache $cache --out "$tmp/ca2" 2>/dev/null | sed 's/ in .* tokens\/s)//; s/ca2/DIR/')
    check "cache --tokens $n over 2 ranks: 2 shards, the same rows, windows and epoch line" '[ -f "$tmp/ca2/activations.1.bin" ] && [ -f "$tmp/ca2/shards.bin" ] && [ "$o1" = "$o2" ] && [ -n "$o1" ]'
    $py - "$tmp/ca1" "$tmp/ca2" <<'PYEOF' >"$tmp/shards.txt"; rc=$?
import struct, sys
def rows(d):
    h = open(d + '/activations.bin', 'rb').read()
    ver = struct.unpack('<I', h[8:12])[0]; D, count = struct.unpack('<qq', h[16:32])
    if ver == 1:
        return h[4096:], open(d + '/tokens.bin', 'rb').read(), count
    P, k, sr, nc = struct.unpack('<IIqq', h[1600:1624])
    sh = [h[4096:]] + [open(d + '/activations.%d.bin' % i, 'rb').read()[4096:] for i in range(1, P)]
    tk = [open(d + '/tokens.bin', 'rb').read()] + [open(d + '/tokens.%d.bin' % i, 'rb').read() for i in range(1, P)]
    off, a, t = [0] * P, b'', b''
    for c, n in enumerate(struct.unpack('<%dq' % nc, open(d + '/shards.bin', 'rb').read())):
        s = c % P
        a += sh[s][off[s] * D * 4:(off[s] + n) * D * 4]; t += tk[s][off[s] * 4:(off[s] + n) * 4]; off[s] += n
    return a, t, count
x, y = rows(sys.argv[1]), rows(sys.argv[2])
print(len(x[0]), len(y[0]), x[2], y[2])
sys.exit(0 if x == y else 1)
PYEOF
    check "the shards in chunk order are the single-process cache, byte for byte (rows and tokens)" '[ $rc -eq 0 ]'
done
# a rank killed while writing its shard: no activations.bin, refused as incomplete; a rerun is whole
cache="--model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --tokens 100000"
timeout 60 mpirun "${mpiflags[@]}" -np 1 "$bin" cache $cache --out "$tmp/ck" : \
    -np 1 env CTERP_TEST_KILL_AT=write "$bin" cache $cache --out "$tmp/ck" >/dev/null 2>&1; rc=$?
err=$("$bin" train --acts "$tmp/ck" --steps 2 --batch 64 2>&1); rc2=$?
check "cache: a rank killed mid-shard ends the job (exit $rc), and the cache is refused as incomplete" '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc2 -ne 0 ] && [[ "$err" == *"an incomplete activation cache"* ]]'
mpi -np 2 "$bin" cache $cache --out "$tmp/ck" >/dev/null 2>&1
check "cache: the rerun over the leftovers writes the whole cache, no temporaries left" '[ -f "$tmp/ck/activations.1.bin" ] && ! ls "$tmp/ck" | grep -q tmp && "$bin" train --acts "$tmp/ck" --steps 2 --batch 64 --quiet >/dev/null 2>&1'
check "cache: ... and leaves no partial files or progress records" '[ -z "$(find "$tmp/ck" -name "*.partial" -o -name "cache.progress*")" ]'

# cache --resume of a sharded run (docs/reliability.md): killed at named points, resumed each time
# by 2 ranks, byte-identical to an uninterrupted 2-rank cache; a record per round (chunk of 1 row);
# --model-batch 4: 8 windows a round, about 246 rows, so --tokens 2000 ends mid-round
sc="cache --model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --tokens 2000 --model-batch 4"
mpi -np 2 "$bin" $sc --out "$tmp/sref" >/dev/null 2>&1
mpi -np 2 "$bin" $sc --dtype f16 --out "$tmp/sref16" >/dev/null 2>&1
sfiles="activations.bin activations.1.bin tokens.bin tokens.1.bin shards.bin"
ssame() { # ssame DIR REF: every file of the sharded cache byte for byte, no leftovers
    for f in $sfiles; do cmp -s "$1/$f" "$2/$f" || return 1; done
    [ -z "$(find "$1" -name "*.partial" -o -name "cache.progress*" -o -name "*.tmp.*")" ]
}
# skilled RANK POINT ARGS...: rank RANK of 2 killed at CTERP_TEST_KILL_AT=POINT; sets rc
skilled() {
    local r=$1 p=$2; shift 2
    if [ "$r" = 0 ]; then
        timeout 60 mpirun "${mpiflags[@]}" -np 1 env CTERP_TEST_KILL_AT=$p "$bin" "$@" : -np 1 "$bin" "$@" >"$tmp/sk.log" 2>&1; rc=$?
    else
        timeout 60 mpirun "${mpiflags[@]}" -np 1 "$bin" "$@" : -np 1 env CTERP_TEST_KILL_AT=$p "$bin" "$@" >"$tmp/sk.log" 2>&1; rc=$?
    fi
}
export CTERP_TEST_CACHE_CHUNK_ROWS=1
for dt in f32 f16; do
    ref=$tmp/sref; [ $dt = f16 ] && ref=$tmp/sref16
    out=$tmp/sk_$dt kills=0 refused=0 first=1
    # rank 1 after its second record, rank 0 mid-row in a round, rank 1 after its first record
    # (rank 0's may be one behind: resumed from the least), rank 0 between the shards and activations.bin
    for kp in 1:cache-chunk:2 0:write:300 1:cache-chunk:1 0:cache-tokens:1; do
        if [ $first = 1 ]; then skilled "${kp%%:*}" "${kp#*:}" $sc --dtype $dt --out "$out"; first=0
        else skilled "${kp%%:*}" "${kp#*:}" $sc --dtype $dt --resume --out "$out"; fi
        [ $rc -ne 0 ] && [ $rc -ne 124 ] && kills=$((kills + 1)) || echo "  $kp: exit $rc, not killed: $(tail -2 "$tmp/sk.log")"
        err=$("$bin" train --acts "$out" --steps 2 --batch 64 2>&1)
        [[ "$err" == *"incomplete activation cache"* ]] && [[ "$err" == *"--resume"* ]] && refused=$((refused + 1))
    done
    msg=$(mpi -np 2 "$bin" $sc --dtype $dt --resume --out "$out" 2>&1); rc=$?
    check "cache --resume, 2 ranks, $dt: 4 kills (ranks 0 and 1; after a record, mid-round, before activations.bin), each refused by train --acts saying to --resume" '[ $kills -eq 4 ] && [ $refused -eq 4 ]'
    check "cache --resume, 2 ranks, $dt: resumed to the end, every shard, tokens and shards.bin byte-identical to the uninterrupted run, no leftovers" '[ $rc -eq 0 ] && ssame "$out" "$ref" && [[ "$msg" == *"resumed at row"* ]]'
done
# ranks one record apart: rank 0 killed mid-round (its record is the round before), its record
# kept; a resume in which rank 1 dies after its next record; rank 0's kept record put back: rank 1
# is a record ahead, the resume goes on from rank 0's (rank 1's previous) point
rows_of() { $py -c 'import json,sys; print(json.load(open(sys.argv[1]))["at"]["rows"])' "$1"; }
skilled 0 write:620 $sc --out "$tmp/sa"
cp "$tmp/sa/cache.progress.0" "$tmp/rec0"
skilled 1 cache-chunk:1 $sc --resume --out "$tmp/sa"
r0=$(rows_of "$tmp/rec0") r1=$(rows_of "$tmp/sa/cache.progress.1")
cp "$tmp/rec0" "$tmp/sa/cache.progress.0"
msg=$(mpi -np 2 "$bin" $sc --resume --out "$tmp/sa" 2>&1); rc=$?
check "cache --resume, records one apart (rank 0 at row $r0, rank 1 at $r1): resumed from the least, byte-identical" '[ "$r0" -gt 0 ] && [ "$r1" -gt "$r0" ] && [ $rc -eq 0 ] && [[ "$msg" == *"resumed at row $r0;"* ]] && ssame "$tmp/sa" "$tmp/sref"'
# the data's end: rank 1 killed in its rows of the last round (about 2 writes a row and one a
# record: a few rows before its last), before its last record; rank 0 marks its record done only
# after every rank's last record (the round that finds the end runs no collective), else the
# records would be two apart and the resume refused as disagreeing
se="cache --model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --tokens 3000 --model-batch 4"
mpi -np 2 "$bin" $se --out "$tmp/seref" >/dev/null 2>&1
skilled 1 write:$(( $(stat -c %s "$tmp/seref/tokens.1.bin") / 2 )) $se --out "$tmp/se"
r0=$(rows_of "$tmp/se/cache.progress.0") r1=$(rows_of "$tmp/se/cache.progress.1")
msg=$(mpi -np 2 "$bin" $se --resume --out "$tmp/se" 2>&1); rc=$?
check "cache --resume, rank 1 killed in the last round (rank 0 at row $r0, rank 1 at $r1): byte-identical" '[ "$r1" -lt "$r0" ] && [ $rc -eq 0 ] && [[ "$msg" == *"resumed at row $r1;"* ]] && ssame "$tmp/se" "$tmp/seref"'
# refusals: another P, another option, one process; a one-process partial under mpirun; a whole cache
skilled 1 cache-chunk:2 $sc --out "$tmp/sb"
err=$(mpi -np 3 "$bin" $sc --resume --out "$tmp/sb" 2>&1); rc=$?
check "cache --resume by 3 ranks of a 2-rank run is refused naming both" '[ $rc -ne 0 ] && [[ "$err" == *"shards: the interrupted run had 2 MPI ranks"*"this run has 3; resume under mpirun -np 2"* ]]'
err=$(mpi -np 2 "$bin" $sc --context-size 16 --resume --out "$tmp/sb" 2>&1); rc=$?
check "cache --resume with another --context-size under mpirun is refused naming it" '[ $rc -ne 0 ] && [[ "$err" == *"options.context_size: the interrupted run had 32, this run has 16"* ]]'
cp "$tmp/sb/cache.progress.0" "$tmp/rec0"
$py - "$tmp/sb/cache.progress.0" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); r["at"] = r["prev"] = {"rows": 1, "windows": 1, "chunks": 1, "shard_rows": 1}
json.dump(r, open(sys.argv[1], "w"))
PYEOF
err=$(mpi -np 2 "$bin" $sc --resume --out "$tmp/sb" 2>&1); rc=$?
check "cache --resume with records that disagree (rank 0's moved to row 1) is refused saying so" '[ $rc -ne 0 ] && [[ "$err" == *"cache.progress.1: records rows "*"another rank'"'"'s record is at 1: the records disagree"* ]]'
cp "$tmp/rec0" "$tmp/sb/cache.progress.0"
cp "$tmp/sb/cache.progress.1" "$tmp/rec1"
echo '{"format": "cterp sharded cache progress 1"}' >"$tmp/sb/cache.progress.1"
err=$(mpi -np 2 "$bin" $sc --resume --out "$tmp/sb" 2>&1); rc=$?
check "cache --resume with a damaged record is refused naming it" '[ $rc -ne 0 ] && [[ "$err" == *"cache.progress.1: expected a JSON object with format"*"not a progress record this cterp wrote"* ]]'
cp "$tmp/rec1" "$tmp/sb/cache.progress.1"
err=$("$bin" $sc --resume --out "$tmp/sb" 2>&1); rc=$?
check "a sharded partial resumed in one process is refused, saying to use mpirun -np 2" '[ $rc -ne 0 ] && [[ "$err" == *"an interrupted sharded cache of 2 MPI ranks"*"mpirun -np 2"* ]]'
mpi -np 2 "$bin" $sc --resume --out "$tmp/sb" >/dev/null 2>&1; rc=$?
check "... the partial untouched by the refusals, resumed by 2 ranks: byte-identical" '[ $rc -eq 0 ] && ssame "$tmp/sb" "$tmp/sref"'
err=$(mpi -np 2 "$bin" $sc --resume --out "$tmp/sb" 2>&1); rc=$?
check "cache --resume of a complete sharded cache is refused: nothing to resume" '[ $rc -ne 0 ] && [[ "$err" == *"complete cache, nothing to resume"* ]] && ssame "$tmp/sb" "$tmp/sref"'
{ CTERP_TEST_KILL_AT=cache-chunk:2 "$bin" $sc --out "$tmp/s1p" >/dev/null 2>&1; } 2>/dev/null
err=$(mpi -np 2 "$bin" $sc --resume --out "$tmp/s1p" 2>&1); rc=$?
check "a one-process partial resumed under mpirun is refused, saying to resume it in one process" '[ $rc -ne 0 ] && [[ "$err" == *"cache.progress: the record of an interrupted cterp cache in one process"* ]] && [ -f "$tmp/s1p/cache.progress" ]'
mpi -np 2 "$bin" $sc --resume --out "$tmp/sc" >/dev/null 2>&1; rc=$?
check "cache --resume by 2 ranks with nothing there starts over: byte-identical" '[ $rc -eq 0 ] && ssame "$tmp/sc" "$tmp/sref"'
unset CTERP_TEST_CACHE_CHUNK_ROWS
tr="--d-sae 256 --k 8 --batch 128 --steps 10 --seed 5 --quiet --buffer-rows 1024"
"$bin" train --acts "$tmp/ca1" $tr --out "$tmp/s1" >/dev/null 2>&1
"$bin" train --acts "$tmp/ca2" $tr --out "$tmp/s2" >/dev/null 2>&1
mpi -np 2 "$bin" train --acts "$tmp/ca2" $tr --out "$tmp/s22" >/dev/null 2>&1
check "one process trains on the sharded cache as on the single one: the same bits" 'cmp -s "$tmp/s1/sae_weights.safetensors" "$tmp/s2/sae_weights.safetensors"'
check "2 ranks on the sharded cache (each reads its rows), 10 steps: within 1e-5" 'close "$tmp/s1" "$tmp/s22"'
rm "$tmp/ca2/activations.1.bin"
err=$("$bin" train --acts "$tmp/ca2" $tr 2>&1); rc=$?
check "a missing shard is refused, naming it" '[ $rc -ne 0 ] && [[ "$err" == *"activations.1.bin"* ]]'
exit $fail
