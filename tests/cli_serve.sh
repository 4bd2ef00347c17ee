#!/usr/bin/env bash
# cterp serve (the live explorer) on stories260K with a small SAE trained here: start it on a free
# port, then tests/serve_client.py: the API's answers, malformed / huge / cut-off requests and 20
# parallel connections (status codes; the server's RSS does not grow after the first round), and
# headless Chromium over the DevTools protocol (submit a prompt, read the shaded tokens back,
# steer a latent, no console errors); SIGTERM stops it and removes its dashboard directory.
# Skips without test data, without libmicrohttpd in the build, and the browser under the
# sanitizers or without chromium.
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-}}
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

if "$bin" serve --model m --sae "$tmp/nosae" 2>&1 | grep -q "built without libmicrohttpd"; then
    "$bin" serve --model m --sae s >/dev/null 2>&1
    check "built without libmicrohttpd: serve says so and exits 1" '[ $? -eq 1 ]'
    echo "skip: this cterp was built without libmicrohttpd"
    exit $fail
fi
"$bin" serve --sae s >/dev/null 2>&1; check "serve without --model exits 2" '[ $? -eq 2 ]'
"$bin" serve --model m --sae s --port 70000 >/dev/null 2>&1; check "a port out of range exits 2" '[ $? -eq 2 ]'
err=$("$bin" serve --model m --sae s --host example.org 2>&1); rc=$?
check "a host that is not an address is named" '[ $rc -eq 2 ] && [[ "$err" == *"example.org"* ]]'
err=$("$bin" serve --model m --sae "$tmp/nosae" 2>&1); rc=$?
check "a missing SAE dir is named" '[ $rc -eq 1 ] && [[ "$err" == *"$tmp/nosae"* ]]'
if [ -z "$data" ] || [ ! -f "$data/models/stories260K.gguf" ]; then
    echo "skip: shared test data not found (set CTERP_TESTDATA)"
    exit $fail
fi
m=$data/models/stories260K.gguf
# 5 stories of up to 200 tokens (each a process: slow to start under the sanitizers)
for i in $(seq 1 5); do "$bin" generate --model "$m" -n 200 --temp 1 --seed "$i" 2>/dev/null | tr '\n' ' '; echo; done > "$tmp/s.txt"
"$bin" train --model "$m" --layer 2 --component resid --data "$tmp/s.txt" --context-size 32 --d-sae 256 --k 8 \
    --batch 128 --steps 60 --log-every 10 --buffer-rows 1024 --seed 5 --quiet --eval-windows 0 --out "$tmp/sae" >/dev/null 2>&1
"$bin" features --model "$m" --sae "$tmp/sae" --data "$tmp/s.txt" --out "$tmp/feats" >/dev/null 2>&1
check "an SAE and its features" '[ -f "$tmp/sae/cfg.json" ] && [ -f "$tmp/feats/latents.jsonl" ]'

# start: the first line on stdout names the port it got
start() {
    TMPDIR=$tmp "$bin" serve --model "$m" --sae "$tmp/sae" --port 0 "$@" >"$tmp/serve.out" 2>"$tmp/serve.err" &
    pid=$!
    port=
    for _ in $(seq 1 100); do
        port=$(sed -n 's|^cterp serve: http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/serve.out")
        [ -n "$port" ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
}
start --features "$tmp/feats" --context-size 64
check "serve starts on a free port and says so" '[ -n "$port" ]'
if [ -z "$port" ]; then cat "$tmp/serve.err"; exit 1; fi
check "the dashboard is written into a private directory" '[ $(ls -d "$tmp"/cterp-serve-* | wc -l) -eq 1 ]'
python3 "$here/serve_client.py" api "$port" "$pid" || fail=1
kill -0 $pid 2>/dev/null; check "the server is alive after the abuse" '[ $? -eq 0 ]'
if [ -n "${CTERP_SANITIZED:-}" ]; then
    echo "skip: browser checks (they run in the release suite)"
elif ! command -v chromium >/dev/null 2>&1; then
    echo "skip: chromium not installed (scripts/deps.sh installs it)"
else
    python3 "$here/serve_client.py" browser "$port" "$tmp" || fail=1
fi
kill -TERM $pid; wait $pid; rc=$?; pid=
check "SIGTERM stops it cleanly (exit $rc) and removes the dashboard directory" '[ $rc -eq 0 ] && ! ls -d "$tmp"/cterp-serve-* >/dev/null 2>&1'
check "no sanitizer or MHD error in its log" '! grep -E "ERROR|runtime error|leak" "$tmp/serve.err"'

# the port in use: a clear error
start --features "$tmp/feats"
err=$("$bin" serve --model "$m" --sae "$tmp/sae" --port "$port" 2>&1); rc=$?
check "a port in use is a clear error" '[ $rc -eq 1 ] && [[ "$err" == *"cannot listen on 127.0.0.1 port $port"* ]]'
kill -TERM $pid; wait $pid; pid=
# without corpus statistics: the explorer works, the dashboard says how to get one
start
st=$(curl -s -o "$tmp/r.json" -w "%{http_code}" "http://127.0.0.1:$port/dash/")
check "without --features /dash/ is a 404 that says how to get it" '[ "$st" = 404 ] && grep -q "start cterp serve with --features" "$tmp/r.json"'
st=$(curl -s -o "$tmp/r.json" -w "%{http_code}" -X POST --data '{"prompt": "Lily", "latent": 1, "n": 4}' "http://127.0.0.1:$port/api/steer")
check "and the API answers" '[ "$st" = 200 ] && grep -q "\"steered\"" "$tmp/r.json"'
kill -TERM $pid; wait $pid; pid=
# --data: the features pass at start-up, and its dashboard (with the SAE's training report)
start --data "$tmp/s.txt" --windows 4
st=$(curl -s -o "$tmp/p.html" -w "%{http_code}" "http://127.0.0.1:$port/dash/training.html")
check "with --data the dashboard is computed at start-up (and its training report found)" '[ "$st" = 200 ] && grep -q "over 4 windows" "$tmp/serve.err" && grep -q "<polyline" "$tmp/p.html"'
kill -TERM $pid; wait $pid; pid=
exit $fail
