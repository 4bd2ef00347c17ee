#!/usr/bin/env bash
# cterp synth / cterp bench --synth on the tiny world: the metrics by name, the JSON line, the
# side-by-side table, and bad input (exit 2, a message naming the flag and the value).
set -u
bin=$1
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
tiny="--preset tiny --steps 100 --eval-samples 2048 --quiet"

out=$("$bin" synth $tiny 2>&1); rc=$?
check "synth prints every metric by name" '[ $rc -eq 0 ] && for k in mcc mmcs mmcs_reverse uniqueness f1 precision recall ev l0 dead; do [[ "$out" == *"  $k "* ]] || exit 1; done'
json=$("$bin" synth $tiny --json 2>&1); rc=$?
check "synth --json: one JSON line with the metrics in range" '[ $rc -eq 0 ] && [ "$(echo "$json" | wc -l)" -eq 1 ] && echo "$json" | /usr/bin/python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
for k in (\"f1\", \"mcc\", \"mmcs\", \"uniqueness\", \"precision\", \"recall\", \"ev\"):
    assert 0 <= r[k] <= 1, k
assert r[\"preset\"] == \"tiny\" and r[\"arch\"] == \"topk\" and r[\"steps\"] == 100 and r[\"eval_samples\"] == 2048
assert r[\"l0\"] <= 3.0001 and r[\"true_l0\"] > 1
assert r[\"ev\"] > 0.5 and r[\"mcc\"] > 0.3, r   # it learned something in 150 steps
"'
json2=$("$bin" synth $tiny --json 2>&1)
check "same flags, same numbers (train_s aside)" '[ "${json%%, \"train_s\"*}" == "${json2%%, \"train_s\"*}" ]'
json3=$("$bin" synth $tiny --json --data-seed 8 2>&1)
check "--data-seed changes the world" '[ "${json%%, \"train_s\"*}" != "${json3%%, \"train_s\"*}" ] && [[ "$json3" == *"\"data_seed\": 8"* ]]'
json4=$("$bin" synth --preset tiny --samples 12800 --batch 128 --arch standard --eval-samples 1024 --quiet --json 2>&1); rc=$?
check "--samples and train flags: 100 steps of 128, standard" '[ $rc -eq 0 ] && [[ "$json4" == *"\"arch\": \"standard\""* ]] && [[ "$json4" == *"\"steps\": 100,"* ]]'

bench=$("$bin" bench --synth --preset tiny --archs topk,standard --steps 60 --eval-samples 2048 --quiet 2>&1); rc=$?
check "bench --synth: a JSON line per run and a table" '[ $rc -eq 0 ] && [ "$(echo "$bench" | grep -c "^{\"preset\": \"tiny\"")" -eq 2 ] && echo "$bench" | grep -q "^arch  *f1  *mcc" && echo "$bench" | grep -q "^standard "'

# the toy preset is the demo: its world, its stream, its SAE (the same held-out recovery)
demo=$("$bin" demo --steps 20 --batch 512 --quiet 2>&1 | awk '/MMCS \(mean/{m=$NF} /reverse MMCS/{r=$NF} END{print m, r}')
toy=$("$bin" synth --preset toy --steps 20 --batch 512 --quiet --eval-samples 1024 2>&1 | awk '/^  mmcs /{m=$2} /^  mmcs_reverse /{r=$2} END{print m, r}')
check "synth --preset toy trains the demo's SAE (same MMCS both ways: $toy)" '[ -n "$toy" ] && [ "$demo" == "$toy" ]'

err=$("$bin" synth --preset huge 2>&1); rc=$?
check "unknown preset: exit 2 naming --preset and the value" '[ $rc -eq 2 ] && [[ "$err" == *"--preset"* ]] && [[ "$err" == *"huge"* ]]'
err=$("$bin" synth --steps 5 2>&1); rc=$?
check "no preset: exit 2 naming --preset" '[ $rc -eq 2 ] && [[ "$err" == *"--preset is required"* ]]'
err=$("$bin" synth --preset tiny --arch nope 2>&1); rc=$?
check "unknown arch: exit 2 naming it" '[ $rc -eq 2 ] && [[ "$err" == *"nope"* ]]'
err=$("$bin" synth --preset tiny --samples -3 2>&1); rc=$?
check "bad --samples: exit 2 naming the flag and value" '[ $rc -eq 2 ] && [[ "$err" == *"--samples: got '"'"'-3'"'"'"* ]]'
err=$("$bin" synth --preset tiny --eval-samples x 2>&1); rc=$?
check "bad --eval-samples" '[ $rc -eq 2 ] && [[ "$err" == *"--eval-samples: got '"'"'x'"'"'"* ]]'
err=$("$bin" bench --synth --preset tiny --archs topk,bogus --steps 5 2>&1); rc=$?
check "bench --archs with an unknown name: exit 2 before training, naming it" '[ $rc -eq 2 ] && [[ "$err" == *"--archs"* ]] && [[ "$err" == *"bogus"* ]] && [[ "$err" != *"step "* ]]'
err=$("$bin" bench --synth --preset tiny --steps 5 2>&1); rc=$?
check "bench --synth without --archs" '[ $rc -eq 2 ] && [[ "$err" == *"--archs"* ]]'
err=$("$bin" synth --preset tiny --k 0 2>&1); rc=$?
check "an invalid config value is refused naming the field" '[ $rc -eq 2 ] && [[ "$err" == *"k"* ]]'
"$bin" synth --help | grep -q "uniqueness" || { echo "FAIL: synth --help"; fail=1; }
exit $fail
