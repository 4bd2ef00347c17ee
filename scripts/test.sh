#!/usr/bin/env bash
# Builds cterp (installing missing Debian packages first) and runs the whole test suite: a
# release build (under the kernel variant chosen for this CPU), its unit tests again under every
# other variant this CPU runs (CTERP_ISA=...), then an ASan+UBSan build, short fuzz runs of the
# loaders, and on x86-64 hosts the aarch64 cross build's tests under qemu-user.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release
build/cterp --version
(cd build && ctest --output-on-failure)
# the Python package (python/) over build/libcterp.so: its unit tests, a pip install into a fresh
# venv, and the examples (Debian's python3 and numpy)
OMP_NUM_THREADS=2 /usr/bin/python3 -m unittest discover -s python/tests -t python/tests
# the tests whose results go through the kernels again under every other variant this CPU runs
# (test_isa, in the first run, compares every runnable variant's kernels with the generic ones
# bit for bit and trains the toy under each; the others reach the same kernels by longer paths)
auto=$(build/cterp --version | sed -n 's/^kernels: \([^ ]*\).*/\1/p')
for v in $(build/cterp --version | sed -n 's/^runs here: //p'); do
  [ "$v" = "$auto" ] && continue
  echo "== unit tests under CTERP_ISA=$v"
  (cd build && CTERP_ISA="$v" ctest --output-on-failure \
    -R '^test_(acts|arch|crosscoder|model|quant|sae_grad|synth|transcoder)$')
done
bash scripts/build.sh asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# two at a time: most of a sanitized test's time is single-threaded instrumentation
(cd build-asan && CTERP_SANITIZED=1 ctest --output-on-failure -j 2)
# the loaders under libFuzzer (clang-14, ASan+UBSan): each target FUZZ_SECONDS (20) on its seeds,
# then every committed reproducer in tests/fuzz/regressions/ (scripts/fuzz.sh; ~5 min)
unset ASAN_OPTIONS UBSAN_OPTIONS
bash scripts/fuzz.sh ci
# aarch64: the cross build (Debian's gcc-aarch64-linux-gnu, arm64 libraries by multiarch) and its
# test subset under qemu-user (scripts/cross-aarch64.sh; ~1.5 min). CTERP_SKIP_CROSS=1 skips it.
if [ "$(uname -m)" = x86_64 ] && [ -z "${CTERP_SKIP_CROSS:-}" ]; then
  bash scripts/cross-aarch64.sh
fi
