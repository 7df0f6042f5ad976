#!/bin/sh
# Compressed collectives (top-k selection, sparse allreduce: allgather / sparcml / gtopk, sign,
# fp16 / bf16) against serial references at process counts 1, 2, 3, 4, 5 and 8 (oversubscribed
# beyond 2), then compressed training (tests/test_compress_train.sh covers the trainer side).
. "${srcdir:-.}/tests/lib.sh"
for np in $(test_nps 1 2 3 4 5 8); do
    mpirun_t $np 300 "$top_builddir/tests/t_compress" >"$WORK/np$np.out" 2>&1 || { cat "$WORK/np$np.out"; fail "t_compress at np=$np"; }
    echo "np $np: $(tail -1 "$WORK/np$np.out")"
done
# 2 threads per rank: top-k's threaded passes must choose what one thread chooses
OMP_NUM_THREADS=2 mpirun_t 2 300 -x OMP_NUM_THREADS "$top_builddir/tests/t_compress" >"$WORK/np2t2.out" 2>&1 ||
    { cat "$WORK/np2t2.out"; fail "t_compress at np=2 with 2 threads"; }
echo "np 2 x 2 threads: $(tail -1 "$WORK/np2t2.out")"
pass "compressed collectives at np 1, 2, 3, 4, 5, 8"
# The training-side compressor: error feedback's invariant, DGC, the density warm-up.
for np in 1 3; do
    mpirun_t $np 120 "$top_builddir/tests/t_compress_ef" >"$WORK/ef$np.out" 2>&1 || { cat "$WORK/ef$np.out"; fail "t_compress_ef at np=$np"; }
    echo "np $np: $(tail -1 "$WORK/ef$np.out")"
done
pass "error feedback, DGC and warm-up at np 1, 3"
