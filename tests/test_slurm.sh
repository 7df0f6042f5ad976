#!/bin/bash
# The Slurm job template end to end on a private local Slurm (scripts/local-slurm.sh): submit
# jobs/slurm/train_dp.sbatch, preempt it once (scancel --signal=USR1 --batch, what --signal does at
# the time limit), and check that it requeued itself, resumed from its checkpoint, finished, and
# ended bit for bit where an uninterrupted run ends. Then the PBS template through qsub
# (slurm-wlm-torque). Skipped, with the reason, only where Slurm cannot start.
. "${srcdir:-.}/tests/lib.sh"
need_data
# the templates launch with Open MPI's mpirun (--map-by ppr:N:node:PE=T) or srun --mpi=pmix
skip_unless_openmpi "jobs/slurm and jobs/pbs launch with Open MPI's mpirun flags (PT_LAUNCHER=mpirun)"
command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null ||
    { echo "SKIP: Slurm is not installed (Debian packages slurm-wlm, munge)"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: starting a local Slurm needs root"; exit 77; }
SL="$WORK/slurm"
"$top_srcdir/scripts/local-slurm.sh" start "$SL" >"$WORK/slurm-start.out" 2>&1 ||
    { cat "$WORK/slurm-start.out"; echo "SKIP: a local Slurm cannot start here"; exit 77; }
trap '"$top_srcdir/scripts/local-slurm.sh" stop "$SL" >/dev/null 2>&1' EXIT
export SLURM_CONF="$(cd "$SL" && pwd)/slurm.conf"
ABS_BUILD=$(cd "$top_builddir" && pwd)
ABS_DATA=$(cd "$DATA" && pwd)
ABS_WORK=$(cd "$WORK" && pwd)
TRAIN="--data $ABS_DATA --model mlp:784-128-10 --batch 64 --max-steps 3000 --seed 5 --log-every 20 --eval-every 100000 --quiet true"

export PT_PARATRAIN="$ABS_BUILD/paratrain" PT_CONFIG=none PT_CKPT_DIR="$ABS_WORK/ck" \
    PT_ARGS="$TRAIN --metrics $ABS_WORK/m.jsonl"
job=$(sbatch --parsable --chdir="$ABS_WORK" --output="$ABS_WORK/job.out" \
    "$top_srcdir/jobs/slurm/train_dp.sbatch") || fail "sbatch refused the template"
state() { scontrol show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# wait until it trains, then preempt it
n=0
count_train() { c=$(grep -c '"event": "train"' "$1" 2>/dev/null) || true; echo "${c:-0}"; }
while [ "$(count_train "$ABS_WORK/m.jsonl")" -lt 5 ]; do
    sleep 0.2; n=$((n + 1))
    [ $n -lt 600 ] || { cat "$ABS_WORK/job.out" 2>/dev/null; fail "job $job did not start training (state $(state))"; }
done
scancel --signal=USR1 --batch "$job" || fail "scancel --signal"
# wait for the requeued job to finish. Slurm defers a requeued job's start (BeginTime, measured
# ~3 minutes here); once it has been pending for 5 s, an administrator's StartTime=now releases
# it. (Released at once, slurmd may still remember the killed first run and refuse the launch:
# "Job 1 already killed, do not launch batch job" -- the race Slurm's own delay avoids.)
# (while requeueing, Slurm can show FAILED for a moment before PENDING: only a state that stays
# terminal for 15 s counts)
n=0
released=0
pending=0
bad=0
until [ "$(state)" = COMPLETED ]; do
    if [ $released = 0 ] && [ "$(state)" = PENDING ] && grep -q "requeueing" "$ABS_WORK/job.out" 2>/dev/null; then
        pending=$((pending + 1))
        [ $pending -ge 5 ] && scontrol update JobId="$job" StartTime=now && released=1
    fi
    case "$(state)" in
    FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)
        bad=$((bad + 1))
        [ $bad -lt 15 ] || { cat "$ABS_WORK/job.out"; scontrol show job "$job"; fail "job $job ended $(state)"; } ;;
    *) bad=0 ;;
    esac
    sleep 1; n=$((n + 1))
    [ $n -lt 240 ] || { cat "$ABS_WORK/job.out"; fail "job $job did not complete (state $(state))"; }
done
restarts=$(scontrol show job "$job" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[ "$restarts" = 1 ] || { cat "$ABS_WORK/job.out"; fail "job restarted $restarts times, expected 1"; }
grep -q "preempted and checkpointed; requeueing" "$ABS_WORK/job.out" || { cat "$ABS_WORK/job.out"; fail "no preemption in the job log"; }
resumed=$(grep '"event": "start"' "$ABS_WORK/m.jsonl" | tail -1 | sed 's/.*"step": \([0-9]*\),.*/\1/')
[ "$resumed" -gt 0 ] || fail "the second run started at step $resumed, not from the checkpoint"
[ "$(cat "$ABS_WORK/ck/latest")" = step_00003000.h5 ] || fail "final checkpoint is $(cat "$ABS_WORK/ck/latest")"
mpirun_t 2 120 "$PARATRAIN" train $TRAIN --ckpt-dir "$WORK/ref" >"$WORK/ref.out" 2>&1 || fail "reference run"
"$PT_CKPT" diff "$ABS_WORK/ck" "$WORK/ref" >"$WORK/diff" || { cat "$WORK/diff"; fail "preempted Slurm job differs from an uninterrupted run"; }
pass "Slurm job $job: preempted once, requeued, resumed at step $resumed, equal to an uninterrupted run"

# PBS template through slurm-wlm-torque's qsub (a short run: it must complete with a checkpoint).
# The wrapper passes -v values through a shell, so the options travel as a config file.
if command -v qsub >/dev/null; then
    cat >"$ABS_WORK/pbs.conf" <<CONF
data = $ABS_DATA
model = mlp:784-128-10
batch = 64
max-steps = 40
seed = 5
quiet = true
CONF
    export PT_CONFIG="$ABS_WORK/pbs.conf" PT_CKPT_DIR="$ABS_WORK/pbs" PT_ARGS=
    pbs_script="$(cd "$top_srcdir" && pwd)/jobs/pbs/train_dp.pbs"
    pj=$(cd "$ABS_WORK" && qsub -v PT_PARATRAIN,PT_CONFIG,PT_CKPT_DIR,OMPI_ALLOW_RUN_AS_ROOT,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM \
        "$pbs_script" 2>&1) || { echo "$pj"; fail "qsub refused the PBS template"; }
    n=0
    until [ -f "$ABS_WORK/pbs/latest" ] && [ "$(cat "$ABS_WORK/pbs/latest")" = step_00000040.h5 ]; do
        sleep 1; n=$((n + 1))
        [ $n -lt 120 ] || { cat "$ABS_WORK"/train_dp.pbs.o* 2>/dev/null; fail "PBS job $pj left no final checkpoint"; }
    done
    pass "PBS template via qsub: job $pj trained 40 steps and checkpointed"
else
    echo "note: no qsub (slurm-wlm-torque); PBS template checked for syntax only"
    bash -n "$top_srcdir/jobs/pbs/train_dp.pbs" || fail "PBS template syntax"
fi
