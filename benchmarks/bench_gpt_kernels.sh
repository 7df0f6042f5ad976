#!/bin/sh
# gpt's non-GEMM CPU entries (attention, GELU, bias and layer-norm gradients; issue 20), timed by
# benchmarks/gpt_kernels.c against this build and, with BEFORE=DIR (another build tree's root), an
# earlier one, alternating, REPEATS rounds; medians of the per-round medians, with min and max.
#   benchmarks/bench_gpt_kernels.sh [REPEATS] [D]   -> table, benchmarks/out/gpt_kernels.csv
#   BEFORE=/path/to/old/tree benchmarks/bench_gpt_kernels.sh 5
set -eu
cd "$(dirname "$0")/.."
REPEATS=${1:-5} D=${2:-256}
mkdir -p benchmarks/out
csv=benchmarks/out/gpt_kernels.csv
bin=$(mktemp)
${CC:-mpicc} -O2 -fopenmp -Iinclude benchmarks/gpt_kernels.c -o "$bin" -L.libs -lparatrain -lm
echo "build,repeat,entry,ms" >"$csv"
for r in $(seq "$REPEATS"); do
    for b in after ${BEFORE:+before}; do
        dir=$PWD/.libs
        [ "$b" = after ] || dir=$BEFORE/.libs
        OMP_NUM_THREADS=${THREADS:-2} OMP_WAIT_POLICY=PASSIVE LD_LIBRARY_PATH=$dir "$bin" "$D" |
            grep -E "^[a-z_ ()]+,[0-9.]+$" | sed "s/^/$b,$r,/" >>"$csv"
    done
done
rm -f "$bin"
echo "CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); load: $(cut -d' ' -f1-3 /proc/loadavg); d $D, batch 16, ctx 128, 4 heads, ${THREADS:-2} threads"
/usr/bin/python3 - "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((r["entry"], r["build"]), []).append(float(r["ms"]))
print("| entry | after ms median (min-max) | before ms median (min-max) | speed-up |")
print("|---|---:|---:|---:|")
for e in dict.fromkeys(r["entry"] for r in rows):
    a = by[(e, "after")]
    b = by.get((e, "before"))
    s = f"| {e} | {statistics.median(a):.2f} ({min(a):.2f}-{max(a):.2f}) |"
    if b:
        s += f" {statistics.median(b):.2f} ({min(b):.2f}-{max(b):.2f}) | {statistics.median(b) / statistics.median(a):.2f}x |"
    else:
        s += " | |"
    print(s)
PY
