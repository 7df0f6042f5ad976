#!/bin/sh
# sim/build.sh [PROGRAM]: builds src/comm and a driver with SimGrid's smpicc (no configure
# needed: src/comm depends on MPI alone, see tests/test_comm_standalone.sh), into
# ${SIM_BUILD:-sim/build}/PROGRAM and prints its path: pt-sim-allreduce (the default,
# sim/pt_sim_allreduce.c) or pt-sim-step (sim/pt_sim_step.c). Exit 77 when smpicc is absent
# (install libsimgrid-dev). SMPICC=mpicc builds the same driver against the real MPI.
set -eu
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
out=${SIM_BUILD:-$top/sim/build}
SMPICC=${SMPICC:-smpicc}
command -v "$SMPICC" >/dev/null 2>&1 || { echo "sim/build.sh: no $SMPICC (apt-get install libsimgrid-dev)" >&2; exit 77; }
mkdir -p "$out"
[ -f "$out/.gitignore" ] || echo "*" >"$out/.gitignore"
prog=${1:-pt-sim-allreduce}
case "$prog" in
pt-sim-allreduce | pt-sim-step) ;;
*) echo "sim/build.sh: no program $prog (pt-sim-allreduce, pt-sim-step)" >&2; exit 2 ;;
esac
exe="$out/$prog"
srcs="$top/src/comm/*.c $top/src/core/error.c $top/src/core/tensor.c $top/src/core/agree.c
      $top/src/core/watchdog.c $top/src/core/cpu.c $top/src/core/log.c
      $top/sim/$(echo "$prog" | tr - _).c"
# SimGrid only: a fix of its MPI_Win_shared_query (see the file)
case "$("$SMPICC" -show 2>&1 || true) $SMPICC" in *smpi* | *simgrid*) srcs="$srcs $top/sim/smpi_fix.c" ;; esac
# rebuild only when a source is newer than the program
if [ -x "$exe" ] && [ -z "$(find $srcs "$top/include" -newer "$exe" 2>/dev/null | head -1)" ]; then
    echo "$exe"; exit 0
fi
# shellcheck disable=SC2086
"$SMPICC" -std=gnu11 -O2 -w -I"$top/include" -I"$top/src/comm" -o "$exe.tmp" $srcs -lm -lpthread \
    >"$out/cc-$prog.log" 2>&1 ||
    { cat "$out/cc-$prog.log" >&2; echo "sim/build.sh: build failed" >&2; exit 1; }
mv "$exe.tmp" "$exe"
echo "$exe"
