#!/bin/sh
# Faults: kill -9 one rank in the middle of a run, and kill the writer in the middle of writing a
# checkpoint (PT_FAULT_INJECT=ckpt-crash). In both cases no checkpoint is lost or half-used:
# --resume auto continues from the newest complete one, and the final parameters equal an
# uninterrupted run's bit for bit (same number of ranks).
. "${srcdir:-.}/tests/lib.sh"
need_data
# reproducible mode with ZeRO-1: what the issue asks of the fault tests, and it exercises the
# sharded optimizer state in the checkpoint that is resumed
args="--data $DATA --model mlp:784-128-10 --batch 64 --seed 9 --quiet true --eval-every 100000 --log-every 10
      --reproducible --zero 1"
count_train() { c=$(grep -c '"event": "train"' "$1" 2>/dev/null) || true; echo "${c:-0}"; }

# reference: an uninterrupted run to step 400
mpirun_t 2 120 "$PARATRAIN" train $args --max-steps 400 --ckpt-dir "$WORK/ref" >/dev/null 2>&1 || fail "reference run"

# 1. kill -9 rank 1 mid-run (checkpoints every 50 steps)
set +e
mpirun_t 2 120 "$PARATRAIN" train $args --max-steps 400 --ckpt-every 50 --ckpt-dir "$WORK/k9" \
    --metrics "$WORK/k9.jsonl" >"$WORK/k9.out" 2>&1 &
pid=$!
n=0
until [ -f "$WORK/k9/latest" ] && [ "$(count_train "$WORK/k9.jsonl")" -ge 8 ]; do
    sleep 0.05; n=$((n + 1)); [ $n -lt 1200 ] || break
done
victim=$(pgrep -f "^[^ ]*paratrain train.*--ckpt-dir $WORK/k9( |\$)" | tail -1)
[ -n "$victim" ] && kill -9 "$victim"
wait $pid
rc=$?
set -e
[ -n "$victim" ] || fail "no rank to kill (the run ended too early?)"
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "kill -9 of a rank: mpirun exit $rc"
before=$(cat "$WORK/k9/latest")
mpirun_t 2 120 "$PARATRAIN" train $args --max-steps 400 --ckpt-every 50 --ckpt-dir "$WORK/k9" --resume auto \
    >"$WORK/k9-resume.out" 2>&1 || { cat "$WORK/k9-resume.out"; fail "resume after kill -9"; }
"$PT_CKPT" diff "$WORK/k9" "$WORK/ref" >"$WORK/k9.diff" || { cat "$WORK/k9.diff"; fail "resumed run differs after kill -9"; }
pass "kill -9 of a rank (latest was $before): resumed, equal to the uninterrupted run"

# 2. the writer dies in the middle of writing the step-100 checkpoint
set +e
PT_FAULT_INJECT=ckpt-crash mpirun_t 2 120 -x PT_FAULT_INJECT "$PARATRAIN" train $args --max-steps 400 \
    --ckpt-every 50 --stop-at 100 --ckpt-dir "$WORK/crash" >"$WORK/crash.out" 2>&1
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "crash while checkpointing: exit $rc"
# the first save (step 50) crashed half-way too: nothing complete, only a temporary file
[ ! -f "$WORK/crash/latest" ] || fail "latest exists after a crashed first save"
ls -A "$WORK/crash" | grep -q '^\.step_00000050\.h5\.tmp$' || fail "expected a half-written temporary file: $(ls -A "$WORK/crash")"
mpirun_t 2 120 "$PARATRAIN" train $args --max-steps 400 --ckpt-every 50 --stop-at 100 --ckpt-dir "$WORK/crash" \
    >/dev/null 2>&1 || fail "a clean run to step 100"
set +e
PT_FAULT_INJECT=ckpt-crash mpirun_t 2 120 -x PT_FAULT_INJECT "$PARATRAIN" train $args --max-steps 400 \
    --ckpt-every 50 --stop-at 200 --ckpt-dir "$WORK/crash" --resume auto >"$WORK/crash2.out" 2>&1
set -e
[ "$(cat "$WORK/crash/latest")" = step_00000100.h5 ] || fail "latest moved to $(cat "$WORK/crash/latest") after a crashed save"
"$PT_CKPT" info "$WORK/crash" >/dev/null || fail "the last complete checkpoint fails its checksums"
mpirun_t 2 120 "$PARATRAIN" train $args --max-steps 400 --ckpt-every 50 --ckpt-dir "$WORK/crash" --resume auto \
    >"$WORK/crash3.out" 2>&1 || { cat "$WORK/crash3.out"; fail "resume after a crashed save"; }
"$PT_CKPT" diff "$WORK/crash" "$WORK/ref" >"$WORK/crash.diff" || { cat "$WORK/crash.diff"; fail "resumed run differs after a crashed save"; }
pass "crash while writing a checkpoint: previous one intact, resumed, equal to the uninterrupted run"
