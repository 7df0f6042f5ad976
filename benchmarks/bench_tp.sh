#!/bin/sh
# Tensor parallelism (issue 13): gpt at 2 ranks, --tp 2 vs dp 2 vs 1 rank x 2 threads, tokens/s
# side by side in one run (the modes alternate, in a rotating order, REPEATS times; medians and
# min-max); the tp group's bytes per step (the train record's tp_bytes_sent_per_step) next to the
# Megatron formula; parameter, gradient, optimizer and activation bytes per rank (the memory
# record) at tp 1, 2 and 4 (4: oversubscribed, memory only), with and without --sequence-parallel.
#   benchmarks/bench_tp.sh [REPEATS]   -> tables on stdout, benchmarks/out/tp_throughput.csv,
#                                         benchmarks/out/tp_memory.csv
#   STEPS=8 DS="512" benchmarks/bench_tp.sh 5
# Each run trains STEPS steps (--stop-at, so no final evaluation: the kjv test split takes minutes)
# with a train record per step; its tokens/s is batch x ctx over the median step time of steps
# 2..STEPS (step 1 allocates; a step's time is the difference of consecutive records' time_s,
# millisecond resolution: samples_per_s is printed to 0.1, 0.7% of a d 512 step). AdamW, batch 16, ctx 128, 4 layers; d 256 with 4 heads, d 512 with 8.
# TP_ALLREDUCE=ALGO sets --allreduce (the tp group's and the gradient's algorithm; default auto);
# MODES (default "tp2 dp2 t2 tp2mpi") picks the modes: tp2 (--tp 2), dp2, t2 (1 rank x 2 threads),
# tp2mpi (--tp 2 --allreduce mpi: MPI_Allreduce for the tp collectives), tp2rd (--tp 2
# --allreduce recursive_doubling), tp2sp (--tp 2 --sequence-parallel true), pp2 (--pp 2, 1F1B,
# PP_M micro-batches, default 8: issue 18's pp 2 vs tp 2 vs dp 2); the / dp 2 column needs dp2
# among them.
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-3}
STEPS=${STEPS:-5}
DS=${DS:-256 512}
MODES=${MODES:-tp2 dp2 t2 tp2mpi}
LM=${LM:-data/kjv-lm}
L=4 B=16 CTX=128 V=256
[ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
mkdir -p benchmarks/out
tcsv=benchmarks/out/tp_throughput.csv mcsv=benchmarks/out/tp_memory.csv

heads() { [ "$1" -ge 512 ] && echo 8 || echo 4; }

# tp_run RANKS THREADS D METRICS_FILE [FLAGS...]: STEPS steps of gpt d=D, metrics to the file
tp_run() {
    _r=$1 _t=$2 _d=$3 _m=$4
    shift 4
    rm -f "$_m"
    OMP_NUM_THREADS=$_t mpirun -np "$_r" --oversubscribe --bind-to none -x OMP_NUM_THREADS ./paratrain train \
        --data "$LM" --model "gpt:layers=$L,heads=$(heads "$_d"),d=$_d,ctx=$CTX" --batch $B \
        --eval-batch $B --optimizer adamw --lr 1e-3 --max-steps 100000 --stop-at "$STEPS" \
        --eval-every 1000000 --log-every 1 --quiet true --validate-data false \
        --allreduce "${TP_ALLREDUCE:-auto}" --metrics "$_m" "$@" >/dev/null 2>&1 || true
}
# field NAME < records: the values of a numeric field, one a line
field() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }
med() { sort -g | awk '{ x[NR] = $1 } END { if (NR == 0) print "nan"; else print NR % 2 ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2 }'; }

echo "load before: $(uptime)"
m=$(mktemp)
echo "d,mode,repeat,tokens_per_s,tp_bytes_sent_per_step,grad_bytes_sent_per_step" >"$tcsv"
for r in $(seq "$REPEATS"); do
    for d in $DS; do
        # rotate the order each repeat so that no mode always runs first
        set -- $MODES
        k=$(((r - 1) % $#))
        while [ "$k" -gt 0 ]; do m1=$1; shift; set -- "$@" "$m1"; k=$((k - 1)); done
        order="$*"
        for mode in $order; do
            case $mode in
                tp2) tp_run 2 1 "$d" "$m" --tp 2 ;;
                tp2mpi) tp_run 2 1 "$d" "$m" --tp 2 --allreduce mpi ;;
                tp2rd) tp_run 2 1 "$d" "$m" --tp 2 --allreduce recursive_doubling ;;
                tp2sp) tp_run 2 1 "$d" "$m" --tp 2 --sequence-parallel true ;;
                pp2) tp_run 2 1 "$d" "$m" --pp 2 --pipeline 1f1b --micro-batches "${PP_M:-8}" ;;
                dp2) tp_run 2 1 "$d" "$m" ;;
                t2) tp_run 1 2 "$d" "$m" ;;
            esac
            tok=$(grep '"event": "train"' "$m" | field time_s | awk 'NR > 1 { print $1 - t } { t = $1 }' |
                med | awk -v b=$B -v c=$CTX '{ printf "%.1f", ($1 > 0 ? b * c / $1 : 0) }')
            tpb=$(grep '"event": "train"' "$m" | sed 1d | field tp_bytes_sent_per_step | med)
            gb=$(grep '"event": "train"' "$m" | sed 1d | field bytes_sent_per_step | med)
            echo "$d,$mode,$r,$tok,$tpb,$gb" >>"$tcsv"
        done
    done
