#!/bin/sh
# A failed checkpoint save never damages the previous checkpoint: `latest` keeps pointing at it,
# its bytes are unchanged, no temporary file is left, and training resumes from it.
. "${srcdir:-.}/tests/lib.sh"
need_data
args="--data $DATA --model mlp:784-32-10 --batch 64 --quiet true --ckpt-dir $WORK/ck"
mpirun_t 2 60 "$PARATRAIN" train $args --max-steps 20 --ckpt-every 10 >/dev/null 2>&1 || fail "first run"
[ "$(cat "$WORK/ck/latest")" = step_00000020.h5 ] || fail "latest is $(cat "$WORK/ck/latest")"
sum=$(md5sum <"$WORK/ck/step_00000020.h5")
set +e
PT_FAULT_INJECT=ckpt-save mpirun_t 2 60 -x PT_FAULT_INJECT "$PARATRAIN" train $args --max-steps 30 \
    --resume latest >"$WORK/fault.out" 2>"$WORK/fault.err"
rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "injected save failure: exit $rc"
grep -q "failed half-way" "$WORK/fault.err" || { cat "$WORK/fault.err"; fail "no message for the failed save"; }
[ "$(cat "$WORK/ck/latest")" = step_00000020.h5 ] || fail "latest moved to $(cat "$WORK/ck/latest")"
[ "$(md5sum <"$WORK/ck/step_00000020.h5")" = "$sum" ] || fail "previous checkpoint changed"
[ -z "$(ls -A "$WORK/ck" | grep tmp || true)" ] || fail "temporary files left: $(ls -A "$WORK/ck")"
"$PT_CKPT" info "$WORK/ck" >"$WORK/info" || { cat "$WORK/info"; fail "previous checkpoint fails its checksums"; }
mpirun_t 2 60 "$PARATRAIN" train $args --max-steps 30 --resume latest >"$WORK/resume.out" 2>&1 ||
    { cat "$WORK/resume.out"; fail "resume after the failed save"; }
[ "$(cat "$WORK/ck/latest")" = step_00000030.h5 ] || fail "latest after resume is $(cat "$WORK/ck/latest")"
pass "failed save left step 20 intact; resumed to step 30"
