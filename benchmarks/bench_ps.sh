#!/bin/sh
# Parameter server with a straggler (issue 15; Ho et al. 2013's claim): Fashion-MNIST mlp, 1
# server + 3 workers on this machine's cores (oversubscribed: 4 ranks, marked in the table), world
# rank 2 (worker 1) slowed 2x and 4x with PT_FAULT_INJECT=slow:2:MS, MS = (k - 1) x the measured
# BSP step time without a straggler. For BSP, ASP and SSP s in {1, 3, 10}, each trained for every
# length in $LENGTHS steps (a fresh run per length: ASP/SSP evaluate only at the end): test
# accuracy against steps and against wall-clock (train_seconds of the end record), samples/s.
# Writes benchmarks/out/ps.csv and prints a markdown table. Then (SCALING=1, the default) BSP
# throughput without a straggler against S in {1, 2} at W = 2, next to data parallel on the 2
# workers alone (benchmarks/out/ps_scaling.csv).
#
#   benchmarks/bench_ps.sh                  (LENGTHS="150 300 600" SLOW="2 4": ~5 min on 2 cores)
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LENGTHS=${LENGTHS-150 300 600}
SLOW=${SLOW-2 4}
SYNCS=${SYNCS-bsp asp ssp:1 ssp:3 ssp:10}
MODEL=${MODEL:-mlp:784-256-10}
CSV=$OUT/ps.csv
flags="--data $DATA --model $MODEL --batch 96 --optimizer sgd --lr 0.1 --eval-every 1000000
       --log-every 1000000 --quiet true --validate-data false --ps-servers 1"
run() { # metrics-file steps sync [env]
    m=$1 steps=$2 sync=$3
    rm -f "$m" "$m".worker*
    # shellcheck disable=SC2086
    mpirun -np 4 --oversubscribe --bind-to none -x OMP_NUM_THREADS -x PT_FAULT_INJECT ./paratrain train \
        $flags --max-steps "$steps" --ps-sync "$sync" --metrics "$m" >/dev/null 2>&1
}
export PT_FAULT_INJECT=
run "$OUT/ps-base.jsonl" 200 bsp
base_ms=$($PY -c "
import json,sys
e=[json.loads(l) for l in open('$OUT/ps-base.jsonl') if '\"end\"' in l][-1]
print(f'{1000*e[\"train_seconds\"]/e[\"step\"]:.1f}')")
echo "BSP step time without a straggler: $base_ms ms (1 server + 3 workers, $MODEL, batch 96)"
[ -z "$SLOW" ] || echo "slowdown,slow_ms,sync,steps,wall_s,test_accuracy,samples_per_s,staleness_max,pushes" >"$CSV"
for k in $SLOW; do
    ms=$(awk -v b="$base_ms" -v k="$k" 'BEGIN { printf "%d", (k - 1) * b + 0.5 }')
    export PT_FAULT_INJECT="slow:2:$ms"
    for sync in $SYNCS; do
        for steps in $LENGTHS; do
            m="$OUT/ps-$k-$sync-$steps.jsonl"
            run "$m" "$steps" "$sync"
            $PY - "$m" "$k" "$ms" "$sync" "$steps" >>"$CSV" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
end = [r for r in recs if r["event"] == "end"][-1]
ps = [r for r in recs if r["event"] == "ps"]
smax = ps[-1]["staleness_max"] if ps else 0
push = ps[-1]["pushes_applied"] if ps else 3 * end["step"]
print(f'{sys.argv[2]},{sys.argv[3]},{sys.argv[4]},{sys.argv[5]},{end["train_seconds"]:.2f},'
      f'{end["test_accuracy"]:.4f},{end["samples_per_s"]:.0f},{smax},{push}')
PY
        done
    done
done
[ -z "$SLOW" ] || $PY - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| straggler | sync | steps | wall (s) | test accuracy | samples/s | max staleness |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(f'| {r["slowdown"]}x ({r["slow_ms"]} ms) | {r["sync"]} | {r["steps"]} | {r["wall_s"]} | '
          f'{r["test_accuracy"]} | {r["samples_per_s"]} | {r["staleness_max"]} |')
PY

[ "${SCALING:-1}" = 1 ] || exit 0
export PT_FAULT_INJECT=
SC=$OUT/ps_scaling.csv
echo "mode,ranks,steps,samples_per_s,train_s" >"$SC"
for rep in 1 2; do
    for mode in dp ps1 ps2; do
        m="$OUT/ps-scaling-$mode.jsonl"
        case $mode in
        dp) np=2 extra="" ;;
        ps1) np=3 extra="--ps-servers 1" ;;
        ps2) np=4 extra="--ps-servers 2" ;;
        esac
        # shellcheck disable=SC2086
        mpirun -np $np --oversubscribe --bind-to none -x OMP_NUM_THREADS ./paratrain train \
            $(echo "$flags" | sed 's/--ps-servers 1//') $extra --max-steps 300 --metrics "$m" >/dev/null 2>&1
        $PY - "$m" "$mode" "$np" >>"$SC" <<'PY'
import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if '"end"' in l][-1]
print(f'{sys.argv[2]},{sys.argv[3]},{e["step"]},{e["samples_per_s"]:.0f},{e["train_seconds"]:.2f}')
PY
    done
done
echo
echo "| mode (W = 2 workers) | ranks | samples/s (2 repeats) |"
echo "|---|---:|---|"
for mode in dp ps1 ps2; do
    echo "| $mode | $(grep "^$mode," "$SC" | head -1 | cut -d, -f2) | $(grep "^$mode," "$SC" | cut -d, -f4 | tr '\n' ' ') |"
done
