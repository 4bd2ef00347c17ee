#!/usr/bin/env bash
# Regenerates tests/data/quant_ref/<type>.bin (random blocks and ggml's dequantization of them, the
# format is in scripts/oracle/quant_ref.c) and prints ggml's round-trip error on test_quant's row,
# the numbers test_quant.c's bounds are built on. Needs the oracle (scripts/oracle/setup.sh).
#
#   scripts/oracle/quant_refs.sh          # ORACLE_DIR as setup.sh (default ~/.cache/cterp-oracle)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/oracle/setup.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
oracle_cc "$out/quant_ref" scripts/oracle/quant_ref.c src/core/rng.c -Isrc -Itests
mkdir -p tests/data/quant_ref
"$out/quant_ref" blocks tests/data/quant_ref
"$out/quant_ref" rmse
