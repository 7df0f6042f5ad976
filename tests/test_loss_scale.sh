#!/bin/sh
# Dynamic loss scaling across ranks (issue 17; docs/MIXED_PRECISION.md), fp16 mlp at 2 ranks:
#  1. an overflow injected on ONE rank (PT_LOSS_SCALE_INJECT=3:1) skips step 3 on every rank:
#     the checkpoint says scale 2^15, 1 skipped, 7 optimizer steps of 8, and its parameters and
#     optimizer state equal (bit for bit) those of the run with the overflow on rank 0 instead,
#     and of the run with it on every rank (a per-rank decision would leave the replicas
#     different, and the three files with them);
#  2. growth: --loss-scale-window 3 without overflow doubles the scale every 3 steps;
#  3. a static --loss-scale still skips an overflowing step, and keeps its value;
#  4. resume: 8 steps straight equal 4 + --resume 4, parameters, optimizer state and the
#     scaler's state (scale, clean-step counter, skipped count) alike.
. "${srcdir:-.}/tests/lib.sh"
need_data
common="--data $DATA --model mlp:784-32-10 --batch 24 --max-steps 1000 --optimizer adamw --lr 2e-3
        --quiet true --seed 7 --precision fp16"
attr() { "$PT_CKPT" info "$1" | sed -n "s/^  $2  *//p"; } # attr CKPT NAME
run_inj() { # name inject extra...
    _n=$1 _inj=$2
    shift 2
    PT_LOSS_SCALE_INJECT=$_inj
    export PT_LOSS_SCALE_INJECT
    mpirun_t 2 120 -x PT_LOSS_SCALE_INJECT "$PARATRAIN" train $common --ckpt-dir "$WORK/$_n" "$@" \
        >"$WORK/$_n.out" 2>&1 || { cat "$WORK/$_n.out"; fail "training $_n"; }
    unset PT_LOSS_SCALE_INJECT
}
expect_attr() { # name attr value
    _v=$(attr "$WORK/$1" "$2")
    [ "$_v" = "$3" ] || { "$PT_CKPT" info "$WORK/$1" | head -30; fail "$1: $2 is '$_v', expected $3"; }
}

# 1. overflow on one rank
run_inj inj1 3:1 --stop-at 8
run_inj inj0 3:0 --stop-at 8
run_inj injall 3 --stop-at 8
for n in inj1 inj0 injall; do
    expect_attr $n loss_scale 32768
    expect_attr $n loss_scale_skipped 1
    expect_attr $n optimizer_steps 7
    expect_attr $n step 8
done
grep -q 'step 3: step skipped, scale 65536 -> 32768' "$WORK/inj1.out" || { cat "$WORK/inj1.out"; fail "no skip message"; }
"$PT_CKPT" diff "$WORK/inj1" "$WORK/inj0" --tol 0 >"$WORK/diff10" ||
    { cat "$WORK/diff10"; fail "overflow on rank 1 vs on rank 0: the ranks did not skip alike"; }
"$PT_CKPT" diff "$WORK/inj1" "$WORK/injall" --tol 0 >"$WORK/diffall" ||
    { cat "$WORK/diffall"; fail "overflow on rank 1 vs on every rank differ"; }
pass "an overflow on one rank skips the step on both, scale 65536 -> 32768"

# 2. growth: 8 clean steps, window 3: 2^16 -> 2^17 (step 3) -> 2^18 (step 6), 2 clean since
run_inj grow "" --stop-at 8 --loss-scale-window 3
expect_attr grow loss_scale 262144
expect_attr grow loss_scale_good_steps 2
expect_attr grow loss_scale_skipped 0
expect_attr grow optimizer_steps 8
pass "the scale doubles after every 3 clean steps"

# 3. static
run_inj static 2:0 --stop-at 6 --loss-scale 1024
expect_attr static loss_scale 1024
expect_attr static loss_scale_skipped 1
expect_attr static optimizer_steps 5
pass "a static scale skips the overflowing step and keeps its value"

# 4. resume bit for bit: the overflow (step 2) in the first half, the scale's doubling (window 3:
#    clean steps 3, 4, 5) across the cut after step 3
run_inj straight 2:1 --stop-at 8 --loss-scale-window 3
run_inj half 2:1 --stop-at 4 --loss-scale-window 3
expect_attr half loss_scale 32768
expect_attr half loss_scale_good_steps 1
run_inj half "" --stop-at 8 --loss-scale-window 3 --resume latest
"$PT_CKPT" diff "$WORK/straight" "$WORK/half" --tol 0 >"$WORK/diffres" ||
    { cat "$WORK/diffres"; fail "8 steps straight vs 4 + resume 4: parameters differ"; }
for a in loss_scale loss_scale_good_steps loss_scale_skipped optimizer_steps step; do
    expect_attr half $a "$(attr "$WORK/straight" $a)"
done
expect_attr straight loss_scale 65536
expect_attr straight loss_scale_good_steps 2
pass "8 steps straight equal 4 + --resume 4, the loss scaler's state included"
