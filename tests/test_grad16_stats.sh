#!/bin/sh
# PT_LOWP_STATS (issue 17; docs/MIXED_PRECISION.md, docs/METRICS.md): fp16 mlp at 2 ranks with a
# global batch of 512, which divides every output gradient by 512, so that without loss scaling
# part of the backward's 16-bit gradients underflow:
#  1. PT_LOWP_STATS=1, --loss-scale none: every train record has grad16_nonzero > 0, and the
#     flushed fraction over the run is > 0;
#  2. PT_LOWP_STATS=1, --loss-scale dynamic (2^16): the flushed fraction is smaller than 1.'s;
#  3. PT_LOWP_STATS=0: the grad16_* fields are absent.
. "${srcdir:-.}/tests/lib.sh"
need_data
common="--data $DATA --model mlp:784-64-64-10 --batch 512 --max-steps 30 --log-every 10
        --eval-every 100000 --optimizer momentum --lr 0.05 --quiet true --seed 7 --precision fp16"
run() { # name PT_LOWP_STATS loss-scale
    PT_LOWP_STATS=$2
    export PT_LOWP_STATS
    mpirun_t 2 120 -x PT_LOWP_STATS "$PARATRAIN" train $common --loss-scale "$3" \
        --ckpt-dir "$WORK/$1" --metrics "$WORK/$1.jsonl" >"$WORK/$1.out" 2>&1 ||
        { cat "$WORK/$1.out"; fail "training $1"; }
    unset PT_LOWP_STATS
}
# the run's flushed fraction: sum(nonzero * fraction) / sum(nonzero) over the train records
flushed() {
    grep '"event": "train"' "$WORK/$1.jsonl" |
        sed 's/.*"grad16_nonzero": \([0-9]*\), "grad16_flushed_fraction": \([^,}]*\).*/\1 \2/' |
        awk '{ if ($1 <= 0) bad = 1; n += $1; f += $1 * $2 }
             END { if (bad || !n) print "bad"; else printf "%.6g\n", f / n }'
}

run none 1 none
fn=$(flushed none)
[ "$fn" != bad ] || { cat "$WORK/none.jsonl"; fail "none: a train record without grad16_nonzero > 0"; }
awk -v f="$fn" 'BEGIN { exit !(f > 0) }' || fail "none: flushed fraction $fn, expected > 0"
pass "fp16 without loss scaling: $fn of the nonzero 16-bit gradients flushed to zero"

run dyn 1 dynamic
fd=$(flushed dyn)
[ "$fd" != bad ] || { cat "$WORK/dyn.jsonl"; fail "dynamic: a train record without grad16_nonzero > 0"; }
awk -v a="$fd" -v b="$fn" 'BEGIN { exit !(a < b) }' ||
    fail "dynamic: flushed fraction $fd, expected below none's $fn"
pass "dynamic loss scaling: $fd flushed (none: $fn)"

run off 0 none
grep -q '"event": "train"' "$WORK/off.jsonl" || fail "off: no train record"
! grep -q '"grad16_' "$WORK/off.jsonl" || { grep '"grad16_' "$WORK/off.jsonl" | head -2; fail "off: grad16 fields without PT_LOWP_STATS=1"; }
pass "PT_LOWP_STATS=0: no grad16 fields"
