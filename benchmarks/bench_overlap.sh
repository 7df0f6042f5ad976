#!/bin/sh
# Gradient buckets overlapped with backward, and ZeRO-1, at 2 ranks x 1 thread: MLP
# 784-1024-1024-1024-1024-10 by default (MODEL=...; 15.6 MiB of gradients, three 4 MiB layers, so
# bucket sizes of 1-16 MiB cut it differently), global batch 128, SGD momentum. For each bucket size: samples/s, per-step gradient communication span (first
# bucket start to last completion), the part the step spent in collective calls or waiting
# (exposed), the overlap share the trainer reports (1 - exposed/span, an upper bound), the
# communication actually hidden (1 - exposed / exposed without buckets) and the step time against
# no buckets. All configurations interleaved, REPEATS
# times; medians.     benchmarks/bench_overlap.sh [REPEATS]
set -eu
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
STEPS=${STEPS:-300}
OUT=benchmarks/out
mkdir -p "$OUT"
CSV=$OUT/overlap.csv
MODEL=${MODEL:-mlp:784-1024-1024-1024-1024-10}
. benchmarks/common.sh
field() { sed -n "s/.*\"$1\": \\([0-9.e+-]*\\).*/\\1/p" "$PT_LAST_END"; }
echo "zero,bucket_mb,repeat,samples_per_s,steps,comm_span_s,comm_exposed_s,hidden" >"$CSV"
for r in $(seq 1 "$REPEATS"); do
    for zero in 0 1; do
        [ $zero = 1 ] && bs="0" || bs="0 1 4 8 16"
        for b in $bs; do
            sps=$(pt_samples_per_s 2 1 128 --zero $zero --bucket-mb $b)
            echo "$zero,$b,$r,$sps,$STEPS,$(field grad_comm_span_s),$(field grad_comm_exposed_s),$(field grad_comm_overlap)" >>"$CSV"
        done
    done
done
MODEL=$MODEL $PY - "$CSV" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((r["zero"], r["bucket_mb"]), []).append(r)
import os
print(f"2 ranks x 1 thread, {os.environ.get('MODEL')}, batch 128; medians of {len(rows) // len(by)} interleaved repeats")
print("| ZeRO | bucket MiB | samples/s | step ms | grad comm span ms/step | exposed ms/step | overlap (trainer) | hidden vs no buckets | step time vs no buckets |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (z, b), rs in by.items():
    sps = statistics.median(float(x["samples_per_s"]) for x in rs)
    base = statistics.median(float(x["samples_per_s"]) for x in by[(z, "0")])
    steps = float(rs[0]["steps"])
    span = statistics.median(float(x["comm_span_s"]) for x in rs) / steps * 1e3
    exp = statistics.median(float(x["comm_exposed_s"]) for x in rs) / steps * 1e3
    hid = statistics.median(float(x["hidden"]) for x in rs)
    exp0 = statistics.median(float(x["comm_exposed_s"]) for x in by[(z, "0")]) / steps * 1e3
    print(f"| {z} | {b} | {sps:.0f} | {128e3 / sps:.2f} | {span:.2f} | {exp:.2f} | {hid:.2f} | {1 - exp / exp0:+.2f} | {base / sps:.3f} |")
PYEOF
