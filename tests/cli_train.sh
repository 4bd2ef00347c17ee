#!/usr/bin/env bash
# cterp train / inspect / demo: flags, outputs, resume, and bad input (clear errors, exit codes).
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
toy="--toy --toy-features 64 --toy-d 32 --toy-active 3 --d-sae 128 --k 4 --batch 256 --quiet"

"$bin" train $toy --steps 30 --log-every 10 --out "$tmp/sae" >"$tmp/out.txt" 2>&1
check "train --toy writes an SAELens directory" '[ -f "$tmp/sae/cfg.json" ] && [ -f "$tmp/sae/sae_weights.safetensors" ] && [ -f "$tmp/sae/sparsity.safetensors" ]'
check "metrics.jsonl has one line per log step" '[ "$(wc -l < "$tmp/sae/metrics.jsonl")" -eq 3 ]'
check "metrics carry the documented keys" 'grep -q "\"explained_variance\"" "$tmp/sae/metrics.jsonl" && grep -q "\"l0_sparsity\"" "$tmp/sae/metrics.jsonl" && grep -q "\"dead_fraction\"" "$tmp/sae/metrics.jsonl" && grep -q "\"l1_magnitude\"" "$tmp/sae/metrics.jsonl"'
out=$("$bin" inspect "$tmp/sae")
check "inspect describes the SAE" '[[ "$out" == *"architecture           topk"* ]] && [[ "$out" == *"128"* ]]'

# a config file, with flags overriding it
printf '{"preset": "cterp", "architecture": "standard", "l1_coefficient": 0.5, "training_steps": 12}\n' > "$tmp/c.json"
"$bin" train $toy --config "$tmp/c.json" --log-every 4 --out "$tmp/std" >/dev/null 2>&1
check "--config trains a standard SAE" 'grep -q "\"architecture\":\"standard\"" "$tmp/std/cfg.json" && [ "$(wc -l < "$tmp/std/metrics.jsonl")" -eq 3 ]'

# the architectures SAELens trains beyond the classic four: matryoshka saves as jumprelu, gated as gated
"$bin" train $toy --arch matryoshka_batchtopk --matryoshka-widths 16,64 --steps 12 --log-every 4 --out "$tmp/matry" >/dev/null 2>&1
check "matryoshka_batchtopk trains and saves as jumprelu" 'grep -q "\"architecture\":\"jumprelu\"" "$tmp/matry/cfg.json" && grep -q "\"inner_mse_loss\"" "$tmp/matry/metrics.jsonl"'
printf '{"architecture": "matryoshka_batchtopk", "matryoshka_widths": [16, 64], "training_steps": 12}\n' > "$tmp/m.json"
"$bin" train $toy --config "$tmp/m.json" --out "$tmp/matry2" >/dev/null 2>&1
check "matryoshka widths from a JSON list give the same SAE as the flag" 'cmp -s "$tmp/matry/sae_weights.safetensors" "$tmp/matry2/sae_weights.safetensors"'
err=$("$bin" train $toy --arch matryoshka_batchtopk --matryoshka-widths 64,32 2>&1); rc=$?
check "non-increasing matryoshka widths are refused naming the field and value" '[ $rc -ne 0 ] && [[ "$err" == *"matryoshka_widths: got 32 after 64"* ]]'
err=$("$bin" train $toy --arch matryoshka_batchtopk --matryoshka-widths 16,500 2>&1); rc=$?
check "a matryoshka width past d_sae is refused" '[ $rc -ne 0 ] && [[ "$err" == *"matryoshka_widths: got 500"* ]] && [[ "$err" == *"d_sae (128)"* ]]'
err=$("$bin" train $toy --arch matryoshka_batchtopk 2>&1); rc=$?
check "matryoshka without widths is refused" '[ $rc -ne 0 ] && [[ "$err" == *"matryoshka_widths: got none"* ]]'
"$bin" train $toy --arch gated --steps 12 --out "$tmp/gated" >/dev/null 2>&1
out=$("$bin" inspect "$tmp/gated" 2>&1)
check "gated trains, saves as gated, and inspect reads it" 'grep -q "\"architecture\":\"gated\"" "$tmp/gated/cfg.json" && [[ "$out" == *"architecture           gated"* ]]'

