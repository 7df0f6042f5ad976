#!/bin/sh
# Checked calls (issue 19). (1) A lint over the library and programs (src/, kernels/): the calls below must never
# have their result dropped -- a call that starts a statement (alone, after `;`, `{`, `else` or
# an `if (...)`, or cast to void) is unchecked; MPI_Init_thread's `provided` must be compared;
# batch norm must not allocate per call. The lint is first run on planted files, so it is shown
# able to fail. (2) The failures these checks report reach the user: an allocation that fails
# in pt_model_init, and an MPI that provides too low a thread level, each end a 2-rank run with
# one message and exit 1 on both ranks.
. "${srcdir:-.}/tests/lib.sh"
SRC="${top_srcdir:-.}"

CALLS='H5Pset_fapl_mpio|H5Pset_dxpl_mpio|H5Sselect_hyperslab|H5Sselect_none|H5Sselect_elements|MPI_Type_contiguous|MPI_Type_commit|MPI_Init_thread|allreduce_sum|pt_model_init'

# lint FILES...: prints file:line: text of every violation; status 0 when there are none
lint() {
    bad=0
    for f in "$@"; do
        # result dropped: the call begins a statement (comment lines skipped)
        hits=$(grep -nE "(^|[;{)]|else)[[:space:]]*(\(void\)[[:space:]]*)?([A-Za-z_][A-Za-z0-9_]*->)?($CALLS)[[:space:]]*\(" "$f" |
               grep -vE '^[0-9]+:[[:space:]]*(\*|/\*|//)' || true)
        if [ -n "$hits" ]; then
            echo "$hits" | sed "s|^|$f:|; s|$|   <- unchecked|"
            bad=1
        fi
        if grep -q 'MPI_Init_thread[[:space:]]*(' "$f" && ! grep -qE 'provided[[:space:]]*(<|!=)' "$f"; then
            echo "$f: MPI_Init_thread without a check of the provided thread level"
            bad=1
        fi
    done
    if [ -n "${NORM:-}" ] && grep -nE '\b(malloc|calloc|realloc)[[:space:]]*\(' "$NORM" | grep -vE '^[0-9]+:[[:space:]]*(\*|/\*|//)'; then
        echo "$NORM: batch norm allocates per call (its scratch belongs to the model's memory)"
        bad=1
    fi
    return $bad
}

# The lint can fail: planted violations are found, one by one.
mkdir -p "$WORK/plant"
i=0
while IFS= read -r line; do
    i=$((i + 1))
    printf 'static int f(void)\n{\n%s\n    return 0;\n}\n' "$line" >"$WORK/plant/p$i.c"
    NORM= lint "$WORK/plant/p$i.c" >"$WORK/plant/p$i.out" && fail "lint missed planted line: $line"
done <<'PLANTS'
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    if (fapl >= 0) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    H5Sclose(a); H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL);
    (void)MPI_Type_commit(&t);
    { MPI_Type_contiguous(2, MPI_INT64_T, &t); }
    if (m->opt.sync_bn && m->allreduce_sum) m->allreduce_sum(m->allreduce_arg, s, 2 * C + 1);
    pt_model_init(&t->model, c->seed);
    else H5Sselect_none(sp);
PLANTS
printf 'int main(int c, char **v) { int provided; return MPI_Init_thread(&c, &v, 1, &provided); }\n' >"$WORK/plant/init.c"
NORM= lint "$WORK/plant/init.c" >/dev/null && fail "lint missed MPI_Init_thread without a provided check"
printf 'static void bn(void) { double *s = malloc(8); }\n' >"$WORK/plant/norm.c"
NORM="$WORK/plant/norm.c" lint >/dev/null && fail "lint missed an allocation in batch norm"
# ... and checked forms are not flagged
cat >"$WORK/plant/ok.c" <<'OK'
    PT_MPI_CHECK(MPI_Type_contiguous(2, MPI_INT64_T, &nt));
    if (H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) return 1;
    PT_H5_CHECK_GOTO(st, H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL), "h", out);
    rc |= H5Sselect_hyperslab(space, H5S_SELECT_OR, start, NULL, count, NULL) < 0;
    const int rc = m->allreduce_sum(m->allreduce_arg, s, 2 * C + 1);
    st = pt_model_init(&t->model, c->seed);
    REQUIRE_OK(pt_model_init(&m, 1));
     * H5Sselect_hyperslab(a comment) is not code
OK
NORM= lint "$WORK/plant/ok.c" || fail "lint flags checked calls"
pass "lint finds each of $i planted unchecked calls, the unchecked provided level and an allocating batch norm; passes checked forms"

# The tree itself is clean.
files=$(find "$SRC/src" "$SRC/kernels" -name '*.c' | sort)
# shellcheck disable=SC2086
NORM="$SRC/src/nn/ops_norm.c" lint $files >"$WORK/lint.out" || { cat "$WORK/lint.out"; fail "unchecked calls in the tree"; }
pass "no unchecked $CALLS in src/ kernels/ ($(echo "$files" | wc -l) files)"

# The failures reach the user: one message, exit 1 on both ranks, no hang.
need_data
expect_fault() { # name code pattern PT_FAULT_INJECT-value paratrain-args... (expect_error of tests/lib.sh)
    n_=$1 c_=$2 p_=$3
    PT_FAULT_INJECT=$4
    export PT_FAULT_INJECT
    shift 4
    expect_error "$n_" "$c_" "$p_" "$@"
    unset PT_FAULT_INJECT
}
small="--data $DATA --model mlp:784-16-10 --batch 64 --max-steps 3 --quiet true --ckpt-dir $WORK/ck"
expect_fault model-init-alloc 1 "pt_model_init: cannot allocate .* (\(.*/\)\{0,1\}src/nn/model.c:[0-9]*)" model-init-alloc train $small
expect_fault thread-level 1 "MPI provides MPI_THREAD_SINGLE, paratrain needs MPI_THREAD_FUNNELED" mpi-thread-level train $small
