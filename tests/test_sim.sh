#!/bin/sh
# The SMPI build of src/comm (sim/build.sh, SimGrid's smpicc) and a 64-rank simulated allreduce
# of every algorithm (ring, pipelined ring, recursive doubling, Rabenseifner, binomial,
# hierarchical on 16 nodes of 4 ranks, the sparse allgather, SparCML and gTop-k, sign, fp16, and
# SimGrid's own MPI_Allreduce out of place), each rank's result compared element by element with
# the serial sum (sim/pt_sim_allreduce.c --check), on the fat tree of sim/platforms/fattree.xml.
# Simulated, so it takes seconds of wall time; skipped (77) without smpicc.
. "${srcdir:-.}/tests/lib.sh"
command -v smpicc >/dev/null 2>&1 && command -v smpirun >/dev/null 2>&1 ||
    { echo "SKIP: no smpicc/smpirun (SimGrid SMPI: apt-get install libsimgrid-dev)"; exit 77; }
SIM_BUILD="$WORK/build" top_srcdir="$top_srcdir" sh "$top_srcdir/sim/build.sh" >"$WORK/build.out" 2>&1 ||
    { cat "$WORK/build.out"; fail "src/comm does not build with smpicc"; }
exe=$(tail -1 "$WORK/build.out")
sh "$top_srcdir/sim/hostfile.sh" 64 4 >"$WORK/hosts"
algos=${PT_SIM_ALGOS:-ring,ring_pipelined,recursive_doubling,rabenseifner,binomial,hierarchical,sparse_allgather,sparcml,gtopk,sign,fp16,mpi}
# PT_COLL_TIMEOUT=0: plain MPI_Waitall instead of polling MPI_Test (SMPI charges each MPI_Test)
rc=0
PT_COLL_TIMEOUT=0 timeout -k 5 120 smpirun -np 64 -platform "$top_srcdir/sim/platforms/fattree.xml" \
    -hostfile "$WORK/hosts" --log=root.thres:critical --cfg=smpi/simulate-computation:no \
    "$exe" --check --algos "$algos" --counts 0,1,63,64,1000,4099,65537 --segment 1024 \
    >"$WORK/run.out" 2>&1 || rc=$?
grep -v '^cpu:' "$WORK/run.out" | grep -v '^ok' | head -20
[ "$rc" -eq 0 ] || fail "64-rank simulated allreduce (exit $rc): $(grep -c '^FAIL' "$WORK/run.out") failing lines"
grep -q '^# p=64 nodes=16 ranks/node=4' "$WORK/run.out" || fail "the node layout under SMPI is not 16 nodes of 4"
nok=$(grep -c '^ok ' "$WORK/run.out")
[ "$nok" -eq $(( $(echo "$algos" | tr ',' '\n' | wc -l) * 7 )) ] || fail "only $nok checks passed"
pass "64 simulated ranks (16 nodes of 4, fat tree): $nok algorithm x count checks equal the serial sum"
