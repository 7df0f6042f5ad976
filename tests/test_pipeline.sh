#!/bin/sh
# Pipeline parallelism (issue 18) equals the serial run with the same global batch: mlp (Fashion-
# MNIST, dropout, clipping) and gpt (kjv-lm, Adam, clipping, the tied embedding across the first
# and last stage) under GPipe, 1F1B and interleaved 1F1B (V 2, 3), at pp in {2, 3, 4} and micro-batches M in {1, 2, 3, 4, 8}
# (M not a multiple of pp included), and on the 3D grid pp 2 x dp 2 x tp 2 (8 ranks
# oversubscribed, ZeRO-1). Compared with the serial run as tests/test_tp_train.sh does: the loss
# and global gradient norm of every step (relative, TOL_STEP), the end record's parameter
# fingerprint (TOL_PARAM) and the final checkpoints, global tensors each stage wrote its part of
# (pt-ckpt diff, absolute, TOL_CKPT). The schedules run the backwards in the same micro-batch order, so
# they must agree bitwise. Then resumes (same grid bitwise; pp 2 -> 1 within TOL_CKPT of the serial
# run; pp 2 -> 4 and 1 -> 2 the same) and bad input.
. "${srcdir:-.}/tests/lib.sh"
need_np 8 "the pipeline grids up to pp 2 x dp 2 x tp 2"
need_data
need_kjv
mlp="--data $DATA --model mlp:784-64-32-10 --batch 24 --dropout 0.1 --clip-norm 0.5"
gpt="--data $KJV_LM --model gpt:layers=2,heads=4,d=16,ctx=16 --batch 16 --optimizer adam --clip-norm 0.3 --eval-batch 200"
common="--max-steps 4 --log-every 1 --eval-every 100 --seed 3 --quiet true"

. "${srcdir:-.}/tests/grid_equiv.sh"
# same_bits A B: the two runs' metrics (losses, norms, fingerprint) and checkpoints are identical
same_bits() {
    [ "$(summary "$WORK/$1.jsonl")" = "$(summary "$WORK/$2.jsonl")" ] || fail "$1 and $2 differ"
    echo "  $2 = $1 bitwise: checkpoint max|a-b| $(ckpt_diff "$1" "$2" 0)"
}

# model:pp:M:schedule[:V] (np = pp); M not a multiple of pp in several; V virtual stages
cases="mlp:2:1:gpipe mlp:2:3:1f1b mlp:2:3:gpipe mlp:3:4:1f1b
gpt:2:2:gpipe gpt:2:4:1f1b gpt:2:3:1f1b gpt:3:4:gpipe gpt:4:8:1f1b gpt:4:2:gpipe
gpt:2:4:interleaved:2 gpt:3:6:interleaved:2 gpt:2:2:interleaved:3"
run mlp-serial 1 $mlp
run gpt-serial 1 $gpt
for cs in $cases; do
    IFS=: read -r model pp M sched V <<EOC
$cs
EOC
    eval "args=\$$model"
    # shellcheck disable=SC2086
    run "$model-pp$pp-m$M-$sched" "$pp" $args --pp "$pp" --micro-batches "$M" --pipeline "$sched" \
        --virtual-stages "${V:-1}"
    compare "$model-serial" "$model-pp$pp-m$M-$sched"
done
# the schedules (interleaved too): the backwards in the same micro-batch order, same bits
same_bits mlp-pp2-m3-1f1b mlp-pp2-m3-gpipe
run gpt-pp2-m4-gpipe 2 $gpt --pp 2 --micro-batches 4 --pipeline gpipe
same_bits gpt-pp2-m4-1f1b gpt-pp2-m4-gpipe
same_bits gpt-pp2-m4-1f1b gpt-pp2-m4-interleaved
# 3D: pp 2 x dp 2 x tp 2 at 8 ranks, ZeRO-1 within dp
run gpt-3d 8 $gpt --pp 2 --tp 2 --zero 1 --micro-batches 2
compare gpt-serial gpt-3d
run mlp-3d 8 $mlp --pp 2 --tp 2 --micro-batches 3 --pipeline gpipe
compare mlp-serial mlp-3d
pass "pipeline equals the serial run (largest differences: steps $WORST_STEP, parameter fingerprint $WORST_PARAM, checkpoints $WORST_CKPT)"

