#!/usr/bin/env bash
# cterp generate / tokenize against the shared test data (skips when it is absent).
set -u
bin=$1
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-}}
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

"$bin" generate --model /nonexistent.gguf >/dev/null 2>&1; check "missing model exits 1" '[ $? -eq 1 ]'
"$bin" generate --bogus >/dev/null 2>&1; check "bad option exits 2" '[ $? -eq 2 ]'
"$bin" tokenize >/dev/null 2>&1; check "tokenize without --model exits 2" '[ $? -eq 2 ]'
err=$("$bin" bench --model /nonexistent.gguf 2>&1 >/dev/null); rc=$?
check "bench --model on a missing file exits 1 naming it" '[ $rc -eq 1 ] && [[ "$err" == *"/nonexistent.gguf"* ]]'
"$bin" bench --model x.gguf --context 0 >/dev/null 2>&1; check "bench --model --context 0 exits 2" '[ $? -eq 2 ]'
err=$("$bin" bench --pipeline --layer 2 2>&1 >/dev/null); rc=$?
check "bench --pipeline without --model exits 2" '[ $rc -eq 2 ] && [[ "$err" == *"needs --model"* ]]'
if [ -z "$data" ] || [ ! -f "$data/models/stories260K.gguf" ]; then
    echo "skip: shared test data not found (set CTERP_TESTDATA)"
    exit $fail
fi
m=$data/models/stories260K.gguf
err=$("$bin" bench --model "$m" --hook blocks.9.bogus 2>&1 >/dev/null); rc=$?
check "bench --model with an unknown hook exits 1 listing the hooks" '[ $rc -eq 1 ] && [[ "$err" == *"unknown hook"*"valid hook names"* ]]'
out=$("$bin" bench --model "$m" --batch 1 --context 8 --decode 4 --seconds 0.05 2>/dev/null); rc=$?
check "bench --model measures prefill and decode against their bounds" '[ $rc -eq 0 ] && [[ "$out" == *"prefill B=1 T=8"*"reached"*"decode: "*"in turns with the steps"*"reached"* ]]'
err=$(CTERP_DECODE_ROWS=sideways "$bin" generate --model "$m" -n 2 2>&1 >/dev/null); rc=$?
check "a bad CTERP_DECODE_ROWS exits 1 naming it" '[ $rc -eq 1 ] && [[ "$err" == *"CTERP_DECODE_ROWS=sideways: expected one, side, auto"* ]]'
out=$("$bin" generate --model "$m" -n 40 2>/dev/null)
check "greedy generation from BOS" '[[ "$out" == "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."* ]]'
a=$("$bin" generate --model "$m" -n 20 --temp 0.9 --top-p 0.9 --seed 7 2>/dev/null)
b=$("$bin" generate --model "$m" -n 20 --temp 0.9 --top-p 0.9 --seed 7 2>/dev/null)
check "seeded sampling is reproducible" '[ -n "$a" ] && [ "$a" == "$b" ]'
out=$("$bin" generate --model "$m" --prompt "Once upon a time" -n 5 2>/dev/null)
check "prompt is echoed and continued" '[[ "$out" == "Once upon a time"* ]] && [ ${#out} -gt 16 ]'
"$bin" generate --model "$m" -n abc >/dev/null 2>&1; check "non-numeric -n exits 2" '[ $? -eq 2 ]'
err=$("$bin" generate --model "$m" -n 20000 2>&1 >/dev/null); rc=$?
check "generation stops at the context with a message" '[ $rc -eq 0 ] && [[ "$err" == *"context is 2048 tokens: stopping after 2047 new tokens, not 20000"* ]]'
ids=$(printf 'Once upon a time' | "$bin" tokenize --model "$m" --ids)
check "tokenize --ids with BOS" '[ "$ids" == "1 403 407 261 378" ]'
ids=$(printf 'Once upon a time' | "$bin" tokenize --model "$m" --ids --no-bos)
check "tokenize --no-bos" '[ "$ids" == "403 407 261 378" ]'
ids=$(printf 'Hello world' | "$bin" tokenize --model "$data/vocab/ggml-vocab-gpt-2.gguf" --ids)
check "gpt-2 vocabulary adds no BOS" '[ "$ids" == "15496 995" ]'
tab=$(printf 'Hello world' | "$bin" tokenize --model "$data/vocab/ggml-vocab-gpt-2.gguf")
check "tokenize table" '[ "$tab" == "$(printf "15496\tHello\n995\tĠworld")" ]'
exit $fail
