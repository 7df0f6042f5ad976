#!/usr/bin/env bash
# CI: runs every harness once over every input of its committed corpus
# (tests/fuzz/corpus/<harness>/*) and fails on any crash, sanitizer report, leak or timeout.
# Prints 'fuzz-replay: PASS|FAIL ...'.
#   tests/fuzz/replay.sh [BUILD_DIR]     (default tests/fuzz/build; build with tests/fuzz/build.sh)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-$here/build}
# every harness process writes its inputs under a scratch directory of its own in here
FUZZ_SCRATCH=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/pt-fuzz.XXXXXX")
export FUZZ_SCRATCH
trap 'rm -rf "$FUZZ_SCRATCH"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1
# Open MPI's own leaks from MPI_Init (tests/fuzz/lsan.supp says why each is not ours)
export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0
fails=0 n=0
for d in "$here"/corpus/*/; do
    h=$(basename "$d")
    files=("$d"*)
    n=$((n + ${#files[@]}))
    log=$(mktemp)
    if "$B/$h" -timeout=20 -rss_limit_mb=2048 "${files[@]}" >"$log" 2>&1; then
        echo "fuzz-replay: ok $h (${#files[@]} inputs)"
    else
        fails=$((fails + 1))
        echo "fuzz-replay: FAIL $h"
        grep -E -B2 -A30 "ERROR: |runtime error:|Running: " "$log" | grep -v "^Executed" | tail -60
    fi
    rm -f "$log"
done
[ $fails -eq 0 ] && { echo "fuzz-replay: PASS ($n inputs)"; exit 0; }
echo "fuzz-replay: FAIL ($fails harnesses)"
exit 1
