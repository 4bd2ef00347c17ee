#!/usr/bin/env bash
# Transcoders on stories260K: train --arch transcoder --layer L --component mlp reads
# blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out from one forward, learns the MLP (its
# explained variance, the CE it recovers against zero ablation), writes hook_name_out in
# cfg.json; cterp eval splices it in place of the MLP and gives train's eval again; bad input
# exits 2 naming the flag (skips without test data; the synthetic-model version of these checks,
# with the CE computed by hand, is test_transcoder.c).
set -u
. "$(dirname "$0")/common.sh"

"$bin" train --toy --arch transcoder --hook-in a.b --hook-out c.d >/dev/null 2>&1; check "--hook-in without --model exits 2" '[ $? -eq 2 ]'
need_stories
"$bin" generate --model "$m" -n 100 --temp 1 --samples 16 --seed 1 > "$tmp/s.txt" 2>/dev/null
common="--data $tmp/s.txt --context-size 32 --batch 64 --steps 300 --buffer-rows 1024 --seed 5 --d-sae 256 --lr 3e-3 --quiet"

out=$("$bin" train --model "$m" --arch transcoder --layer 2 --component mlp $common --eval-windows 8 --out "$tmp/tc" 2>&1); rc=$?
check "train --arch transcoder --layer 2 --component mlp" '[ $rc -eq 0 ] && echo "$out" | grep -q "blocks.2.ln2.hook_normalized -> blocks.2.hook_mlp_out"'
check "cfg.json: architecture, hook_name, hook_name_out" 'grep -q "\"architecture\":\"transcoder\"" "$tmp/tc/cfg.json" && grep -q "\"hook_name\":\"blocks.2.ln2.hook_normalized\"" "$tmp/tc/cfg.json" && grep -q "\"hook_name_out\":\"blocks.2.hook_mlp_out\"" "$tmp/tc/cfg.json"'
ev=$(echo "$out" | sed -n 's/^explained_variance: //p')
score=$(echo "$out" | sed -n 's/^ce_loss_score: //p')
check "it learns the MLP (ev $ev > 0.4, CE recovered $score > 0.3)" 'awk -v e="$ev" -v s="$score" "BEGIN{exit !(e > 0.4 && s > 0.3)}"'
ev_out=$("$bin" eval --model "$m" --sae "$tmp/tc" --data "$tmp/s.txt" --windows 8 2>/dev/null); rc=$?
check "cterp eval of the saved transcoder gives train's eval" '[ $rc -eq 0 ] && [ "$(echo "$out" | grep -E "^(explained_variance|ce_loss_with_sae|ce_loss_score):")" = "$(echo "$ev_out" | grep -E "^(explained_variance|ce_loss_with_sae|ce_loss_score):")" ]'
"$bin" train --model "$m" --arch skip_transcoder --hook-in blocks.1.hook_resid_mid --hook-out blocks.1.hook_mlp_out $common --eval-windows 0 --out "$tmp/skip" >/dev/null 2>&1; rc=$?
check "skip_transcoder with --hook-in/--hook-out" '[ $rc -eq 0 ] && grep -q "\"W_skip\"" "$tmp/skip/sae_weights.safetensors"'
"$bin" steer --model "$m" --sae "$tmp/tc" --feature 0 --strength 1 --prompt "Once" -n 2 > "$tmp/st.log" 2>&1; rc=$?
check "steer refuses a transcoder with a message" '[ $rc -ne 0 ] && grep -qi "transcoder" "$tmp/st.log"'
"$bin" features --model "$m" --sae "$tmp/tc" --data "$tmp/s.txt" --windows 4 --loss-windows 2 --out "$tmp/feats" > "$tmp/f.log" 2>&1; rc=$?
check "features --loss-windows refuses a transcoder naming its output hook" '[ $rc -ne 0 ] && grep -q "blocks.2.hook_mlp_out" "$tmp/f.log"'
while IFS='|' read -r flags msg; do
    "$bin" train --model "$m" --data "$tmp/s.txt" $flags --steps 2 --out "$tmp/bad" > "$tmp/bad.log" 2>&1; rc=$?
    check "train $flags exits 2 with '$msg'" '[ $rc -eq 2 ] && grep -qF -- "$msg" "$tmp/bad.log"'
done <<'LIST'
--arch transcoder --hooks blocks.2.ln2.hook_normalized,blocks.2.hook_mlp_out|--arch transcoder takes one MLP
--arch transcoder --hook-in blocks.2.hook_nope --hook-out blocks.2.hook_mlp_out|--hook-in: 
--arch transcoder --layer 2 --component resid|--component resid
--arch standard --hook-in blocks.2.ln2.hook_normalized --hook-out blocks.2.hook_mlp_out|--hook-in is for --arch transcoder
LIST
exit $fail
