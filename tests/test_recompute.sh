#!/bin/sh
# --recompute (issue 18): a pipeline stage keeps only each in-flight micro-batch's stage input and
# reruns its forward right before the backward. The forward is deterministic (dropout keyed by
# seed, step, node and row), so every run here must equal the same grid without --recompute BIT
# FOR BIT: the loss and gradient norm of every step, the val loss, the parameter fingerprint and
# the final checkpoints (pt-ckpt diff --tol 0). mlp (dropout, clipping) and gpt (Adam, clipping,
# the tied embedding across the stages) at pp 2 with M = 8 under 1F1B, GPipe and interleaved
# (V 2), at pp 2 x dp 2, and on the 3D grid pp 2 x dp 2 x tp 2 (ZeRO-1). The schedules give the
# same bits (tests/test_pipeline.sh), so each recomputed run is compared with one reference run
# of its grid. The --trace timeline shows where the forward reran (1F1B's last stage: nowhere,
# it runs each backward right after the forward). Then the "pipeline_memory" record: each
# stage's peak activation bytes are lower with --recompute on the stages that hold more than one
# micro-batch and keep more per micro-batch than its input (not mlp's last stage: its input is
# wider than its activations), and stage 0's equals the memory record's (allocated) activation
# bytes. And --recompute at --pp 1 is refused.
. "${srcdir:-.}/tests/lib.sh"
need_np 8 "pp 2 x dp 2 x tp 2"
need_data
need_kjv
mlp="--data $DATA --model mlp:784-64-32-10 --batch 24 --dropout 0.1 --clip-norm 0.5"
gpt="--data $KJV_LM --model gpt:layers=2,heads=4,d=16,ctx=16 --batch 16 --optimizer adam --clip-norm 0.3 --eval-batch 200"
common="--max-steps 3 --log-every 1 --eval-every 100 --seed 3 --quiet true"
. "${srcdir:-.}/tests/grid_equiv.sh"

same_bits() {
    [ "$(summary "$WORK/$1.jsonl")" = "$(summary "$WORK/$2.jsonl")" ] ||
        { echo "$1: $(summary "$WORK/$1.jsonl")"; echo "$2: $(summary "$WORK/$2.jsonl")"; fail "$2 differs from $1"; }
    echo "  $2 = $1 bitwise: checkpoint max|a-b| $(ckpt_diff "$1" "$2" 0)"
}
# peaks NAME: the stages' peak activation bytes, space separated
peaks() { sed -n 's/.*"event": "pipeline_memory".*"peak_activation_bytes": \[\([^]]*\)\].*/\1/p' "$WORK/$1.jsonl" | tr -d ,; }
alloc0() { sed -n 's/.*"event": "memory".*"activation_bytes": \([0-9]*\).*/\1/p' "$WORK/$1.jsonl"; }
# lower REF RUN STAGES: RUN's peak below REF's on each listed stage; stage 0's peak = allocation
lower() {
    set -- "$1" "$2" "$3" "$(peaks "$1")" "$(peaks "$2")"
    for k in $3; do
        a=$(echo "$4" | cut -d' ' -f$((k + 1))) b=$(echo "$5" | cut -d' ' -f$((k + 1)))
        [ -n "$a" ] && [ -n "$b" ] && [ "$b" -lt "$a" ] ||
            fail "$2: stage $k peak activation bytes '$b', not below $1's '$a'"
    done
    for r in "$1" "$2"; do
        [ "$(peaks "$r" | cut -d' ' -f1)" = "$(alloc0 "$r")" ] ||
            fail "$r: stage 0 peak $(peaks "$r" | cut -d' ' -f1) != allocated $(alloc0 "$r")"
    done
    echo "  peak activation bytes per stage: $1 [$4], $2 [$5]"
}

# model:np:flags of the grid (the reference) | schedules run with --recompute true
M8="--pp 2 --micro-batches 8"
run mlp-ref 2 $mlp $M8 --pipeline 1f1b
run gpt-ref 2 $gpt $M8 --pipeline 1f1b
run gpt-ref-gpipe 2 $gpt $M8 --pipeline gpipe
for cs in mlp:1f1b mlp:gpipe gpt:1f1b gpt:gpipe gpt:interleaved; do
    model=${cs%%:*} sched=${cs#*:} V=1
    [ "$sched" = interleaved ] && V=2
    eval "args=\$$model"
    # shellcheck disable=SC2086
    run "$model-rc-$sched" 2 $args $M8 --pipeline "$sched" --virtual-stages $V --recompute true \
        --trace "$WORK/$model-rc-$sched.trace" --trace-steps 1
    same_bits "$model-ref" "$model-rc-$sched"
done
# where the forward reran (the traced step 1): every micro-batch on both stages under GPipe, on
# stage 0 only under 1F1B (its last stage runs each backward right after the forward)
recomputed() {
    /usr/bin/python3 - "$WORK/$1.trace" <<'PYEOF'
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X" and e["name"][0] == "R"]
print(" ".join(str(len({e["args"]["mb"] for e in ev if e["pid"] == r})) for r in (0, 1)))
PYEOF
}
[ "$(recomputed gpt-rc-gpipe)" = "8 8" ] || fail "gpt-rc-gpipe: micro-batches recomputed per stage: $(recomputed gpt-rc-gpipe), expected 8 8"
[ "$(recomputed gpt-rc-1f1b)" = "8 0" ] || fail "gpt-rc-1f1b: micro-batches recomputed per stage: $(recomputed gpt-rc-1f1b), expected 8 0"
echo "  micro-batches recomputed per stage in a step: gpipe $(recomputed gpt-rc-gpipe), 1f1b $(recomputed gpt-rc-1f1b)"
lower gpt-ref gpt-rc-1f1b 0
lower gpt-ref-gpipe gpt-rc-gpipe "0 1"
lower mlp-ref mlp-rc-1f1b 0
pass "recompute at pp 2, M 8: bitwise equal, lower peaks"

# pp 2 x dp 2 (4 ranks), and pp 2 x dp 2 x tp 2 with ZeRO-1 (8 ranks)
run mlp-dp 4 $mlp --pp 2 --micro-batches 4 --pipeline gpipe
run mlp-dp-rc 4 $mlp --pp 2 --micro-batches 4 --pipeline gpipe --recompute true
same_bits mlp-dp mlp-dp-rc
lower mlp-dp mlp-dp-rc 0
run gpt-dp 4 $gpt --pp 2 --micro-batches 4
run gpt-dp-rc 4 $gpt --pp 2 --micro-batches 4 --recompute true
same_bits gpt-dp gpt-dp-rc
run gpt-3d 8 $gpt --pp 2 --tp 2 --zero 1 --micro-batches 2
run gpt-3d-rc 8 $gpt --pp 2 --tp 2 --zero 1 --micro-batches 2 --recompute true
same_bits gpt-3d gpt-3d-rc
pass "recompute at pp 2 x dp 2 and pp 2 x dp 2 x tp 2: bitwise equal"

expect_error rc-pp1 2 "recompute recomputes pipeline stages' activations; --pp is 1" train \
    --data "$DATA" --model mlp:784-32-10 --batch 8 --max-steps 1 --recompute true
pass "--recompute at --pp 1 refused"
