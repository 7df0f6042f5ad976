#!/usr/bin/env bash
# Fuzzes each harness for SECONDS of wall time (one process each, one after the other), starting
# from the committed seed corpus tests/fuzz/corpus/<harness>/ and keeping what it finds new in
# tests/fuzz/out/<harness>/corpus/ (not committed; copy interesting inputs to the seed corpus
# by hand, keeping it small). Crashes, leaks and timeouts are written to tests/fuzz/out/<harness>/
# as crash-*, leak-*, timeout-*, oom-*. Prints per harness the CPU seconds used, executions and
# findings; exits 1 if any harness found something.
#   tests/fuzz/run.sh SECONDS [HARNESS...]      (build first: tests/fuzz/build.sh)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:?usage: tests/fuzz/run.sh SECONDS [HARNESS...]}
shift
B=${FUZZ_BUILD:-$here/build}
harnesses=${*:-$(cd "$here/corpus" && ls)}
# every harness process writes its inputs under a scratch directory of its own in here
FUZZ_SCRATCH=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/pt-fuzz.XXXXXX")
export FUZZ_SCRATCH
trap 'rm -rf "$FUZZ_SCRATCH"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Leaks are checked after every input that allocates more than it frees (libFuzzer's
# -detect_leaks). Such a check sees Open MPI's MPI_Init leftovers too: malloc stacks are unwound
# fully (fast_unwind_on_malloc=0) so tests/fuzz/lsan.supp can name their Open MPI frames.
# allocator_may_return_null=1: HDF5 1.10 allocates what a damaged object header claims (seen:
# 0xc000000000000 bytes in H5C_protect) and handles the NULL; paratrain's own allocations are
# checked too, so a failed one must be an error message, not a crash.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1}
export LSAN_OPTIONS=suppressions=$here/lsan.supp:print_suppressions=0
found=0
printf '%-14s %8s %10s %9s %s\n' harness cpu_s execs corpus findings
for h in $harnesses; do
    o=$here/out/$h
    mkdir -p "$o/corpus"
    log=$o/fuzz.log
    # FUZZ_FORK=1: libFuzzer's fork mode, which goes on after a crash (each is kept as an
    # artifact): HDF5 1.10 has memory errors of its own on damaged files (docs/TESTING.md), and
    # they would otherwise end the run before paratrain's code behind them is reached
    fork=()
    [ "${FUZZ_FORK:-0}" = 1 ] && fork=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    { TIMEFORMAT='%U %S'; time "$B/$h" "${fork[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$o/" \
        "$o/corpus" "$here/corpus/$h" >"$log" 2>&1; } 2>"$o/time"
    rc=$?
    cpu=$(awk '{printf "%.1f", $1 + $2}' "$o/time")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    ncorp=$(ls "$o/corpus" | wc -l)
    arts=$(cd "$o" && ls crash-* leak-* timeout-* oom-* slow-unit-* 2>/dev/null | tr '\n' ' ')
    [ $rc -ne 0 ] && [ -z "$arts" ] && arts="exit $rc (see $log)"
    [ -n "$arts" ] && found=1
    printf '%-14s %8s %10s %9s %s\n' "$h" "$cpu" "${execs:-?}" "$ncorp" "${arts:-none}"
    echo "$(date -u +%FT%TZ) $h cpu_s=$cpu execs=${execs:-?} findings=${arts:-none}" >>"$here/out/history.log"
done
exit $found
