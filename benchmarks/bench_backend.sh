#!/bin/sh
# Training throughput of every model on the CPU backend, one build against another, side by side
# in one run (issue 14: every op moved behind the backend must cost nothing). Alternates the two
# binaries A/B for each repeat; prints medians and the ratio NEW / BASE, and writes
# benchmarks/out/backend.csv.
#   BASE=/path/to/other/checkout benchmarks/bench_backend.sh [REPEATS]
#   MODELS="mlp gpt" BASE=... benchmarks/bench_backend.sh 5
# BASE is a built checkout of the old revision (git worktree add /tmp/base REV && build it);
# both use this checkout's data. One rank x 2 threads, AdamW, the `end` record's samples/s.
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-3}
: "${BASE:?set BASE to a built checkout of the revision to compare with}"
THREADS=2
LM=${LM:-data/kjv-lm}
BOOKS=${BOOKS:-data/kjv-books}
[ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
[ -f "$BOOKS/index.h5" ] || ./pt-prep kjv-books --out "$BOOKS" >/dev/null
mkdir -p benchmarks/out
csv=benchmarks/out/backend.csv
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "model,repeat,base_samples_per_s,new_samples_per_s" >"$csv"

# run BIN_DIR DATA MODEL BATCH STEPS: samples/s of one training run
run() {
    m=$(mktemp)
    OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE "$1/paratrain" train --data "$2" --model "$3" \
        --batch "$4" --optimizer adamw --lr 1e-3 --max-steps "$5" --eval-every 100000 \
        --log-every 100000 --quiet true --validate-data false --metrics "$m" >/dev/null 2>&1 || true
    sed -n 's/.*"event": "end".*"samples_per_s": \([0-9.]*\).*/\1/p' "$m"
    rm -f "$m"
}

for spec in "mlp $DATA mlp:784-1024-1024-10 128 200" "cnn $DATA cnn 128 40" \
    "resnet $DATA resnet:blocks=1 64 20" "textcnn $BOOKS textcnn 64 100" \
    "gpt $LM gpt:layers=4,heads=4,d=256,ctx=128 16 20"; do
    set -- $spec
    case " ${MODELS:-mlp cnn resnet textcnn gpt} " in *" $1 "*) ;; *) continue ;; esac
    for r in $(seq "$REPEATS"); do
        a=$(run "$BASE" "$2" "$3" "$4" "$5")
        b=$(run . "$2" "$3" "$4" "$5")
        echo "$1,$r,${a:-0},${b:-0}" >>"$csv"
    done
done
echo "CPU: $cpu, $(nproc) cores; load average before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model     base samples/s  new samples/s  new/base  median of pair ratios (medians of $REPEATS, 1 rank x $THREADS threads)"
for mdl in ${MODELS:-mlp cnn resnet textcnn gpt}; do
    grep "^$mdl," "$csv" | awk -F, '
        { a[NR] = $3; b[NR] = $4; r[NR] = $3 > 0 ? $4 / $3 : 0 }
        function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                         if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                       return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        END { ma = med(a, NR); mb = med(b, NR); mr = med(r, NR)
              printf "%-9s %14.1f  %13.1f  %7.3fx  %7.3f\n", $1, ma, mb, (ma > 0 ? mb / ma : 0), mr }'
done
