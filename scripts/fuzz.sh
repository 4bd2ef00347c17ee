#!/usr/bin/env bash
# Fuzzing (docs/reliability.md): builds the libFuzzer targets of tests/fuzz/ with Debian's clang
# (library and targets under ASan + UBSan, -O1 -g) into build-fuzz/, writes each target's seed
# corpus into build-fuzz/corpus/<target>/ (from the library's writers and the shared test data;
# plus tests/fuzz/seeds/<target>/ if present) and runs them one at a time:
#
#   scripts/fuzz.sh ci                each target FUZZ_SECONDS (default 20) s on its corpus (libFuzzer
#                                     seed FUZZ_SEED, default 1), then
#                                     every reproducer in tests/fuzz/regressions/<target>/
#   scripts/fuzz.sh long [seconds]    each target for an hour (or `seconds`); execs and coverage.
#                                     To give the machine back mid-way (a benchmark): touch
#                                     build-fuzz/stop, then pkill -INT -f build-fuzz/fuzz_ (the
#                                     running target stops with its stats, no other starts);
#                                     build-fuzz/ledger.txt keeps every run's line, so the time a
#                                     target has had adds up across runs
#   scripts/fuzz.sh regress           the reproducers only
#   scripts/fuzz.sh run TARGET [seconds] [libFuzzer flags...]
#
# FUZZ_TARGETS="fuzz_gguf fuzz_npy" picks targets; FUZZ_TIMEOUT (default 1 s: every input takes
# milliseconds, and the issue counts a hang over 1 s as a bug) and FUZZ_RSS_MB (2048) are
# libFuzzer's -timeout and -rss_limit_mb. A crash, leak, UB report, timeout or out-of-memory
# leaves its input in build-fuzz/artifacts/<target>/ and fails the script: fix the library, then
# keep the input (small) as tests/fuzz/regressions/<target>/<short-name>.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-ci}
B=build-fuzz
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
TIMEOUT=${FUZZ_TIMEOUT:-1}
RSS=${FUZZ_RSS_MB:-2048}

