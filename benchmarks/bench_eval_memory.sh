#!/bin/sh
# Evaluation memory (issue 20): peak RSS of one rank for a short train-with-validation run of each
# model (mlp, cnn, resnet, textcnn, gpt) at its usual training batch, with the default
# --eval-batch and with --eval-batch 1 (whose evaluation needs next to nothing, so its peak is the
# training's), from /usr/bin/time -v's "Maximum resident set size" of a singleton rank (no mpirun,
# so the figure is the rank's alone). Also `paratrain eval` of the checkpoint each run writes.
# PARATRAIN=path picks the binary (e.g. an older build, for a before/after); EXTRA adds flags to
# every run (e.g. EXTRA="--eval-batch 1000" to see what the old default cost).
# Writes benchmarks/out/eval_memory.txt and .csv, with the CPU model and the load average.
set -eu
cd "$(dirname "$0")/.."
OUT=benchmarks/out
mkdir -p "$OUT"
PT=${PARATRAIN:-./paratrain}
TAG=${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
FM=data/fashion-mnist LM=data/kjv-lm BOOKS=data/kjv-books
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
csv=$OUT/eval_memory.csv txt=$OUT/eval_memory.txt
[ -f "$csv" ] || echo "tag,cpu,model,batch,run,peak_rss_mb,load_before,load_after" >"$csv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# peak_mb NAME ARGS...: the peak RSS in MB of `$PT ARGS` (a failed run is reported as -)
peak_mb() {
    name=$1
    shift
    if /usr/bin/time -v timeout 600 "$PT" "$@" >"$work/$name.out" 2>&1; then
        sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\)/\1/p' "$work/$name.out" |
            awk '{ printf "%.0f", $1 / 1024 }'
    else
        echo -
    fi
}
{
    echo "# $TAG ($PT), CPU: $cpu, $(nproc --all) cores, 1 rank x 1 thread; peak RSS in MB"
    printf "%-8s %6s %18s %18s %8s %18s\n" model batch "train+eval default" "--eval-batch 1" ratio "paratrain eval"
    for spec in "mlp $FM mlp:784-1024-1024-10 128" "cnn $FM cnn 128" "resnet $FM resnet 64" \
                "textcnn $BOOKS textcnn 64" "gpt $LM gpt:layers=4,heads=4,d=256,ctx=128 16"; do
        set -- $spec
        name=$1 data=$2 model=$3 batch=$4
        case " ${MODELS:-mlp cnn resnet textcnn gpt} " in *" $name "*) ;; *) continue ;; esac
        load0=$(cut -d' ' -f1 /proc/loadavg)
        common="train --data $data --model $model --batch $batch --max-steps 2 --eval-every 2
                --log-every 100 --quiet true --validate-data false --optimizer adam"
        rm -rf "$work/ck"
        a=$(peak_mb "$name-default" $common --ckpt-dir "$work/ck" --ckpt-every 2 ${EXTRA:-})
        b=$(peak_mb "$name-eb1" $common --eval-batch 1)
        c=$(peak_mb "$name-eval" eval --ckpt "$work/ck" --split val --validate-data false ${EXTRA:-})
        load1=$(cut -d' ' -f1 /proc/loadavg)
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.2fx", a / b }')
        printf "%-8s %6s %18s %18s %8s %18s\n" "$name" "$batch" "$a" "$b" "$r" "$c"
        for v in "default $a" "eval-batch-1 $b" "paratrain-eval $c"; do
            set -- $v
            echo "$TAG,\"$cpu\",$name,$batch,$1,$2,$load0,$load1" >>"$csv"
        done
    done
    echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
} | tee -a "$txt"
