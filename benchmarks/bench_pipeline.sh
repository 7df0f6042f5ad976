#!/bin/sh
# Pipeline bubble and activation memory (issue 18), from the --trace timeline and the memory record.
# gpt at pp 2 (2 ranks) for M in {1, 2, 4, 8, 16} under gpipe, 1f1b and interleaved (V = 2):
#   bubble  idle fraction of each rank's step window (first span of the step to the end of its
#           last forward/backward), 1 - busy / window, averaged over ranks and the traced steps;
#   bub_step the same over the step's window (its first span on any rank to its last
#           forward/backward on any rank: the formula's definition, where every rank idles
#           through the fill and the drain; the per-rank window leaves out the last stage's drain);
#           both next to the formulas (p-1)/(m+p-1) (GPipe, 1F1B) and (p-1)/(V m) (interleaved), which
#           assume equal stages and free communication
# (--stop-at ends each run without the final evaluation.)
#   memory  stage 0's activation bytes (memory record: the in-flight blocks it allocates)
# Writes benchmarks/out/pipeline_bubble.csv and, for M = TIMELINE_M (8), each schedule's last traced
# step as benchmarks/out/pipeline_timeline_SCHEDULE.csv (benchmarks/plot_pipeline.sh draws both).
# Usage: sh benchmarks/bench_pipeline.sh [STEPS] (from the repository root, after make).
#
# Mode recompute (--recompute true against false): gpt (MODEL, BATCH) and mlp (MLP, MLP_BATCH, on
# Fashion-MNIST) at pp 2, M = 8, 1F1B and GPipe:
#   peak_s0, peak_s1  each stage's peak activation bytes over the first step (the "pipeline_memory"
#                     record: the micro-batches in flight, a block each, or with recompute one
#                     block plus each one's stage input)
#   step_ms           median over REPEATS runs of each run's median step time (steps 2..STEPS;
#                     batch / the train record's samples_per_s), the runs interleaved: every
#                     configuration once per round
# Usage: sh benchmarks/bench_pipeline.sh recompute [STEPS] [REPEATS] (defaults 8, 3).
# BUILDDIR: where paratrain and pt-prep are (default: the repository root).
set -eu
BIN=${BUILDDIR:-.}
MODE=bubble
[ "${1:-}" = recompute ] && { MODE=recompute; shift; }
STEPS=${1:-6}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PY=/usr/bin/python3
W=${BENCH_WORK:-/tmp/bench_pipeline}
mkdir -p "$W"
FMT=$(sed -n 's/^#define PT_DATA_FORMAT_VERSION \([0-9]*\).*/\1/p' include/paratrain/data.h)
LM=$W/kjv-lm16-v$FMT
[ -f "$LM/index.h5" ] || {
    [ -s "$W/kjv.txt" ] || bible -f 'Gen1:1-Rev22:21' >"$W/kjv.txt"
    "$BIN/pt-prep" kjv-lm --src "$W/kjv.txt" --out "$LM" --ctx 16 --shards 2 >/dev/null
}
MODEL=${MODEL:-gpt:layers=4,heads=4,d=128,ctx=16}
BATCH=${BATCH:-64}

