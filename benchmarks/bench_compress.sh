#!/bin/sh
# Gradient compression: what it costs and what it buys.
#   benchmarks/bench_compress.sh time       time per allreduce of a 25 MB gradient, every method,
#                                           np 2 and np 4 (np 4 is OVERSUBSCRIBED on 2 cores), and
#                                           SparCML's dense-switch sweep at np 4 and 8
#   benchmarks/bench_compress.sh accuracy   Fashion-MNIST at 4 ranks (oversubscribed), mlp and cnn:
#                                           dense, top-k 1% / 0.1% with and without error feedback,
#                                           DGC at 0.1%, sign, EF-sign, signSGD, fp16; final test
#                                           accuracy, bytes sent, validation accuracy per epoch
#   benchmarks/bench_compress.sh sign-sgd   the mlp under plain SGD (lr 0.1): dense, sign, EF-sign
# Writes benchmarks/out/compress_*.{txt,csv} and, with gnuplot, benchmarks/figures/compress_*.png.
# Environment: MLP_EPOCHS (default 5), CNN_EPOCHS (default 2), REPS (default 10), METHODS (a
# space-separated subset of the names below; its rows are appended to the existing tables).
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
FIG=benchmarks/figures
mkdir -p "$OUT" "$FIG"
what=${1:-all}

if [ "$what" = time ] || [ "$what" = all ]; then
    for np in 2 4; do
        tag=np$np
        [ $np -gt 2 ] && tag=np${np}_oversubscribed
        OMP_NUM_THREADS=1 mpirun -np $np --oversubscribe --bind-to none -x OMP_NUM_THREADS \
            ./pt-bench-compress --bytes 25 --reps "${REPS:-10}" --csv "$OUT/compress_time_$tag.csv" |
            tee "$OUT/compress_time_$tag.txt"
    done
    # SparCML's dense switch: one round at np 2, so measured at np 4 and 8 (oversubscribed)
    for np in 4 8; do
        OMP_NUM_THREADS=1 mpirun -np $np --oversubscribe --bind-to none -x OMP_NUM_THREADS \
            ./pt-bench-compress --switch-sweep --bytes 25 --reps 5 | tee "$OUT/compress_switch_np${np}_oversubscribed.txt"
    done
fi

if [ "$what" = sign-sgd ]; then
    for v in "dense-sgd|--allreduce ring" "sign-sgd|--compress sign --error-feedback false" \
             "ef-sign-sgd|--compress sign"; do
        name=${v%%|*} flags=${v#*|}
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=1 mpirun -np 4 --oversubscribe --bind-to none -x OMP_NUM_THREADS ./paratrain train \
            --data "$DATA" --model mlp:784-1024-1024-10 --batch 128 --optimizer sgd --lr 0.1 \
            --schedule cosine --warmup-steps 100 --epochs "${MLP_EPOCHS:-5}" --log-every 50 --seed 1 \
            --quiet true --validate-data false --metrics "$OUT/compress_side_$name.jsonl" $flags </dev/null |
            tail -1 | sed "s/^/$name: /" | tee -a "$OUT/compress_sign_sgd.txt"
    done
    exit 0
fi
[ "$what" = accuracy ] || [ "$what" = all ] || exit 0

# name|flags (on top of momentum SGD, lr 0.05 cosine, batch 128, 4 ranks x 1 thread)
ALL_METHODS="dense|--allreduce ring
topk1|--compress topk:0.01 --error-feedback false
topk1-ef|--compress topk:0.01
topk0.1|--compress topk:0.001 --error-feedback false
topk0.1-ef|--compress topk:0.001
topk0.1-dgc|--compress topk:0.001 --dgc true --density-warmup-epochs 1
topk0.1-dgc-nw|--compress topk:0.001 --dgc true
sign|--compress sign --error-feedback false
ef-sign|--compress sign
signsgd|--compress signsgd --lr 0.0001
fp16|--compress fp16"

acc_run() { # model-tag model epochs name flags
    _tag=$1 _model=$2 _ep=$3 _name=$4 _flags=$5
    m="$OUT/compress_acc_${_tag}_${_name}.jsonl"
    rm -f "$m"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 mpirun -np 4 --oversubscribe --bind-to none -x OMP_NUM_THREADS ./paratrain train \
        --data "$DATA" --model "$_model" --batch 128 --optimizer momentum --lr 0.05 \
        --schedule cosine --warmup-steps 100 --epochs "$_ep" --log-every 50 --seed 1 \
        --quiet true --validate-data false --metrics "$m" $_flags </dev/null >"$OUT/compress_acc_${_tag}_${_name}.log" 2>&1 ||
        { echo "FAILED: $_tag $_name (see $OUT/compress_acc_${_tag}_${_name}.log)"; return 0; }
    end=$(grep '"event": "end"' "$m")
    acc=$(echo "$end" | sed 's/.*"test_accuracy": \([0-9.]*\).*/\1/')
    sent=$(echo "$end" | sed 's/.*"bytes_sent_total": \([0-9.e+]*\).*/\1/')
    secs=$(echo "$end" | sed 's/.*"train_seconds": \([0-9.]*\).*/\1/')
    steps=$(echo "$end" | sed 's/.*"step": \([0-9]*\).*/\1/')
    dense=$(grep '"event": "train"' "$m" | tail -1 | sed 's/.*"dense_bytes_per_step": \([0-9.e+]*\).*/\1/')
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$_tag" "$_name" "$acc" "$sent" "$dense" "$steps" "$secs" >>"$OUT/compress_acc.csv"
    awk -v t="$_tag" -v n="$_name" -v a="$acc" -v s="$sent" -v d="$dense" -v st="$steps" -v sec="$secs" \
        'BEGIN { printf "%-5s %-14s %8.2f%% %12.1f %10.1f %9.0fx %8.0f s\n", t, n, 100 * a, s / 1e6,
                 d * st / 1e6, (d * st) / (s > 0 ? s : 1), sec }' | tee -a "$OUT/compress_acc.txt"
    # validation accuracy per epoch, for the figure
    grep '"split": "val"' "$m" | sed 's/.*"step": \([0-9]*\),.*"accuracy": \([0-9.]*\).*/\1 \2/' \
        >"$OUT/compress_curve_${_tag}_${_name}.dat"
}

