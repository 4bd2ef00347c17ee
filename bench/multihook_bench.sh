#!/usr/bin/env bash
# The cost of N hooks against one (docs/pipeline.md, "Several hooks, one forward"): wall seconds
# of `cterp cache` and `cterp train --model` for the deepest hook alone, for N hooks from one
# forward (--hooks), and for the same N hooks run one at a time. Not a test.
# Usage: bench/multihook_bench.sh [build] [MODEL.gguf] [HOOKS] [TOKENS] [D_SAE]
#   default: stories260K (shared test data), hooks blocks.{1,2,3,4}.hook_resid_post, 20480 tokens;
#   a forward-bound model: bench_synth_gguf M.gguf --shape llama768 --type Q8_0 and
#   HOOKS=blocks.2.hook_resid_post,blocks.5.hook_resid_post,blocks.8.hook_resid_post,blocks.11.hook_resid_post
set -euo pipefail
build=${1:-build}
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-/work/shared/testdata}}
model=${2:-$data/models/stories260K.gguf}
hooks=${3:-blocks.1.hook_resid_post,blocks.2.hook_resid_post,blocks.3.hook_resid_post,blocks.4.hook_resid_post}
tokens=${4:-20480}
dsae=${5:-1024}
bin=$build/cterp
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lscpu | sed -n 's/^Model name: *//p'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
"$bin" generate --model "$data/models/stories260K.gguf" -n 256 --temp 1 --samples 200 --seed 1 > "$tmp/s.txt" 2>/dev/null
IFS=, read -r -a hs <<< "$hooks"
n=${#hs[@]}
last=${hs[$((n - 1))]}
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
ctx="--data $tmp/s.txt --context-size 64"
train="--d-sae $dsae --k 32 --batch 256 --steps $((tokens / 256)) --eval-windows 0 --quiet"
echo "model $(basename "$model"), $n hooks: $hooks; $tokens tokens"

t0=$(now); "$bin" cache --model "$model" --hook "$last" $ctx --tokens "$tokens" --out "$tmp/c1" >/dev/null; t1=$(now)
"$bin" cache --model "$model" --hooks "$hooks" $ctx --tokens "$tokens" --out "$tmp/cn" >/dev/null; t2=$(now)
for h in "${hs[@]}"; do "$bin" cache --model "$model" --hook "$h" $ctx --tokens "$tokens" --out "$tmp/cs_$h" >/dev/null; done; t3=$(now)
printf "cache  %-28s %6.2f s\n" "1 hook ($last)" "$(secs "$t0" "$t1")"
printf "cache  %-28s %6.2f s\n" "$n hooks, one forward" "$(secs "$t1" "$t2")"
printf "cache  %-28s %6.2f s\n" "$n hooks, one run each" "$(secs "$t2" "$t3")"

t0=$(now); "$bin" train --model "$model" --hook "$last" $ctx $train --out "$tmp/t1" >/dev/null 2>&1; t1=$(now)
"$bin" train --model "$model" --hooks "$hooks" $ctx $train --out "$tmp/tn" >/dev/null 2>&1; t2=$(now)
for h in "${hs[@]}"; do "$bin" train --model "$model" --hook "$h" $ctx $train --out "$tmp/ts_$h" >/dev/null 2>&1; done; t3=$(now)
printf "train  %-28s %6.2f s\n" "1 SAE ($last)" "$(secs "$t0" "$t1")"
printf "train  %-28s %6.2f s\n" "$n SAEs, one forward" "$(secs "$t1" "$t2")"
printf "train  %-28s %6.2f s\n" "$n SAEs, one run each" "$(secs "$t2" "$t3")"
