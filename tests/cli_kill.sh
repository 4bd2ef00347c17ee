#!/usr/bin/env bash
# Crash safety (docs/reliability.md): `cterp train` killed with SIGKILL at named points
# (CTERP_TEST_KILL_AT=POINT:N, src/core/file.h) and resumed from its last complete checkpoint each
# time ends bit-identical to an uninterrupted run (weights, sparsity, cfg.json, metrics); after
# every kill each finished checkpoint is still there and loads, and no directory a reader would
# take as whole (an SAE with its cfg.json, a checkpoint with its manifest) fails to load. Then:
# one writer per --out (a held lock refused naming its pid, a dead one's lock no obstacle), a full
# disk (injected with CTERP_TEST_ENOSPC_AFTER, and a real 256 KB tmpfs when this runs as root and
# may mount one) keeps the previous checkpoint, and with the shared test data the model path
# (kills during the step, the checkpoint and the eval) and `cterp cache` (a killed cache refused
# saying why, never read as whole; rewritten, equal to an uninterrupted one).
#
# CI runs a fixed list of kill points. KILL_POINTS=N adds N more drawn at random over repeated
# runs (KILL_SEED, default 1), each run resumed until done and compared.
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
toy="--toy --toy-features 64 --toy-d 32 --toy-active 3 --d-sae 128 --k 4 --batch 256 --quiet --log-every 1"
STEPS=60 EVERY=5

"$bin" train $toy --steps $STEPS --checkpoint-every $EVERY --out "$tmp/ref" >"$tmp/ref.log" 2>&1
check "the uninterrupted run" '[ -f "$tmp/ref/cfg.json" ] && [ "$(wc -l < "$tmp/ref/metrics.jsonl")" -eq $STEPS ]'

# latest complete checkpoint under $1 (final names only: step_N), or nothing
latest() {
    local d best="" bn=-1 n
    for d in "$1"/checkpoints/step_*; do
        [[ "$d" =~ /step_([0-9]+)$ ]] || continue
        n=${BASH_REMATCH[1]}
        [ "$n" -gt "$bn" ] && bn=$n best=$d
    done
    echo "$best"
}
step_of() { [ -n "$1" ] && echo "${1##*_}" || echo 0; }
# the metrics without the clock (tokens/s, elapsed)
metrics() { sed -E 's/, "(tokens_per_s|source_tokens_per_s|sae_tokens_per_s|elapsed_s|peak_rss_mb)": [^,}]*//g' "$1"; }

