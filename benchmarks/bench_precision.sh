#!/bin/sh
# Mixed-precision parity (issue 17; docs/MIXED_PRECISION.md): Fashion-MNIST test accuracy of an
# MLP trained data parallel on 2 ranks in fp32, bf16, fp16 (dynamic loss scaling) and fp16
# without loss scaling, the same recipe and seed; prints a table (test accuracy and its
# difference to fp32, final validation loss, steps skipped for fp16 overflows, samples/s, the
# lowp GEMM variant) and writes benchmarks/out/precision.csv with the CPU model and the load
# average before and after each run.
#
#   benchmarks/bench_precision.sh [EPOCHS]      (EPOCHS default 3; ~1 min per run on 2 cores)
#   benchmarks/bench_precision.sh speed [REPS]  throughput only: mlp 784-1024-1024-10, 1 rank x
#       2 threads, batch 128, 200 steps, fp32 / bf16 / fp16 interleaved REPS times (default 3);
#       median, min, max samples/s into benchmarks/out/precision_speed.csv
# Throughput here is one run per row, on a shared machine: read it as indicative only. On a CPU
# without bf16/fp16 instructions lowp.h's fallback converts to fp32 first, so bf16/fp16 are
# slower than fp32 there; the accuracy columns are the point.
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
if [ "${1:-}" = speed ]; then
    REPS=${2:-3} STEPS=200
    CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    RAW=$OUT/precision_speed_raw.txt
    : >"$RAW"
    l0=$(cut -d' ' -f1 /proc/loadavg)
    for r in $(seq "$REPS"); do
        for p in fp32 bf16 fp16; do
            echo "$p $(pt_samples_per_s 1 2 128 --precision $p)" >>"$RAW"
        done
    done
    l1=$(cut -d' ' -f1 /proc/loadavg)
    $PY - "$RAW" "$CPU" "$l0" "$l1" "$OUT/precision_speed.csv" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    p, v = line.split()
    runs.setdefault(p, []).append(float(v))
ref = statistics.median(runs["fp32"])
with open(sys.argv[5], "w") as f:
    f.write("precision,median,min,max,ratio_to_fp32,runs,cpu,load_before,load_after\n")
    print(f"CPU: {sys.argv[2]}, load {sys.argv[3]} -> {sys.argv[4]}")
    print("| precision | median samples/s | min | max | vs fp32 |")
    print("|---|---:|---:|---:|---:|")
    for p, v in runs.items():
        med = statistics.median(v)
        f.write(f'{p},{med:.0f},{min(v):.0f},{max(v):.0f},{med / ref:.3f},{len(v)},"{sys.argv[2]}",{sys.argv[3]},{sys.argv[4]}\n')
        print(f"| {p} | {med:.0f} | {min(v):.0f} | {max(v):.0f} | {med / ref:.2f}x |")
PY
    exit 0
fi
EPOCHS=${1:-3}
CSV=$OUT/precision.csv
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
MODEL=mlp:784-512-512-10
echo "name,precision,loss_scale,epochs,test_accuracy,val_loss,skipped,final_scale,samples_per_s,variant,cpu,load_before,load_after" >"$CSV"
run() { # name precision loss-scale
    name=$1 prec=$2 ls=$3
    m=$OUT/prec-$name.jsonl ck=$OUT/prec-$name.ckpt
    rm -rf "$ck" "$m"
    l0=$(cut -d' ' -f1 /proc/loadavg)
    OMP_NUM_THREADS=1 timeout 1200 mpirun -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS \
        ./paratrain train --data "$DATA" --model $MODEL --batch 128 --epochs "$EPOCHS" \
        --optimizer momentum --lr 0.05 --schedule cosine --warmup-steps 100 --seed 11 \
        --precision "$prec" ${ls:+--loss-scale "$ls"} --metrics "$m" --ckpt-dir "$ck" \
        >"$OUT/prec-$name.out" 2>&1
    l1=$(cut -d' ' -f1 /proc/loadavg)
    variant=$(sed -n 's/.*GEMM kernel \([a-z0-9]*\).*/\1/p' "$OUT/prec-$name.out" | head -1)
    skipped=$(./pt-ckpt info "$ck" | sed -n 's/^  loss_scale_skipped  *//p')
    scale=$(./pt-ckpt info "$ck" | sed -n 's/^  loss_scale  *//p')
    $PY - "$m" "$name,$prec,${ls:-default},$EPOCHS" "${skipped:-0},${scale:-1}" "${variant:-sgemm}" \
        "$CPU" "$l0" "$l1" >>"$CSV" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
test = [r for r in recs if r["event"] == "eval" and r["split"] == "test"][-1]
val = [r for r in recs if r["event"] == "eval" and r["split"] == "val"][-1]
end = [r for r in recs if r["event"] == "end"][-1]
print(f'{sys.argv[2]},{test["accuracy"]:.4f},{val["loss"]:.4f},{sys.argv[3]},'
      f'{end["samples_per_s"]:.0f},{sys.argv[4]},"{sys.argv[5]}",{sys.argv[6]},{sys.argv[7]}')
PY
}
run fp32 fp32 ""
run bf16 bf16 ""
run fp16-dynamic fp16 dynamic
run fp16-noscale fp16 none
$PY - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ref = float(rows[0]["test_accuracy"])
print(f'CPU: {rows[0]["cpu"]}')
print("| run | loss scale | epochs | test accuracy | vs fp32 (points) | val loss | skipped steps | final scale | samples/s | GEMM | load before/after |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for r in rows:
    d = 100 * (float(r["test_accuracy"]) - ref)
    print(f'| {r["name"]} | {r["loss_scale"]} | {r["epochs"]} | {r["test_accuracy"]} | {d:+.2f} | {r["val_loss"]} | '
          f'{r["skipped"]} | {r["final_scale"]} | {r["samples_per_s"]} | {r["variant"]} | {r["load_before"]}/{r["load_after"]} |')
PY
