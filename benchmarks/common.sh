# Shared by the benchmark scripts (sourced from the repository root).
DATA=${DATA:-data/fashion-mnist}
# made afresh when missing or of another shard format version than this paratrain reads
# (the header from the source tree: the scripts run from the build directory, which is the
# source tree in an in-tree build and holds a benchmarks/ link to it otherwise)
PT_SRCDIR=$(cd "$(dirname "$0")" 2>/dev/null && cd "$(pwd -P)/.." && pwd)
[ -f "$PT_SRCDIR/include/paratrain/data.h" ] || PT_SRCDIR=.
FMT=$(sed -n 's/^#define PT_DATA_FORMAT_VERSION \([0-9]*\).*/\1/p' "$PT_SRCDIR/include/paratrain/data.h")
h5dump -a /format_version "$DATA/index.h5" 2>/dev/null | grep -q "(0): $FMT\$" ||
    ./pt-prep fashion-mnist --out "$DATA" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
PY=/usr/bin/python3

# pt_samples_per_s RANKS THREADS GLOBAL_BATCH [EXTRA FLAGS...]: trains MLP 784-1024-1024-10 (SGD
# momentum) for $STEPS steps and prints the `end` record's samples/s (step time only: read,
# compute, communication, update). The whole `end` record is left in $PT_LAST_END.
PT_LAST_END=$(mktemp)
pt_samples_per_s() {
    _r=$1 _t=$2 _b=$3
    shift 3
    m=$(mktemp)
    OMP_NUM_THREADS=$_t mpirun -np "$_r" --oversubscribe --bind-to none -x OMP_NUM_THREADS ./paratrain train \
        --data "$DATA" --model "${MODEL:-mlp:784-1024-1024-10}" --batch "$_b" --optimizer momentum --lr 0.05 \
        --max-steps "$STEPS" --eval-every 100000 --log-every 100000 --quiet true \
        --validate-data false --metrics "$m" "$@" >/dev/null 2>&1
    grep '"event": "end"' "$m" >"$PT_LAST_END" || true
    sed -n 's/.*"event": "end".*"samples_per_s": \([0-9.]*\).*/\1/p' "$m"
    rm -f "$m"
}

# torch_samples_per_s THREADS GLOBAL_BATCH [WAIT_POLICY]: the same model in one PyTorch process.
# Every PyTorch run goes through benchmarks/torch_common.py (PASSIVE, set_num_threads); the policy
# argument exists only for a row that shows ACTIVE on purpose.
torch_samples_per_s() {
    PT_TORCH_WAIT_POLICY=${3:-PASSIVE} $PY benchmarks/torch_mlp.py --threads "$1" --batch "$2" --steps "$STEPS" |
        sed -n 's/samples_per_s=//p'
}

# pt_train_sps BINARY DATA MODEL BATCH STOP_AT LOGEVERY [EXTRA FLAGS...]: one rank with $THREADS
# threads (default 2), AdamW, stopped by --stop-at (no final evaluation timed or waited for),
# --eval-batch = the batch; prints the median of the `train` records' samples/s (one every
# LOGEVERY steps, the first interval, with the warm-up, dropped). The run's output stays in
# $PT_LAST_OUT, its metrics in $PT_LAST_METRICS.
PT_LAST_OUT=$(mktemp) PT_LAST_METRICS=$(mktemp)
pt_train_sps() {
    m=$PT_LAST_METRICS bin=$1 _d=$2 _m=$3 _b=$4 _s=$5 _l=$6
    : >"$m"
    shift 6
    OMP_NUM_THREADS=${THREADS:-2} OMP_WAIT_POLICY=PASSIVE timeout 900 mpirun -np 1 --bind-to none \
        -x OMP_NUM_THREADS -x OMP_WAIT_POLICY "$bin" train --data "$_d" --model "$_m" \
        --batch "$_b" --eval-batch "$_b" --optimizer adamw --lr 1e-3 --max-steps 100000 --stop-at "$_s" \
        --log-every "$_l" --eval-every 1000000 --quiet true --validate-data false --metrics "$m" "$@" \
        >"$PT_LAST_OUT" 2>&1 || true
    sed -n 's/.*"event": "train".*"samples_per_s": \([0-9.]*\).*/\1/p' "$m" | sed 1d | sort -g |
        awk '{ x[NR] = $1 } END { if (NR) print NR % 2 ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}
