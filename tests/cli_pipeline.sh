#!/usr/bin/env bash
# cterp train --model / cache / train --acts DIR / eval on stories260K with a sampled corpus:
# outputs, metadata, cache == live, eval lines and JSON, clear errors (skips without test data).
set -u
bin=$1
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$bin" cache --model x.gguf >/dev/null 2>&1; check "cache without required flags exits 2" '[ $? -eq 2 ]'
"$bin" eval --bogus 1 >/dev/null 2>&1; check "eval with a bad option exits 2" '[ $? -eq 2 ]'
if [ -z "$data" ] || [ ! -f "$data/models/stories260K.gguf" ]; then
    echo "skip: shared test data not found (set CTERP_TESTDATA)"
    exit $fail
fi
m=$data/models/stories260K.gguf
for i in $(seq 1 24); do "$bin" generate --model "$m" -n 100 --temp 1 --seed "$i" 2>/dev/null | tr '\n' ' '; echo; done > "$tmp/s.txt"
common="--context-size 32 --d-sae 256 --k 8 --batch 128 --steps 100 --buffer-rows 1024 --seed 5 --quiet"

out=$("$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" $common --eval-windows 8 --out "$tmp/live" 2>&1)
check "train --model writes an SAE" '[ -f "$tmp/live/cfg.json" ] && [ -f "$tmp/live/sae_weights.safetensors" ]'
check "cfg.json metadata: model, hook, context, dataset, tokens" 'grep -q "\"model_name\":\"stories260K.gguf\"" "$tmp/live/cfg.json" && grep -q "\"hook_name\":\"blocks.2.hook_resid_post\"" "$tmp/live/cfg.json" && grep -q "\"context_size\":32" "$tmp/live/cfg.json" && grep -q "\"dataset_path\":\"$tmp/s.txt\"" "$tmp/live/cfg.json" && grep -q "\"training_tokens\":12800" "$tmp/live/cfg.json"'
check "train --model ends with the eval" '[[ "$out" == *"explained_variance: "* ]] && [[ "$out" == *"ce_loss_score: "* ]] && [[ "$out" == *"kl_div_score: "* ]]'

out=$("$bin" cache --model "$m" --hook blocks.2.hook_resid_post --data "$tmp/s.txt" --context-size 32 --tokens 100000000 --out "$tmp/acts" 2>&1)
check "cache writes activations and tokens" '[ -f "$tmp/acts/activations.bin" ] && [ -f "$tmp/acts/tokens.bin" ] && [[ "$out" == *"the whole dataset"* ]]'
"$bin" train --acts "$tmp/acts" $common --out "$tmp/cached" >/dev/null 2>&1
check "training from the cache gives the same SAE as training live" 'cmp -s "$tmp/live/sae_weights.safetensors" "$tmp/cached/sae_weights.safetensors"'
check "the cache carries the metadata" 'grep -q "\"hook_name\":\"blocks.2.hook_resid_post\"" "$tmp/cached/cfg.json" && grep -q "\"context_size\":32" "$tmp/cached/cfg.json"'

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
exit $fail
