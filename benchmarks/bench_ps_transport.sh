#!/bin/sh
# The parameter server's two transports side by side (issue 15), and its push/pull against the
# data-parallel allreduce. Two parts (PARTS, default "sync pushpull"):
#
# sync: p2p (MPI_Isend/Irecv) against rma (MPI_Put/MPI_Get into the servers' windows, p2p notes
#   or headers) for every consistency model in SYNCS (default "bsp asp ssp:3"), MODEL (default
#   mlp:784-256-10) at S = 1 (W = 3) and S = 2 (W = 2): 4 ranks, oversubscribed on 2 cores. REPS
#   interleaved rounds (each round runs every configuration once, p2p and rma back to back) of
#   STEPS steps; samples/s of the end record (steps only); medians with min and max, the ratio
#   of the medians rma / p2p and the median of the per-round ratios. STRAGGLER=K (default 0:
#   none) adds bench_ps_ssp.sh's intermittent straggler: in every step one worker in turn sleeps
#   (K - 1) x the BSP step time measured first (p2p, S = 1, no straggler), worker w when
#   step % W == w. Writes benchmarks/out/ps_transport.csv (with a straggler:
#   ps_transport_straggler<K>.csv).
#
# pushpull: BSP, MODEL2 (default mlp:784-1024-1024-10, 7.45 MB of gradient), W = 2 workers:
#   data parallel on 2 ranks, and S = 1 and S = 2 servers over p2p and rma (3 and 4 ranks), REPS2
#   interleaved rounds of STEPS2 steps. Per step: the workers' push, pull and exchange wall time
#   (push start to pull end, the `ps_step` records of PATH.worker<w>: median over both workers'
#   steps after the first 5), data parallel's allreduce (the train records' grad_comm_exposed_s,
#   one allreduce after backward: rank 0's mean over 10 steps; median over the records after the
#   first) and its allreduce + update ((comm_s + update_s) / steps of the end record, rank 0);
#   samples/s (throughput against S at fixed W). Then pt-bench-allreduce at np 2 at the gradient's
#   byte size (mpi and ring, --repeat 5). Writes benchmarks/out/ps_pushpull.csv.
#
#   benchmarks/bench_ps_transport.sh    (REPS=5 STEPS=300 REPS2=5 STEPS2=80 STRAGGLER=0)
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
PARTS=${PARTS:-sync pushpull}
REPS=${REPS:-5} STEPS=${STEPS:-300} SYNCS=${SYNCS:-bsp asp ssp:3} MODEL=${MODEL:-mlp:784-256-10}
STRAGGLER=${STRAGGLER:-0}
REPS2=${REPS2:-5} STEPS2=${STEPS2:-80} MODEL2=${MODEL2:-mlp:784-1024-1024-10}
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores"
train() { # np metrics-file model steps [flags...]: one run, its end record left in the metrics file
    _np=$1 _m=$2 _model=$3 _steps=$4
    shift 4
    rm -f "$_m" "$_m".worker*
    timeout 600 mpirun -np "$_np" --oversubscribe --bind-to none -x OMP_NUM_THREADS -x PT_FAULT_INJECT \
        ./paratrain train --data "$DATA" --model "$_model" --batch 96 --max-steps "$_steps" \
        --eval-every 1000000 --quiet true --validate-data false --metrics "$_m" "$@" >/dev/null 2>&1
}
end_field() { sed -n "s/.*\"event\": \"end\".*\"$2\": \([0-9.e+-]*\).*/\1/p" "$1"; }

case " $PARTS " in *" sync "*)
    export PT_FAULT_INJECT=
    straggler="none"
    if [ "$STRAGGLER" != 0 ]; then
        m=$OUT/ps-transport-base.jsonl
        train 4 "$m" "$MODEL" 200 --optimizer sgd --lr 0.1 --log-every 1000000 --ps-servers 1
        base_ms=$(awk -v t="$(end_field "$m" train_seconds)" -v n="$(end_field "$m" step)" 'BEGIN { printf "%.1f", 1000 * t / n }')
        ms=$(awk -v b="$base_ms" -v k="$STRAGGLER" 'BEGIN { printf "%d", (k - 1) * b + 0.5 }')
        straggler="one worker in turn sleeps $ms ms per step (${STRAGGLER}x the BSP step of $base_ms ms)"
    fi
    echo "part sync: $MODEL, batch 96, SGD lr 0.1, $STEPS steps, $REPS rounds; straggler: $straggler"
    echo "load before: $(load)"
    CSV=$OUT/ps_transport.csv
    [ "$STRAGGLER" = 0 ] || CSV=$OUT/ps_transport_straggler$STRAGGLER.csv
    echo "rep,model,sync,servers,transport,straggler,samples_per_s" >"$CSV"
    r=1
    while [ "$r" -le "$REPS" ]; do
        for sync in $SYNCS; do
            for S in 1 2; do
                W=$((4 - S))
                PT_FAULT_INJECT=
                if [ "$STRAGGLER" != 0 ]; then
                    w=0
                    while [ $w -lt $W ]; do
                        PT_FAULT_INJECT="$PT_FAULT_INJECT${PT_FAULT_INJECT:+,}slow:$((S + w)):$ms:$W:$w"
                        w=$((w + 1))
                    done
                fi
                export PT_FAULT_INJECT
                for tr in p2p rma; do
                    m=$OUT/ps-transport.jsonl
                    train 4 "$m" "$MODEL" "$STEPS" --optimizer sgd --lr 0.1 --log-every 1000000 \
                        --ps-servers "$S" --ps-sync "$sync" --ps-transport "$tr" || continue
                    echo "$r,$MODEL,$sync,$S,$tr,$STRAGGLER,$(end_field "$m" samples_per_s)" >>"$CSV"
                done
            done
        done
        r=$((r + 1))
    done
    export PT_FAULT_INJECT=
    echo "load after: $(load)"
    $PY - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = list(dict.fromkeys((r["sync"], r["servers"]) for r in rows))
