#!/bin/sh
# Preemption and --resume auto.
#  1. SIGTERM to every rank mid-run: each finishes its step, one checkpoint is written, every rank
#     exits with 75; --resume auto continues from it, and the result equals an uninterrupted run
#     of the same steps bit for bit.
#  2. SIGUSR1 does the same.
#  3. --resume auto skips a newest checkpoint that fails its checksum and resumes from the one
#     before, again equal to an uninterrupted run.
. "${srcdir:-.}/tests/lib.sh"
need_data
args="--data $DATA --model mlp:784-128-10 --batch 64 --max-steps 100000 --seed 5 --quiet true --eval-every 100000 --log-every 20"

count_train() { c=$(grep -c '"event": "train"' "$1" 2>/dev/null) || true; echo "${c:-0}"; }

preempt() { # signal dir
    sig=$1 dir=$2
    set +e
    mpirun_t 2 120 "$PARATRAIN" train $args --ckpt-dir "$dir" --metrics "$dir.jsonl" >"$dir.out" 2>&1 &
    pid=$!
    # wait until training is under way (a few train records), then signal the ranks, not mpirun
    n=0
    while [ "$(count_train "$dir.jsonl")" -lt 5 ] && [ $n -lt 600 ]; do
        sleep 0.1; n=$((n + 1))
    done
    pkill -"$sig" -f "^[^ ]*paratrain train.*--ckpt-dir $dir( |\$)"
    wait $pid
    rc=$?
    set -e
    [ $rc -eq 75 ] || { cat "$dir.out"; fail "SIG$sig: exit code $rc, expected 75"; }
    [ -f "$dir/latest" ] || fail "SIG$sig: no checkpoint written"
    STEP=$(sed 's/step_0*\([0-9]*\)\.h5/\1/' "$dir/latest")
    [ "$STEP" -gt 0 ] && [ "$STEP" -lt 100000 ] || fail "SIG$sig: checkpoint at step $STEP"
}

preempt TERM "$WORK/term"
stop=$((STEP + 30))
mpirun_t 2 120 "$PARATRAIN" train $args --ckpt-dir "$WORK/term" --resume auto --stop-at $stop >"$WORK/term-resume.out" 2>&1 ||
    { cat "$WORK/term-resume.out"; fail "resume after SIGTERM"; }
mpirun_t 2 120 "$PARATRAIN" train $args --ckpt-dir "$WORK/ref" --stop-at $stop >"$WORK/ref.out" 2>&1 || fail "reference run"
"$PT_CKPT" diff "$WORK/term" "$WORK/ref" >"$WORK/term.diff" || { cat "$WORK/term.diff"; fail "preempted + resumed differs from uninterrupted"; }
pass "SIGTERM at step $STEP: exit 75, checkpoint, resumed to $stop bit for bit"

preempt USR1 "$WORK/usr1"
pass "SIGUSR1 at step $STEP: exit 75, checkpoint"

# --resume auto falls back past a damaged checkpoint
mpirun_t 2 60 "$PARATRAIN" train $args --ckpt-dir "$WORK/fb" --ckpt-every 10 --stop-at 20 >/dev/null 2>&1 || fail "checkpoints 10, 20"
f="$WORK/fb/step_00000020.h5"
off=$(h5dump -p -H -d /params/fc1/weight "$f" | sed -n 's/^ *OFFSET \([0-9]*\)/\1/p')
printf '\377\377\377\377\377\377\377\377' | dd of="$f" bs=1 seek=$((off + 4000)) conv=notrunc 2>/dev/null
mpirun_t 2 60 "$PARATRAIN" train $args --ckpt-dir "$WORK/fb" --resume auto --stop-at 30 >"$WORK/fb.out" 2>&1 ||
    { cat "$WORK/fb.out"; fail "--resume auto with a damaged newest checkpoint"; }
grep -q "skipping .*step_00000020.h5: checksum mismatch" "$WORK/fb.out" || { cat "$WORK/fb.out"; fail "no warning about the damaged checkpoint"; }
mpirun_t 2 60 "$PARATRAIN" train $args --ckpt-dir "$WORK/fbref" --stop-at 30 >/dev/null 2>&1 || fail "reference to 30"
"$PT_CKPT" diff "$WORK/fb/step_00000030.h5" "$WORK/fbref" >"$WORK/fb.diff" || { cat "$WORK/fb.diff"; fail "fallback resume differs"; }
pass "--resume auto skipped the damaged step 20, resumed from step 10, equal at step 30"

# --resume auto with no checkpoint starts at step 0
mpirun_t 2 60 "$PARATRAIN" train $args --ckpt-dir "$WORK/none" --resume auto --stop-at 5 --metrics "$WORK/none.jsonl" >/dev/null 2>&1 || fail "--resume auto, empty dir"
grep -q '"event": "start", "step": 0,' "$WORK/none.jsonl" || fail "did not start at step 0"
pass "--resume auto without checkpoints starts fresh"
