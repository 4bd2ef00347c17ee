#!/usr/bin/env bash
# Cross-builds cterp for aarch64 (arm64) on a Debian 12 x86-64 host and runs a test subset under
# qemu-user. Installs only what is missing (safe to run again), configures build-aarch64/ with
# cmake/aarch64-linux-gnu.cmake, builds, then runs ctest.
#
#   scripts/cross-aarch64.sh [CTEST_REGEX]
#
# CTEST_REGEX defaults to the kernel variants, quant, gguf, tokenizer, model and SAE tests (below;
# test_isa trains the toy under both aarch64 variants: ~70 s of the ~90 under qemu).
# Environment: BUILD_DIR (default build-aarch64), JOBS (default 2), CMAKE_BUILD_TYPE (Release),
# SKIP_INSTALL=1 (do not touch packages), SKIP_TESTS=1 (configure and build only).
set -euo pipefail
cd "$(dirname "$0")/.."

regex="${1:-^test_(core|quant|gguf|tokenizer|model|sae_grad|npy|safetensors|saedir|isa)\$}"
build="${BUILD_DIR:-build-aarch64}"
jobs="${JOBS:-2}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
t0=$SECONDS

# --- packages ---------------------------------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  # host tools; qemu-user-static does as well as qemu-user (both give qemu-aarch64[-static])
  host_pkgs=(cmake pkg-config gcc-aarch64-linux-gnu)
  installed qemu-user-static || host_pkgs+=(qemu-user)
  # arm64 libraries (OpenMP OpenBLAS; libgomp1 for the runtime under qemu)
  arm_pkgs=(libopenblas-openmp-dev:arm64 libcjson-dev:arm64 libpcre2-dev:arm64 libgomp1:arm64)
  missing=()
  for p in "${host_pkgs[@]}" "${arm_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      echo "cterp: dpkg --add-architecture arm64"
      $SUDO dpkg --add-architecture arm64
    fi
    echo "cterp: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
t1=$SECONDS

# --- configure and build ----------------------------------------------------------------------
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
export PKG_CONFIG_PATH=
cmake -S . -B "$build" \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
  -DCTERP_NATIVE=OFF -DCTERP_MPI=OFF # the host's MPI is x86-64; no mpirun under qemu-user
cmake --build "$build" -j "$jobs"
t2=$SECONDS

# --- tests under qemu-aarch64 -----------------------------------------------------------------
rc=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # CMakeLists.txt sets OMP_NUM_THREADS=2 per test; export it too for anything run by hand
  export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
  export CTERP_EMULATED=1 # tests that train shorten their runs under qemu
  (cd "$build" && ctest --output-on-failure -j 1 -R "$regex") || rc=$?
fi
t3=$SECONDS
echo "cterp: aarch64 timings (wall s): install $((t1 - t0)), configure+build $((t2 - t1)), ctest $((t3 - t2))"
exit $rc
