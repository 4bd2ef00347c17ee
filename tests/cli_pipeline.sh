#!/usr/bin/env bash
# cterp generate --samples / train --model / cache / train --acts DIR / eval on stories260K with a
# sampled corpus: outputs, metadata, resume == straight, resume against other data / context
# size / cache refused, cache == live, --tokens beyond and within an epoch, f16/bf16 caches,
# damaged caches, eval lines and JSON, clear errors (skips without test data).
set -u
. "$(dirname "$0")/common.sh"

"$bin" cache --model x.gguf >/dev/null 2>&1; check "cache without required flags exits 2" '[ $? -eq 2 ]'
"$bin" eval --bogus 1 >/dev/null 2>&1; check "eval with a bad option exits 2" '[ $? -eq 2 ]'
need_stories
"$bin" generate --model "$m" -n 100 --temp 1 --samples 24 --seed 1 > "$tmp/s.txt" 2>/dev/null
check "generate --samples writes one story per line" '[ "$(wc -l < "$tmp/s.txt")" -eq 24 ] && [ "$(grep -c "^Once" "$tmp/s.txt")" -ge 20 ]'
one=$("$bin" generate --model "$m" -n 100 --temp 1 --seed 3 2>/dev/null | tr '\n' ' ')
check "sample i is seeded with --seed + i" '[ "$(sed -n 3p "$tmp/s.txt")" = "${one% }" ]'
size() { stat -c %s "$1"; }
common="--context-size 32 --d-sae 256 --k 8 --batch 128 --steps 100 --buffer-rows 1024 --seed 5 --quiet"

out=$("$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" $common --eval-windows 8 --checkpoint-every 50 --out "$tmp/live" 2>&1)
check "train --model writes an SAE" '[ -f "$tmp/live/cfg.json" ] && [ -f "$tmp/live/sae_weights.safetensors" ]'
check "cfg.json metadata: model, hook, context, dataset, tokens" 'grep -q "\"model_name\":\"stories260K.gguf\"" "$tmp/live/cfg.json" && grep -q "\"hook_name\":\"blocks.2.hook_resid_post\"" "$tmp/live/cfg.json" && grep -q "\"context_size\":32" "$tmp/live/cfg.json" && grep -q "\"dataset_path\":\"$tmp/s.txt\"" "$tmp/live/cfg.json" && grep -q "\"training_tokens\":12800" "$tmp/live/cfg.json"'
check "train --model ends with the eval" '[[ "$out" == *"explained_variance: "* ]] && [[ "$out" == *"ce_loss_score: "* ]] && [[ "$out" == *"kl_div_score: "* ]]'
# a short run fills only the rows it takes, and says so before its first step (off a terminal)
"$bin" train --model "$m" --layer 2 --component mlp --data "$tmp/s.txt" --context-size 32 --k 8 --expansion-factor 4 \
    --steps 3 --batch 64 --eval-windows 0 --out "$tmp/short" >"$tmp/short.txt" 2>&1
fill_line=$(grep -n "^filling the mixing buffer: 0/192 rows from the model" "$tmp/short.txt" | head -1 | cut -d: -f1)
step_line=$(grep -n "^step 3/3" "$tmp/short.txt" | head -1 | cut -d: -f1)
check "a 3 x 64 run fills 192 rows, with a progress line before the first step" '[ -n "$fill_line" ] && [ -n "$step_line" ] && [ "$fill_line" -lt "$step_line" ] && grep -q "^done: 192 tokens" "$tmp/short.txt"'
check "the step line gives the model's and the SAE's tokens/s, never 0" 'grep -Eq "^step 3/3  [0-9.e+]+ tok/s \(model [1-9][0-9.e+]*, SAE [1-9][0-9.e+]*\)" "$tmp/short.txt"'
out=$("$bin" train --model "$m" --hook blocks.1.attn.hook_z --data "$tmp/s.txt" --context-size 32 --d-sae 64 --k 4 --batch 128 --steps 20 --buffer-rows 1024 --quiet --eval-windows 4 --out "$tmp/hz" 2>&1); rc=$?
check "an SAE on a [B,T,H,hd] hook (attn.hook_z) trains and evaluates on H*hd rows" '[ $rc -eq 0 ] && [[ "$out" == *"explained_variance: "* ]]'

# resume from the checkpoint at step 50 (config, seed and batch from the checkpoint; store flags
# again): the store replays the rows served so far, so the weights are those of the straight run
"$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 32 --buffer-rows 1024 \
    --quiet --eval-windows 0 --resume "$tmp/live/checkpoints/step_50" --out "$tmp/resumed" >/dev/null 2>&1
