#!/usr/bin/env bash
# Valgrind memcheck over the single-process C unit tests (issue 19): invalid reads and writes,
# uses of uninitialised values, bad frees, and definite or indirect leaks fail the run
# (--error-exitcode). Valgrind 3.19 does not decode AVX-512, so the tests are built in their
# own directory (default build-vg/) with -mno-avx512f and run with PT_CPU_ISA=avx2 (OpenBLAS picks its
# kernel from the CPUID valgrind reports). Prints 'valgrind: PASS|FAIL ...'.
#   .ci/valgrind.sh [BUILD_DIR [TEST...]]     (default: every single-process C test)
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
B=${1:-$top/build-vg}
mkdir -p "$B" && B=$(cd "$B" && pwd) # absolute: the script changes directory
[ $# -gt 0 ] && shift
tests=${*:-t_rng t_gradcheck t_torch_fixture t_sampler t_optim t_models t_conv t_backend_det t_backend_ops t_init t_tuning}
. .ci/srccopy.sh
# the AVX2 conv kernels (src/core/cpu.c would pick the AVX-512 ones from the real CPUID)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PT_CPU_ISA=avx2
say() { echo "valgrind: $*"; }
start=$(date +%s)
mkdir -p "$B/logs"
if [ ! -f "$B/src/config.status" ]; then
    rm -rf "$B/src"
    srccopy "$B/src"
    (cd "$B/src" && ./configure CFLAGS="-g -O2 -mno-avx512f" >"$B/configure.log" 2>&1) ||
        { tail -30 "$B/configure.log"; say "FAIL configure"; exit 1; }
fi
srccopy "$B/src"
cd "$B/src"
make -j2 >"$B/make.log" 2>&1 && make -j2 check TESTS= >>"$B/make.log" 2>&1 ||
    { tail -30 "$B/make.log"; say "FAIL build"; exit 1; }
VG="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --track-origins=yes --num-callers=30
    --suppressions=$top/.ci/valgrind.supp"
fails=0 runs=0
# t_comm, t_collectives, t_compress and t_compress_ef run under mpirun: .ci/sanitize.sh covers
# them (Open MPI's shared-memory transport and its unfreed MPI_Init state make memcheck of MPI
# processes mostly a report on Open MPI)
for t in $tests; do
    [ -x tests/$t ] || continue
    runs=$((runs + 1))
    # shellcheck disable=SC2086
    if srcdir=. top_srcdir=. top_builddir=. timeout 900 ./libtool --mode=execute $VG ./tests/$t \
        >"$B/logs/$t.log" 2>&1; then
        say "ok $t"
    else
        fails=$((fails + 1))
        say "FAIL $t"
        grep -E -A30 "^==[0-9]+== (Invalid|Conditional|Use of|Mismatched|Syscall|.*definitely lost|.*indirectly lost)" \
            "$B/logs/$t.log" | head -80
        tail -5 "$B/logs/$t.log"
    fi
done
secs=$(($(date +%s) - start))
if [ $fails -eq 0 ]; then say "PASS ($runs tests, ${secs}s)"; exit 0; fi
say "FAIL ($fails of $runs tests failed, ${secs}s; logs in $B/logs)"
exit 1
