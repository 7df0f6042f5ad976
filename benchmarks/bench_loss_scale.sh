#!/bin/sh
# Loss scaling against fp16 gradient underflow (issue 17; docs/MIXED_PRECISION.md):
#
#   benchmarks/bench_loss_scale.sh underflow [EPOCHS]   (EPOCHS default 3)
#
# mlp 784-512-512-10 on Fashion-MNIST, 2 ranks x 1 thread, the same recipe and seed, in fp32,
# fp16 --loss-scale none, fp16 dynamic, and fp16 with static scales below 1 (SCALES, default
# "1e-3 1e-4 1e-5 0.65536"): a scale s < 1 multiplies every backward gradient by s before its
# 16-bit conversion (and divides the parameter gradients by s again after), so it stands for a
# model whose backward gradients are s times smaller (the update unchanged), where underflow
# really bites. 0.65536 = 1e-5 x 2^16 is what dynamic scaling (2^16 from the start; no overflow
# and no growth within 2000 steps here) makes of the 1e-5 case. PT_LOWP_STATS=1 counts the
# conversions (rank 0's, all train records summed). Prints a table and writes
# benchmarks/out/loss_scale.csv (test accuracy, final train loss, flushed / subnormal fractions,
# skipped steps, CPU, load average before and after each run). 10-20 s per run on 2 cores.
# MODEL=... another mlp; SEED=... (11); SCALES="" no static runs; TAG=name writes loss_scale-name.csv and
# lscale-name-* instead (so that a second model does not overwrite the first).
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
[ "${1:-}" = underflow ] || { echo "usage: $0 underflow [EPOCHS]" >&2; exit 2; }
EPOCHS=${2:-3}
SCALES=${SCALES-1e-3 1e-4 1e-5 0.65536}
MODEL=${MODEL:-mlp:784-512-512-10}
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
CSV=$OUT/loss_scale${TAG:+-$TAG}.csv
echo "name,precision,loss_scale,epochs,test_accuracy,final_train_loss,grad16_nonzero,flushed_fraction,subnormal_fraction,skipped,cpu,load_before,load_after" >"$CSV"
run() { # name precision loss_scale
    m=$OUT/lscale${TAG:+-$TAG}-$1.jsonl ck=$OUT/lscale${TAG:+-$TAG}-$1.ckpt
    rm -rf "$m" "$ck"
    l0=$(cut -d' ' -f1 /proc/loadavg)
    PT_LOWP_STATS=1 OMP_NUM_THREADS=1 timeout 600 mpirun -np 2 --oversubscribe --bind-to none \
        -x OMP_NUM_THREADS -x PT_LOWP_STATS ./paratrain train --data "$DATA" --model "$MODEL" \
        --batch 128 --epochs "$EPOCHS" --optimizer momentum --lr 0.05 --schedule cosine \
        --warmup-steps 100 --seed "${SEED:-11}" --precision "$2" --loss-scale "$3" --log-every 50 \
        --eval-every 100000 --ckpt-dir "$ck" --metrics "$m" --quiet true >"$OUT/lscale${TAG:+-$TAG}-$1.out" 2>&1 ||
        { tail -5 "$OUT/lscale${TAG:+-$TAG}-$1.out"; echo "$1: training failed" >&2; }
    l1=$(cut -d' ' -f1 /proc/loadavg)
    skipped=$(./pt-ckpt info "$ck" 2>/dev/null | sed -n 's/^  loss_scale_skipped  *//p')
    $PY - "$m" "$1" "$2" "$3" "$EPOCHS" "${skipped:-0}" "$CPU" "$l0" "$l1" >>"$CSV" <<'PY'
import json, sys
m, name, p, ls, ep, skipped, cpu, l0, l1 = sys.argv[1:]
recs = [json.loads(l) for l in open(m)]
tr = [r for r in recs if r["event"] == "train"]
test = [r for r in recs if r["event"] == "eval" and r["split"] == "test"]
acc = "%.4f" % test[-1]["accuracy"] if test else "nan"
nz = sum(r.get("grad16_nonzero", 0) for r in tr)
fl = sum(r.get("grad16_nonzero", 0) * r.get("grad16_flushed_fraction", 0) for r in tr)
sb = sum(r.get("grad16_nonzero", 0) * r.get("grad16_subnormal_fraction", 0) for r in tr)
f = lambda x: "%.4g" % (x / nz) if nz else ""
print(",".join([name, p, ls, ep, acc, "%.4f" % tr[-1]["loss"] if tr else "nan", str(nz), f(fl),
                f(sb), skipped, '"%s"' % cpu, l0, l1]))
PY
}
run fp32 fp32 none
run fp16-none fp16 none
run fp16-dynamic fp16 dynamic
for s in $SCALES; do run "fp16-static-$s" fp16 "$s"; done
$PY - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("%-18s %-9s %-8s %9s %10s %9s %10s %7s" % ("run", "precision", "scale", "test_acc", "train_loss",
      "flushed", "subnormal", "skipped"))
for r in rows:
    print("%-18s %-9s %-8s %9s %10s %9s %10s %7s" % (r["name"], r["precision"], r["loss_scale"],
          r["test_accuracy"], r["final_train_loss"], r["flushed_fraction"] or "-",
          r["subnormal_fraction"] or "-", r["skipped"]))
PY
