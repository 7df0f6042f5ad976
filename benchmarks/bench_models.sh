#!/bin/sh
# Training throughput of cnn and gpt next to the same models in PyTorch (benchmarks/torch_models.py,
# run through benchmarks/torch_common.py: OMP_WAIT_POLICY=PASSIVE, set_num_threads = paratrain's
# threads), one process each, the same batch, AdamW, paratrain and PyTorch alternating in one run,
# REPEATS pairs; the table gives medians with min and max, the CPU model, its flags and the load.
#
# paratrain's samples/s: the median of its `train` records' samples/s (one every LOGEVERY steps,
# the first interval, with the warm-up, dropped); the run stops with --stop-at, so no final
# evaluation is timed or waited for; --eval-batch = the batch, so evaluation buffers never exceed
# training's (the default 1000 needs 35 GB of activations at d 512). PyTorch's: batch / median
# step time after 2 warm-up steps.
#   benchmarks/bench_models.sh [REPEATS]   -> table on stdout, benchmarks/out/models.csv
#   MODELS="gpt gpt512" benchmarks/bench_models.sh 5   (a subset: cnn gpt gpt512)
#   BEFORE=/path/to/old/paratrain benchmarks/bench_models.sh 5   (an earlier build interleaved too,
#   its column "before"; run from the tree here, so the same data)
# Needs python3-torch (scripts/install-deps.sh --bench) and pt-prep's kjv-lm (made if missing).
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-5}
THREADS=2
LM=${LM:-data/kjv-lm}
[ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
mkdir -p benchmarks/out
csv=benchmarks/out/models.csv
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
flags=$(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')
load0=$(cut -d' ' -f1-3 /proc/loadavg)

echo "model,batch,threads,repeat,paratrain_samples_per_s,torch_samples_per_s,before_samples_per_s" >"$csv"
# name, data, paratrain spec, torch flags, batch, paratrain steps, log every, torch steps
for spec in "cnn $DATA cnn --model=cnn 128 24 4 20" \
    "gpt $LM gpt:layers=4,heads=4,d=256,ctx=128 --model=gpt 16 10 2 8" \
    "gpt512 $LM gpt:layers=4,heads=4,d=512,ctx=128 --model=gpt,--d=512 16 6 2 5"; do
    set -- $spec
    case " ${MODELS:-cnn gpt gpt512} " in *" $1 "*) ;; *) continue ;; esac
    for r in $(seq "$REPEATS"); do
        a=$(pt_train_sps ./paratrain "$2" "$3" "$5" "$6" "$7")
        b=$($PY benchmarks/torch_models.py $(echo "$4" | tr , ' ') --batch "$5" --threads $THREADS \
            --steps "$8" --warmup 2 2>/dev/null | sed -n 's/samples_per_s=//p')
        c=
        [ -z "${BEFORE:-}" ] || c=$(pt_train_sps "$BEFORE" "$2" "$3" "$5" "$6" "$7")
        echo "$1,$5,$THREADS,$r,$a,$b,$c" >>"$csv"
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
echo "CPU: $cpu ($flags); load average before: $load0, after: $load1"
echo "| model | batch | threads | paratrain samples/s median (min-max) | PyTorch (PASSIVE) median (min-max) | ratio of medians | before median (min-max) | after/before |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for mdl in ${MODELS:-cnn gpt gpt512}; do
    grep "^$mdl," "$csv" | awk -F, '
        { a[NR] = $5; b[NR] = $6; c[NR] = $7 == "" ? 0 : $7; batch = $2; th = $3 }
        function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                         if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                       return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        END { if (!NR) exit; ma = med(a, NR); mb = med(b, NR); mc = med(c, NR);
              printf "| %s | %d | %d | %.1f (%.1f-%.1f) | %.1f (%.1f-%.1f) | %.2fx |", $1, batch, th,
                     ma, a[1], a[NR], mb, b[1], b[NR], ma / mb
              if (mc > 0) printf " %.1f (%.1f-%.1f) | %.2fx |\n", mc, c[1], c[NR], ma / mc
              else printf " | |\n" }'
done
