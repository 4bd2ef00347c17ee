#!/usr/bin/env bash
# Tokenizer throughput (docs/model.md): `cterp tokenize --ids` over 1.5 MB of mixed text, the 46
# texts of llama.cpp's tokenizer test drawn in a fixed pseudo-random order, vocabulary loading
# included; the best of five runs. Not a test.
#   bench/tok_bench.sh [build/cterp] [VOCAB.gguf...]   (default: the shared test data's vocabularies)
set -euo pipefail
bin=${1:-build/cterp}
[ $# -gt 0 ] && shift
data=${CTERP_TESTDATA:-$(dirname "$0")/../../shared/testdata}
vocabs=("$@")
[ ${#vocabs[@]} -gt 0 ] || vocabs=("$data"/vocab/ggml-vocab-{gpt-2,llama-spm,falcon,mpt}.gguf)
text=$(mktemp)
trap 'rm -f "$text"' EXIT
# awk: texts between separators, drawn with a fixed seed until 1.5 MB
awk -v RS='\n__ggml_vocab_test__\n' 'BEGIN { srand(1) } { t[n++] = $0 }
    END { while (size < 1500000) { s = t[int(rand() * n)]; printf "%s\n", s; size += length(s) + 1 } }' \
    "$data/vocab/ggml-vocab-gpt-2.gguf.inp" > "$text"
echo "tok_bench: $(wc -c < "$text") bytes, $(lscpu | sed -n 's/^Model name: *//p')"
for v in "${vocabs[@]}"; do
    times=()
    for _ in 1 2 3 4 5; do
        s=$(date +%s.%N)
        "$bin" tokenize --model "$v" --ids < "$text" > /dev/null 2>&1
        times+=("$(echo "$(date +%s.%N) - $s" | bc)")
    done
    best=$(printf '%s\n' "${times[@]}" | sort -n | head -1)
    printf '%-28s %6.3f s  %5.1f MB/s\n' "$(basename "$v" .gguf)" "$best" "$(echo "$(wc -c < "$text") / $best / 1000000" | bc -l)"
done
