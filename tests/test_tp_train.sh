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
mlp="--data $DATA --model mlp:784-64-32-10 --batch 24 --dropout 0.1 --clip-norm 0.5"
gpt="--data $KJV_LM --model gpt:layers=2,heads=4,d=16,ctx=16 --batch 12 --optimizer adam --clip-norm 0.3 --eval-batch 200"
common="--max-steps 6 --log-every 1 --eval-every 100 --seed 3 --quiet true"

. "${srcdir:-.}/tests/grid_equiv.sh"

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