# After a kill: every finished checkpoint (listed in $out.done) is still there; every step_N loads
# and is complete; a *.tmp / *.old directory is complete or refused; the SAE in $out loads if its
# cfg.json is there, else is refused as incomplete.
bad_dirs=0
check_dirs() {
    local out=$1 d err
    while read -r d; do
        [ -z "$d" ] && continue
        "$bin" inspect "$d" >/dev/null 2>&1 || { echo "  lost a finished checkpoint: $d"; bad_dirs=$((bad_dirs + 1)); }
    done < "$out.done"
    for d in "$out"/checkpoints/*; do
        [ -d "$d" ] || continue
        err=$("$bin" inspect "$d" 2>&1 >/dev/null)
        if [[ "$d" =~ /step_[0-9]+$ ]]; then
            [ -z "$err" ] || { echo "  unloadable checkpoint $d: $err"; bad_dirs=$((bad_dirs + 1)); }
            grep -qxF "$d" "$out.done" || echo "$d" >> "$out.done"
        elif [ -n "$err" ] && [[ "$err" != *"not a complete checkpoint"* ]] && [[ "$err" != *"incomplete SAE directory"* ]] &&
             [[ "$err" != *"cfg.json: cannot open"* ]]; then
            echo "  $d: refused without saying it is incomplete: $err"; bad_dirs=$((bad_dirs + 1))
        fi
    done
    if [ -f "$out/cfg.json" ]; then
        err=$("$bin" inspect "$out" 2>&1 >/dev/null) || { echo "  unloadable SAE $out: $err"; bad_dirs=$((bad_dirs + 1)); }
    elif [ -f "$out/sae_weights.safetensors" ]; then
        err=$("$bin" inspect "$out" 2>&1 >/dev/null)
        [[ "$err" == *"incomplete SAE directory"* ]] || { echo "  $out: a partial save not refused as such: $err"; bad_dirs=$((bad_dirs + 1)); }
    fi
}

# run OUT POINT: one run into OUT (resumed from its latest checkpoint), killed at POINT if given.
# Sets rc. POINT "sae-swap:final" is the final save's swap (after this run's checkpoints).
run() {
    local out=$1 point=$2 ck s args
    ck=$(latest "$out")
    s=$(step_of "$ck")
    if [ "$point" = "sae-swap:final" ]; then # one swap per checkpoint ahead, then the final save's
        point="sae-swap:$(( (STEPS - 1) / EVERY - s / EVERY + 1 ))"
    fi
    args=(train $toy --steps $STEPS --checkpoint-every $EVERY --out "$out")
    [ -n "$ck" ] && args+=(--resume "$ck")
    if [ -n "$point" ]; then
        { CTERP_TEST_KILL_AT=$point "$bin" "${args[@]}" >"$tmp/run.log" 2>&1; rc=$?; } 2>/dev/null
    else
        "$bin" "${args[@]}" >"$tmp/run.log" 2>&1; rc=$?
    fi
    echo "  step $s -> ${point:-end}: $( [ $rc -eq 137 ] && echo killed || echo "exit $rc" ), latest now $(step_of "$(latest "$out")")"
}

same_as_ref() {
    cmp -s "$1/sae_weights.safetensors" "$tmp/ref/sae_weights.safetensors" &&
        cmp -s "$1/sparsity.safetensors" "$tmp/ref/sparsity.safetensors" &&
        cmp -s "$1/cfg.json" "$tmp/ref/cfg.json" && diff -q <(metrics "$1/metrics.jsonl") <(metrics "$tmp/ref/metrics.jsonl") >/dev/null
}

# --- the fixed list: between steps, inside a checkpoint's files, between a checkpoint's renames,
# in the middle of a file, in the final save (no cfg.json yet) ---
out=$tmp/chain
: > "$out.done"
kills=0 missed=0
for p in step:7 commit:3 checkpoint-swap:1 write:40 step:12 commit:9 sae-swap:final; do
    run "$out" "$p"
    if [ $rc -eq 137 ]; then kills=$((kills + 1)); else missed=$((missed + 1)); fi
    check_dirs "$out"
done
run "$out" ""
check "7 kills (between steps, in checkpoint files and renames, mid-file, in the final save), each resumed: all hit" '[ $kills -eq 7 ] && [ $missed -eq 0 ] && [ $rc -eq 0 ]'
check "the resumed run is bit-identical to the uninterrupted one (weights, sparsity, cfg.json, metrics)" 'same_as_ref "$out"'
check "no kill lost a finished checkpoint or left an unloadable directory" '[ $bad_dirs -eq 0 ]'
check "the resumed run left no temporaries" '[ -z "$(find "$out" -name "*.tmp*" -o -name "*.new" -o -name "*.old")" ]'

# --- KILL_POINTS=N more, drawn at random, over as many runs as they take ---
if [ "${KILL_POINTS:-0}" -gt 0 ]; then
    RANDOM=${KILL_SEED:-1}
    kinds=(step commit write checkpoint-swap sae-swap)
    drawn=0 runs=0 same=0 bad0=$bad_dirs
    while [ $drawn -lt "$KILL_POINTS" ]; do
        out=$tmp/many$runs
        : > "$out.done"
        while :; do
            s=$(step_of "$(latest "$out")")
            left=$((STEPS - s)) ahead=$(( (STEPS - 1) / EVERY - s / EVERY ))
            k=${kinds[RANDOM % 5]}
            case $k in
                step) n=$((1 + RANDOM % left)) ;;
                commit) n=$((1 + RANDOM % (6 * ahead + 4))) ;;
                write) n=$((1 + RANDOM % (40 * ahead + 20))) ;;
                checkpoint-swap) n=$((1 + RANDOM % (ahead + 1))) ;;
                sae-swap) n=$((1 + RANDOM % (ahead + 1))) ;;
            esac
            [ $drawn -ge "$KILL_POINTS" ] && k="" n=""
            run "$out" "${k:+$k:$n}"
            if [ $rc -eq 137 ]; then drawn=$((drawn + 1)); check_dirs "$out"; continue; fi
            [ $rc -eq 0 ] || { echo "  run failed: $(tail -2 "$tmp/run.log")"; break; }
            break # finished (the point lay beyond this run's end)
        done
        runs=$((runs + 1))
        if same_as_ref "$out"; then same=$((same + 1)); else echo "  run $runs differs from the reference"; fi
        rm -rf "$out"
    done
    check "KILL_POINTS=$KILL_POINTS random kills over $runs runs: every run bit-identical, no bad directory" '[ $same -eq $runs ] && [ $bad_dirs -eq $bad0 ]'
fi

# --- one writer per output directory ---
# hold DIR: another process takes DIR/.cterp.lock as cterp does (flock, its pid inside); sets holder
hold() {
    python3 -c 'import fcntl, os, sys, time
f = open(sys.argv[1] + "/.cterp.lock", "a+"); fcntl.flock(f, fcntl.LOCK_EX)
f.truncate(0); f.write("%d\n" % os.getpid()); f.flush(); time.sleep(60)' "$1" &
    holder=$!
    for i in $(seq 100); do [ "$(cat "$1/.cterp.lock" 2>/dev/null)" = "$holder" ] && break; sleep 0.05; done
}
mkdir -p "$tmp/locked"
hold "$tmp/locked"
err=$("$bin" train $toy --steps 10 --out "$tmp/locked" 2>&1); rc=$?
check "a second train on a directory in use is refused naming the holder's pid" '[ $rc -eq 1 ] && [[ "$err" == *"in use by another cterp process (pid $holder holds"* ]] && [ ! -f "$tmp/locked/cfg.json" ]'
kill $holder; wait $holder 2>/dev/null
{ CTERP_TEST_KILL_AT=step:3 "$bin" train $toy --steps 10 --out "$tmp/locked" >/dev/null 2>&1; } 2>/dev/null
"$bin" train $toy --steps 10 --out "$tmp/locked" >/dev/null 2>&1; rc=$?
check "a lock left by a killed run does not block the next" '[ $rc -eq 0 ] && [ -f "$tmp/locked/cfg.json" ]'

# --- a full disk: a clear error, the previous checkpoint intact, nothing half-written ---
# a checkpoint here is about 140 KB: the first fits in 200000 bytes, the second does not
err=$(CTERP_TEST_ENOSPC_AFTER=200000 "$bin" train $toy --steps $STEPS --checkpoint-every $EVERY --out "$tmp/full" 2>&1); rc=$?
check "disk full (injected): exit 1 saying no space, naming the file" '[ $rc -eq 1 ] && [[ "$err" == *"No space left on device"* ]] && [[ "$err" == *"checkpoints/step_10.tmp/"* ]]'
check "disk full: the previous checkpoint is intact, the failed one is not left half-written" '"$bin" inspect "$tmp/full/checkpoints/step_5" >/dev/null 2>&1 && [ ! -e "$tmp/full/checkpoints/step_10" ] && [ ! -e "$tmp/full/checkpoints/step_10.tmp" ]'
"$bin" train $toy --resume "$tmp/full/checkpoints/step_5" --out "$tmp/full" >/dev/null 2>&1
check "disk full: resumed from the kept checkpoint, bit-identical" 'same_as_ref "$tmp/full"'
mkdir -p "$tmp/tmpfs"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=256k tmpfs "$tmp/tmpfs" 2>/dev/null; then
    err=$("$bin" train $toy --steps $STEPS --checkpoint-every $EVERY --out "$tmp/tmpfs/o" 2>&1); rc=$?
    ok=$(ls -d "$tmp"/tmpfs/o/checkpoints/step_* 2>/dev/null | grep -cE '/step_[0-9]+$')
    good=1
    for d in "$tmp"/tmpfs/o/checkpoints/step_*; do [[ "$d" =~ /step_[0-9]+$ ]] && { "$bin" inspect "$d" >/dev/null 2>&1 || good=0; }; done
    check "a real full disk (256 KB tmpfs): exit 1 saying so; $ok checkpoint(s) kept, all loadable, no temporaries" '[ $rc -eq 1 ] && [[ "$err" == *"No space left on device"* ]] && [ "$ok" -ge 1 ] && [ $good -eq 1 ] && [ -z "$(find "$tmp/tmpfs/o" -name "*.tmp*" -o -name "*.new")" ]'
    umount "$tmp/tmpfs"
else
    echo "skip: a real full disk (cannot mount a tmpfs here: needs root)"
fi

# --- the model path and cterp cache (shared test data) ---
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-}}
if [ -z "$data" ] || [ ! -f "$data/models/stories260K.gguf" ]; then
    echo "skip: the model path and cache kills (shared test data not found; set CTERP_TESTDATA)"
    exit $fail
fi
m=$data/models/stories260K.gguf
"$bin" generate --model "$m" -n 100 --temp 1 --samples 16 --seed 1 > "$tmp/s.txt" 2>/dev/null
mt="--model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --buffer-rows 1024 --quiet"
mc="--d-sae 128 --k 8 --batch 64 --steps 30 --seed 5 --checkpoint-every 10 --eval-windows 4"
"$bin" train $mt $mc --out "$tmp/mref" >/dev/null 2>&1
mkills=0
for p in step:13 commit:8 eval:1; do
    ck=$(latest "$tmp/mod")
    { CTERP_TEST_KILL_AT=$p "$bin" train $mt $mc ${ck:+--resume "$ck"} --out "$tmp/mod" >/dev/null 2>&1; rc=$?; } 2>/dev/null
    [ $rc -eq 137 ] && mkills=$((mkills + 1)) || echo "  $p: exit $rc, not killed"
done
check "train --model killed in a step, a checkpoint file and the eval: the SAE is whole and loads" '[ $mkills -eq 3 ] && "$bin" inspect "$tmp/mod" >/dev/null 2>&1 && cmp -s "$tmp/mod/sae_weights.safetensors" "$tmp/mref/sae_weights.safetensors"'
ck=$(latest "$tmp/mod")
"$bin" train $mt $mc --resume "$ck" --out "$tmp/mod" >/dev/null 2>&1
check "train --model resumed after the kills is bit-identical" 'cmp -s "$tmp/mod/sae_weights.safetensors" "$tmp/mref/sae_weights.safetensors" && diff -q <(metrics "$tmp/mod/metrics.jsonl") <(metrics "$tmp/mref/metrics.jsonl") >/dev/null'

cache="cache --model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32 --tokens 1500"
"$bin" $cache --out "$tmp/cref" >/dev/null 2>&1
{ CTERP_TEST_KILL_AT=write:500 "$bin" $cache --out "$tmp/c" >/dev/null 2>&1; rc=$?; } 2>/dev/null
err=$("$bin" train --acts "$tmp/c" --d-sae 64 --k 4 --batch 64 --steps 2 --quiet 2>&1); rc2=$?
check "a cache killed mid-write is refused, saying why" '[ $rc -eq 137 ] && [ $rc2 -eq 1 ] && [[ "$err" == *"incomplete activation cache"* ]] && [[ "$err" == *"interrupted"* ]]'
{ CTERP_TEST_KILL_AT=cache-tokens:1 "$bin" $cache --out "$tmp/c" >/dev/null 2>&1; rc=$?; } 2>/dev/null
err=$("$bin" train --acts "$tmp/c" --d-sae 64 --k 4 --batch 64 --steps 2 --quiet 2>&1); rc2=$?
check "a cache killed between its two files is refused" '[ $rc -eq 137 ] && [ $rc2 -eq 1 ] && [[ "$err" == *"incomplete activation cache"* ]]'
"$bin" $cache --out "$tmp/c" >/dev/null 2>&1
check "the cache rewritten after the kills equals an uninterrupted one, no temporaries left" 'cmp -s "$tmp/c/activations.bin" "$tmp/cref/activations.bin" && cmp -s "$tmp/c/tokens.bin" "$tmp/cref/tokens.bin" && [ -z "$(find "$tmp/c" -name "*.tmp.*")" ]'
{ CTERP_TEST_KILL_AT=write:100 "$bin" $cache --out "$tmp/c" >/dev/null 2>&1; rc=$?; } 2>/dev/null
err=$("$bin" train --acts "$tmp/c" --d-sae 64 --k 4 --batch 64 --steps 2 --quiet 2>&1); rc2=$?
check "a complete cache being rewritten and killed is refused, not read as the old one" '[ $rc -eq 137 ] && [ $rc2 -eq 1 ] && [[ "$err" == *"incomplete activation cache"* ]]'
hold "$tmp/c"
err=$("$bin" $cache --out "$tmp/c" 2>&1); rc=$?
check "a second cache run on a directory in use is refused naming the holder" '[ $rc -eq 1 ] && [[ "$err" == *"pid $holder holds"* ]]'
kill $holder; wait $holder 2>/dev/null
exit $fail
