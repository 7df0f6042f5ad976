#!/bin/sh
# 16-bit conv2d (issue 17; kernels/cpu/conv_lowp.c) against fp32 and against the emulated 16-bit
# conv2d it replaced, on this machine (run from the build directory, through a benchmarks/ copy or
# symlink, as the other scripts):
#  1. kernels: pt-bench-conv-lowp --reps REPS (every method in turn per shape and phase; ms per
#     call of the cnn's and resnet's conv layers at batch 128, fp32 direct/im2col and 16-bit on
#     every lowp variant this CPU runs); median per row into benchmarks/out/conv_lowp_kernels.csv
#     (KTHREADS threads, default THREADS; CLOCK=cpu with KTHREADS=1 times CPU time, for a machine
#     whose load makes wall time count other processes' time slices); SKIP_TRAIN=1 stops here;
#  2. training: MODEL (default cnn:c1=32,c2=64,hidden=512), 1 rank x THREADS (2) threads, batch
#     128, STEPS (40) steps, samples/s of the `end` record; fp32, bf16 and fp16 of this build and,
#     when OLD names a paratrain binary built before the change (main 95f040d: conv2d emulated by
#     rounding to 16 bits and running the fp32 kernels), its bf16 and fp16; interleaved REPS times
#     (default 3), median, min, max into benchmarks/out/conv_lowp_train.csv. bf16 runs with
#     PT_LOWP_GEMM=${BF16_VARIANT:-auto}; the variant each run used is read from its output
#     (fp32 runs print none: the column says sgemm). TRAIN_CLOCK=cpu (with THREADS=1): samples
#     per CPU second (user + sys of mpirun and the rank, start-up and evaluation included, which
#     pulls every ratio toward 1) instead of the `end` record's wall-clock samples/s.
# The CPU model and the load average before and after are printed and kept in the CSVs. At normal
# priority (timing); on a shared machine read single runs as indicative only.
#   OLD=/path/to/old/paratrain benchmarks/bench_conv_lowp.sh [REPS]
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
REPS=${1:-3} STEPS=${STEPS:-40} THREADS=${THREADS:-2}
MODEL=${MODEL:-cnn:c1=32,c2=64,hidden=512}
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
l0=$(cut -d' ' -f1 /proc/loadavg)

# 1. kernels
[ -x ./pt-bench-conv-lowp ] || { echo "build first: make pt-bench-conv-lowp" >&2; exit 1; }
# KTHREADS (default THREADS) and CLOCK (wall; cpu with KTHREADS=1 on an overloaded machine)
OMP_NUM_THREADS=${KTHREADS:-$THREADS} timeout 900 ./pt-bench-conv-lowp --reps "$REPS" --ms "${MS:-100}" \
    --clock "${CLOCK:-wall}" \
    >"$OUT/conv_lowp_kernels_raw.txt"
sed -n '/^shape,/,$p' "$OUT/conv_lowp_kernels_raw.txt" >"$OUT/conv_lowp_kernels_raw.csv" # the log line before
l1=$(cut -d' ' -f1 /proc/loadavg)
$PY - "$OUT/conv_lowp_kernels_raw.csv" "$OUT/conv_lowp_kernels.csv" "$CPU" "$l0" "$l1" \
    "${KTHREADS:-$THREADS} threads, ${CLOCK:-wall} clock" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
runs = {}
for r in rows:
    runs.setdefault((r["shape"], r["phase"]), {}).setdefault(r["method"], []).append(float(r["ms"]))
methods = list(dict.fromkeys(r["method"] for r in rows))
with open(sys.argv[2], "w") as f:
    f.write("shape,phase," + ",".join(methods) + ",cpu,load_before,load_after\n")
    print(f"kernels: CPU {sys.argv[3]}, load {sys.argv[4]} -> {sys.argv[5]}; median ms per call, batch 128, {sys.argv[6]}")
    print("| layer | phase | " + " | ".join(methods) + " |")
    print("|---|---|" + "---:|" * len(methods))
    for (s, p), m in runs.items():
        med = [statistics.median(m[k]) if k in m else float("nan") for k in methods]
        f.write(f"{s},{p}," + ",".join(f"{v:.3f}" for v in med) + f',"{sys.argv[3]}",{sys.argv[4]},{sys.argv[5]}\n')
        print(f"| {s} | {p} | " + " | ".join(f"{v:.2f}" for v in med) + " |")