if [ -z "${METHODS:-}" ]; then # a full run starts the tables; METHODS=... adds rows to them
    echo "model,method,test_accuracy,bytes_sent_per_rank,dense_bytes_per_step,steps,train_seconds" >"$OUT/compress_acc.csv"
    printf '%-5s %-14s %9s %12s %10s %10s %10s\n' model method "test acc" "sent MB" "dense MB" "saved" "time" |
        tee "$OUT/compress_acc.txt"
fi
for spec in "mlp|mlp:784-1024-1024-10|${MLP_EPOCHS:-5}" "cnn|cnn|${CNN_EPOCHS:-2}"; do
    tag=${spec%%|*} rest=${spec#*|}
    model=${rest%%|*} ep=${rest#*|}
    echo "$ALL_METHODS" | while IFS='|' read -r name flags; do
        case " ${METHODS:-$name} " in *" $name "*) acc_run "$tag" "$model" "$ep" "$name" "$flags" ;; esac
    done
done

command -v gnuplot >/dev/null || exit 0
for tag in mlp cnn; do
    plots="" pts=""
    for f in "$OUT"/compress_curve_${tag}_*.dat; do
        [ -s "$f" ] || continue
        n=$(basename "$f" .dat | sed "s/compress_curve_${tag}_//")
        plots="$plots${plots:+, }'$f' using 1:(100*\$2) with linespoints title '$n'"
    done
    [ -n "$plots" ] || continue
    gnuplot <<GP
set terminal png size 1200,480 noenhanced
set output "$FIG/compress_$tag.png"
set datafile separator ","
set multiplot layout 1,2 title "$tag on Fashion-MNIST, 4 ranks: gradient compression (benchmarks/bench_compress.sh)"
set logscale x
set xlabel "gradient bytes sent per rank (MB, log)"
set ylabel "test accuracy (%)"
set key off
plot "< grep '^$tag,' $OUT/compress_acc.csv" using (\$4/1e6):(100*\$3) with points pt 7 ps 1.5, \
     "< grep '^$tag,' $OUT/compress_acc.csv" using (\$4/1e6):(100*\$3):2 with labels offset 0,1 font ",8"
unset logscale x
set datafile separator whitespace
set xlabel "step"
set ylabel "validation accuracy (%)"
set key bottom right font ",8"
plot $plots
unset multiplot
GP
done
