#!/usr/bin/env bash
# Sets up llama.cpp as a test oracle, without building it: the npm package node-llama-cpp carries
# a recent llama.cpp's source (headers) and @node-llama-cpp/linux-x64 its prebuilt CPU libraries.
# The scripts under scripts/oracle/ compile small C programs against them and write the expected
# outputs that the tests compare with; the tests themselves never need llama.cpp.
#
#   source scripts/oracle/setup.sh      # sets ORACLE_DIR, ORACLE_LIB, ORACLE_CFLAGS, oracle_cc
#   oracle_cc OUT file.c                # compiles a C program against libllama + libggml
#
# ORACLE_DIR defaults to ~/.cache/cterp-oracle. Needs npm, git and a C compiler; x86-64 Linux.
set -euo pipefail
ORACLE_VERSION=3.22.1
ORACLE_DIR=${ORACLE_DIR:-$HOME/.cache/cterp-oracle}
mkdir -p "$ORACLE_DIR"
(
    cd "$ORACLE_DIR"
    for p in node-llama-cpp @node-llama-cpp/linux-x64; do
        d=$(basename "$p")-$ORACLE_VERSION
        [ -d "$d" ] && continue
        npm pack --silent "$p@$ORACLE_VERSION" >/dev/null
        mkdir -p "$d" && tar xzf "$(echo "$p" | sed 's#^@##; s#/#-#')-$ORACLE_VERSION.tgz" -C "$d"
    done
    if [ ! -d llama.cpp ]; then
        git clone -q node-llama-cpp-$ORACLE_VERSION/package/llama/gitRelease.bundle llama.cpp 2>/dev/null
    fi
) >&2
ORACLE_LIB=$ORACLE_DIR/linux-x64-$ORACLE_VERSION/package/bins/linux-x64
ORACLE_SRC=$ORACLE_DIR/llama.cpp
ORACLE_CFLAGS="-I$ORACLE_SRC/include -I$ORACLE_SRC/ggml/include"
for f in libllama libggml; do
    [ -e "$ORACLE_LIB/$f.so" ] || ln -sf "$f.v0.5.0.so" "$ORACLE_LIB/$f.so"
done
export ORACLE_DIR ORACLE_LIB ORACLE_SRC ORACLE_CFLAGS
oracle_cc() { # OUT SRC [more cc args]
    local out=$1 src=$2
    shift 2
    cc -O1 -g $ORACLE_CFLAGS -o "$out" "$src" "$@" -L"$ORACLE_LIB" -lllama -lggml -lggml-base \
        -Wl,-rpath,"$ORACLE_LIB" -lm
}
# the CPU backends are loaded at run time from this folder (ggml_backend_load_all_from_path)
export ORACLE_BACKENDS=$ORACLE_LIB