PY

[ -z "${SKIP_TRAIN:-}" ] || exit 0

# 2. training
RAW=$OUT/conv_lowp_train_raw.txt
: >"$RAW"
train() { # label binary precision PT_LOWP_GEMM
    _l=$1 _bin=$2 _p=$3 _v=$4
    m=$(mktemp) o=$(mktemp) tf=$(mktemp)
    OMP_NUM_THREADS=$THREADS /usr/bin/time -f "%U %S" -o "$tf" timeout 600 mpirun -np 1 --oversubscribe --bind-to none \
        -x OMP_NUM_THREADS -x PT_LOWP_GEMM="$_v" "$_bin" train --data "$DATA" \
        --model "$MODEL" --batch 128 --optimizer momentum --lr 0.05 --max-steps "$STEPS" \
        --eval-every 100000 --log-every 100000 --validate-data false \
        --precision "$_p" --metrics "$m" >"$o" 2>&1 || { cat "$o" >&2; exit 1; }
    v=$(sed -n 's/.*GEMM kernel \([a-z0-9]*\).*/\1/p' "$o" | head -1)
    if [ "${TRAIN_CLOCK:-wall}" = cpu ]; then # samples per CPU second of the whole run
        sps=$(awk -v n=$((STEPS * 128)) '{ printf "%.1f", n / ($1 + $2) }' "$tf")
    else
        sps=$(sed -n 's/.*"event": "end".*"samples_per_s": \([0-9.]*\).*/\1/p' "$m")
    fi
    echo "$_l $sps ${v:-sgemm}" >>"$RAW"
    rm -f "$m" "$o" "$tf"
}
l2=$(cut -d' ' -f1 /proc/loadavg)
BV=${BF16_VARIANT:-auto}
for r in $(seq "$REPS"); do
    train fp32 ./paratrain fp32 auto
    train bf16 ./paratrain bf16 "$BV"
    train fp16 ./paratrain fp16 auto
    if [ -n "${OLD:-}" ]; then
        train bf16-emulated "$OLD" bf16 "$BV"
        train fp16-emulated "$OLD" fp16 auto
    fi
done
l3=$(cut -d' ' -f1 /proc/loadavg)
[ -n "${OLD:-}" ] || echo "(OLD unset: no emulated rows)"
$PY - "$RAW" "$OUT/conv_lowp_train.csv" "$CPU" "$l2" "$l3" "$MODEL" \
    "$THREADS threads, ${TRAIN_CLOCK:-wall} clock" <<'PY'
import statistics, sys
runs, var = {}, {}
for line in open(sys.argv[1]):
    l, v, k = line.split()
    runs.setdefault(l, []).append(float(v))
    var.setdefault(l, set()).add(k)
ref = statistics.median(runs["fp32"])
print(f"training {sys.argv[6]}: CPU {sys.argv[3]}, load {sys.argv[4]} -> {sys.argv[5]}, {sys.argv[7]}")
print("| run | median samples/s | min | max | vs fp32 | lowp GEMM variant |")
print("|---|---:|---:|---:|---:|---|")
with open(sys.argv[2], "w") as f:
    f.write("run,median,min,max,ratio_to_fp32,runs,variant,model,cpu,load_before,load_after\n")
    for l, v in runs.items():
        med = statistics.median(v)
        vs = "/".join(sorted(var[l]))
        f.write(f'{l},{med:.0f},{min(v):.0f},{max(v):.0f},{med / ref:.3f},{len(v)},{vs},"{sys.argv[6]}","{sys.argv[3]}",{sys.argv[4]},{sys.argv[5]}\n')
        print(f"| {l} | {med:.0f} | {min(v):.0f} | {max(v):.0f} | {med / ref:.2f}x | {vs} |")
PY
