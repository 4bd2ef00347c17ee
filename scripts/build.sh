#!/usr/bin/env bash
# Usage: scripts/build.sh [release|debug|asan]  -> build/, build-debug/, build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}
case "$kind" in
  release) dir=build;       args=(-DCMAKE_BUILD_TYPE=Release) ;;
  debug)   dir=build-debug; args=(-DCMAKE_BUILD_TYPE=Debug) ;;
  asan)    dir=build-asan;  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCTERP_SANITIZE=ON) ;;
  *) echo "usage: $0 [release|debug|asan]" >&2; exit 2 ;;
esac
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
