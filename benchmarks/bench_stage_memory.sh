#!/bin/sh
# Peak resident memory per rank of a pipeline (issue 18: a stage allocates its own gradients,
# optimizer state and in-flight activations). gpt (MODEL, Adam, batch BATCH) at pp 1, 2 and 4
# (SCHED, default 1f1b; M micro-batches, default 4; STEPS steps; no checkpoints: a save stages
# the whole model's state on the host for a moment, which is not what this measures): each rank's
# VmHWM (/usr/bin/time %M, KiB) and the model's own per-rank byte counts (memory /
# pipeline_state records). One line per rank: pp rank maxrss_kib param_bytes grad_bytes optim_bytes.
# Usage: sh benchmarks/bench_stage_memory.sh (from the repository root, after make).
# BUILDDIR: where paratrain and pt-prep are (default: the repository root).
set -eu
BIN=${BUILDDIR:-.}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
W=${BENCH_WORK:-/tmp/bench_stage_memory}
mkdir -p "$W"
FMT=$(sed -n 's/^#define PT_DATA_FORMAT_VERSION \([0-9]*\).*/\1/p' include/paratrain/data.h)
LM=$W/kjv-lm16-v$FMT
[ -f "$LM/index.h5" ] || {
    [ -s "$W/kjv.txt" ] || bible -f 'Gen1:1-Rev22:21' >"$W/kjv.txt"
    "$BIN/pt-prep" kjv-lm --src "$W/kjv.txt" --out "$LM" --ctx 16 --shards 2 >/dev/null
}
MODEL=${MODEL:-gpt:layers=4,heads=4,d=256,ctx=16}
BATCH=${BATCH:-32} M=${M:-4} STEPS=${STEPS:-3} SCHED=${SCHED:-1f1b}
echo "# $MODEL, adam, batch $BATCH, $SCHED M $M, $STEPS steps"
echo "pp rank maxrss_kib param_bytes grad_bytes optim_bytes"
for pp in 1 2 4; do
    extra=""
    [ "$pp" -gt 1 ] && extra="--pp $pp --micro-batches $M --pipeline $SCHED"
    rm -rf "$W/pp$pp" "$W/pp$pp.jsonl" "$W/pp$pp.rss."*
    # shellcheck disable=SC2086
    timeout 600 mpirun --oversubscribe --bind-to none -np "$pp" sh -c \
        'exec /usr/bin/time -f "%M" -o "$0.rss.$OMPI_COMM_WORLD_RANK" "$@"' "$W/pp$pp" \
        "$BIN/paratrain" train --data "$LM" --model "$MODEL" --batch "$BATCH" --optimizer adam \
        --max-steps "$STEPS" --log-every 1 --eval-every 1000 --seed 3 --quiet true \
        --metrics "$W/pp$pp.jsonl" $extra >"$W/pp$pp.out" 2>&1 ||
        { cat "$W/pp$pp.out"; exit 1; }
    /usr/bin/python3 - "$W" "$pp" <<'PYEOF'
import json, sys
w, pp = sys.argv[1], int(sys.argv[2])
recs = [json.loads(l) for l in open(f"{w}/pp{pp}.jsonl")]
if pp == 1:
    m = next(r for r in recs if r.get("event") == "memory")
    by = [(m["param_bytes"], m["grad_bytes"], m["optim_bytes"])]
else:
    m = next((r for r in recs if r.get("event") == "pipeline_state"), None)
    by = (list(zip(m["param_bytes"], m["grad_bytes"], m["optim_bytes"])) if m
          else [("-", "-", "-")] * pp)  # a build before the pipeline_state record
for r in range(pp):
    rss = open(f"{w}/pp{pp}.rss.{r}").read().split()[-1]
    p, g, o = by[r]
    print(pp, r, rss, p, g, o)
PYEOF
done