deps() { # the base build's packages, clang, libFuzzer's runtime and clang's OpenMP
  local pkgs=(build-essential cmake pkg-config libopenblas-openmp-dev libcjson-dev libpcre2-dev
              clang-14 libclang-rt-14-dev libomp-14-dev) missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "fuzz.sh: installing ${missing[*]}"
    local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build() {
  deps
  CC=clang-14 cmake -S . -B $B -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCTERP_FUZZ=ON >/dev/null
  mkdir -p $B
  cmake --build $B --target fuzzers -j 2 >$B/build.log 2>&1 ||
    { grep -B2 -A8 -m5 "error" $B/build.log || tail -40 $B/build.log; echo "fuzz.sh: build failed ($B/build.log)" >&2; exit 1; }
  [ -n "${FUZZ_TARGETS:-}" ] || FUZZ_TARGETS=$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//' | tr '\n' ' ')
  for t in $FUZZ_TARGETS; do
    [ -x $B/$t ] || { echo "fuzz.sh: $B/$t was not built" >&2; exit 1; }
    mkdir -p $B/corpus/$t $B/artifacts/$t
    # the target writes its seeds (FUZZ_SEED_DIR) when it starts; -runs=0 runs nothing else
    FUZZ_SEED_DIR=$B/corpus/$t $B/$t -runs=0 >$B/artifacts/$t/seed.log 2>&1 ||
      { cat $B/artifacts/$t/seed.log; echo "fuzz.sh: $t: writing the seeds failed" >&2; exit 1; }
    [ -d tests/fuzz/seeds/$t ] && cp tests/fuzz/seeds/$t/* $B/corpus/$t/ 2>/dev/null || true
  done
}

fail=0
summary=()
# fuzz TARGET SECONDS [flags]: runs it on its corpus; records execs, coverage and the outcome
fuzz() {
  local t=$1 secs=$2; shift 2
  local log=$B/artifacts/$t/run.log dict=() rc=0 t0 rev
  t0=$(date +%s)
  # the commit the run starts from (HEAD may move during an hour's run)
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo -)
  [ -f tests/fuzz/$t.dict ] && dict=(-dict=tests/fuzz/$t.dict)
  echo "== $t: ${secs} s"
  # the CPU seconds it got (user + sys: under load, or at nice 19 beside other work, less than
  # the wall seconds it ran)
  local TIMEFORMAT='%U %S'
  { time { $B/$t -max_total_time="$secs" -timeout="$TIMEOUT" -rss_limit_mb="$RSS" \
      -print_final_stats=1 -artifact_prefix=$B/artifacts/$t/ "${dict[@]}" "$@" $B/corpus/$t \
      >"$log" 2>&1 || rc=$?; }; } 2>$B/artifacts/$t/cpu
  local execs cov ft corp cpu
  cpu=$(awk '{ printf "%d", $1 + $2 }' $B/artifacts/$t/cpu)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE '(DONE|INITED|pulse|NEW|REDUCE) +cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$' || true)
  corp=$(ls $B/corpus/$t | wc -l)
  # 72: stopped by SIGINT (libFuzzer's exit code for it), stats printed: not a finding, so a
  # long campaign can give the machine back (a SIGSTOP would not do: the stopped time counts
  # against the input running then, as a timeout)
  local slow outcome=ok
  slow=$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$log" | tail -1)
  [ $rc -eq 72 ] && rc=0 outcome=stopped
  if [ $rc -ne 0 ]; then
    fail=1 outcome=FAIL
    grep -E "ERROR|SUMMARY|runtime error|Test unit written|artifact_prefix" "$log" | head -20
    echo "FAIL $t (exit $rc): input in $B/artifacts/$t/, full log $log"
  fi
  local wall=$(( $(date +%s) - t0 ))
  summary+=("$(printf '%-20s %6s s %6s cpu s %12s execs %7s cov %7s ft %6s corpus %3s s slowest  %s' \
    "$t" "$wall" "${cpu:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corp" "${slow:-?}" "$outcome")")
  # every run's line, dated, in one ledger: the hours a target has had add up across runs
  echo "$(date -u +%FT%TZ) $rev ${summary[-1]}" >>$B/ledger.txt
}

# regress TARGET: every committed reproducer, once each
regress() {
  local t=$1 dir=tests/fuzz/regressions/$1
  [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] || return 0
  local n rc=0
  n=$(ls "$dir" | wc -l)
  $B/$t -timeout="$TIMEOUT" -rss_limit_mb="$RSS" "$dir"/* >$B/artifacts/$t/regress.log 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    fail=1
    grep -E "Running:|ERROR|SUMMARY|runtime error" $B/artifacts/$t/regress.log | head -20
    echo "FAIL $t: a reproducer in $dir fails again (log $B/artifacts/$t/regress.log)"
  else
    echo "== $t: $n reproducer(s) pass"
  fi
}

start=$(date +%s)
case "$mode" in
  ci)
    build
    # a fixed seed: CI explores the same input sequence every time (a prefix of it on a slower
    # machine), so it passes or fails by the code, not by the draw
    for t in $FUZZ_TARGETS; do fuzz "$t" "${FUZZ_SECONDS:-20}" -seed="${FUZZ_SEED:-1}"; done
    for t in $FUZZ_TARGETS; do regress "$t"; done ;;
  long)
    build
    rm -f $B/stop
    for t in $FUZZ_TARGETS; do
      [ -e $B/stop ] && { echo "== $B/stop: not starting $t"; continue; }
      fuzz "$t" "${2:-3600}"
    done
    for t in $FUZZ_TARGETS; do regress "$t"; done ;;
  regress)
    build
    for t in $FUZZ_TARGETS; do regress "$t"; done ;;
  run)
    [ $# -ge 2 ] || { echo "usage: $0 run TARGET [seconds] [libFuzzer flags...]" >&2; exit 2; }
    FUZZ_TARGETS=$2 build
    t=$2 secs=${3:-60}; shift $(( $# < 3 ? $# : 3 ))
    fuzz "$t" "$secs" "$@"
    regress "$t" ;;
  build) build ;;
  *) echo "usage: $0 [ci | long [seconds] | regress | run TARGET [seconds] [flags] | build]" >&2; exit 2 ;;
esac
[ ${#summary[@]} -gt 0 ] && printf '%s\n' "${summary[@]}"
echo "fuzz.sh $mode: $(( $(date +%s) - start )) s in all"
exit $fail
