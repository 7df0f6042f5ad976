# Shared helpers of the shell tests (sourced). Every mpirun gets a timeout, so a hang fails.
set -eu
: "${top_builddir:=.}"
: "${top_srcdir:=.}"
PARATRAIN="$top_builddir/paratrain"
PT_PREP="$top_builddir/pt-prep"
PT_CKPT="$top_builddir/pt-ckpt"
H5MANGLE="$top_builddir/tests/tools/h5mangle"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
FMNIST_SRC=${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}
TEST_NAME=$(basename "$0" .sh)
WORK="$top_builddir/tests/work/$TEST_NAME"
rm -rf "$WORK"
mkdir -p "$WORK"

# Prepared data live in directories named by the shard format version, so data of an older format
# left in tests/work are never used (the reader would refuse them) but made afresh.
FMT=$(sed -n 's/^#define PT_DATA_FORMAT_VERSION \([0-9]*\).*/\1/p' "$top_srcdir/include/paratrain/data.h")
[ -n "$FMT" ] || { echo "FAIL: no PT_DATA_FORMAT_VERSION in include/paratrain/data.h" >&2; exit 1; }

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# The MPI launcher: configure's MPIEXEC (make check exports it as PT_MPIEXEC), else mpirun. Its
# family decides the flags: Open MPI's mpirun or MPICH's Hydra (mpiexec.hydra; Intel MPI and
# MVAPICH use Hydra too). PT_MPI_FLAVOR=openmpi|mpich overrides the probe of `--version`.
MPIEXEC=${PT_MPIEXEC:-mpirun}
mpi_flavor() {
    case "${PT_MPI_FLAVOR:-}" in openmpi | mpich) echo "$PT_MPI_FLAVOR"; return ;; esac
    case "$("$MPIEXEC" --version 2>&1)" in
    *"Open MPI"* | *OpenRTE* | *PRRTE*) echo openmpi ;;
    *HYDRA* | *Hydra* | *"Intel(R) MPI"*) echo mpich ;;
    *) echo unknown ;;
    esac
}
MPI_FLAVOR=$(mpi_flavor)
# Open MPI: oversubscribe (more ranks than cores), and yield when idle so oversubscribed ranks do
# not starve each other. Hydra oversubscribes without being told.
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1

# The one place that knows the launchers' flags: mpirun_t NP SECONDS [-x VAR]... prog args...
# runs NP ranks under a timeout, without core binding (a rank's threads use every CPU), and
# passes each -x VAR's value of this shell to every rank (Open MPI: -x VAR; Hydra: -genv VAR val).
mpirun_t() {
    np=$1 secs=$2
    shift 2
    _env=""
    while [ "${1:-}" = "-x" ]; do _env="$_env $2"; shift 2; done
    case "$MPI_FLAVOR" in
    mpich)
        set -- -bind-to none "$@"
        for _v in $_env; do eval "set -- -genv $_v \"\${$_v:-}\" \"\$@\""; done
        ;;
    *)
        set -- --bind-to none "$@"
        for _v in $_env; do set -- -x "$_v" "$@"; done
        ;;
    esac
    timeout -k 5 "$secs" "$MPIEXEC" -np "$np" "$@"
}
# The rank of this process under either launcher, for `sh -c` wrappers run by mpirun_t.
MPI_RANK_EXPR='${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${PMIX_RANK:-0}}}'

# The process counts a test runs at: test_nps N... prints those up to PT_TEST_MAX_NP (default:
# all) and says on stderr which it leaves out. .ci/mpich.sh sets PT_TEST_MAX_NP=2: MPICH's ch4
# ranks busy-poll without yielding, so on 2 cores t_comm took about 75 s at np 3, 130 s at 4, 220 s
# at 5 and over 300 s at 7 (Open MPI, which yields when idle, runs all of np 1..8 in under 2 min).
# Those times predate the yield in paratrain's own polling wait (src/comm/schedule.c, which made
# the 64-byte segmented ring at np 3 finish); MPICH's own collectives still spin.
test_nps() {
    _out="" _cut=""
    for _n in "$@"; do
        if [ -n "${PT_TEST_MAX_NP:-}" ] && [ "$_n" -gt "$PT_TEST_MAX_NP" ]; then _cut="$_cut $_n"
        else _out="$_out $_n"; fi
    done
    [ -z "$_cut" ] || echo "note: np$_cut not run here (PT_TEST_MAX_NP=$PT_TEST_MAX_NP)" >&2
    echo $_out
}

# A test whose comparisons need runs of N ranks, where PT_TEST_MAX_NP caps the process count
# lower (.ci/mpich.sh: 2): skips, naming the cap. need_np N WHAT
need_np() {
    if [ -n "${PT_TEST_MAX_NP:-}" ] && [ "$1" -gt "$PT_TEST_MAX_NP" ]; then
        echo "SKIP: $2 needs $1 ranks; PT_TEST_MAX_NP=$PT_TEST_MAX_NP here (oversubscribed MPICH ranks busy-poll)"
        exit 77
    fi
}

# A test that cannot run under this MPI: skip_unless_openmpi REASON
skip_unless_openmpi() {
    [ "$MPI_FLAVOR" = openmpi ] || { echo "SKIP: $* (launcher $MPIEXEC is $MPI_FLAVOR)"; exit 77; }
}

