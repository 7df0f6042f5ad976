#!/bin/sh
# 2 ranks x 1 thread against 1 rank x 2 threads on the same global batch (issue 20): mlp
# 784-1024-1024-10 (momentum and AdamW, batch 128), cnn (AdamW, batch 128) and gpt (layers 4,
# heads 4, d 256, ctx 128, batch 16, AdamW). The two configurations run as interleaved pairs,
# REPEATS pairs per row; the table gives medians (min, max) of samples/s, the median of the
# per-pair ratios 2x1 / 1x2, and each configuration's phase breakdown per step (medians, ms:
# data read, forward+backward, gradient communication, clip+update) from the `end` record.
#   benchmarks/bench_ranks_threads.sh [REPEATS]   -> table on stdout, benchmarks/out/ranks_threads.csv
#   ROWS="mlp-adamw gpt" benchmarks/bench_ranks_threads.sh 5     (some rows only)
#   EXTRA2="--zero 0" ...   flags added to the 2-rank runs only
#   STEPS_DIV=3 ...          every row's steps divided by 3 (a loaded machine)
#   BASE2="--zero 0" ...    a third run per repeat, 2x1 with these flags (config "2x1 base"):
#                           the 2-rank run as it was before a change, interleaved with the rest
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-5}
LM=${LM:-data/kjv-lm}
[ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
mkdir -p benchmarks/out
CSV=benchmarks/out/ranks_threads.csv
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# row name, model, data, batch, optimizer, steps
SPECS="mlp-momentum mlp:784-1024-1024-10 $DATA 128 momentum 300
mlp-adamw mlp:784-1024-1024-10 $DATA 128 adamw 200
cnn cnn $DATA 128 adamw 30
gpt gpt:layers=4,heads=4,d=256,ctx=128 $LM 16 adamw 20"

# field NAME: a number from the last `end` record
field() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p" "$PT_LAST_END"; }
run() { # run ROW RANKS THREADS MODEL DATA BATCH OPT STEPS [FLAGS]
    _row=$1 _p=$2 _t=$3 _m=$4 _d=$5 _b=$6 _o=$7 _s=$8
    shift 8
    sps=$(STEPS=$_s MODEL=$_m pt_samples_per_s "$_p" "$_t" "$_b" --data "$_d" --optimizer "$_o" \
        --lr 1e-3 "$@" </dev/null) # mpirun reads stdin: keep it off the SPECS loop
    [ -n "$sps" ] || { echo "run failed: $_row ${_p}x$_t" >&2; exit 1; }
    echo "$_row,${_p}x$_t${_c:+ $_c},$rep,$sps,$(field data_s),$(field compute_s),$(field comm_s),$(field update_s),$_s,$*" >>"$CSV"
}

echo "row,config,repeat,samples_per_s,data_s,compute_s,comm_s,update_s,steps,flags" >"$CSV"
echo "$SPECS" | while read -r row model data batch opt steps; do
    case " ${ROWS:-mlp-momentum mlp-adamw cnn gpt} " in *" $row "*) ;; *) continue ;; esac
    steps=$((steps / ${STEPS_DIV:-1}))
    for rep in $(seq "$REPEATS"); do
        run "$row" 1 2 "$model" "$data" "$batch" "$opt" "$steps"
        run "$row" 2 1 "$model" "$data" "$batch" "$opt" "$steps" ${EXTRA2:-}
        [ -z "${BASE2:-}" ] || { _c=base; run "$row" 2 1 "$model" "$data" "$batch" "$opt" "$steps" $BASE2; _c=; }
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
echo "CPU: $CPU; load average before: $LOAD0, after: $LOAD1; 2x1 extra flags: '${EXTRA2:-}'; 2x1 base flags: '${BASE2:-}'"
$PY - "$CSV" <<'PYEOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault(r["row"], {}).setdefault(r["config"], []).append(r)
def ms(rs, k):
    return st.median(1e3 * float(r[k]) / int(r["steps"]) for r in rs)
sps = lambda rs: [float(r["samples_per_s"]) for r in rs]
ph = lambda rs: "/".join(f"{ms(rs, k):.2f}" for k in ("data_s", "compute_s", "comm_s", "update_s"))
print("| row | config | samples/s median (min-max) | ratio to 1x2 (median of pairs) | "
      "ms/step read / fwd+bwd / comm / clip+update |")
print("|---|---|---:|---:|---|")
for row, c in by.items():
    base = sps(c["1x2"])
    for name, rs in c.items():
        v = sps(rs)
        ratio = st.median(y / x for x, y in zip(base, v))
        print(f"| {row} | {name} | {st.median(v):.0f} ({min(v):.0f}-{max(v):.0f}) | {ratio:.3f} "
              f"(n={len(v)}) | {ph(rs)} |")
PYEOF
