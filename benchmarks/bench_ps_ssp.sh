#!/bin/sh
# SSP against BSP with an intermittent straggler (issue 15; the setting of Ho et al. 2013, where
# stragglers vary: a worker is slow for a while, then fast). Fashion-MNIST mlp, 1 server + 3
# workers on this machine's cores (oversubscribed: 4 ranks), and in every step ONE worker is slow
# by (K - 1) x the measured BSP step time, in turn:
#   PT_FAULT_INJECT=slow:1:MS:3:0,slow:2:MS:3:1,slow:3:MS:3:2   (worker w slow when step % 3 == w)
# so each worker is K x slower one step in three. BSP waits for the slow worker in every step;
# SSP with bound s >= 2 lets the others run ahead while one is slow and catches up when it is fast.
# (A worker slow in EVERY step, benchmarks/bench_ps.sh, gives SSP nothing: once the others are s
# clocks ahead they wait for it each step, as BSP does.)
# Part 1: throughput, REPS interleaved rounds of every sync mode at STEPS steps (medians, min,
# max). Part 2: time to accuracy: bsp, ssp:3 and asp trained for each of LENGTHS steps (a fresh run
# per length, since ASP/SSP evaluate only at the end), test accuracy against wall-clock.
# Writes benchmarks/out/ps_ssp.csv and benchmarks/out/ps_ssp_tta.csv; prints markdown tables.
#
#   benchmarks/bench_ps_ssp.sh    (K=4 REPS=3 STEPS=600 LENGTHS="1200 2400 3600")
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
K=${K:-4} REPS=${REPS:-3} STEPS=${STEPS:-600}
LENGTHS=${LENGTHS-1200 2400 3600}
SYNCS=${SYNCS:-bsp ssp:1 ssp:3 ssp:10 asp}
MODEL=${MODEL:-mlp:784-256-10}
flags="--data $DATA --model $MODEL --batch 96 --optimizer sgd --lr 0.1 --eval-every 1000000
       --log-every 1000000 --quiet true --validate-data false --ps-servers 1"
run() { # metrics-file steps sync
    rm -f "$1" "$1".worker*
    # shellcheck disable=SC2086
    timeout 1800 mpirun -np 4 --oversubscribe --bind-to none -x OMP_NUM_THREADS -x PT_FAULT_INJECT \
        ./paratrain train $flags --max-steps "$2" --ps-sync "$3" --metrics "$1" >/dev/null 2>&1
}
row() { # metrics-file -> wall_s,test_accuracy,samples_per_s,staleness_max
    $PY - "$1" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
end = [r for r in recs if r["event"] == "end"][-1]
ps = [r for r in recs if r["event"] == "ps"]
print(f'{end["train_seconds"]:.2f},{end["test_accuracy"]:.4f},{end["samples_per_s"]:.0f},'
      f'{ps[-1]["staleness_max"] if ps else 0}')
PY
}
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
export PT_FAULT_INJECT=
run "$OUT/ps-ssp-base.jsonl" 200 bsp
base_ms=$($PY -c "
import json
e=[json.loads(l) for l in open('$OUT/ps-ssp-base.jsonl') if '\"end\"' in l][-1]
print(f'{1000*e[\"train_seconds\"]/e[\"step\"]:.1f}')")
ms=$(awk -v b="$base_ms" -v k="$K" 'BEGIN { printf "%d", (k - 1) * b + 0.5 }')
export PT_FAULT_INJECT="slow:1:$ms:3:0,slow:2:$ms:3:1,slow:3:$ms:3:2"
echo "BSP step without a straggler: $base_ms ms; straggler: one worker in turn sleeps $ms ms ($K x) per step"
CSV=$OUT/ps_ssp.csv
echo "rep,sync,steps,wall_s,test_accuracy,samples_per_s,staleness_max" >"$CSV"
r=1
while [ "$r" -le "$REPS" ]; do
    for sync in $SYNCS; do
        m="$OUT/ps-ssp-$sync.jsonl"
        run "$m" "$STEPS" "$sync" && echo "$r,$sync,$STEPS,$(row "$m")" >>"$CSV"
    done
    r=$((r + 1))
done
echo "load after part 1: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
syncs = list(dict.fromkeys(r["sync"] for r in rows))
med = {s: statistics.median(float(r["samples_per_s"]) for r in rows if r["sync"] == s) for s in syncs}
print("| sync | runs | samples/s median | min | max | vs bsp | max staleness |")
print("|---|---:|---:|---:|---:|---:|---:|")
for s in syncs:
    v = [float(r["samples_per_s"]) for r in rows if r["sync"] == s]
    st = max(int(r["staleness_max"]) for r in rows if r["sync"] == s)
    print(f"| {s} | {len(v)} | {med[s]:.0f} | {min(v):.0f} | {max(v):.0f} | {med[s] / med['bsp']:.2f}x | {st} |")
PY
[ -n "$LENGTHS" ] || exit 0
TTA=$OUT/ps_ssp_tta.csv
echo "sync,steps,wall_s,test_accuracy,samples_per_s,staleness_max" >"$TTA"
for steps in $LENGTHS; do
    for sync in bsp ssp:3 asp; do
        m="$OUT/ps-ssp-tta-$sync.jsonl"
        run "$m" "$steps" "$sync" && echo "$sync,$steps,$(row "$m")" >>"$TTA"
    done
done
echo "load after part 2: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| sync | steps | wall (s) | test accuracy |"
echo "|---|---:|---:|---:|"
tail -n +2 "$TTA" | sort -t, -k1,1 -k2,2n | awk -F, '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