# checkpoints and resume from the CLI: same result as straight through
"$bin" train $toy --steps 20 --checkpoint-every 10 --out "$tmp/a" >/dev/null 2>&1
"$bin" train $toy --resume "$tmp/a/checkpoints/step_10" --out "$tmp/b" >/dev/null 2>&1
check "resume from a checkpoint gives identical weights" 'cmp -s "$tmp/a/sae_weights.safetensors" "$tmp/b/sae_weights.safetensors"'

# k annealing: --k-anneal-steps / --k-anneal-start; k in metrics.jsonl, the final k in cfg.json,
# the fields in train_config.json, resume mid-anneal identical to straight through
"$bin" train $toy --k-anneal-steps 12 --k-anneal-start 32 --steps 20 --log-every 1 --checkpoint-every 6 --out "$tmp/ka" >/dev/null 2>&1
check "k annealing: metrics.jsonl has k per step (the line of step m has step index m-1's k: 32, 22 = int(32*8/12 + 4*4/12) at step 5, 4 from step 13)" 'grep -q "{\"step\": 1,.*\"k\": 32," "$tmp/ka/metrics.jsonl" && grep -q "{\"step\": 5,.*\"k\": 22," "$tmp/ka/metrics.jsonl" && grep -q "{\"step\": 13,.*\"k\": 4," "$tmp/ka/metrics.jsonl" && grep -q "{\"step\": 20,.*\"k\": 4," "$tmp/ka/metrics.jsonl"'
check "k annealing: the saved SAE has the final k" 'grep -q "\"k\":4" "$tmp/ka/cfg.json"'
check "k annealing: train_config.json of a checkpoint has the fields" 'grep -q "\"k_anneal_steps\": 12" "$tmp/ka/checkpoints/step_6/train_config.json" && grep -q "\"k_anneal_start\": 32" "$tmp/ka/checkpoints/step_6/train_config.json"'
"$bin" train $toy --resume "$tmp/ka/checkpoints/step_6" --out "$tmp/kb" >/dev/null 2>&1
check "k annealing: resume mid-anneal gives identical weights" 'cmp -s "$tmp/ka/sae_weights.safetensors" "$tmp/kb/sae_weights.safetensors"'
err=$("$bin" train $toy --k-anneal-steps 20 --steps 20 2>&1); rc=$?
check "k_anneal_steps >= steps is refused naming the field and value" '[ $rc -ne 0 ] && [[ "$err" == *"k_anneal_steps: got 20, expected < the training steps (20)"* ]]'
err=$("$bin" train $toy --k-anneal-steps 10 --k-anneal-start 4 --steps 20 2>&1); rc=$?
check "k_anneal_start <= k is refused" '[ $rc -ne 0 ] && [[ "$err" == *"k_anneal_start: got 4"* ]] && [[ "$err" == *"expected > k (4)"* ]]'
err=$("$bin" train $toy --arch standard --k-anneal-steps 10 --steps 20 2>&1); rc=$?
check "k annealing with standard is refused" '[ $rc -ne 0 ] && [[ "$err" == *"k_anneal_steps: got 10 with architecture standard"* ]]'

# activations from a .npy file
python3 - "$tmp/acts.npy" <<'PY'
import struct, sys, random
rows, cols = 512, 8
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
hdr += ' ' * (64 - (10 + len(hdr) + 1) % 64) + '\n'
random.seed(1)
with open(sys.argv[1], 'wb') as f:
    f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode())
    f.write(struct.pack('<%df' % (rows * cols), *[random.gauss(0, 1) for _ in range(rows * cols)]))
PY
"$bin" train --acts "$tmp/acts.npy" --d-sae 32 --k 4 --batch 64 --steps 10 --quiet --out "$tmp/npy" >/dev/null 2>&1
check "train --acts FILE.npy" '[ -f "$tmp/npy/cfg.json" ] && grep -q "\"d_in\":8" "$tmp/npy/cfg.json"'

