#!/bin/sh
# A pipeline stage allocates the gradients and the optimizer state of its own parameters only
# (issue 18; docs/ARCHITECTURE.md, "Ownership"). gpt (Adam, the tied embedding across the first
# and last stage) at pp 1, 2 and 4: the bytes each rank allocated, from the pp 1 run's "memory"
# record and the pipeline's per-rank "pipeline_state" record, against the pp 1 run:
#   optimizer state: no rank holds more than SLACK / pp of pp 1's, and the ranks' sum is pp 1's
#     exactly (every element on exactly one stage);
#   gradients: a stage holds two buffers (its gradient and the micro-batch accumulation), each no
#     more than SLACK / pp of pp 1's plus the tied embedding on the last stage, and one buffer
#     summed over the ranks is pp 1's plus the embedding once (the last stage's copy);
#   parameters: still the whole model on every rank (evaluation and checkpoints read them all).
# SLACK: the partition balances FLOPs, not parameters (the embedding sits on stage 0). Then a
# resume through the checkpoint's optimizer stand-in under ZeRO-1.
. "${srcdir:-.}/tests/lib.sh"
need_np 4 "pp 4"
need_kjv
V=256 D=64
gpt="--data $KJV_LM --model gpt:layers=4,heads=4,d=$D,ctx=16,vocab=$V --batch 16 --optimizer adam
--max-steps 2 --log-every 1 --eval-every 100 --seed 3 --quiet true"
SLACK=1.5

run() {
    _n=$1 _np=$2
    shift 2
    # shellcheck disable=SC2086
    mpirun_t "$_np" 240 "$PARATRAIN" train $gpt --metrics "$WORK/$_n.jsonl" --ckpt-dir "$WORK/$_n" \
        "$@" >"$WORK/$_n.out" 2>&1 || { cat "$WORK/$_n.out"; fail "training $_n"; }
}
run pp1 1
run pp2 2 --pp 2 --micro-batches 4 --pipeline 1f1b
run pp4 4 --pp 4 --micro-batches 4 --pipeline 1f1b
/usr/bin/python3 - "$WORK" "$SLACK" $((4 * V * D)) <<'PYEOF' || fail "stage memory"
import json, sys
work, slack, emb = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def rec(name, event):
    for line in open(f"{work}/{name}.jsonl"):
        r = json.loads(line)
        if r.get("event") == event:
            return r
    sys.exit(f"{name}: no {event} record")
one = rec("pp1", "memory")
P, G, O = one["param_bytes"], one["grad_bytes"], one["optim_bytes"]
print(f"  pp 1: parameters {P:.0f}, gradients {G:.0f}, optimizer {O:.0f} bytes")
bad = []
for pp in (2, 4):
    r = rec(f"pp{pp}", "pipeline_state")
    ps, gs, os_ = r["param_bytes"], r["grad_bytes"], r["optim_bytes"]
    for k in range(pp):
        tot = ps[k] + gs[k] + os_[k]
        print(f"  pp {pp} rank {k}: parameters {ps[k]:.0f}, gradients {gs[k]:.0f} (2 buffers), "
              f"optimizer {os_[k]:.0f}: optimizer {os_[k] / O:.3f}, gradients {gs[k] / 2 / G:.3f}, "
              f"all three {tot / (P + G + O):.3f} of pp 1's")
        if os_[k] > slack * O / pp: bad.append(f"pp {pp} rank {k}: optimizer {os_[k]:.0f} > {slack} x {O:.0f} / {pp}")
        if gs[k] / 2 > slack * G / pp + emb: bad.append(f"pp {pp} rank {k}: gradient {gs[k] / 2:.0f} > {slack} x {G:.0f} / {pp} + {emb}")
        if ps[k] != P: bad.append(f"pp {pp} rank {k}: parameters {ps[k]:.0f}, pp 1 {P:.0f}")
    if sum(os_) != O: bad.append(f"pp {pp}: optimizer bytes sum to {sum(os_):.0f}, pp 1 {O:.0f}")
    if sum(gs) / 2 != G + emb: bad.append(f"pp {pp}: one gradient buffer sums to {sum(gs) / 2:.0f}, pp 1 {G:.0f} + embedding {emb}")
if bad: sys.exit("\n".join(bad))
PYEOF
pass "a stage allocates its own gradients and optimizer state (about 1/pp of pp 1's)"

# Checkpoints take the stage's optimizer state through a stand-in in the whole layout; under
# ZeRO-1 the stage's dp shards differ from the checkpoint's and an allgather over dp moves it.
# pp 2 x dp 2 with ZeRO-1 stopped at step 1 and resumed equals the uninterrupted run, bitwise.
# (It also needs the load's checksum of a tensor read in pieces to take one stage's pieces:
# before, every stage's overlapped and the load failed.)
zero="--pp 2 --micro-batches 2 --zero 1"
# shellcheck disable=SC2086
run zero-full 4 $zero
# shellcheck disable=SC2086
run zero-resume 4 $zero --stop-at 1
# shellcheck disable=SC2086
run zero-resume 4 $zero --resume auto
"$PT_CKPT" diff "$WORK/zero-full" "$WORK/zero-resume" --tol 0 >"$WORK/zero.diff" 2>&1 ||
    { cat "$WORK/zero.diff"; fail "pp 2 x dp 2 ZeRO-1 resumed differs from the uninterrupted run"; }
pass "pp 2 x dp 2 ZeRO-1: resumed = uninterrupted, bitwise ($(tail -1 "$WORK/zero.diff"))"
