#!/usr/bin/env bash
# Builds cterp (installing missing Debian packages first) and runs `cterp demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release
./build/cterp demo "$@"
