#!/usr/bin/env bash
# Regenerates tests/data/model_ref/<variant>.ref: the outputs of an exact double-precision forward
# and of llama.cpp on the synthetic GGUFs of tests/synth_arch.h (docs/model.md, "Reference outputs
# from llama.cpp").
#
#   scripts/oracle/model_refs.sh [VARIANT...]     # all variants when none is named
#
# Needs the cterp library built (cmake --build build --target cterp_lib; CTERP_BUILD names
# another build folder) and llama.cpp through scripts/oracle/setup.sh (ORACLE_DIR). For each
# variant it writes the GGUF to a temporary folder with write_synth (linked to cterp for GGUF I/O
# only), runs llama.cpp on it with model_ref, and has write_synth check llama.cpp against its
# independent double-precision forward and store both; it stops on a disagreement. Variants
# whose function llama.cpp does not compute (write_synth llama_cpp NAME) get the exact half only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${CTERP_BUILD:-$ROOT/build}
T=16     # prompt tokens
N_GEN=8  # greedy continuation
OUT=$ROOT/tests/data/model_ref

[ -f "$BUILD/libcterp.a" ] || { echo "model_refs.sh: $BUILD/libcterp.a missing: cmake --build build --target cterp_lib" >&2; exit 1; }
# shellcheck source=setup.sh
source "$ROOT/scripts/oracle/setup.sh"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -I"$ROOT/include" \
    -I"$ROOT/src" -I"$ROOT/tests" -o "$TMP/write_synth" "$ROOT/scripts/oracle/write_synth.c" \
    "$BUILD/libcterp.a" -lm
oracle_cc "$TMP/model_ref" "$ROOT/scripts/oracle/model_ref.c" -Wall -Wextra -Werror -Wno-unused-parameter

mkdir -p "$OUT"
if [ $# -gt 0 ]; then variants=("$@"); else mapfile -t variants < <("$TMP/write_synth" list); fi
for v in "${variants[@]}"; do
    "$TMP/write_synth" write "$v" "$TMP/$v.gguf"
    if "$TMP/write_synth" llama_cpp "$v"; then
        # shellcheck disable=SC2046
        "$TMP/model_ref" "$TMP/$v.gguf" "$TMP/$v.llama.ref" "$N_GEN" $("$TMP/write_synth" tokens "$v" "$T") | sed "s#^$TMP/##"
        "$TMP/write_synth" ref "$v" "$TMP/$v.gguf" "$OUT/$v.ref" "$T" "$N_GEN" "$TMP/$v.llama.ref"
    else
        "$TMP/write_synth" ref "$v" "$TMP/$v.gguf" "$OUT/$v.ref" "$T" "$N_GEN"
    fi
done
du -ch "$OUT"/*.ref | tail -1
