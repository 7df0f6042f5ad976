#!/bin/sh
# Training throughput of cnn and gpt next to the same models in PyTorch (benchmarks/torch_models.py),
# one process, the same batch and thread count, AdamW, alternating A/B in one run; medians of
# REPEATS. paratrain's samples/s is its `end` record (step time: read, compute, update), taken by
# common.sh's pt_samples_per_s (later flags override its defaults); PyTorch's is batch / median
# step time on random inputs of the same shape.
#   benchmarks/bench_models.sh [REPEATS]   -> table on stdout, benchmarks/out/models.csv
#   MODELS=cnn benchmarks/bench_models.sh 5 (one model only)
# Needs python3-torch (scripts/install-deps.sh --bench) and pt-prep's kjv-lm (made if missing).
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-3}
THREADS=2
LM=${LM:-data/kjv-lm}
[ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
mkdir -p benchmarks/out
csv=benchmarks/out/models.csv
echo "model,batch,threads,repeat,paratrain_samples_per_s,torch_samples_per_s" >"$csv"
for spec in "cnn $DATA cnn 128 40" "gpt $LM gpt:layers=4,heads=4,d=256,ctx=128 16 20"; do
    set -- $spec
    case " ${MODELS:-cnn gpt} " in *" $1 "*) ;; *) continue ;; esac
    for r in $(seq "$REPEATS"); do
        STEPS=$5 MODEL=$3
        a=$(pt_samples_per_s 1 $THREADS "$4" --data "$2" --optimizer adamw --lr 1e-3)
        b=$($PY benchmarks/torch_models.py --model "$1" --batch "$4" --threads $THREADS --steps "$5" | sed -n 's/samples_per_s=//p')
        echo "$1,$4,$THREADS,$r,$a,$b" >>"$csv"
    done
done
echo "model   batch  threads  paratrain samples/s  PyTorch samples/s  ratio (medians of $REPEATS)"
for mdl in ${MODELS:-cnn gpt}; do
    grep "^$mdl," "$csv" | awk -F, '
        { a[NR] = $5; b[NR] = $6; batch = $2; th = $3 }
        function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                         if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                       return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        END { ma = med(a, NR); mb = med(b, NR);
              printf "%-7s %5d  %7d  %19.1f  %17.1f  %5.2fx\n", $1, batch, th, ma, mb, ma / mb }'
done
