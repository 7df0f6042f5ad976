#!/bin/sh
# src/comm depends on MPI alone (plus the error record and dtype sizes of src/core): it compiles
# and links with nothing but the MPI compiler wrapper (as it must under SimGrid's smpicc), and the
# collective test passes on that build.
. "${srcdir:-.}/tests/lib.sh"
MPICC=${MPICC:-mpicc}
command -v "$MPICC" >/dev/null || { echo "SKIP: no $MPICC"; exit 77; }
$MPICC -std=gnu11 -O2 -I"$top_srcdir/include" -I"$top_srcdir/src/comm" -o "$WORK/t_comm_standalone" \
    "$top_srcdir"/src/comm/*.c "$top_srcdir/src/core/error.c" "$top_srcdir/src/core/tensor.c" \
    "$top_srcdir/src/core/agree.c" "$top_srcdir/src/core/watchdog.c" "$top_srcdir/src/core/cpu.c" \
    "$top_srcdir/src/core/log.c" "$top_srcdir/tests/t_comm.c" \
    -lm -lpthread 2>"$WORK/cc.err" ||
    { cat "$WORK/cc.err"; fail "src/comm does not build with $MPICC alone"; }
! ldd "$WORK/t_comm_standalone" | grep -E "hdf5|openblas" || fail "the standalone build links HDF5 or BLAS"
mpirun_t 3 120 "$WORK/t_comm_standalone" >"$WORK/run.out" 2>&1 || { cat "$WORK/run.out"; fail "standalone t_comm"; }
pass "src/comm standalone: $(tail -1 "$WORK/run.out")"
