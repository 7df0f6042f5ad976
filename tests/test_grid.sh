#!/bin/sh
# The process grid (tests/t_grid.c) at np 1..8, oversubscribed; then paratrain's refusals of
# grids that do not fit: one message, the same non-zero exit on every rank, no hang.
. "${srcdir:-.}/tests/lib.sh"
for np in $(test_nps 1 2 3 4 5 6 7 8); do
    mpirun_t $np 300 "$top_builddir/tests/t_grid" >"$WORK/np$np.out" 2>&1 || { cat "$WORK/np$np.out"; fail "t_grid at np=$np"; }
    grep '^np' "$WORK/np$np.out"
done
pass "grid coordinates, groups and group allreduce at np 1..8"

need_data
small="--model mlp:784-16-10 --batch 64 --max-steps 2 --quiet true"
# each: one 'paratrain: error:' line naming the constraint, exit 2 on both ranks, no hang
expect_error tp-not-dividing 2 "number of ranks (2) divisible by --tp x --pp = 3 x 1" train --data "$DATA" $small --tp 3
expect_error bad-order 2 "bad --grid-order 'pp,dp,dp': repeated axis" train --data "$DATA" $small --grid-order pp,dp,dp
expect_error unknown-axis 2 "bad --grid-order 'pp,dp,xp': unknown axis" train --data "$DATA" $small --grid-order pp,dp,xp
expect_error short-order 2 "it must name pp, dp and tp" train --data "$DATA" $small --grid-order pp,dp
expect_error pp-no-cut 2 "can be cut in only 0 places" train --data "$DATA" --model mlp:784-10 --batch 64 --max-steps 2 --quiet true --pp 2
expect_error tp-range 2 "--tp 0 is out of range" train --data "$DATA" $small --tp 0
expect_error seq-par-no-tp 2 "--sequence-parallel splits tensor-parallel layers" train --data "$DATA" $small --sequence-parallel
# any order is accepted and recorded: the metrics start record names the grid
mpirun_t 2 120 "$PARATRAIN" train --data "$DATA" $small --grid-order tp,dp,pp --metrics "$WORK/order.jsonl" \
    >"$WORK/order.out" 2>&1 || { cat "$WORK/order.out"; fail "training with --grid-order tp,dp,pp"; }
grep -q '"dp": 2, "tp": 1, "pp": 1, "grid_order": "tp,dp,pp"' "$WORK/order.jsonl" || { cat "$WORK/order.jsonl"; fail "start record lacks the grid"; }
pass "grid order tp,dp,pp trains and is recorded"
