#!/bin/sh
# Strong and weak scaling of data-parallel training (MLP 784-1024-1024-10, SGD momentum) on this
# machine, next to PyTorch: single process (2 threads) and DistributedDataParallel with gloo.
# All configurations interleaved, REPEATS times; medians. 4 ranks on 2 cores are OVERSUBSCRIBED.
#   strong: global batch 128 whatever the ranks;  weak: 64 samples per rank per step.
#   benchmarks/bench_scaling.sh [REPEATS]     (needs scripts/install-deps.sh --bench)
set -eu
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
STEPS=${STEPS:-300}
OUT=benchmarks/out
mkdir -p "$OUT"
CSV=$OUT/scaling.csv
. benchmarks/common.sh

ddp() { $PY benchmarks/torch_ddp_mlp.py --procs "$1" --threads 1 --batch "$2" --steps "$STEPS" | sed -n 's/samples_per_s=//p'; }

echo "kind,config,ranks,global_batch,repeat,samples_per_s" >"$CSV"
for r in $(seq 1 "$REPEATS"); do
    echo "strong,paratrain 1x1,1,128,$r,$(pt_samples_per_s 1 1 128)" >>"$CSV"
    echo "strong,paratrain 1x2,1,128,$r,$(pt_samples_per_s 1 2 128)" >>"$CSV"
    echo "strong,paratrain 2x1,2,128,$r,$(pt_samples_per_s 2 1 128 --bucket-mb 0)" >>"$CSV"
    echo "strong,paratrain 2x1 buckets 1 MiB,2,128,$r,$(pt_samples_per_s 2 1 128 --bucket-mb 1)" >>"$CSV"
    echo "strong,paratrain 2x1 ZeRO-1,2,128,$r,$(pt_samples_per_s 2 1 128 --zero 1)" >>"$CSV"
    echo "strong,paratrain 2x1 reproducible,2,128,$r,$(pt_samples_per_s 2 1 128 --reproducible)" >>"$CSV"
    echo "strong,paratrain 1x1 reproducible,1,128,$r,$(pt_samples_per_s 1 1 128 --reproducible)" >>"$CSV"
    echo "strong,paratrain 4x1 (oversubscribed),4,128,$r,$(pt_samples_per_s 4 1 128)" >>"$CSV"
    echo "strong,pytorch 1x2,1,128,$r,$(torch_samples_per_s 2 128)" >>"$CSV"
    echo "strong,pytorch DDP gloo 2x1,2,128,$r,$(ddp 2 128)" >>"$CSV"
    echo "weak,paratrain 1x1,1,64,$r,$(pt_samples_per_s 1 1 64)" >>"$CSV"
    echo "weak,paratrain 2x1,2,128,$r,$(pt_samples_per_s 2 1 128)" >>"$CSV"
    echo "weak,paratrain 4x1 (oversubscribed),4,256,$r,$(pt_samples_per_s 4 1 256)" >>"$CSV"
    echo "weak,pytorch DDP gloo 2x1,2,128,$r,$(ddp 2 128)" >>"$CSV"
done
$PY - "$CSV" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for r in rows:
    med.setdefault((r["kind"], r["config"], int(r["ranks"]), int(r["global_batch"])), []).append(float(r["samples_per_s"]))
for kind in ("strong", "weak"):
    base = statistics.median(med[(kind, "paratrain 1x1", 1, 128 if kind == "strong" else 64)])
    print(f"\n{kind} scaling (samples/s, median of {len(next(iter(med.values())))}); efficiency = samples/s / (ranks x paratrain 1x1)")
    print("| configuration | ranks | global batch | median samples/s | min | max | efficiency |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (k, c, p, b), v in med.items():
        if k != kind:
            continue
        m = statistics.median(v)
        print(f"| {c} | {p} | {b} | {m:.0f} | {min(v):.0f} | {max(v):.0f} | {m / (p * base):.2f} |")
PYEOF
