#!/bin/sh
# The auto-selection table: built-in, and replaced by PT_ALLREDUCE_TUNING.
. "${srcdir:-.}/tests/lib.sh"
"$top_builddir/tests/t_tuning" || fail "built-in table"
printf '# a table\n2 100 ring\n2 1000 binomial\n4 100 rabenseifner\n4 1000000 mpi\n' >"$WORK/table.txt"
PT_ALLREDUCE_TUNING="$WORK/table.txt" TUNING_FILE=1 "$top_builddir/tests/t_tuning" || fail "table from a file"
pass "auto table"
