#!/bin/sh
# MLP 784-1024-1024-10, batch 128, SGD momentum: training samples/s of paratrain next to PyTorch,
# same model, batch and total thread count (2), measured interleaved in one run, REPEATS times.
# Prints a table of medians and ratios; writes every sample to benchmarks/out/mlp_throughput.csv.
#
#   benchmarks/bench_mlp_throughput.sh [REPEATS]      (needs scripts/install-deps.sh --bench)
#
# paratrain's figure is the `end` record's samples_per_s: step time only (reading the batch from
# HDF5, forward, backward, allreduce, update), after a 30-step warm-up run is discarded.
set -eu
cd "$(dirname "$0")/.."
REPEATS=${1:-5}
STEPS=${STEPS:-400}
OUT=benchmarks/out
mkdir -p "$OUT"
CSV=$OUT/mlp_throughput.csv
. benchmarks/common.sh

echo "config,repeat,samples_per_s" >"$CSV"
for r in $(seq 1 "$REPEATS"); do
    echo "paratrain_1rank_2threads,$r,$(pt_samples_per_s 1 2 128)" >>"$CSV"
    echo "paratrain_2ranks_1thread,$r,$(pt_samples_per_s 2 1 128)" >>"$CSV"
    echo "pytorch_2threads_passive,$r,$(torch_samples_per_s 2 128 PASSIVE)" >>"$CSV"
    echo "pytorch_2threads_active,$r,$(torch_samples_per_s 2 128 ACTIVE)" >>"$CSV"
done

$PY - "$CSV" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["config"], []).append(float(r["samples_per_s"]))
med = {k: statistics.median(v) for k, v in by.items()}
best_torch = max(med["pytorch_2threads_passive"], med["pytorch_2threads_active"])
print(f"| configuration | median samples/s | min | max | vs best PyTorch |")
print(f"|---|---:|---:|---:|---:|")
for k, v in by.items():
    print(f"| {k} | {med[k]:.0f} | {min(v):.0f} | {max(v):.0f} | {med[k] / best_torch:.2f}x |")
PYEOF