done

echo "d,tp,sequence_parallel,ranks,param_bytes,grad_bytes,optim_bytes,activation_bytes,expected_param_bytes" >"$mcsv"
for d in $DS; do
    for cfg in "1 false" "2 false" "2 true" "4 false" "4 true"; do
        set -- $cfg
        STEPS=1 tp_run "$1" 1 "$d" "$m" --tp "$1" --sequence-parallel "$2"
        rec=$(grep '"event": "memory"' "$m" || echo)
        # replicated: per layer 2 layer norms (4d) and the row-parallel biases (2d), wpe, final LN;
        # the rest is split over tp (wte, qkv weight+bias, attn_proj, mlp_fc weight+bias, mlp_proj)
        exp=$(awk -v d="$d" -v L=$L -v c=$CTX -v V=$V -v t="$1" 'BEGIN {
            n = V * d + c * d + L * (12 * d * d + 13 * d) + 2 * d; rep = L * 6 * d + c * d + 2 * d
            printf "%.0f", 4 * (rep + (n - rep) / t) }')
        echo "$d,$1,$2,$1,$(echo "$rec" | field param_bytes),$(echo "$rec" | field grad_bytes),$(echo "$rec" | field optim_bytes),$(echo "$rec" | field activation_bytes),$exp" >>"$mcsv"
    done
done
rm -f "$m"
echo "load after: $(uptime)"

echo
echo "gpt 4 layers, ctx $CTX, batch $B, AdamW, 2 ranks: tokens/s, median of $REPEATS (min-max)"
echo "d     mode     tokens/s  (min-max)        / dp 2"
for d in $DS; do
    dp=$(grep "^$d,dp2," "$tcsv" | cut -d, -f4 | med)
    for mode in $MODES; do
        v=$(grep "^$d,$mode," "$tcsv" | cut -d, -f4)
        echo "$d $mode $(echo "$v" | med) $(echo "$v" | sort -g | head -1) $(echo "$v" | sort -g | tail -1) $dp" |
            awk '{ printf "%-5s %-7s %9.0f  (%6.0f-%6.0f)  %5.2fx\n", $1, $2, $3, $4, $5, ($6 > 0 ? $3 / $6 : 0) }'
    done
done
echo
tpm=tp2 # the mode whose counter is compared: tp2, else the first tp 2 mode run
case " $MODES " in *" tp2 "*) ;; *) for x in $MODES; do case $x in tp2*) tpm=$x; break ;; esac; done ;; esac
echo "tp 2 collectives ($tpm): bytes sent per rank per step (ring allreduce at p=2 sends 2(p-1)/p = 1x the buffer)"
echo "d     Megatron 4L x bsh     + embedding g, output f    + xent sums (counted)   measured     measured/full"
for d in $DS; do
    meas=$(grep "^$d,$tpm," "$tcsv" | cut -d, -f5 | med)
    awk -v d="$d" -v L=$L -v b=$B -v s=$CTX -v meas="$meas" 'BEGIN {
        p = 2; ring = 2 * (p - 1) / p; bsh = 4 * b * s * d  # bytes of one b.s.h fp32 buffer
        meg = 4 * L * ring * bsh; emb = meg + 2 * ring * bsh
        rows = b * s; xs = ring * 2 * rows * 8           # the sums of exponentials (2 doubles a row)
        full = emb + xs
        printf "%-5s %14.0f      %16.0f      %16.0f     %12.0f   %.4f\n", d, meg, emb, full, meas, meas / full }'
done
echo "(the cross-entropy's max and argmax, 8 B a row each, go through MPI under auto's table at"
echo " 16 KiB and are not in the counter: $((2 * B * CTX * 8)) bytes/step more on the wire)"

echo
echo "memory per rank (MiB): params, grads, optimizer (AdamW m+v), activations; expected params = 4(replicated + sharded/tp)"
echo "d     tp  seq-par  params   grads   optim   p+g+o   expected p+g+o  ratio   (p+o)/(p+o at tp1)  activations"
for d in $DS; do
    grep "^$d," "$mcsv" | awk -F, '
        $2 == 1 { po1 = $5 + $7 }
        { pgo = $5 + $6 + $7; e = 4 * $9; mib = 1048576
          printf "%-5s %2d  %-7s %7.2f %7.2f %7.2f %7.2f %14.2f  %6.3f   %17.3f  %10.1f\n", $1, $2, $3,
                 $5 / mib, $6 / mib, $7 / mib, pgo / mib, e / mib, pgo / e, ($5 + $7) / po1, $8 / mib }'
done
