#!/usr/bin/env bash
# `cterp cache --resume` (docs/reliability.md): a cache run killed with SIGKILL at named points
# (CTERP_TEST_KILL_AT, chunks of CTERP_TEST_CACHE_CHUNK_ROWS rows) and resumed each time ends
# with activations.bin and tokens.bin byte-identical to an uninterrupted run's, for one hook
# (f32 and f16) and for --hooks; a partial cache is refused by train --acts until it is done; a
# resume with other options is refused naming the option; a complete cache is not "resumed"; a
# one-process partial is not resumed under mpirun. Skips without the shared test data (stories260K).
set -u
. "$(dirname "$0")/common.sh"
need_stories
"$bin" generate --model "$m" -n 100 --temp 1 --samples 16 --seed 1 > "$tmp/s.txt" 2>/dev/null
export CTERP_TEST_CACHE_CHUNK_ROWS=200 # a chunk per forward batch (8 windows, 248 rows)
cache="cache --model $m --layer 2 --component resid --data $tmp/s.txt --context-size 32"
same() { # same DIR REF: both files byte for byte, nothing else left behind
    cmp -s "$1/activations.bin" "$2/activations.bin" && cmp -s "$1/tokens.bin" "$2/tokens.bin" &&
        [ -z "$(find "$1" -name "*.partial" -o -name "cache.progress" -o -name "*.tmp.*")" ]
}
# killed ARGS...: runs cterp with CTERP_TEST_KILL_AT=$point, sets rc
killed() { { CTERP_TEST_KILL_AT=$point "$bin" "$@" >"$tmp/run.log" 2>&1; rc=$?; } 2>/dev/null; }
acts_err() { "$bin" train --acts "$1" --d-sae 64 --k 4 --batch 64 --steps 2 --quiet 2>&1; }

for dt in f32 f16; do
    "$bin" $cache --tokens 1500 --dtype $dt --out "$tmp/ref_$dt" >/dev/null 2>&1
    out=$tmp/c_$dt
    kills=0 refused=0 points=""
    # after the first chunk, mid-row in the third, after the fourth chunk's record, between
    # tokens.bin and activations.bin; each run resumes the last
    for point in cache-chunk:1 write:700 cache-chunk:2 cache-tokens:1; do
        if [ -z "$points" ]; then killed $cache --tokens 1500 --dtype $dt --out "$out"; else killed $cache --tokens 1500 --dtype $dt --resume --out "$out"; fi
        points="$points $point"
        [ $rc -eq 137 ] && kills=$((kills + 1)) || echo "  $point: exit $rc, not killed: $(tail -1 "$tmp/run.log")"
        err=$(acts_err "$out"); [[ "$err" == *"incomplete activation cache"* ]] && [[ "$err" == *"--resume"* ]] && refused=$((refused + 1))
    done
    msg=$("$bin" $cache --tokens 1500 --dtype $dt --resume --out "$out" 2>&1); rc=$?
    check "$dt: 4 kills (after a chunk, mid-chunk, after another, between the files), each refused by train --acts saying to --resume" '[ $kills -eq 4 ] && [ $refused -eq 4 ]'
    check "$dt: resumed to the end, byte-identical to the uninterrupted cache" '[ $rc -eq 0 ] && same "$out" "$tmp/ref_$dt" && [[ "$msg" == *"resumed at row"* ]]'
done

# the records' edges: killed before any record (resume starts over), and in the final renames
point=write:100 killed $cache --tokens 1500 --out "$tmp/e"
"$bin" $cache --tokens 1500 --resume --out "$tmp/e" >"$tmp/run.log" 2>&1; rc=$?
check "killed before the first chunk: --resume starts over, equal to the reference" '[ $rc -eq 0 ] && same "$tmp/e" "$tmp/ref_f32" && grep -q "resumed at row 0" "$tmp/run.log"'
err=$("$bin" $cache --tokens 1500 --resume --out "$tmp/e" 2>&1); rc=$?
check "--resume on a complete cache is refused: nothing to resume" '[ $rc -eq 1 ] && [[ "$err" == *"complete cache, nothing to resume"* ]] && same "$tmp/e" "$tmp/ref_f32"'

