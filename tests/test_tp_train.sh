#!/bin/sh
# Tensor x data parallel training equals the serial run with the same global batch: mlp (on
# Fashion-MNIST, dropout, clipping) and gpt (on kjv-lm, Adam, clipping; also with
# --sequence-parallel) at every grid of tp in {1, 2, 4} and dp in {1, 2, 3} up to 8 ranks
# (oversubscribed), and with --zero 1 where dp > 1. Compared with the serial run: the loss and the
# global gradient norm of every step (relative, tolerance TOL_STEP; the metrics print losses to 6
# decimals and norms to 6 digits), the final validation loss, the final parameters through the
# end record's grid-independent fingerprint (their global norm and a random projection, relative
# to the norm; tolerance TOL_PARAM), and the final checkpoints, which hold global tensors, with
# pt-ckpt diff (every parameter and optimizer state, absolute, TOL_CKPT). Then resumes: on the
# same grid bitwise, on another grid within TOL_CKPT of the serial run. Then bad grids.
. "${srcdir:-.}/tests/lib.sh"
need_np 8 "the tp x dp grids up to 8 ranks"
need_data
need_kjv
TOL_STEP=${TOL_STEP:-1e-5}
TOL_PARAM=${TOL_PARAM:-1e-6}
TOL_CKPT=${TOL_CKPT:-1e-5}
mlp="--data $DATA --model mlp:784-64-32-10 --batch 24 --dropout 0.1 --clip-norm 0.5"
gpt="--data $KJV_LM --model gpt:layers=2,heads=4,d=16,ctx=16 --batch 12 --optimizer adam --clip-norm 0.3 --eval-batch 200"
common="--max-steps 6 --log-every 1 --eval-every 100 --seed 3 --quiet true"

# run NAME NP args...: metrics to $WORK/NAME.jsonl
run() {
    _n=$1 _np=$2
    shift 2
    # shellcheck disable=SC2086
    mpirun_t "$_np" 240 "$PARATRAIN" train $common --metrics "$WORK/$_n.jsonl" --ckpt-dir "$WORK/$_n" \
        "$@" >"$WORK/$_n.out" 2>&1 ||
        { cat "$WORK/$_n.out"; fail "training $_n"; }
}
# One line of numbers per run: the steps' losses and gradient norms, the val loss, the
# parameters' norm and projection.
summary() {
    { train_field "$1" loss; train_field "$1" grad_norm
      grep '"split": "val"' "$1" | tail -1 | sed 's/.*"loss": \([^,]*\).*/\1/'
      grep '"event": "end"' "$1" | sed 's/.*"param_norm": \([^,]*\), "param_probe": \([^}]*\)}.*/\1 \2/'
    } | tr '\n' ' '
}
# compare REF RUN: prints the largest step difference and parameter difference, fails beyond
# the tolerances
WORST_STEP=0 WORST_PARAM=0 WORST_CKPT=0
# ckpt_diff A B TOL: pt-ckpt diff of the latest checkpoints; prints max|a-b|
ckpt_diff() {
    "$PT_CKPT" diff "$WORK/$1" "$WORK/$2" --tol "$3" >"$WORK/$2.diff" 2>&1 || { cat "$WORK/$2.diff"; fail "checkpoint of $2 differs from $1 beyond $3"; }
    sed -n 's/.*max|a-b| \([^ ]*\) over.*/\1/p' "$WORK/$2.diff" | tail -1
}
compare() {
    _line=$(printf '%s\n%s\n' "$(summary "$WORK/$1.jsonl")" "$(summary "$WORK/$2.jsonl")" | awk -v ts="$TOL_STEP" -v tp="$TOL_PARAM" '
        NR == 1 { n = NF; for (i = 1; i <= NF; i++) a[i] = $i; next }
        { if (NF != n) { print "FIELDS " n " " NF; exit }
          ds = 0; for (i = 1; i <= n - 2; i++) { d = a[i] - $i; d = d < 0 ? -d : d; s = a[i] < 0 ? -a[i] : a[i]; if (s > 0) d /= s; if (d > ds) ds = d }
          norm = a[n - 1]; dn = a[n - 1] - $(n - 1); dp = a[n] - $n; dn = dn < 0 ? -dn : dn; dp = dp < 0 ? -dp : dp
          dpar = (dn > dp ? dn : dp) / norm
          printf "%.3g %.3g %s\n", ds, dpar, (ds <= ts && dpar <= tp) ? "ok" : "BAD" }')
    case "$_line" in
    *ok) ;;
    *) echo "serial: $(summary "$WORK/$1.jsonl")"; echo "$2: $(summary "$WORK/$2.jsonl")"
       fail "$2 differs from $1: step, parameter differences $_line (tolerances $TOL_STEP, $TOL_PARAM)" ;;
    esac
    _ck=$(ckpt_diff "$1" "$2" "$TOL_CKPT")
    set -- $_line "$2"
    echo "  $4: steps $1, parameters $2, checkpoint max|a-b| $_ck"
    WORST_CKPT=$(awk -v a="$WORST_CKPT" -v b="$_ck" 'BEGIN { print (b + 0 > a + 0 ? b : a) }')
    WORST_STEP=$(awk -v a="$WORST_STEP" -v b="$1" 'BEGIN { print (b > a ? b : a) }')
    WORST_PARAM=$(awk -v a="$WORST_PARAM" -v b="$2" 'BEGIN { print (b > a ? b : a) }')
}

