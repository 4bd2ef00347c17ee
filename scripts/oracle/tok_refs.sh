#!/usr/bin/env bash
# llama.cpp's token ids for cterp's synthetic vocabularies (tests/synth_vocab.h), the expected
# files of test_tokenizer:
#
#   scripts/oracle/tok_refs.sh        # after building cterp (build/, or BUILD=dir)
#
# For each kind that `tok_synth kinds` lists (one per pre-tokenizer type of src/tokenizer/pretok.c
# with its own regexes or flags, then spm, gemma, bert, bert-cased) it writes the vocabulary with
# scripts/oracle/tok_synth.c (trained on texts.inp as well) and stores in
# tests/data/tok_ref/<kind>.txt what
# scripts/oracle/tok_ref.c (llama_tokenize in libllama) gives for tests/data/tok_ref/texts.inp
# (add_special and parse_special off), then for special.inp (both on). It then checks the table
# against llama.cpp: every tokenizer.ggml.pre value in llama.cpp's source is in cterp's table and
# back, each loads in llama.cpp and gives exactly the ids of its kind, and an unknown one is
# refused. Needs the oracle (scripts/oracle/setup.sh: npm, git, a C compiler, x86-64 Linux).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/oracle/setup.sh
B=${BUILD:-build}
[ -f "$B/libcterp.a" ] || { echo "tok_refs.sh: build cterp first ($B/libcterp.a)" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cc -O1 -Isrc -Iinclude -Itests -o "$T/tok_synth" scripts/oracle/tok_synth.c "$B/libcterp.a" -lpcre2-8 -lm
oracle_cc "$T/tok_ref" scripts/oracle/tok_ref.c
D=tests/data/tok_ref
commit=$(git -C "$ORACLE_SRC" rev-parse --short=12 HEAD)

ids() { # VOCAB: texts.inp plain, then special.inp with add_special and parse_special
    "$T/tok_ref" "$1" "$D/texts.inp" && "$T/tok_ref" -s -p "$1" "$D/special.inp"
}

n=0
for kind in $("$T/tok_synth" kinds); do
    "$T/tok_synth" "$kind" "$T/v.gguf" "$D/texts.inp"
    { echo "# $kind: llama.cpp $commit ids for texts.inp, then special.inp (add_special, parse_special)"
      ids "$T/v.gguf"; } > "$D/$kind.txt"
    n=$((n + 1))
done
echo "tok_refs.sh: $n kinds written to $D ($(du -cb "$D"/*.txt | tail -1 | cut -f1) bytes)"

# the pre-tokenizer table against llama.cpp's
fail=0
llama_names=$(sed -n '/tokenizer_pre.empty()/,/unknown pre-tokenizer type/p' "$ORACLE_SRC/src/llama-vocab.cpp" |
    grep -o 'tokenizer_pre == "[^"]*"' | sed 's/.*== "//; s/"$//' | sort -u)
cterp_names=$("$T/tok_synth" names | cut -d' ' -f1 | sort -u)
if [ "$llama_names" != "$cterp_names" ]; then
    echo "tok_refs.sh: pre names differ (< llama.cpp, > cterp):" >&2
    diff <(echo "$llama_names") <(echo "$cterp_names") >&2 || true
    fail=1
fi
while read -r name kind; do
    "$T/tok_synth" "bpe-$name" "$T/a.gguf" "$D/texts.inp"
    if ! ids "$T/a.gguf" > "$T/a.txt" 2>/dev/null; then
        echo "tok_refs.sh: llama.cpp does not load tokenizer.ggml.pre = $name" >&2
        fail=1
    elif ! diff -q <(tail -n +2 "$D/$kind.txt") "$T/a.txt" >/dev/null; then
        echo "tok_refs.sh: pre $name does not give the ids of $kind" >&2
        fail=1
    fi
done < <("$T/tok_synth" names)
"$T/tok_synth" bpe-no-such-pre "$T/u.gguf" "$D/texts.inp"
if "$T/tok_ref" "$T/u.gguf" "$D/texts.inp" >/dev/null 2>&1; then
    echo "tok_refs.sh: llama.cpp loaded an unknown pre-tokenizer type" >&2
    fail=1
fi
[ $fail -eq 0 ] && echo "tok_refs.sh: $(echo "$cterp_names" | wc -l) pre names: same as llama.cpp's, each loads and gives its kind's ids; an unknown one is refused"
exit $fail
