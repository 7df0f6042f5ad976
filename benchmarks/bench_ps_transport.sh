#!/bin/sh
# The parameter server's two transports side by side (issue 15): BSP, no straggler, p2p
# (MPI_Isend/Irecv) against rma (MPI_Put/MPI_Get into the servers' windows, zero-byte notes),
# REPS interleaved rounds, for a small and a large mlp at S = 1 (W = 3) and S = 2 (W = 2), 4 ranks
# (oversubscribed on 2 cores). samples/s of the end record (steps only), medians with min and max,
# and the ratio rma / p2p per configuration. Writes benchmarks/out/ps_transport.csv.
#   benchmarks/bench_ps_transport.sh    (REPS=5 STEPS=200)
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
REPS=${REPS:-5} STEPS=${STEPS:-200}
CSV=$OUT/ps_transport.csv
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rep,model,servers,transport,samples_per_s" >"$CSV"
r=1
while [ "$r" -le "$REPS" ]; do
    for model in mlp:784-256-10 mlp:784-1024-1024-10; do
        for S in 1 2; do
            for tr in p2p rma; do
                m=$OUT/ps-transport.jsonl
                rm -f "$m"
                timeout 600 mpirun -np 4 --oversubscribe --bind-to none -x OMP_NUM_THREADS ./paratrain train \
                    --data "$DATA" --model "$model" --batch 96 --optimizer momentum --lr 0.05 --max-steps "$STEPS" \
                    --eval-every 1000000 --log-every 1000000 --quiet true --validate-data false \
                    --ps-servers "$S" --ps-transport "$tr" --metrics "$m" >/dev/null 2>&1 || continue
                v=$(sed -n 's/.*"event": "end".*"samples_per_s": \([0-9.]*\).*/\1/p' "$m")
                echo "$r,$model,$S,$tr,$v" >>"$CSV"
            done
        done
    done
    r=$((r + 1))
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = list(dict.fromkeys((r["model"], r["servers"]) for r in rows))
print("| model | S + W | p2p samples/s (median, min-max) | rma samples/s (median, min-max) | rma / p2p (median of rounds) |")
print("|---|---|---:|---:|---:|")
for mo, S in keys:
    v = {t: {r["rep"]: float(r["samples_per_s"]) for r in rows if (r["model"], r["servers"], r["transport"]) == (mo, S, t)} for t in ("p2p", "rma")}
    cell = lambda x: f"{statistics.median(x):.0f} ({min(x):.0f}-{max(x):.0f})" if x else "-"
    ratios = [v["rma"][k] / v["p2p"][k] for k in v["p2p"] if k in v["rma"]]
    print(f"| {mo} | {S} + {4 - int(S)} | {cell(list(v['p2p'].values()))} | {cell(list(v['rma'].values()))} | "
          f"{statistics.median(ratios):.2f}x |" if ratios else "| - |")
PY