# a row with a NaN: training stops naming the step, the row and the column, the last checkpoint
# kept; --skip-nonfinite-rows true skips it, counted in metrics.jsonl
python3 - "$tmp/acts.npy" "$tmp/nan.npy" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
off = len(d) - 512 * 8 * 4 + (100 * 8 + 3) * 4  # row 100, column 3
d[off:off + 4] = struct.pack('<f', float('nan'))
open(sys.argv[2], 'wb').write(d)
PY
err=$("$bin" train --acts "$tmp/nan.npy" --d-sae 32 --k 4 --batch 64 --steps 20 --checkpoint-every 2 --quiet --out "$tmp/nan" 2>&1); rc=$?
check "a NaN row stops training naming step, row and column; the last checkpoint stays" '[ $rc -eq 1 ] && [[ "$err" == *"a non-finite activation at"* ]] && [[ "$err" == *"column 3 (nan)"* ]] && [[ "$err" == *"--skip-nonfinite-rows true"* ]] && "$bin" inspect "$(ls -d "$tmp"/nan/checkpoints/step_* | tail -1)" >/dev/null'
"$bin" train --acts "$tmp/nan.npy" --d-sae 32 --k 4 --batch 64 --steps 20 --skip-nonfinite-rows true --quiet --out "$tmp/nan2" >/dev/null 2>&1; rc=$?
check "--skip-nonfinite-rows true trains past it and counts it in metrics.jsonl" '[ $rc -eq 0 ] && grep -q "\"nonfinite_rows_skipped\": [1-9]" "$tmp/nan2/metrics.jsonl"'

# raw little-endian f32 rows with --d-in
python3 -c "import struct,random; random.seed(2); open('$tmp/acts.f32','wb').write(struct.pack('<2048f', *[random.gauss(0,1) for _ in range(2048)]))"
"$bin" train --acts "$tmp/acts.f32" --d-in 16 --d-sae 32 --k 4 --batch 32 --steps 5 --quiet --out "$tmp/raw" >/dev/null 2>&1
check "train --acts raw f32 --d-in" 'grep -q "\"d_in\":16" "$tmp/raw/cfg.json"'
err=$("$bin" train --acts "$tmp/acts.f32" --d-in 15 --steps 5 2>&1); rc=$?
check "raw file size not a multiple of d_in" '[ $rc -eq 1 ] && [[ "$err" == *"acts.f32"* ]] && [[ "$err" == *"15"* ]]'
err=$("$bin" train --acts "$tmp/acts.f32" --steps 5 2>&1); rc=$?
check "raw file without --d-in" '[ $rc -eq 1 ] && [[ "$err" == *"--d-in"* ]]'

# bad input: clear errors naming the field or file, usage exit code 2, failures 1
err=$("$bin" train $toy --k 0 2>&1); rc=$?
check "k=0 is rejected naming the field" '[ $rc -ne 0 ] && [[ "$err" == *"k: got 0"* ]]'
err=$("$bin" train $toy --k 500 2>&1); rc=$?
check "k > d_sae is rejected" '[ $rc -ne 0 ] && [[ "$err" == *"k: got 500"* ]] && [[ "$err" == *"d_sae"* ]]'
err=$("$bin" train $toy --arch crossfoo 2>&1); rc=$?
check "unknown architecture lists the allowed ones" '[ $rc -eq 2 ] && [[ "$err" == *"gated"* ]] && [[ "$err" == *"jumprelu"* ]]'
err=$("$bin" train $toy --lr-scheduler warp 2>&1); rc=$?
check "unknown scheduler" '[ $rc -eq 2 ] && [[ "$err" == *"lr_scheduler"* ]]'
err=$("$bin" train $toy --lr -1 2>&1); rc=$?
check "negative lr" '[ $rc -ne 0 ] && [[ "$err" == *"lr: got -1"* ]]'
err=$("$bin" train $toy --dead-feature-window 0 2>&1); rc=$?
check "zero window" '[ $rc -ne 0 ] && [[ "$err" == *"dead_feature_window"* ]]'
err=$("$bin" train --acts "$tmp/none.npy" 2>&1); rc=$?
check "missing activation file" '[ $rc -eq 1 ] && [[ "$err" == *"none.npy"* ]]'
printf 'garbage' > "$tmp/bad.npy"
err=$("$bin" train --acts "$tmp/bad.npy" 2>&1); rc=$?
check "corrupt .npy" '[ $rc -eq 1 ] && [[ "$err" == *"bad.npy"* ]]'
err=$("$bin" train --toy --acts x 2>&1); rc=$?
check "two data sources" '[ $rc -eq 2 ]'
printf '{"k": ' > "$tmp/bad.json"
err=$("$bin" train $toy --config "$tmp/bad.json" 2>&1); rc=$?
check "corrupt config file" '[ $rc -eq 2 ] && [[ "$err" == *"bad.json"* ]]'
err=$("$bin" inspect "$tmp" 2>&1); rc=$?
check "inspect of a directory without an SAE" '[ $rc -eq 1 ] && [[ "$err" == *"cfg.json"* ]]'
err=$("$bin" train $toy --resume "$tmp/nope" 2>&1); rc=$?
check "resume from a missing checkpoint" '[ $rc -eq 1 ] && [[ "$err" == *"nope"* ]]'
"$bin" demo --help >/dev/null; check "demo --help" '[ $? -eq 0 ]'
"$bin" nonsense >/dev/null 2>&1; check "unknown command exits 2" '[ $? -eq 2 ]'