# resume: stopped at step 2, resumed on the same grid = uninterrupted, bitwise; moved to pp 1, 2, 4
run gpt-resume 2 $gpt --pp 2 --micro-batches 4 --stop-at 2
run gpt-resume 2 $gpt --pp 2 --micro-batches 4 --resume auto
same_bits gpt-pp2-m4-1f1b gpt-resume
run gpt-move 2 $gpt --pp 2 --micro-batches 4 --stop-at 2
run gpt-move 1 $gpt --resume auto
echo "  pp 2 -> 1: max|a-b| $(ckpt_diff gpt-serial gpt-move "$TOL_CKPT") against the serial run"
run gpt-move1 1 $gpt --stop-at 2
run gpt-move1 2 $gpt --pp 2 --micro-batches 3 --resume auto
echo "  pp 1 -> 2: max|a-b| $(ckpt_diff gpt-serial gpt-move1 "$TOL_CKPT") against the serial run"
run gpt-move4 2 $gpt --pp 2 --micro-batches 4 --stop-at 2
run gpt-move4 4 $gpt --pp 4 --micro-batches 4 --resume auto
echo "  pp 2 -> 4: max|a-b| $(ckpt_diff gpt-serial gpt-move4 "$TOL_CKPT") against the serial run"
pass "resume: bitwise on the same grid, within $TOL_CKPT across pp"

# --trace: one Chrome-trace file with every rank's forward and backward of every micro-batch
run gpt-trace 4 $gpt --pp 2 --tp 2 --micro-batches 3 --trace "$WORK/trace.json" --trace-steps 2
/usr/bin/python3 - "$WORK/trace.json" <<'PYEOF' || fail "trace: $(cat "$WORK/trace.json" | head -c 300)"
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
x = [e for e in ev if e["ph"] == "X"]
for r in range(4):
    for k in "FB":
        got = {(e["args"]["step"], e["args"]["mb"]) for e in x if e["pid"] == r and e["name"][0] == k and e["cat"] == "compute"}
        assert got == {(s, m) for s in (1, 2) for m in range(3)}, (r, k, got)
assert len([e for e in ev if e["ph"] == "M"]) == 4
PYEOF
pass "trace: $(grep -c '"ph": "X"' "$WORK/trace.json") spans of 4 ranks, forward and backward of each micro-batch"

b="--data $DATA --batch 8 --max-steps 1"
expect_error pp-m0 2 "micro-batches" train $b --model mlp:784-32-10 --pp 2 --micro-batches 0
expect_error pp-cuts 2 "2 pipeline stages (--pp x --virtual-stages): model 'mlp:784-10' can be cut in only 0 place" train $b --model mlp:784-10 --pp 2
expect_error pp-m-rows 2 "only 8 rows per step" train $b --model mlp:784-32-10 --pp 2 --micro-batches 9
expect_error pp-split 2 "is no place to cut" train --data "$KJV_LM" --model gpt:layers=2,heads=4,d=16,ctx=16 --batch 8 --max-steps 1 --pp 2 --pp-split 3
expect_error pp-interleaved-m 2 "--micro-batches 3 is not a multiple of --pp 2" train $b --model mlp:784-32-10 --pp 2 --pipeline interleaved --micro-batches 3
expect_error pp-interleaved-v 2 "4 pipeline stages (--pp x --virtual-stages): model 'mlp:784-32-10' can be cut in only 1 place" train $b --model mlp:784-32-10 --pp 2 --pipeline interleaved --virtual-stages 2
expect_error pp-virtual 2 "virtual-stages 2 applies to --pipeline interleaved only" train $b --model mlp:784-32-10 --pp 2 --virtual-stages 2
expect_error pp-bn 2 "batch norm" train $b --model resnet:width=4,blocks=1 --pp 2
pass "pipeline bad input"

# a stage that stops mid-step (SIGSTOP at step 3) is named by the other's bounded wait within
# PT_COLL_TIMEOUT: exit 69 on the run
LIMIT=5
start=$(date +%s)
set +e
PT_COLL_TIMEOUT=$LIMIT PT_FAULT_STOP=1:3:step mpirun_t 2 120 -x PT_COLL_TIMEOUT -x PT_FAULT_STOP \
    "$PARATRAIN" train $b --model mlp:784-32-10 --pp 2 --max-steps 50 >"$WORK/dead.out" 2>&1
rc=$?
set -e
took=$(( $(date +%s) - start ))
[ $rc -eq 69 ] || { cat "$WORK/dead.out"; fail "dead stage: exit $rc, expected 69"; }
[ "$took" -le 60 ] || fail "dead stage: took $took s"
grep -q "paratrain: error: rank 0: no progress for $LIMIT s in MPI_Isend/MPI_Irecv (a micro-batch's gradient from the next stage).*waiting on rank 1" "$WORK/dead.out" ||
    { cat "$WORK/dead.out"; fail "dead stage: no message naming the stage"; }
pass "dead stage: exit 69 after $took s: $(grep -m1 'no progress' "$WORK/dead.out" | sed 's/.*no progress/no progress/' | cut -c1-140)"
