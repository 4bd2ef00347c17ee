#!/usr/bin/env bash
# Builds cterp (installing missing Debian packages first) and runs the whole test suite twice:
# a release build, then an ASan+UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release
(cd build && ctest --output-on-failure)
bash scripts/build.sh asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && CTERP_SANITIZED=1 ctest --output-on-failure)
