#!/bin/sh
# Tensor-parallel models (tests/t_tp.c) at tp 1, 2 and 4: every tp rank's parameters, logits,
# gradients, loss, correct counts and dropout masks against the serial model's.
. "${srcdir:-.}/tests/lib.sh"
for np in $(test_nps 1 2 4); do
    mpirun_t $np 180 "$top_builddir/tests/t_tp" >"$WORK/np$np.out" 2>&1 || { cat "$WORK/np$np.out"; fail "t_tp at np=$np"; }
    grep '^tp=' "$WORK/np$np.out" || true
    tail -1 "$WORK/np$np.out"
done
pass "tensor-parallel mlp and gpt equal the serial models at tp 1, 2, 4"
