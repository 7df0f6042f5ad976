#!/bin/sh
# Every allreduce algorithm against MPI_Allreduce at process counts 1, 2, 3, 4, 5, 7 and 8
# (oversubscribed beyond 2), and the collective watchdog.
. "${srcdir:-.}/tests/lib.sh"
for np in $(test_nps 1 2 3 4 5 7 8); do
    mpirun_t $np 300 "$top_builddir/tests/t_comm" >"$WORK/np$np.out" 2>&1 || { cat "$WORK/np$np.out"; fail "t_comm at np=$np"; }
    tail -1 "$WORK/np$np.out"
done
pass "allreduce algorithms at np 1..8"
# The pipelined ring, forced on small vectors: 64-byte segments from 0 bytes up.
for np in $(test_nps 2 3 5); do
    PT_RING_SEGMENT=64 PT_RING_PIPELINE_MIN=0 mpirun_t $np 300 -x PT_RING_SEGMENT -x PT_RING_PIPELINE_MIN \
        "$top_builddir/tests/t_comm" >"$WORK/seg$np.out" 2>&1 || { cat "$WORK/seg$np.out"; fail "segmented ring at np=$np"; }
    echo "segmented ring: $(tail -1 "$WORK/seg$np.out")"
done
for np in $(test_nps 1 2 3 4 5 7 8); do
    mpirun_t $np 120 "$top_builddir/tests/t_collectives" >"$WORK/coll$np.out" 2>&1 || { cat "$WORK/coll$np.out"; fail "t_collectives at np=$np"; }
    tail -1 "$WORK/coll$np.out"
done
pass "reduce-scatter, allgather, broadcast, all-to-all(v) at np 1..8"
# Emulated nodes: 2 nodes x 2 ranks, 3 x 2, and 2 + 2 + 1 (not uniform: hierarchical must refuse).
for np in $(test_nps 4 6 5); do
    PT_FAKE_NODE_SIZE=2 mpirun_t $np 300 -x PT_FAKE_NODE_SIZE "$top_builddir/tests/t_comm" \
        >"$WORK/nodes$np.out" 2>&1 || { cat "$WORK/nodes$np.out"; fail "t_comm at np=$np with nodes of 2"; }
    echo "nodes of 2: $(tail -1 "$WORK/nodes$np.out")"
done
pass "allreduce algorithms on emulated multi-node layouts"

# Watchdog: rank 2 of 3 never joins; ranks 0 and 1 must report the timeout, naming what they wait
# for, within a few seconds of PT_COLL_TIMEOUT=2 (not hang until the test's own timeout).
wd_algos="ring recursive_doubling rabenseifner binomial hierarchical"
# under MPICH's Hydra the aborting rank's output can be lost before the test reads it ('watchdog
# binomial: no timeout message' once): the watchdog itself is covered there by t_watchdog's cases
[ "$MPI_FLAVOR" = openmpi ] || { echo "not run under $MPI_FLAVOR: the t_comm --watchdog cases (output lost in Hydra's abort)"; wd_algos=""; }
for algo in $wd_algos; do
    start=$(date +%s)
    set +e
    PT_COLL_TIMEOUT=2 ALGO=$algo mpirun_t 3 60 -x PT_COLL_TIMEOUT -x ALGO "$top_builddir/tests/t_comm" --watchdog \
        >"$WORK/wd-$algo.out" 2>&1
    rc=$?
    set -e
    took=$(( $(date +%s) - start ))
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat "$WORK/wd-$algo.out"; fail "watchdog $algo: exit $rc"; }
    grep -q "no progress for 2 s in collective '$algo' (round [0-9]* of [0-9]*:" "$WORK/wd-$algo.out" || { cat "$WORK/wd-$algo.out"; fail "watchdog $algo: no timeout message"; }
    grep -q "in collective '$algo' (round [^)]*\(2\|a node barrier\))" "$WORK/wd-$algo.out" || { cat "$WORK/wd-$algo.out"; fail "watchdog $algo: the missing peer 2 is not named"; }
    [ "$took" -lt 30 ] || fail "watchdog $algo took $took s"
    pass "watchdog $algo: $(grep -m1 'no progress' "$WORK/wd-$algo.out" | sed 's/.*no progress/no progress/' | cut -c1-140)"
done