# options that differ from the killed run's are refused, naming the option; the partial stays
point=cache-chunk:2 killed $cache --tokens 1500 --out "$tmp/o"
err=$("$bin" $cache --tokens 1500 --context-size 16 --resume --out "$tmp/o" 2>&1); rc=$?
check "--resume with another --context-size is refused naming it" '[ $rc -eq 1 ] && [[ "$err" == *"options.context_size: the interrupted run had 32, this run has 16"* ]]'
err=$("$bin" $cache --tokens 1500 --dtype bf16 --resume --out "$tmp/o" 2>&1); rc=$?
check "--resume with another --dtype is refused naming it" '[ $rc -eq 1 ] && [[ "$err" == *"options.dtype: the interrupted run had f32, this run has bf16"* ]]'
err=$("$bin" $cache --tokens 1000 --resume --out "$tmp/o" 2>&1); rc=$?
check "--resume with another --tokens is refused naming it" '[ $rc -eq 1 ] && [[ "$err" == *"options.tokens: the interrupted run had 1500, this run has 1000"* ]]'
"$bin" $cache --tokens 1500 --resume --out "$tmp/o" >/dev/null 2>&1; rc=$?
check "... and the same options resume it to the reference" '[ $rc -eq 0 ] && same "$tmp/o" "$tmp/ref_f32"'

# --hooks: one run, a cache per hook, killed and resumed
hooks="cache --model $m --hooks blocks.1.hook_resid_post,blocks.2.hook_mlp_out --data $tmp/s.txt --context-size 32 --tokens 1200"
"$bin" $hooks --out "$tmp/href" >/dev/null 2>&1
kills=0
for point in cache-chunk:2 write:1500 cache-tokens:2; do
    if [ $kills -eq 0 ]; then killed $hooks --out "$tmp/h"; else killed $hooks --resume --out "$tmp/h"; fi
    [ $rc -eq 137 ] && kills=$((kills + 1)) || echo "  $point: exit $rc, not killed: $(tail -1 "$tmp/run.log")"
done
"$bin" $hooks --resume --out "$tmp/h" >/dev/null 2>&1; rc=$?
check "--hooks: killed 3 times (after a chunk, mid-chunk, between the second hook's files), resumed byte-identical" '[ $kills -eq 3 ] && [ $rc -eq 0 ] && same "$tmp/h/blocks.1.hook_resid_post" "$tmp/href/blocks.1.hook_resid_post" && same "$tmp/h/blocks.2.hook_mlp_out" "$tmp/href/blocks.2.hook_mlp_out"'

# a killed cache rewritten without --resume starts over (the previous behaviour)
point=cache-chunk:1 killed $cache --tokens 1500 --out "$tmp/r"
"$bin" $cache --tokens 1500 --out "$tmp/r" >/dev/null 2>&1; rc=$?
check "without --resume a killed cache is written again from the start, equal to the reference" '[ $rc -eq 0 ] && same "$tmp/r" "$tmp/ref_f32"'

# under MPI: a one-process partial is refused by a sharded resume (tests/cli_mpi.sh: the sharded
# resume itself)
if command -v mpirun >/dev/null 2>&1 && "$bin" --version 2>/dev/null | grep -q '^mpi: yes'; then
    point=cache-chunk:1 killed $cache --tokens 500 --out "$tmp/mpi"
    err=$(mpirun --allow-run-as-root --oversubscribe -np 2 "$bin" $cache --tokens 500 --resume --out "$tmp/mpi" 2>&1); rc=$?
    check "--resume under mpirun of a one-process partial is refused saying why" '[ $rc -ne 0 ] && [[ "$err" == *"the record of an interrupted cterp cache in one process"* ]]'
else
    echo "skip: --resume under MPI (no MPI build or no mpirun)"
fi
exit $fail