print("| sync | S + W | p2p samples/s (median, min-max) | rma samples/s (median, min-max) | rma / p2p (medians) | rma / p2p per round (median, min-max) |")
print("|---|---|---:|---:|---:|---:|")
for sy, S in keys:
    v = {t: {r["rep"]: float(r["samples_per_s"]) for r in rows if (r["sync"], r["servers"], r["transport"]) == (sy, S, t)} for t in ("p2p", "rma")}
    cell = lambda x: f"{statistics.median(x):.0f} ({min(x):.0f}-{max(x):.0f})" if x else "-"
    ratios = [v["rma"][k] / v["p2p"][k] for k in v["p2p"] if k in v["rma"]]
    med = statistics.median(v["rma"].values()) / statistics.median(v["p2p"].values()) if v["rma"] and v["p2p"] else float("nan")
    rr = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-"
    print(f"| {sy} | {S} + {4 - int(S)} | {cell(list(v['p2p'].values()))} | {cell(list(v['rma'].values()))} | {med:.2f}x | {rr} |")
PY
    ;;
esac

case " $PARTS " in *" pushpull "*)
    export PT_FAULT_INJECT=
    echo "part pushpull: $MODEL2, batch 96 (48 per worker), momentum lr 0.05, $STEPS2 steps, $REPS2 rounds"
    echo "load before: $(load)"
    CSV=$OUT/ps_pushpull.csv
    echo "rep,mode,ranks,samples_per_s,push_s,pull_s,exchange_s,allreduce_s,allreduce_update_s" >"$CSV"
    r=1
    while [ "$r" -le "$REPS2" ]; do
        for mode in dp ps1-p2p ps1-rma ps2-p2p ps2-rma; do
            m=$OUT/ps-pushpull.jsonl
            case $mode in
            dp) np=2 extra="" ;;
            ps*) S=${mode#ps} S=${S%-*} np=$((S + 2)) extra="--ps-servers $S --ps-transport ${mode#*-}" ;;
            esac
            # shellcheck disable=SC2086
            train $np "$m" "$MODEL2" "$STEPS2" --optimizer momentum --lr 0.05 --log-every 10 $extra || continue
            $PY - "$m" "$r" "$mode" "$np" >>"$CSV" <<'PY'
import glob, json, statistics, sys
m, rep, mode, np = sys.argv[1:5]
recs = [json.loads(l) for l in open(m)]
end = [x for x in recs if x["event"] == "end"][-1]
push = pull = ex = ar = aru = ""
if mode == "dp":
    tr = [x for x in recs if x["event"] == "train"][1:]
    ar = f'{statistics.median(x["grad_comm_exposed_s"] for x in tr):.6f}'
    aru = f'{(end["comm_s"] + end["update_s"]) / end["step"]:.6f}'
else:
    st = [json.loads(l) for f in sorted(glob.glob(m + ".worker*")) for l in open(f)]
    st = [x for x in st if x["event"] == "ps_step" and x["step"] >= 5]
    push, pull, ex = (f'{statistics.median(x[k] for x in st):.6f}' for k in ("push_s", "pull_s", "exchange_s"))
print(f'{rep},{mode},{np},{end["samples_per_s"]:.1f},{push},{pull},{ex},{ar},{aru}')
PY
        done
        r=$((r + 1))
    done
    echo "load after: $(load)"
    n=$($PY -c "
import json
print([json.loads(l) for l in open('$OUT/ps-pushpull.jsonl') if '\"start\"' in l][0]['params'])")
    bytes=$((4 * n))
    echo "pt-bench-allreduce at np 2, $bytes bytes (the gradient of $MODEL2, $n floats); load before: $(load)"
    mpirun -np 2 --bind-to none ./pt-bench-allreduce --algos mpi,ring --min-bytes "$bytes" --max-bytes "$bytes" \
        --repeat 5 --csv "$OUT/ps_pushpull_allreduce.csv" | tail -n 1
    echo "load after: $(load)"
    $PY - "$CSV" "$OUT/ps_pushpull_allreduce.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ab = list(csv.DictReader(open(sys.argv[2])))
def cell(v, scale=1.0, f="{:.1f}"):
    v = [float(x) * scale for x in v if x != ""]
    return (f.format(statistics.median(v)) + " (" + f.format(min(v)) + "-" + f.format(max(v)) + ")") if v else "-"
print("| mode (W = 2) | ranks | runs | samples/s | push (ms) | pull (ms) | push + pull, wall (ms) | allreduce (ms) | allreduce + update (ms) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for mode in dict.fromkeys(r["mode"] for r in rows):
    rs = [r for r in rows if r["mode"] == mode]
    c = lambda k, s=1e3: cell([r[k] for r in rs], s)
    print(f'| {mode} | {rs[0]["ranks"]} | {len(rs)} | {cell([r["samples_per_s"] for r in rs], 1, "{:.0f}")} | {c("push_s")} | '
          f'{c("pull_s")} | {c("exchange_s")} | {c("allreduce_s")} | {c("allreduce_update_s")} |')
for a in ab:
    print(f'\npt-bench-allreduce np {a["np"]}, {a["bytes"]} B, {a["algorithm"]}: {float(a["avg_us"]) / 1e3:.2f} ms '
          f'(min {float(a["min_us"]) / 1e3:.2f}, max {float(a["max_us"]) / 1e3:.2f} over ranks; busbw {float(a["busbw_GBps"]):.2f} GB/s)')
PY
    ;;
esac
