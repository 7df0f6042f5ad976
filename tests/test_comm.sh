#!/bin/sh
# The collective interface against MPI_Allreduce at process counts 1, 2, 3, 4 and 5.
. "${srcdir:-.}/tests/lib.sh"
for np in 1 2 3 4 5; do
    mpirun_t $np 120 "$top_builddir/tests/t_comm" || fail "t_comm at np=$np"
done
pass "t_comm at np 1..5"