check "train --model resumed from a checkpoint gives bit-identical weights" 'cmp -s "$tmp/live/sae_weights.safetensors" "$tmp/resumed/sae_weights.safetensors"'
err=$("$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 32 --quiet \
    --eval-windows 0 --resume "$tmp/live/checkpoints/step_50" --out "$tmp/resumed2" 2>&1); rc=$?
check "resume with another mixing buffer says so" '[ $rc -eq 1 ] && [[ "$err" == *"buffer_rows 1024"* ]]'
# the checkpoint's source state holds a fingerprint of the row stream: a copy of the data at
# another path resumes bit-identically; other data or another context size is refused, naming
# the checkpoint, the field, the saved value and this run's
ck=$tmp/live/checkpoints/step_50
resume() { "$bin" train --model "$m" --layer 2 --component resid --buffer-rows 1024 --quiet --eval-windows 0 --resume "$ck" "$@" 2>&1; }
cp "$tmp/s.txt" "$tmp/copy.txt"; head -n 12 "$tmp/s.txt" > "$tmp/half.txt"
resume --data "$tmp/copy.txt" --context-size 32 --out "$tmp/resumed_copy" >/dev/null
check "resume with a copy of the data (another path, same bytes) gives bit-identical weights" 'cmp -s "$tmp/live/sae_weights.safetensors" "$tmp/resumed_copy/sae_weights.safetensors"'
err=$(resume --data "$tmp/half.txt" --context-size 32 --out "$tmp/resumed3"); rc=$?
check "resume with another --data is refused: checkpoint, field, both sizes named" '[ $rc -eq 1 ] && [[ "$err" == *"checkpoint $ck: data: the checkpoint'"'"'s rows came from a dataset of $(size "$tmp/s.txt") bytes"* ]] && [[ "$err" == *"this run reads '"'"'$tmp/half.txt'"'"' ($(size "$tmp/half.txt") bytes"* ]] && [[ "$err" == *"resume with the same --data"* ]] && [[ "$err" == *"over $tmp/s.txt"* ]] && [ ! -e "$tmp/resumed3" ]'
err=$(resume --data "$tmp/s.txt" --context-size 64 --out "$tmp/resumed4"); rc=$?
check "resume with another --context-size is refused: field and both values named" '[ $rc -eq 1 ] && [[ "$err" == *"checkpoint $ck: context_size: the checkpoint was saved with 32, this run has 64; resume with --context-size 32"* ]] && [ ! -e "$tmp/resumed4" ]'

cache() { "$bin" cache --model "$m" --hook blocks.2.hook_resid_post --data "$tmp/s.txt" --context-size 32 "$@" 2>&1; }
out=$(cache --tokens 100000000 --out "$tmp/acts")
check "cache writes activations and tokens" '[ -f "$tmp/acts/activations.bin" ] && [ -f "$tmp/acts/tokens.bin" ]'
rows=$(( $(size "$tmp/acts/tokens.bin") / 4 ))
check "--tokens beyond the data: one epoch, and it says so" '[[ "$out" == *"wrote $rows rows"* ]] && [[ "$out" == *"the whole dataset: one epoch, fewer rows than --tokens 100000000"* ]] && [ "$(size "$tmp/acts/activations.bin")" -eq $((4096 + rows * 64 * 4)) ]'
out=$(cache --tokens $rows --out "$tmp/acts_exact")
check "--tokens exactly one epoch: the whole dataset" '[[ "$out" == *"wrote $rows rows"* ]] && [[ "$out" == *"; the whole dataset"* ]] && [[ "$out" != *"fewer"* ]] && cmp -s "$tmp/acts/activations.bin" "$tmp/acts_exact/activations.bin"'
out=$(cache --tokens 1000 --out "$tmp/acts_part")
check "--tokens 1000: exactly 1000 rows, the first of the full cache" '[[ "$out" == *"wrote 1000 rows"* ]] && [[ "$out" == *"first rows"* ]] && [ "$(size "$tmp/acts_part/tokens.bin")" -eq 4000 ] && [ "$(size "$tmp/acts_part/activations.bin")" -eq $((4096 + 1000 * 256)) ] && cmp -s -n 4000 "$tmp/acts/tokens.bin" "$tmp/acts_part/tokens.bin" && cmp -s -i 4096 -n 256000 "$tmp/acts/activations.bin" "$tmp/acts_part/activations.bin"'

"$bin" train --acts "$tmp/acts" $common --checkpoint-every 50 --out "$tmp/cached" >/dev/null 2>&1
check "training from the cache gives the same SAE as training live" 'cmp -s "$tmp/live/sae_weights.safetensors" "$tmp/cached/sae_weights.safetensors"'
# resume from a cache: the same rows in another folder resume; another cache is refused
"$bin" train --acts "$tmp/acts_exact" --buffer-rows 1024 --quiet --resume "$tmp/cached/checkpoints/step_50" --out "$tmp/cached_resumed" >/dev/null 2>&1
check "train --acts resumed from a copy of the cache gives bit-identical weights" 'cmp -s "$tmp/cached/sae_weights.safetensors" "$tmp/cached_resumed/sae_weights.safetensors"'
err=$("$bin" train --acts "$tmp/acts_part" --buffer-rows 1024 --quiet --resume "$tmp/cached/checkpoints/step_50" --out "$tmp/cached_resumed2" 2>&1); rc=$?
check "train --acts resumed against another cache is refused: field and both row counts named" '[ $rc -eq 1 ] && [[ "$err" == *"checkpoint $tmp/cached/checkpoints/step_50: cache: the checkpoint'"'"'s rows came from a cache of $rows rows"* ]] && [[ "$err" == *"this run reads '"'"'$tmp/acts_part'"'"' (1000 rows"* ]]'
check "the cache carries the metadata" 'grep -q "\"hook_name\":\"blocks.2.hook_resid_post\"" "$tmp/cached/cfg.json" && grep -q "\"context_size\":32" "$tmp/cached/cfg.json"'
ev() { "$bin" train --acts "$1" $common 2>&1 | sed -n 's/.*explained variance \([0-9.]*\).*/\1/p'; }
ev32=$(ev "$tmp/acts")
for dt in f16 bf16; do
    out=$(cache --tokens 100000000 --dtype $dt --out "$tmp/acts_$dt")
    ev16=$(ev "$tmp/acts_$dt")
    check "train --acts on a cache in $dt: half the size, EV $ev16 within 0.01 of f32's $ev32" '[[ "$out" == *"($dt)"* ]] && [ "$(size "$tmp/acts_$dt/activations.bin")" -eq $((4096 + rows * 64 * 2)) ] && python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); assert a > 0.5 and abs(a - b) < 0.01" "$ev16" "$ev32"'
done

# damaged caches: the error names the file and the field (test_acts checks every field)
mkdir -p "$tmp/bad"; cp "$tmp/acts_part/tokens.bin" "$tmp/bad/"
head -c 100000 "$tmp/acts_part/activations.bin" > "$tmp/bad/activations.bin"
err=$("$bin" train --acts "$tmp/bad" $common 2>&1); rc=$?
check "a truncated cache: file and count named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/bad/activations.bin: size 100000 bytes"* ]] && [[ "$err" == *"count 1000"* ]]'
{ printf 'CTRPACTZ'; tail -c +9 "$tmp/acts_part/activations.bin"; } > "$tmp/bad/activations.bin"
err=$("$bin" train --acts "$tmp/bad" $common 2>&1); rc=$?
check "a wrong magic: file and field named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/bad/activations.bin"*"magic"*"CTRPACTZ"* ]]'
cp "$tmp/acts_part/activations.bin" "$tmp/bad/"; head -c 3996 "$tmp/acts_part/tokens.bin" > "$tmp/bad/tokens.bin"
err=$("$bin" train --acts "$tmp/bad" $common 2>&1); rc=$?
check "tokens.bin disagreeing with the header's count: named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/bad/tokens.bin: size 3996 bytes"*"count 1000"* ]]'

