#!/usr/bin/env bash
# Several hooks, one forward, on stories260K: train --layers/--hooks writes one SAE per hook in
# OUT/<hook> equal (byte for byte) to training that hook alone, with per-hook --d-sae/--k; a run
# interrupted after its checkpoints resumes (--resume OUT) to the same weights; cache --hooks
# writes each hook's cache as cache --hook does and train --acts reads it back to the SAE trained
# live; bad input exits 2 naming the flag (skips without test data; the synthetic-model
# version of these checks is in test_multihook.c).
set -u
. "$(dirname "$0")/common.sh"

"$bin" train --model x.gguf --hooks a.b --d-sae 1,2 >/dev/null 2>&1; check "--hooks without --data exits 2" '[ $? -eq 2 ]'
need_stories
"$bin" generate --model "$m" -n 100 --temp 1 --samples 16 --seed 1 > "$tmp/s.txt" 2>/dev/null
common="--data $tmp/s.txt --context-size 32 --batch 64 --steps 40 --buffer-rows 512 --seed 5 --eval-windows 0 --quiet"

out=$("$bin" train --model "$m" --layers 1-2 --component resid,mlp --d-sae 64,128,96,64 --k 4,8,8,4 \
    --checkpoint-every 20 $common --out "$tmp/run" 2>&1); rc=$?
check "train --layers 1-2 --component resid,mlp trains four SAEs" '[ $rc -eq 0 ] && [ -f "$tmp/run/blocks.2.hook_mlp_out/sae_weights.safetensors" ] && [ -f "$tmp/run/blocks.1.hook_resid_post/metrics.jsonl" ]'
check "cfg.json of each names its hook and d_sae" 'grep -q "\"hook_name\":\"blocks.1.hook_mlp_out\"" "$tmp/run/blocks.1.hook_mlp_out/cfg.json" && grep -q "\"d_sae\":128" "$tmp/run/blocks.1.hook_mlp_out/cfg.json"'
i=0
for spec in blocks.1.hook_resid_post:64:4 blocks.1.hook_mlp_out:128:8 blocks.2.hook_resid_post:96:8 blocks.2.hook_mlp_out:64:4; do
    IFS=: read -r h n k <<< "$spec"
    "$bin" train --model "$m" --hook "$h" --d-sae "$n" --k "$k" $common --out "$tmp/one$i" >/dev/null 2>&1
    check "$h: the SAE of the multi-hook run is the SAE trained alone" 'cmp -s "$tmp/run/$h/sae_weights.safetensors" "$tmp/one$i/sae_weights.safetensors"'
    i=$((i + 1))
done
# interrupted after step 20 (the later checkpoint and the final SAEs gone): --resume OUT
cp -r "$tmp/run" "$tmp/cut"
rm -rf "$tmp"/cut/*/sae_weights.safetensors
"$bin" train --model "$m" --layers 1-2 --component resid,mlp $common --resume "$tmp/cut" >/dev/null 2>&1
check "--resume OUT continues every hook to the same weights" 'cmp -s "$tmp/run/blocks.2.hook_resid_post/sae_weights.safetensors" "$tmp/cut/blocks.2.hook_resid_post/sae_weights.safetensors" && cmp -s "$tmp/run/blocks.1.hook_mlp_out/sae_weights.safetensors" "$tmp/cut/blocks.1.hook_mlp_out/sae_weights.safetensors"'

"$bin" cache --model "$m" --hooks blocks.1.hook_resid_post,blocks.3.attn.hook_z --data "$tmp/s.txt" --context-size 32 \
    --tokens 1000000 --out "$tmp/c" >/dev/null 2>&1
"$bin" cache --model "$m" --hook blocks.3.attn.hook_z --data "$tmp/s.txt" --context-size 32 --tokens 1000000 --out "$tmp/c1" >/dev/null 2>&1
check "cache --hooks: each hook's cache is cache --hook's" 'cmp -s "$tmp/c/blocks.3.attn.hook_z/activations.bin" "$tmp/c1/activations.bin" && cmp -s "$tmp/c/blocks.3.attn.hook_z/tokens.bin" "$tmp/c1/tokens.bin"'
"$bin" train --acts "$tmp/c/blocks.1.hook_resid_post" --d-sae 64 --k 4 --batch 64 --steps 40 --buffer-rows 512 --seed 5 \
    --quiet --out "$tmp/fromcache" >/dev/null 2>&1
check "train --acts OUT/<hook> reads it back: the SAE trained live" 'cmp -s "$tmp/fromcache/sae_weights.safetensors" "$tmp/run/blocks.1.hook_resid_post/sae_weights.safetensors"'

err=$("$bin" train --acts "$tmp/c" --steps 5 --quiet --out "$tmp/bad" 2>&1); rc=$?
check "train --acts on the directory of several caches names them" '[ $rc -eq 1 ] && [[ "$err" == *"holds the caches of 2 hooks"* ]] && [[ "$err" == *"blocks.3.attn.hook_z"* ]]'
err=$("$bin" train --acts "$tmp/c" --hooks blocks.1.hook_resid_post --steps 5 --quiet 2>&1); rc=$?
check "--hooks without --model exits 2" '[ $rc -eq 2 ] && [[ "$err" == *"--hooks needs --model"* ]]'
err=$("$bin" train --model "$m" --layers 2-7 --component resid $common --out "$tmp/bad" 2>&1); rc=$?
check "--layers past the model exits 2 naming it" '[ $rc -eq 2 ] && [[ "$err" == *"--layers: layer 7 outside the model"* ]]'
err=$("$bin" cache --model "$m" --hooks blocks.1.hook_resid_post,blocks.1.hook_resid_post --data "$tmp/s.txt" --tokens 10 --out "$tmp/bad" 2>&1); rc=$?
check "cache --hooks with a hook twice exits 2 naming it" '[ $rc -eq 2 ] && [[ "$err" == *"blocks.1.hook_resid_post is given twice"* ]]'
err=$("$bin" train --model "$m" --hooks blocks.1.hook_resid_post,blocks.2.hook_resid_post --batch 64,128 $common --out "$tmp/bad" 2>&1); rc=$?
check "per-hook batch sizes are refused (one forward feeds all)" '[ $rc -eq 1 ] && [[ "$err" == *"batch_size differs"* ]]'
exit $fail
