#!/bin/sh
# The cost of --reproducible (issue 20): MLP 784-1024-1024-10, AdamW, global batch 128, 2 ranks x
# 1 thread. Per repeat, interleaved: the ordinary mode, --reproducible with the default chunk
# (auto: 32 samples at batch 128), --reproducible --repro-chunk 8 (the old default chunk), and,
# when BASE_BIN names another build's paratrain (e.g. of the commit before the change), that
# build with --reproducible (its default). Medians (min, max) of samples/s, and the median of
# the per-repeat ratios ordinary / reproducible.
#   benchmarks/bench_reproducible.sh [REPEATS]   -> table on stdout, benchmarks/out/reproducible.csv
#   BASE_BIN=/tmp/base/paratrain benchmarks/bench_reproducible.sh 5
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
REPEATS=${1:-3}
STEPS=${STEPS:-100}
NP=${NP:-2}
mkdir -p benchmarks/out
CSV=benchmarks/out/reproducible.csv
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

run() { # run NAME BINARY FLAGS...: one training, its samples/s and phases into the CSV
    _n=$1 _bin=$2
    shift 2
    m=$(mktemp)
    OMP_NUM_THREADS=1 mpirun -np "$NP" --oversubscribe --bind-to none -x OMP_NUM_THREADS "$_bin" train \
        --data "$DATA" --model mlp:784-1024-1024-10 --batch 128 --optimizer adamw --lr 1e-3 \
        --max-steps "$STEPS" --eval-every 100000 --log-every 100000 --quiet true \
        --validate-data false --metrics "$m" "$@" >/dev/null 2>&1 || { echo "run failed: $_n" >&2; exit 1; }
    e=$(grep '"event": "end"' "$m")
    f() { echo "$e" | sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }
    echo "$_n,$rep,$(f samples_per_s),$(f data_s),$(f compute_s),$(f comm_s),$(f update_s)" >>"$CSV"
    rm -f "$m"
}

echo "config,repeat,samples_per_s,data_s,compute_s,comm_s,update_s" >"$CSV"
for rep in $(seq "$REPEATS"); do
    run "ordinary" ./paratrain
    run "reproducible (auto chunk)" ./paratrain --reproducible
    run "reproducible --repro-chunk 8" ./paratrain --reproducible --repro-chunk 8
    [ -z "${BASE_BIN:-}" ] || run "reproducible (base build)" "$BASE_BIN" --reproducible
done
echo "CPU: $CPU; $NP ranks x 1 thread, $STEPS steps; load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
$PY - "$CSV" "$STEPS" <<'PYEOF'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
steps = int(sys.argv[2])
by = {}
for r in rows:
    by.setdefault(r["config"], []).append(r)
base = [float(r["samples_per_s"]) for r in by["ordinary"]]
print("| config | samples/s median (min-max) | ordinary / this (median of repeats) | "
      "ms/step read / fwd+bwd / comm / clip+update |")
print("|---|---:|---:|---|")
for name, rs in by.items():
    v = [float(r["samples_per_s"]) for r in rs]
    ratio = st.median(b / x for b, x in zip(base, v))
    ph = "/".join(f"{st.median(1e3 * float(r[k]) / steps for r in rs):.1f}"
                  for k in ("data_s", "compute_s", "comm_s", "update_s"))
    print(f"| {name} | {st.median(v):.0f} ({min(v):.0f}-{max(v):.0f}) | {ratio:.2f}x (n={len(v)}) | {ph} |")
PYEOF