out=$("$bin" eval --model "$m" --sae "$tmp/live" --data "$tmp/s.txt" --windows 8)
check "eval prints name: value lines" '[[ "$out" == *"ce_loss_with_sae: "* ]] && [[ "$out" == *"dead_latents: "* ]] && [[ "$out" == *"density_histogram"* ]]'
out=$("$bin" eval --model "$m" --sae "$tmp/live" --data "$tmp/s.txt" --windows 8 --json)
check "eval --json is one JSON object" 'printf "%s" "$out" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d[\"n_windows\"]==8 and 0<d[\"explained_variance\"]<=1"'

printf '{"text": "Once upon a time"}\n{"text": 3}\n' > "$tmp/bad.jsonl"
err=$("$bin" train --model "$m" --hook blocks.2.hook_resid_post --data "$tmp/bad.jsonl" $common 2>&1); rc=$?
check "malformed jsonl names file and line" '[ $rc -eq 1 ] && [[ "$err" == *"bad.jsonl:2:"* ]]'
err=$("$bin" train --model "$m" --layer 2 --data "$tmp/s.txt" 2>&1); rc=$?
check "a layer without a component is a usage error" '[ $rc -eq 2 ] && [[ "$err" == *"--component"* ]]'
err=$("$bin" train --model "$m" --hook blocks.7.hook_resid_post --data "$tmp/s.txt" $common 2>&1); rc=$?
check "an unknown hook is named" '[ $rc -eq 1 ] && [[ "$err" == *"blocks.7.hook_resid_post"* ]]'
err=$("$bin" train --model "$m" --hook blocks.2.hook_resid_post --data "$tmp/s.txt" --batch 4096 --buffer-rows 1000 2>&1); rc=$?
check "a buffer too small for the batch says so" '[ $rc -eq 1 ] && [[ "$err" == *"buffer_rows"* ]] && [[ "$err" == *"8192"* ]]'
err=$("$bin" train --model "$m" --layer 2 --component resid --data <(cat "$tmp/s.txt") $common --out "$tmp/piped" 2>&1); rc=$?
check "data from a pipe: refused at the start, saying why" '[ $rc -eq 1 ] && [[ "$err" == *"not a regular file (a pipe?)"* ]] && [ ! -e "$tmp/piped" ]'
exit $fail
