#!/usr/bin/env bash
# train --acts reads a cache with pread in runs of rows (docs/reliability.md, "caches larger than
# RAM"): with the test hook CTERP_TEST_CACHE_READ_ROWS at 1 and 7 rows per read (runs cut at
# every row, and at the cache's end mid-run as it wraps) the SAE equals the default's bit for bit,
# in f32 and bf16, and a run resumed from a checkpoint (the buffer replayed over indices, then its
# rows read) equals the straight one. Skips without the shared test data (stories260K).
set -u
. "$(dirname "$0")/common.sh"
need_stories
"$bin" generate --model "$m" -n 100 --temp 1 --samples 16 --seed 1 > "$tmp/s.txt" 2>/dev/null
# 1500 rows, 100 steps of 64: four passes over the cache, each refill wrapping somewhere
tr="--d-sae 128 --k 8 --batch 64 --steps 100 --seed 5 --buffer-rows 512 --quiet"
for dt in f32 bf16; do
    "$bin" cache --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 32 --tokens 1500 \
        --dtype $dt --out "$tmp/c_$dt" >/dev/null 2>&1
    "$bin" train --acts "$tmp/c_$dt" $tr --checkpoint-every 40 --out "$tmp/a_$dt" >/dev/null 2>&1
    same=0
    for r in 1 7; do
        CTERP_TEST_CACHE_READ_ROWS=$r "$bin" train --acts "$tmp/c_$dt" $tr --out "$tmp/b_$dt$r" >/dev/null 2>&1
        cmp -s "$tmp/a_$dt/sae_weights.safetensors" "$tmp/b_$dt$r/sae_weights.safetensors" && same=$((same + 1))
    done
    check "$dt: reads of 1 and 7 rows train the same SAE as the default, bit for bit" '[ -f "$tmp/a_$dt/sae_weights.safetensors" ] && [ $same -eq 2 ]'
    CTERP_TEST_CACHE_READ_ROWS=3 "$bin" train --acts "$tmp/c_$dt" $tr --resume "$tmp/a_$dt/checkpoints/step_40" \
        --out "$tmp/r_$dt" >/dev/null 2>&1
    check "$dt: resumed from step 40 (reads of 3 rows), bit-identical" 'cmp -s "$tmp/a_$dt/sae_weights.safetensors" "$tmp/r_$dt/sae_weights.safetensors"'
done
exit $fail
