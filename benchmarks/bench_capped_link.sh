#!/bin/sh
# Two real nodes over TCP with a capped link, and gradient compression where the network is slow
# (issue 16). Two network namespaces joined by a veth pair (tests/netns.sh, as
# tests/test_two_nodes.sh), 1 rank x 1 thread in each, Open MPI over btl tcp,self; the link is
# capped with a token bucket on both ends' egress (`tc qdisc replace dev IF root tbf rate R burst
# NETNS_BURST latency NETNS_LATENCY`; netem is not available here), one cap after the other:
# CAPS (default "none 1gbit 100mbit"; none = the bare veth, about 10 Gb/s).
#   allreduce  pt-sim-allreduce (built with mpicc by sim/build.sh) --bench across the link: every
#              algorithm on 4 B, 256 KiB and the mlp's gradient (7454760 B), ROUNDS interleaved
#              rounds (caps, then algorithms, inside a round), next to the alpha-beta formula of
#              sim/formula.py with beta = 8 / the cap's rate and alpha = the cap's 4-byte
#              recursive-doubling time (one message exchange)
#   hier       2 ranks per namespace (4 in all): the hierarchical allreduce against the flat ring
#              and Rabenseifner, 256 KiB and the gradient, ROUNDS interleaved rounds
#   step       data-parallel Fashion-MNIST mlp:784-1024-1024-10, 2 ranks across the link,
#              momentum SGD lr 0.05 cosine (bench_compress.sh's settings), global batch 128, for
#              each METHOD (dense ring, fp16, top-k 1% and 0.1% with error feedback, scaled sign):
#              STEP_STEPS steps (--stop-at), time per step from the train records (first
#              interval dropped), exposed communication and bytes sent per step; ROUNDS
#              interleaved rounds (caps, then methods)
#   tta        time to accuracy: each METHOD on each cap for TTA_STEPS steps (default 421, one
#              epoch), validation accuracy every EVAL_EVERY steps against the training time up to
#              that step (the train records' intervals: evaluation excluded) and the bytes sent;
#              final test accuracy
#   all        the four (default), in this order
# Writes benchmarks/out/capped_{allreduce,hier,step}{_raw,}.csv, capped_{tta,final}.csv and .txt
# tables, copies the summaries into benchmarks/figures/ and draws benchmarks/figures/
# capped_accuracy.{png,svg} (benchmarks/plot_capped.sh, also run by `make figures`). Needs root.
# RESULTS.md's tables (ROUNDS=2, STEP_STEPS=20, tta with CAPS="1gbit 100mbit" TTA_STEPS=250) took
# 15 min on the shared 2-core machine; the defaults take over 30 (the 100 Mb/s dense step is ~1 s).
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
. "$PT_SRCDIR/tests/netns.sh"
[ "$(id -u)" -eq 0 ] || { echo "bench_capped_link: network namespaces need root" >&2; exit 1; }
OUT=benchmarks/out FIG=benchmarks/figures
mkdir -p "$OUT/capped" "$FIG"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
what=${1:-all}
CAPS=${CAPS:-none 1gbit 100mbit}
ROUNDS=${ROUNDS:-3}
STEP_STEPS=${STEP_STEPS:-40}
TTA_STEPS=${TTA_STEPS:-421}
EVAL_EVERY=${EVAL_EVERY:-50}
METHODS=${METHODS:-dense fp16 topk1-ef topk0.1-ef sign}
GRAD_BYTES=7454760 # mlp:784-1024-1024-10: 1863690 fp32 gradients
W=$(pwd)/$OUT/capped
P=$(pwd)/paratrain
case "$DATA" in /*) D=$DATA ;; *) D=$(pwd)/$DATA ;; esac
trap netns_down EXIT
trap 'exit 130' INT TERM
netns_up $$ "$W/ns" || { echo "bench_capped_link: cannot make network namespaces: $NETNS_ERR" >&2; exit 1; }

env_line() { echo "# $1: $(date -u +%FT%TZ) CPU $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc --all) cores, loadavg $(cat /proc/loadavg)"; }
method_flags() {
    case "$1" in
    dense) echo "--allreduce ring --zero 0" ;;
    fp16) echo "--compress fp16" ;;
    bf16) echo "--compress bf16" ;;
    topk1-ef) echo "--compress topk:0.01" ;;
    topk0.1-ef) echo "--compress topk:0.001" ;;
    sign) echo "--compress sign --error-feedback false" ;;
    ef-sign) echo "--compress sign" ;;
    *) echo "bench_capped_link: unknown method $1" >&2; return 1 ;;
    esac
}
# train METRICS SECONDS METHOD flags...: the mlp at 2 ranks across the link
train() {
    _m=$1 _s=$2 _f=$(method_flags "$3")
    shift 3
    rm -f "$_m"
    # shellcheck disable=SC2086
    netns_mpirun "$_s" 2 1 "$P" train --data "$D" --model mlp:784-1024-1024-10 --batch 128 \
        --optimizer momentum --lr 0.05 --schedule cosine --warmup-steps 100 --seed 1 \
        --quiet true --validate-data false --metrics "$_m" $_f "$@" </dev/null >"$_m.log" 2>&1 ||
        { echo "FAILED ($?): see $_m.log" >&2; tail -5 "$_m.log" >&2; return 0; }
}

if [ "$what" = allreduce ] || [ "$what" = all ]; then
    exe=$(SMPICC=mpicc SIM_BUILD="$W/build" top_srcdir="$PT_SRCDIR" sh "$PT_SRCDIR/sim/build.sh" | tail -1)
    raw=$OUT/capped_allreduce_raw.csv
    echo "round,cap,algo,bytes,time_s" >"$raw"
    env_line "allreduce, before" | tee "$OUT/capped_allreduce.txt"
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for cap in $CAPS; do
            netns_cap "$cap"
            iters=5
            [ "$cap" = 100mbit ] && iters=3
            for spec in "ring,recursive_doubling,rabenseifner,binomial,mpi,fp16,sign,sparcml|0.001|0.1%" \
                        "sparcml|0.01|1%"; do
                algos=${spec%%|*} rest=${spec#*|}
                dens=${rest%%|*} tag=${rest#*|}
                netns_mpirun 600 2 1 "$exe" --bench --algos "$algos" --density "$dens" \
                    --sizes "4,262144,$GRAD_BYTES" --iters "$iters" >"$W/ar.out" 2>&1 ||
                    { cat "$W/ar.out" >&2; echo "bench_capped_link: allreduce run failed ($cap)" >&2; exit 1; }
                grep -q '^# p=2 nodes=2' "$W/ar.out" || { cat "$W/ar.out" >&2; echo "not two nodes" >&2; exit 1; }
                grep -E '^[0-9]+,' "$W/ar.out" | awk -F, -v r="$r" -v c="$cap" -v t="$tag" \
                    '{ a = $2; if (a == "sparcml") a = "sparcml-" t; print r "," c "," a "," $3 "," $4 }' >>"$raw"
            done
        done
        r=$((r + 1))
    done
    netns_cap none
    $PY - "$raw" "$PT_SRCDIR/sim" "$OUT/capped_allreduce.csv" <<'PY' | tee -a "$OUT/capped_allreduce.txt"
import csv, statistics, sys
sys.path.insert(0, sys.argv[2])
import formula
rows = list(csv.DictReader(open(sys.argv[1])))
rate = {"1gbit": 1e9, "100mbit": 1e8, "10gbit": 1e10, "500mbit": 5e8, "2gbit": 2e9}
t = {}
for r in rows:
    t.setdefault((r["cap"], r["algo"], int(r["bytes"])), []).append(float(r["time_s"]))
caps = list(dict.fromkeys(r["cap"] for r in rows))
algos = list(dict.fromkeys(r["algo"] for r in rows))
sizes = sorted({int(r["bytes"]) for r in rows})
big = max(sizes)
out = csv.writer(open(sys.argv[3], "w"))
out.writerow(["cap", "algo", "bytes", "median_s", "min_s", "max_s", "rounds", "alpha_s",
              "beta_s_per_byte", "formula_s", "measured_over_formula", "algbw_MBps"])
print("| cap | algorithm | bytes | median ms | min | max | formula ms | measured / formula | algbw MB/s |")
print("|---|---|---|---|---|---|---|---|---|")
for c in caps:
    alpha = statistics.median(t[(c, "recursive_doubling", min(sizes))])
    if c in rate:
        beta = 8 / rate[c]
    else:  # the bare veth: beta fitted from the ring's gradient-sized time, 2 alpha + n beta
        beta = (statistics.median(t[(c, "ring", big)]) - 2 * alpha) / big
    for a in algos:
        for n in sizes:
            v = t.get((c, a, n))
            if not v:
                continue
            med = statistics.median(v)
            name = a.split("-")[0]
            formula.DENSITY = 0.01 if a.endswith("-1%") else 0.001
            f = formula.formula(name, 2, 1, n, alpha, beta) if name != "mpi" else None
            ratio = med / f if f else None
            out.writerow([c, a, n, f"{med:.6e}", f"{min(v):.6e}", f"{max(v):.6e}", len(v),
                          f"{alpha:.3e}", f"{beta:.3e}", f"{f:.6e}" if f else "",
                          f"{ratio:.3f}" if ratio else "", f"{n / med / 1e6:.1f}"])
            if n == min(sizes) and a != "recursive_doubling":
                continue
            print(f"| {c} | {a} | {n} | {1e3 * med:.3f} | {1e3 * min(v):.3f} | {1e3 * max(v):.3f} | "
                  f"{1e3 * f:.3f} | {ratio:.2f} | {n / med / 1e6:.1f} |" if f else
                  f"| {c} | {a} | {n} | {1e3 * med:.3f} | {1e3 * min(v):.3f} | {1e3 * max(v):.3f} | - | - | {n / med / 1e6:.1f} |")
    print(f"\n{c}: alpha {1e6 * alpha:.1f} us (4-byte recursive doubling), beta {beta * 1e9:.3f} ns/B "
          f"({8 / beta / 1e9:.2f} Gb/s{'' if c in rate else ', fitted from the ring'})\n")
PY
    env_line "allreduce, after" | tee -a "$OUT/capped_allreduce.txt"
    cp "$OUT/capped_allreduce.csv" "$FIG/capped_allreduce.csv"
fi

# hier: 2 ranks per namespace (4 in all), the hierarchical allreduce (shared-memory sums in each
# node, one ring across) against the flat ring and Rabenseifner on the gradient-sized buffer
if [ "$what" = hier ] || [ "$what" = all ]; then
    exe=$(SMPICC=mpicc SIM_BUILD="$W/build" top_srcdir="$PT_SRCDIR" sh "$PT_SRCDIR/sim/build.sh" | tail -1)
    raw=$OUT/capped_hier_raw.csv
    echo "round,cap,algo,bytes,time_s" >"$raw"
    env_line "hier, before" | tee "$OUT/capped_hier.txt"
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for cap in $CAPS; do
            netns_cap "$cap"
            iters=5
            [ "$cap" = 100mbit ] && iters=3
            netns_mpirun 600 4 2 "$exe" --bench --algos ring,hierarchical,rabenseifner \
                --sizes "262144,$GRAD_BYTES" --iters "$iters" >"$W/hier.out" 2>&1 ||
                { cat "$W/hier.out" >&2; echo "bench_capped_link: 2-per-node run failed ($cap)" >&2; exit 1; }
            grep -q '^# p=4 nodes=2 ranks/node=2' "$W/hier.out" || { cat "$W/hier.out" >&2; echo "not 2 nodes of 2" >&2; exit 1; }
            grep -E '^[0-9]+,' "$W/hier.out" | awk -F, -v r="$r" -v c="$cap" '{ print r "," c "," $2 "," $3 "," $4 }' >>"$raw"
        done
        r=$((r + 1))
    done
    netns_cap none
    $PY - "$raw" "$OUT/capped_hier.csv" <<'PY' | tee -a "$OUT/capped_hier.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
t = {}
for r in rows:
    t.setdefault((r["cap"], r["algo"], int(r["bytes"])), []).append(float(r["time_s"]))
out = csv.writer(open(sys.argv[2], "w"))
out.writerow(["cap", "algo", "bytes", "median_s", "min_s", "max_s", "rounds", "ring_over_this"])
print("| cap | algorithm | bytes | median ms | min | max | ring / this |")
print("|---|---|---|---|---|---|---|")
for (c, a, n), v in t.items():
    med = statistics.median(v)
    ring = statistics.median(t[(c, "ring", n)])
    out.writerow([c, a, n, f"{med:.6e}", f"{min(v):.6e}", f"{max(v):.6e}", len(v), f"{ring / med:.3f}"])
    print(f"| {c} | {a} | {n} | {1e3 * med:.2f} | {1e3 * min(v):.2f} | {1e3 * max(v):.2f} | {ring / med:.2f}x |")
PY
    env_line "hier, after" | tee -a "$OUT/capped_hier.txt"
    cp "$OUT/capped_hier.csv" "$FIG/capped_hier.csv"
fi

# step_row METRICS -> step_s,exposed_s,bytes_sent_per_step (train records, first one dropped)
step_row() {
    $PY - "$1" <<'PY'
import json, statistics, sys
tr = [json.loads(l) for l in open(sys.argv[1]) if '"event": "train"' in l]
prev, dts, exp, sent = 0, [], [], []
for r in tr:  # per-step means of each interval
    n = r["step"] - prev
    prev = r["step"]
    dts.append(128 / r["samples_per_s"])
    exp.append(r["grad_comm_exposed_s"])
    sent.append(r["bytes_sent_per_step"])
dts, exp, sent = dts[1:], exp[1:], sent[1:]
print(f"{statistics.median(dts):.5f},{statistics.median(exp):.5f},{statistics.median(sent):.0f}")
PY
}

if [ "$what" = step ] || [ "$what" = all ]; then
    raw=$OUT/capped_step_raw.csv
    echo "round,cap,method,step_s,grad_comm_exposed_s,bytes_sent_per_step" >"$raw"
    env_line "step, before" | tee "$OUT/capped_step.txt"
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        for cap in $CAPS; do
            netns_cap "$cap"
            for meth in $METHODS; do
                m=$W/step-$cap-$meth.jsonl
                train "$m" 900 "$meth" --max-steps "$TTA_STEPS" --stop-at "$STEP_STEPS" --log-every 5 \
                    --eval-every 1000000
                grep -q '"event": "train"' "$m" 2>/dev/null || continue
                echo "$r,$cap,$meth,$(step_row "$m")" >>"$raw"
            done
        done
        r=$((r + 1))
    done
    netns_cap none
    $PY - "$raw" "$OUT/capped_step.csv" <<'PY' | tee -a "$OUT/capped_step.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
g = {}
for r in rows:
    g.setdefault((r["cap"], r["method"]), []).append(r)
out = csv.writer(open(sys.argv[2], "w"))
out.writerow(["cap", "method", "rounds", "step_median_s", "step_min_s", "step_max_s",
              "exposed_median_s", "bytes_sent_per_step", "vs_dense"])
print("| cap | method | step ms (median) | min | max | exposed comm ms | sent MB/step | step vs dense |")
print("|---|---|---|---|---|---|---|---|")
for (c, m), v in g.items():
    s = [float(x["step_s"]) for x in v]
    d = g.get((c, "dense"))
    dm = statistics.median(float(x["step_s"]) for x in d) if d else None
    med = statistics.median(s)
    e = statistics.median(float(x["grad_comm_exposed_s"]) for x in v)
    b = statistics.median(float(x["bytes_sent_per_step"]) for x in v)
    vs = f"{dm / med:.2f}x" if dm else "-"
    out.writerow([c, m, len(s), f"{med:.5f}", f"{min(s):.5f}", f"{max(s):.5f}", f"{e:.5f}", f"{b:.0f}",
                  f"{dm / med:.3f}" if dm else ""])
    print(f"| {c} | {m} | {1e3 * med:.1f} | {1e3 * min(s):.1f} | {1e3 * max(s):.1f} | {1e3 * e:.1f} | "
          f"{b / 1e6:.3f} | {vs} |")
print("\n(step vs dense: the dense step's median over this method's; > 1 means faster than dense)")
PY
    env_line "step, after" | tee -a "$OUT/capped_step.txt"
    cp "$OUT/capped_step.csv" "$FIG/capped_step.csv"
fi

if [ "$what" = tta ] || [ "$what" = all ]; then
    curves=$OUT/capped_tta.csv final=$OUT/capped_final.csv
    echo "cap,method,step,train_s,bytes_sent_per_rank,val_accuracy" >"$curves"
    echo "cap,method,steps,train_s,bytes_sent_per_rank,val_accuracy,test_accuracy" >"$final"
    env_line "tta, before" | tee "$OUT/capped_tta.txt"
    for cap in $CAPS; do
        netns_cap "$cap"
        for meth in $METHODS; do
            m=$W/tta-$cap-$meth.jsonl
            train "$m" 1800 "$meth" --max-steps "$TTA_STEPS" --log-every "$EVAL_EVERY" --eval-every "$EVAL_EVERY"
            grep -q '"event": "end"' "$m" 2>/dev/null || { echo "no end record: $cap $meth" >&2; continue; }
            $PY - "$m" "$cap" "$meth" "$curves" "$final" <<'PY'
import json, sys
m, cap, meth, curves, final = sys.argv[1:]
recs = [json.loads(l) for l in open(m)]
t, prev, at = 0.0, 0, {}
for r in recs:
    if r["event"] == "train":
        t += (r["step"] - prev) * 128 / r["samples_per_s"]
        prev = r["step"]
        at[r["step"]] = (t, r["bytes_sent_total"])
with open(curves, "a") as f:
    for r in recs:
        if r["event"] == "eval" and r["split"] == "val" and r["step"] in at:
            s, b = at[r["step"]]
            f.write(f"{cap},{meth},{r['step']},{s:.3f},{b:.0f},{r['accuracy']:.4f}\n")
end = [r for r in recs if r["event"] == "end"][-1]
val = [r for r in recs if r["event"] == "eval" and r["split"] == "val"][-1]
with open(final, "a") as f:
    f.write(f"{cap},{meth},{end['step']},{end['train_seconds']:.3f},{end['bytes_sent_total']:.0f},"
            f"{val['accuracy']:.4f},{end['test_accuracy']:.4f}\n")
PY
        done
    done
    netns_cap none
    $PY - "$curves" "$final" "$EVAL_EVERY" <<'PY' | tee -a "$OUT/capped_tta.txt"
import csv, sys
cur = list(csv.DictReader(open(sys.argv[1])))
fin = list(csv.DictReader(open(sys.argv[2])))
targets = [0.80, 0.83, 0.85]
print("| cap | method | steps | train s | sent MB/rank | final val acc | test acc | "
      + " | ".join(f"s to {100 * x:.0f}% val" for x in targets) + " |")
print("|---|---|---|---|---|---|---|" + "---|" * len(targets))
for f in fin:
    pts = [c for c in cur if c["cap"] == f["cap"] and c["method"] == f["method"]]
    tt = []
    for x in targets:
        hit = [float(c["train_s"]) for c in pts if float(c["val_accuracy"]) >= x]
        tt.append(f"{min(hit):.1f}" if hit else "-")
    print(f"| {f['cap']} | {f['method']} | {f['steps']} | {float(f['train_s']):.1f} | "
          f"{float(f['bytes_sent_per_rank']) / 1e6:.1f} | {100 * float(f['val_accuracy']):.2f}% | "
          f"{100 * float(f['test_accuracy']):.2f}% | " + " | ".join(tt) + " |")
print(f"\n(s to X% val: training seconds, evaluation excluded, up to the first validation (every "
      f"{sys.argv[3]} steps) at or above X%)")
PY
    env_line "tta, after" | tee -a "$OUT/capped_tta.txt"
    cp "$curves" "$FIG/capped_tta.csv"
    cp "$final" "$FIG/capped_final.csv"
    sh benchmarks/plot_capped.sh || true
fi
