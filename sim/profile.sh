#!/bin/sh
# sim/profile.sh NAME SPEC BATCH DATA [STEPS]: measures one rank's training step of SPEC at BATCH
# samples and writes sim/models/NAME.tsv, the table pt-sim-step replays:
#   1. ./paratrain train on 1 rank (singleton MPI, OMP_NUM_THREADS=1, SGD momentum), twice: 5
#      steps and 5 + STEPS steps; paratrain_step_s = the difference of their CPU time (user +
#      sys, /usr/bin/time) / STEPS: one step's read, forward, backward and update on one core,
#      without the start-up, the final evaluation and the checkpoint, which both runs share.
#      CPU time, not wall time, because this machine is shared (load 10 on 2 cores: a step's
#      wall time varied 4x between runs). The checkpoint's tensor list (pt-ckpt info) goes
#      into the table as comments, next to the profile's own list, to check one against the
#      other.
#   2. sim/build/pt-layer-profile (sim/pt_layer_profile.c, the same model through the library,
#      CPU time too): forward, the backward time between the grad_ready hook calls (the ranges
#      buckets start from), the update, and the compression work of top-k 0.1% and sign;
#      pt-sim-step scales them all so that forward + backward + update = paratrain_step_s.
# PROFILE_ONLY=1 leaves out step 1 (no paratrain_step_s: pt-sim-step then takes the profile's
# own times unscaled). For gpt on this machine, whose final evaluation of the kjv-lm validation
# split costs about a minute of CPU per run.
# Run from the repository root after ./configure && make. The machine's CPU and load go into
# the table's header.
set -eu
name=$1 spec=$2 batch=$3 data=$4 steps=${5:-30}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
prof=$(sh sim/build_profile.sh | tail -1)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cpu() { # cpu STEPS: user + sys seconds of a STEPS-step run
    /usr/bin/time -f "%U %S" -o "$tmp/time" ./paratrain train --data "$data" --model "$spec" \
        --batch "$batch" --optimizer momentum --lr 0.01 --max-steps "$1" --eval-every 100000 \
        --log-every 100000 --quiet true --validate-data false --eval-batch 64 \
        --ckpt-dir "$tmp/ckpt$1" \
        >"$tmp/train.out" 2>&1 || { cat "$tmp/train.out" >&2; exit 1; }
    awk '{ print $1 + $2 }' "$tmp/time"
}
if [ -z "${PROFILE_ONLY:-}" ]; then
    c1=$(cpu 5)
    c2=$(cpu $((5 + steps)))
    step_s=$(echo "$c1 $c2 $steps" | awk '{ print ($2 - $1) / $3 }')
fi
ck=$(find "$tmp/ckpt5" -name '*.h5' 2>/dev/null | sort | tail -1)
out=sim/models/$name.tsv
{
    echo "# sim/profile.sh $name '$spec' $batch $data $steps, $(date -u '+%Y-%m-%d %H:%M UTC')"
    cpu_name=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
    echo "# CPU: $cpu_name, $(getconf _NPROCESSORS_ONLN) cores," \
        "load average $(cut -d' ' -f1-3 /proc/loadavg) (shared machine)"
    if [ -z "${PROFILE_ONLY:-}" ]; then
        echo "# ./paratrain 1 rank, 1 thread, batch $batch: CPU $c1 s for 5 steps, $c2 s for $((5 + steps))"
        printf 'paratrain_step_s\t%s\n' "$step_s"
    else
        echo "# PROFILE_ONLY: no ./paratrain step measured; the profile's times are used unscaled"
    fi
    "$prof" "$spec" "$batch" 12 2>/dev/null | sed "/^cpu:/s/^/# /"
    if [ -n "$ck" ]; then
        echo "# pt-ckpt info of the checkpoint ./paratrain wrote:"
        ./pt-ckpt info "$ck" 2>&1 | sed 's/^/#   /'
    fi
} >"$out"
echo "$out"
