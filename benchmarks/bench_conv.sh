#!/bin/sh
# conv2d algorithms side by side: training throughput of cnn and resnet with --conv-algo auto
# (direct implicit-GEMM kernels, kernels/cpu/conv_direct.c) and --conv-algo im2col (column matrix +
# OpenBLAS sgemm), alternating A/B in one run, 1 rank x 2 threads, AdamW, batch 128; medians of
# REPEATS of paratrain's `end` samples/s (common.sh's pt_samples_per_s).
#   benchmarks/bench_conv.sh [REPEATS]   -> table on stdout, benchmarks/out/conv.csv
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-3}
mkdir -p benchmarks/out
csv=benchmarks/out/conv.csv
echo "model,repeat,direct_samples_per_s,im2col_samples_per_s" >"$csv"
for spec in "cnn 40" "resnet 20"; do
    set -- $spec
    for r in $(seq "$REPEATS"); do
        a=$(STEPS=$2 MODEL=$1 pt_samples_per_s 1 2 128 --optimizer adamw --lr 1e-3 --conv-algo auto)
        b=$(STEPS=$2 MODEL=$1 pt_samples_per_s 1 2 128 --optimizer adamw --lr 1e-3 --conv-algo im2col)
        echo "$1,$r,$a,$b" >>"$csv"
    done
done
echo "model    direct samples/s  im2col samples/s  speed-up (medians of $REPEATS)"
for mdl in cnn resnet; do
    grep "^$mdl," "$csv" | awk -F, '
        { a[NR] = $3; b[NR] = $4 }
        function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                         if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                       return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        END { ma = med(a, NR); mb = med(b, NR);
              printf "%-7s  %16.1f  %16.1f  %7.2fx\n", $1, ma, mb, ma / mb }'
done