if [ "$MODE" = recompute ]; then
    STEPS=${1:-8} REPEATS=${2:-3}
    FM=$W/fmnist-v$FMT
    [ -f "$FM/index.h5" ] || "$BIN/pt-prep" fashion-mnist --src "${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}" \
        --out "$FM" --shards 2 --limit 6000 --val 1000 >/dev/null
    MLP=${MLP:-mlp:784-1024-1024-1024-10}
    MLP_BATCH=${MLP_BATCH:-256}
    echo "# $(lscpu | sed -n 's/^Model name: *//p'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# pp 2, M 8, $STEPS steps (timed: 2..$STEPS), $REPEATS interleaved rounds"
    echo "# gpt: $MODEL, batch $BATCH; mlp: $MLP, batch $MLP_BATCH"
    : >"$W/rc.txt"
    r=1
    while [ $r -le "$REPEATS" ]; do
        for model in gpt mlp; do
            for sched in 1f1b gpipe; do
                for rc in false true; do
                    if [ $model = gpt ]; then args="--data $LM --model $MODEL --batch $BATCH" b=$BATCH
                    else args="--data $FM --model $MLP --batch $MLP_BATCH" b=$MLP_BATCH; fi
                    # shellcheck disable=SC2086
                    mpirun -np 2 --oversubscribe --bind-to none "$BIN/paratrain" train $args \
                        --max-steps 100000 --stop-at "$STEPS" --eval-every 100000 --log-every 1 \
                        --quiet true --pp 2 --micro-batches 8 --pipeline $sched --recompute $rc \
                        --metrics "$W/m.jsonl" >"$W/out" 2>&1 || { cat "$W/out"; exit 1; }
                    peaks=$(sed -n 's/.*"event": "pipeline_memory".*"peak_activation_bytes": \[\([^]]*\)\].*/\1/p' \
                        "$W/m.jsonl" | tr -d ,)
                    ms=$(sed -n 's/.*"event": "train", "step": \([0-9]*\),.*"samples_per_s": \([0-9.]*\),.*/\1 \2/p' \
                        "$W/m.jsonl" | awk -v b=$b '$1 >= 2 { print 1000 * b / $2 }' | sort -g |
                        awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
                    echo "$model $sched $rc $peaks $ms" >>"$W/rc.txt"
                done
            done
        done
        r=$((r + 1))
    done
    printf '%-4s %-6s %-9s %12s %12s %9s  %s\n' model sched recompute peak_s0 peak_s1 step_ms 'runs_ms (in run order)'
    for model in gpt mlp; do
        for sched in 1f1b gpipe; do
            for rc in false true; do
                grep "^$model $sched $rc " "$W/rc.txt" | awk '
                    { v[NR] = $6; runs = runs " " $6; p0 = $4; p1 = $5; m = $1; s = $2; r = $3 }
                    END { for (i = 2; i <= NR; i++) for (j = i; j > 1 && v[j] < v[j - 1]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
                          med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                          printf "%-4s %-6s %-9s %12s %12s %9.1f %s\n", m, s, r, p0, p1, med, runs }'
            done
        done
    done
    echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi
echo "# $(lscpu | sed -n 's/^Model name: *//p'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $MODEL, batch $BATCH, pp 2, $STEPS steps (trace: steps 1..$((STEPS - 1)))"
printf '%-12s %3s %8s %8s %8s %14s\n' schedule M bubble bub_step formula act_bytes_s0
OUT=benchmarks/out
mkdir -p "$OUT"
TL_M=${TIMELINE_M:-8}
echo "schedule,M,bubble,bub_step,formula,act_bytes_s0" >"$OUT/pipeline_bubble.csv"
for sched in gpipe 1f1b interleaved; do
    for M in 1 2 4 8 16; do
        V=1
        [ "$sched" = interleaved ] && V=2
        [ "$sched" = interleaved ] && [ "$M" -lt 2 ] && continue
        mpirun -np 2 --oversubscribe --bind-to none "$BIN/paratrain" train --data "$LM" --model "$MODEL" \
            --batch "$BATCH" --max-steps 100000 --stop-at "$STEPS" --eval-every 100000 --log-every 100000 \
            --quiet true --pp 2 --micro-batches "$M" --pipeline "$sched" --virtual-stages $V \
            --trace "$W/t.json" --trace-steps $((STEPS - 1)) --metrics "$W/m.jsonl" >"$W/out" 2>&1 ||
            { cat "$W/out"; exit 1; }
        act=$(sed -n 's/.*"event": "memory".*"activation_bytes": \([0-9]*\).*/\1/p' "$W/m.jsonl")
        tl=""
        [ "$M" = "$TL_M" ] && tl=$OUT/pipeline_timeline_$sched.csv
        $PY - "$W/t.json" "$sched" "$M" "$V" "$act" "$OUT/pipeline_bubble.csv" "$tl" <<'PYEOF'
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X"]
sched, M, V, act = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
csv_path, tl_path = sys.argv[6], sys.argv[7]
p = 2
skip = ("update", "dp allreduce", "embedding allreduce", "wait sends")
idle, idle_step = [], []
for st in sorted({e["args"]["step"] for e in ev}):
    es_all = [e for e in ev if e["args"]["step"] == st and e["name"] not in skip]
    comp_all = [e for e in es_all if e["cat"] == "compute"]
    if not comp_all:
        continue
    # the step's window: its first span on any rank to its last forward/backward on any rank
    # (the formula's definition: every rank idles through the fill and the drain)
    s0 = min(e["ts"] for e in es_all)
    s1 = max(e["ts"] + e["dur"] for e in comp_all)
    for r in sorted({e["pid"] for e in es_all}):
        es = [e for e in es_all if e["pid"] == r]
        comp = [e for e in es if e["cat"] == "compute"]
        if not comp:
            continue
        # the rank's own window: its first span to its own last forward/backward
        t0 = min(e["ts"] for e in es)
        t1 = max(e["ts"] + e["dur"] for e in comp)
        busy = sum(e["dur"] for e in comp)
        idle.append(1 - busy / (t1 - t0))
        idle_step.append(1 - busy / (s1 - s0))
f = (p - 1) / (V * M) if sched == "interleaved" else (p - 1) / (M + p - 1)
b, bs = sum(idle) / len(idle), sum(idle_step) / len(idle_step)
print("%-12s %3d %8.3f %8.3f %8.3f %14s" % (sched, M, b, bs, f, act))
with open(csv_path, "a") as out:
    out.write("%s,%d,%.4f,%.4f,%.4f,%s\n" % (sched, M, b, bs, f, act))
if tl_path:  # the last traced step's spans, for benchmarks/plot_pipeline.sh's timeline
    last = max(e["args"]["step"] for e in ev)
    es = [e for e in ev if e["args"]["step"] == last]
    t0 = min(e["ts"] for e in es)
    with open(tl_path, "w") as out:
        out.write("rank,name,cat,mb,chunk,start_ms,dur_ms\n")
        for e in sorted(es, key=lambda e: (e["pid"], e["ts"])):
            a = e["args"]
            out.write("%d,%s,%s,%d,%d,%.3f,%.3f\n" % (e["pid"], e["name"].replace(",", " "), e["cat"],
                      a.get("mb", -1), a.get("chunk", 0), (e["ts"] - t0) / 1e3, e["dur"] / 1e3))
PYEOF
    done
done