for model in mlp gpt; do
    eval "args=\$$model"
    # shellcheck disable=SC2086
    run "$model-serial" 1 $args
    for grid in 1x2 1x3 2x1 2x2 2x3 4x1 4x2; do
        tp=${grid%x*} dp=${grid#*x} np=$((tp * dp))
        [ "$np" -le "${PT_TEST_MAX_NP:-8}" ] || continue
        # shellcheck disable=SC2086
        run "$model-tp$tp-dp$dp" "$np" $args --tp "$tp"
        compare "$model-serial" "$model-tp$tp-dp$dp"
        if [ "$dp" -gt 1 ]; then
            # shellcheck disable=SC2086
            run "$model-tp$tp-dp$dp-zero" "$np" $args --tp "$tp" --zero 1
            compare "$model-serial" "$model-tp$tp-dp$dp-zero"
        fi
    done
done
for grid in 2x2 4x1 2x3; do
    tp=${grid%x*} dp=${grid#*x} np=$((tp * dp))
    [ "$np" -le "${PT_TEST_MAX_NP:-8}" ] || continue
    # shellcheck disable=SC2086
    run "gpt-sp-tp$tp-dp$dp" "$np" $gpt --tp "$tp" --sequence-parallel
    compare gpt-serial "gpt-sp-tp$tp-dp$dp"
done
# dp innermost: the tp groups are strided ranks ({0, 2}, {1, 3}), the result the same
# shellcheck disable=SC2086
run mlp-tp2-dp2-strided 4 $mlp --tp 2 --grid-order pp,tp,dp
compare mlp-serial mlp-tp2-dp2-strided
grep -q '"grid_order": "pp,tp,dp"' "$WORK/mlp-tp2-dp2-strided.jsonl" || fail "start record lacks the grid order"
# the memory record names parameter, gradient, optimizer-state and activation bytes per rank
grep -q '"event": "memory".*"activation_bytes": [1-9]' "$WORK/gpt-tp2-dp2-zero.jsonl" || fail "memory record lacks activation bytes"
pass "tp x dp equals the serial run (largest differences: steps $WORST_STEP, parameter fingerprint $WORST_PARAM, checkpoints $WORST_CKPT)"

# resume: stopped at step 3 and resumed on the same grid = uninterrupted, bitwise; resumed on
# another grid (tp 2 x dp 2 -> tp 4 x dp 1, -> tp 1 x dp 3 with ZeRO-1, and -> serial) within
# TOL_CKPT of the serial run
# shellcheck disable=SC2086
run gpt-resume 4 $gpt --tp 2 --zero 1 --stop-at 3
# shellcheck disable=SC2086
run gpt-resume 4 $gpt --tp 2 --zero 1 --resume auto
echo "  same grid: max|a-b| $(ckpt_diff gpt-tp2-dp2-zero gpt-resume 0)"
for to in "4 --tp 4" "3 --zero 1" "1"; do
    set -- $to
    # shellcheck disable=SC2086
    run gpt-move 4 $gpt --tp 2 --zero 1 --stop-at 3 --ckpt-dir "$WORK/gpt-move-$1"
    # shellcheck disable=SC2086
    run gpt-move "$@" $gpt --resume auto --ckpt-dir "$WORK/gpt-move-$1"
    echo "  tp 2 x dp 2 -> $* ranks: max|a-b| $(ckpt_diff gpt-serial "gpt-move-$1" "$TOL_CKPT") against the serial run"
done
pass "resume: bitwise on the same grid, within $TOL_CKPT on another"

expect_error tp-width 2 "--tp 2 does not divide the width 33 between fc1" train --data "$DATA" --model mlp:784-33-10 --batch 8 --max-steps 1 --tp 2
expect_error tp-cnn 2 "model 'cnn' has no tensor-parallel layout" train --data "$DATA" --model cnn --batch 8 --max-steps 1 --tp 2