# cterp bench on a tiny size: the report line, the phase line, both AuxK forms, a bad value
out=$("$bin" bench --d-in 16 --d-sae 64 --k 4 --batch 64 --steps 2 --dead-fraction 0.25 --auxk-impl pairs 2>&1); rc=$?
check "bench reports tok/s, roofline and ms by phase" '[ $rc -eq 0 ] && [[ "$out" == *"tok/s"* ]] && [[ "$out" == *"reached"* ]] && [[ "$out" == *"ms/step by phase: data"* ]] && [[ "$out" == *"revive"* ]]'
"$bin" bench --d-in 16 --d-sae 64 --k 4 --batch 64 --steps 2 --dead-fraction 0.25 --auxk-impl dense >/dev/null 2>&1
check "bench with dense AuxK runs" '[ $? -eq 0 ]'
out=$("$bin" bench --d-in 40 --d-sae 100 --k 4 --batch 30 --steps 2 --dead-fraction 0.25 --encoder-bf16 true 2>&1); rc=$?
if [[ "$out" == *"no AVX-512 BF16"* ]]; then
  echo "skip: bench --encoder-bf16 (no AVX-512 BF16 here)"
else
  check "bench --encoder-bf16 measures the bf16 GEMM" '[ $rc -eq 0 ] && [[ "$out" == *"bf16 gemm"* ]] && [[ "$out" == *"revive"* ]]'
  "$bin" bench --d-in 40 --d-sae 100 --k 4 --batch 30 --steps 2 --encoder-bf16 true --bf16-topk fused >/dev/null 2>&1
  check "bench --bf16-topk fused runs" '[ $? -eq 0 ]'
  "$bin" bench --d-in 40 --d-sae 100 --k 4 --batch 30 --steps 2 --encoder-bf16 true --bf16-topk z >/dev/null 2>&1
  check "bench --bf16-topk z runs" '[ $? -eq 0 ]'
fi
err=$("$bin" bench --bf16-topk maybe 2>&1); rc=$?
check "bench --bf16-topk with a bad value: exit 2 naming the choices" '[ $rc -eq 2 ] && [[ "$err" == *"fused, z or auto"* ]]'
err=$("$bin" bench --bf16-topk fused --d-in 16 --d-sae 64 --steps 1 2>&1); rc=$?
check "bench --bf16-topk without --encoder-bf16: exit 2 saying what it needs" '[ $rc -eq 2 ] && [[ "$err" == *"--encoder-bf16 true"* ]]'
err=$("$bin" bench --arch standard --encoder-bf16 true --d-in 16 --d-sae 64 --steps 1 2>&1); rc=$?
check "bench --encoder-bf16 with standard: exit 1 naming the field and the architectures" '[ $rc -eq 1 ] && [[ "$err" == *"encoder_bf16"* ]] && [[ "$err" == *"topk, batchtopk or matryoshka_batchtopk"* ]]'
err=$("$bin" bench --auxk-impl bogus 2>&1); rc=$?
check "bench --auxk-impl bogus: exit 2 naming the flag and the choices" '[ $rc -eq 2 ] && [[ "$err" == *"--auxk-impl"* ]] && [[ "$err" == *"pairs, dense or auto"* ]]'

exit $fail
