#!/usr/bin/env bash
# The kernel variants from the command line: cterp --version names them, CTERP_ISA forces one or
# is refused with exit 2 and why; and, where qemu-x86_64 is installed (scripts/deps.sh), this
# binary on emulated older CPUs (Haswell: AVX2, no AVX-512; Nehalem: x86-64-v2): it picks the
# variant the CPU has, refuses the others, never dies of SIGILL, passes the kernel tests and trains
# the toy to the same bits as natively with the same variant and the same OpenBLAS kernels.
set -u
bin=$1
build=$(dirname "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
export OMP_WAIT_POLICY=passive # else the CLI re-executes /proc/self/exe, natively, out of qemu

"$bin" --version >"$tmp/v.txt" 2>&1
check "--version names the CPU, the variant and the variants" 'grep -q "^cpu: " "$tmp/v.txt" && grep -q "^kernels: " "$tmp/v.txt" && grep -q "^variants: .*generic" "$tmp/v.txt" && grep -q "^runs here: .*generic" "$tmp/v.txt"'
CTERP_ISA=generic "$bin" --version >"$tmp/g.txt" 2>&1
check "CTERP_ISA=generic is used and said" 'grep -q "^kernels: generic .*from CTERP_ISA" "$tmp/g.txt"'
CTERP_ISA=sse9 "$bin" demo >"$tmp/bad.txt" 2>&1
rc=$?
check "an unknown CTERP_ISA stops the CLI with exit 2, naming the variants" '[ $rc -eq 2 ] && grep -q "CTERP_ISA=sse9: unknown kernel variant; this build has auto, .*generic" "$tmp/bad.txt"'
for v in $(sed -n 's/^variants: //p' "$tmp/v.txt"); do
  if ! grep -q "^runs here:.* $v\b" "$tmp/v.txt"; then
    CTERP_ISA=$v "$bin" demo >"$tmp/no.txt" 2>&1
    rc=$?
    check "CTERP_ISA=$v, which this CPU lacks, is refused (exit 2, what it needs)" '[ $rc -eq 2 ] && grep -q "cannot run it (it needs" "$tmp/no.txt"'
  fi
done

toy="--toy --toy-features 64 --toy-d 32 --toy-active 3 --d-sae 128 --k 4 --batch 256 --steps 40 --quiet"
if [ -n "${CTERP_SANITIZED:-}" ]; then
  echo "skip: emulated CPUs (the sanitizers' runtime under qemu-user)"
elif [ "$(uname -m)" != x86_64 ] || ! command -v qemu-x86_64 >/dev/null; then
  echo "skip: emulated CPUs (needs x86-64 and qemu-x86_64: apt-get install qemu-user)"
else
  q() { qemu-x86_64 -cpu "$@" 2>&1 | grep -v "^qemu-x86_64: warning: TCG"; }
  for cpu in Haswell:avx2:Haswell Nehalem:generic:Nehalem; do
    IFS=: read -r model isa blas <<<"$cpu"
    q "$model" "$bin" --version >"$tmp/qv.txt"
    check "on an emulated $model the binary runs and picks $isa" 'grep -q "^kernels: $isa " "$tmp/qv.txt"'
    CTERP_ISA=avx512 q "$model" "$bin" demo >"$tmp/qno.txt"
    check "on an emulated $model CTERP_ISA=avx512 is refused, not run" 'grep -q "CTERP_ISA=avx512: this CPU (.*) cannot run it" "$tmp/qno.txt"'
    CTERP_TEST_QUICK=1 q "$model" "$build/test_isa" >"$tmp/qt.txt"
    check "on an emulated $model the kernel tests pass" 'grep -q " 0 failed" "$tmp/qt.txt" && grep -q "auto: $isa" "$tmp/qt.txt"'
    OPENBLAS_CORETYPE=$blas q "$model" "$bin" train $toy --out "$tmp/q_$isa" >/dev/null
    OPENBLAS_CORETYPE=$blas CTERP_ISA=$isa "$bin" train $toy --out "$tmp/n_$isa" >/dev/null 2>&1
    check "the toy trained on an emulated $model equals the native $isa run bit for bit" 'cmp -s "$tmp/q_$isa/sae_weights.safetensors" "$tmp/n_$isa/sae_weights.safetensors"'
  done
fi
exit $fail