# A small Fashion-MNIST prepared once for all tests (5000 train, 1000 val, 6000 test), shared
# under a lock: tests run in parallel.
need_data() {
    [ -r "$FMNIST_SRC/train-images-idx3-ubyte.gz" ] || [ -r "$FMNIST_SRC/train-images-idx3-ubyte" ] || {
        echo "SKIP: Fashion-MNIST not installed (Debian package dataset-fashion-mnist)"; exit 77; }
    DATA="$top_builddir/tests/work/fmnist-small-v$FMT"
    mkdir -p "$top_builddir/tests/work"
    (
        flock 9
        [ -f "$DATA/index.h5" ] ||
            "$PT_PREP" fashion-mnist --src "$FMNIST_SRC" --out "$DATA" --shards 3 --limit 6000 \
                --val 1000 >/dev/null
    ) 9>"$top_builddir/tests/work/.fmnist.lock"
    [ -f "$DATA/index.h5" ] || fail "could not prepare test data"
}

# A private copy of the small data set, to damage.
copy_data() {
    need_data
    rm -rf "$1"
    cp -r "$DATA" "$1"
}

# The King James text (`bible -f`, packages bible-kjv and bible-kjv-text) and two small token
# data sets made from it once for all tests: kjv-lm with 16-byte contexts, kjv-books with 32-byte
# verses. Sets KJV_TEXT, KJV_LM, KJV_BOOKS.
need_kjv() {
    command -v bible >/dev/null || { echo "SKIP: bible (package bible-kjv) not installed"; exit 77; }
    KJV_TEXT="$top_builddir/tests/work/kjv.txt"
    KJV_LM="$top_builddir/tests/work/kjv-lm16-v$FMT"
    KJV_BOOKS="$top_builddir/tests/work/kjv-books32-v$FMT"
    mkdir -p "$top_builddir/tests/work"
    (
        flock 9
        [ -s "$KJV_TEXT" ] || { bible -f 'Gen1:1-Rev22:21' >"$KJV_TEXT.tmp" && mv "$KJV_TEXT.tmp" "$KJV_TEXT"; }
        [ -f "$KJV_LM/index.h5" ] || "$PT_PREP" kjv-lm --src "$KJV_TEXT" --out "$KJV_LM" --ctx 16 --shards 2 >/dev/null
        [ -f "$KJV_BOOKS/index.h5" ] || "$PT_PREP" kjv-books --src "$KJV_TEXT" --out "$KJV_BOOKS" --ctx 32 --shards 2 >/dev/null
    ) 9>"$top_builddir/tests/work/.kjv.lock"
    [ -f "$KJV_LM/index.h5" ] && [ -f "$KJV_BOOKS/index.h5" ] || fail "could not prepare the KJV test data"
}

# Trains with the test's $common flags: train_run NAME NP extra-flags... writes checkpoints to
# $WORK/NAME, metrics to $WORK/NAME.jsonl and the output to $WORK/NAME.out (shown on failure).
train_run() {
    _name=$1 _np=$2
    shift 2
    # shellcheck disable=SC2086
    mpirun_t "$_np" 180 "$PARATRAIN" train $common --ckpt-dir "$WORK/$_name" \
        --metrics "$WORK/$_name.jsonl" "$@" >"$WORK/$_name.out" 2>&1 ||
        { cat "$WORK/$_name.out"; fail "training $_name"; }
}

# The values of one field of a metrics file's train records, one per line.
train_field() { grep '"event": "train"' "$1" | sed "s/.*\"$2\": \([^,}]*\).*/\1/"; }

# One clear error on every rank, before any work: runs `paratrain ARGS...` on 2 ranks, each rank
# recording its own exit code (mpirun would kill the others at the first non-zero exit), and
# expects exactly one 'paratrain: error:' line matching PATTERN and exit CODE on both ranks.
# PT_FAULT_INJECT, when set and exported, goes to the ranks; EXPECT_ERROR_TIMEOUT bounds a hang.
#   expect_error NAME CODE PATTERN paratrain-args...
expect_error() {
    name=$1 want=$2 pattern=$3
    shift 3
    rm -f "$WORK/$name.rc."*
    set +e
    (
        export OMPI_MCA_orte_abort_on_non_zero_status=0
        mpirun_t 2 "${EXPECT_ERROR_TIMEOUT:-60}" ${PT_FAULT_INJECT:+-x PT_FAULT_INJECT} \
            sh -c '"$@"; rc=$?; echo $rc >"$0.rc.'"$MPI_RANK_EXPR"'"; exit $rc' \
            "$WORK/$name" "$PARATRAIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    )
    rc=$?
    set -e
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "$name: hung (timeout)"
    n=$(grep -c 'paratrain: error:' "$WORK/$name.err" || true)
    [ "$n" = 1 ] || { cat "$WORK/$name.err"; fail "$name: $n error lines, expected 1"; }
    grep -q -- "$pattern" "$WORK/$name.err" || { cat "$WORK/$name.err"; fail "$name: message lacks '$pattern'"; }
    for r in 0 1; do
        [ -f "$WORK/$name.rc.$r" ] || fail "$name: rank $r recorded no exit code"
        got=$(cat "$WORK/$name.rc.$r")
        [ "$got" = "$want" ] || { cat "$WORK/$name.err"; fail "$name: rank $r exit code $got, expected $want"; }
    done
    pass "$name (exit $want on both ranks): $(grep 'paratrain: error:' "$WORK/$name.err" | sed 's/.*error: //' | cut -c1-140)"
}
