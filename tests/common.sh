# Sourced by the CLI tests (tests/cli_*.sh, run by CTest as `bash tests/cli_X.sh BIN`): the binary,
# the shared test data, a temporary directory removed on exit, and the check/skip helpers.
bin=$1
data=${CTERP_TESTDATA:-${CTERP_DEFAULT_TESTDATA:-}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# check NAME CONDITION: prints ok/FAIL NAME; a failure makes the script exit 1 at its end
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
# need_stories: sets m to stories260K.gguf, or ends the test (passing so far) when the shared test
# data is absent
need_stories() {
    if [ -z "$data" ] || [ ! -f "$data/models/stories260K.gguf" ]; then
        echo "skip: shared test data not found (set CTERP_TESTDATA)"
        exit $fail
    fi
    m=$data/models/stories260K.gguf
}
