#!/bin/sh
# Mixed-precision parity (issue 17; docs/MIXED_PRECISION.md): Fashion-MNIST test accuracy of an
# MLP trained data parallel on 2 ranks in fp32, bf16, fp16 (dynamic loss scaling) and fp16
# without loss scaling, the same recipe and seed; prints a table (test accuracy and its
# difference to fp32, final validation loss, steps skipped for fp16 overflows, samples/s, the
# lowp GEMM variant) and writes benchmarks/out/precision.csv with the CPU model and the load
# average before and after each run.
#
#   benchmarks/bench_precision.sh [EPOCHS]      (EPOCHS default 3; ~1 min per run on 2 cores)
#   benchmarks/bench_precision.sh speed [REPS]  throughput only: mlp 784-1024-1024-10 (batch 128),
#       cnn (128) and gpt d256 (16 x 128 tokens), 1 rank x THREADS (2) threads, AdamW; paratrain
#       fp32 / bf16 / fp16 next to PyTorch fp32 and torch.autocast bf16, interleaved REPS rounds
#       (default 3); medians and ratios into benchmarks/out/precision_speed.csv
#       (MODELS="mlp gpt", PRECISIONS="fp32 bf16" for a subset)
#   benchmarks/bench_precision.sh gpt [STEPS]  gpt parity: bench_gpt_quality.sh's recipe for STEPS
#       (300) steps in fp32, bf16, fp16; validation bits per byte into benchmarks/out/precision_gpt.csv
#   benchmarks/bench_precision.sh memory   bytes per parameter and activation block per precision
#       (each run's memory record) and peak RSS, mlp / cnn / gpt, into benchmarks/out/precision_memory.csv
# The accuracy runs' samples/s column is one run per row: read it as indicative only. On a CPU
# without bf16/fp16 instructions lowp.h's fallback converts to fp32 first, so bf16/fp16 are
# slower than fp32 there.
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
if [ "${1:-}" = gpt ]; then
    # gpt parity: benchmarks/bench_gpt_quality.sh's recipe (d 256, 4 layers, ctx 128, batch 16,
    # AdamW 1e-3, wd 0.01, 50 warm-up steps, cosine) for STEPS (300) steps in fp32, bf16 and fp16
    # (dynamic loss scale), 1 rank x 2 threads, the same seed and tokens; the final validation
    # loss in bits per byte and its difference to fp32's
    STEPS=${2:-300}
    LM=${LM:-data/kjv-lm}
    [ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
    CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    CSV=$OUT/precision_gpt.csv
    echo "precision,steps,val_bits_per_byte,diff_to_fp32,skipped,train_seconds,variant,cpu,load_before,load_after" >"$CSV"
    for p in fp32 bf16 fp16; do
        m=$OUT/precgpt-$p.jsonl ck=$OUT/precgpt-$p.ckpt
        rm -rf "$m" "$ck"
        l0=$(cut -d' ' -f1 /proc/loadavg)
        OMP_NUM_THREADS=2 timeout 3000 mpirun -np 1 --bind-to none -x OMP_NUM_THREADS ./paratrain train \
            --data "$LM" --model gpt --batch 16 --optimizer adamw --lr 1e-3 --weight-decay 0.01 \
            --schedule cosine --warmup-steps 50 --max-steps "$STEPS" --log-every 100 --eval-every 100000 \
            --seed 3 --precision $p --ckpt-dir "$ck" --metrics "$m" >"$OUT/precgpt-$p.out" 2>&1
        l1=$(cut -d' ' -f1 /proc/loadavg)
        skipped=$(./pt-ckpt info "$ck" | sed -n 's/^  loss_scale_skipped  *//p')
        $PY - "$m" "$p" "$STEPS" "${skipped:-0}" "$CPU" "$l0" "$l1" "$CSV" >>"$CSV" <<'PY'
import csv, json, math, sys
m, p, steps, skipped, cpu, l0, l1, out = sys.argv[1:]
recs = [json.loads(l) for l in open(m)]
val = [r for r in recs if r["event"] == "eval" and r["split"] == "val"][-1]
end = [r for r in recs if r["event"] == "end"][-1]
start = [r for r in recs if r["event"] == "start"][-1]
bpb = val["loss"] / math.log(2)
ref = bpb
try:
    rows = list(csv.DictReader(open(out)))
    if rows: ref = float(rows[0]["val_bits_per_byte"])
except OSError:
    pass
print(f'{p},{steps},{bpb:.4f},{bpb - ref:+.4f},{skipped},{end["train_seconds"]:.0f},{start.get("lowp_gemm", "")},"{cpu}",{l0},{l1}')
PY
    done
    echo "gpt d256 L4 ctx128, $STEPS steps x 16 windows, 1 rank x 2 threads ($(sed -n 2p "$CSV" | cut -d'"' -f2))"
    echo "| precision | val bits/byte | vs fp32 | skipped steps | train s | GEMM |"
    echo "|---|---:|---:|---:|---:|---|"
    sed 1d "$CSV" | awk -F, '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $3, $4, $5, $6, $7 }'
    exit 0
fi
if [ "${1:-}" = memory ]; then
    # bytes per rank from each run's memory record (parameters, gradients, optimizer state,
    # activation block) and the peak resident set (VmHWM, /usr/bin/time), 1 rank, 3 steps, AdamW
    LM=${LM:-data/kjv-lm}
    [ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
    CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    CSV=$OUT/precision_memory.csv
    echo "model,precision,params,param_bytes,grad_bytes,optim_bytes,activation_bytes,bytes_per_param,peak_rss_kib,cpu" >"$CSV"
    for spec in "mlp $DATA mlp:784-1024-1024-10 128" "cnn $DATA cnn 128" \
        "gpt $LM gpt:layers=4,heads=4,d=256,ctx=128 16"; do
        set -- $spec
        for p in fp32 bf16 fp16; do
            m=$OUT/precmem-$1-$p.jsonl
            : >"$m"
            OMP_NUM_THREADS=2 timeout 600 /usr/bin/time -v ./paratrain train --data "$2" --model "$3" \
                --batch "$4" --eval-batch "$4" --optimizer adamw --max-steps 3 --eval-every 1000000 \
                --quiet true --validate-data false --precision $p --metrics "$m" >"$OUT/precmem.out" 2>&1 || true
            rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/precmem.out")
            $PY - "$m" "$1" "$p" "${rss:-0}" "$CPU" >>"$CSV" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
mem = [r for r in recs if r["event"] == "memory"][0]
start = [r for r in recs if r["event"] == "start"][0]
n = start["params"]
per = (mem["param_bytes"] + mem["grad_bytes"] + mem["optim_bytes"]) / n
print(f'{sys.argv[2]},{sys.argv[3]},{n},{mem["param_bytes"]:.0f},{mem["grad_bytes"]:.0f},{mem["optim_bytes"]:.0f},'
      f'{mem["activation_bytes"]:.0f},{per:.2f},{sys.argv[4]},"{sys.argv[5]}"')
PY
        done
    done
    $PY - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
mib = 1048576
print(f'CPU: {rows[0]["cpu"]}; 1 rank, AdamW, the memory record of each run and its peak RSS')
print("| model | precision | bytes per parameter (w + w16, grad, Adam m, v) | parameters+grad+optimizer MiB | activation block MiB | vs fp32 | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|")
ref = {}
for r in rows:
    a = float(r["activation_bytes"])
    ref.setdefault(r["model"], a)
    st = (float(r["param_bytes"]) + float(r["grad_bytes"]) + float(r["optim_bytes"])) / mib
    print(f'| {r["model"]} | {r["precision"]} | {r["bytes_per_param"]} | {st:.1f} | {a / mib:.1f} | '
          f'{a / ref[r["model"]]:.2f}x | {float(r["peak_rss_kib"]) / 1024:.0f} |')
PY
    exit 0
fi
if [ "${1:-}" = speed ]; then
    # paratrain fp32 / bf16 / fp16 and PyTorch fp32 / autocast-bf16 (benchmarks/torch_models.py,
    # PASSIVE, the same threads), one process of THREADS threads each, AdamW, the same batch,
    # all interleaved per round; samples/s medians over REPS rounds, ratios of medians.
    REPS=${2:-3} THREADS=${THREADS:-2}
    LM=${LM:-data/kjv-lm}
    [ -f "$LM/index.h5" ] || ./pt-prep kjv-lm --out "$LM" >/dev/null
    CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    FLAGS=$(grep -o -w -E 'avx2|avx512f|avx512_bf16|avx512_fp16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
    RAW=$OUT/precision_speed_raw.csv
    echo "model,round,run,samples_per_s,variant" >"$RAW"
    l0=$(cut -d' ' -f1-3 /proc/loadavg)
    for r in $(seq "$REPS"); do
        # name, data, paratrain spec, batch, stop-at, log-every, torch flags, torch steps
        for spec in "mlp $DATA mlp:784-1024-1024-10 128 60 10 --model=mlp 30" \
            "cnn $DATA cnn 128 24 4 --model=cnn 20" \
            "gpt $LM gpt:layers=4,heads=4,d=256,ctx=128 16 10 2 --model=gpt 8"; do
            set -- $spec
            case " ${MODELS:-mlp cnn gpt} " in *" $1 "*) ;; *) continue ;; esac
            for p in ${PRECISIONS:-fp32 bf16 fp16}; do
                v=$(pt_train_sps ./paratrain "$2" "$3" "$4" "$5" "$6" --precision $p)
                var=$(sed -n 's/.*"event": "start".*"lowp_gemm": "\([a-z0-9]*\)".*/\1/p' "$PT_LAST_METRICS" | head -1)
                [ "$var" = fp32 ] && var=sgemm
                echo "$1,$r,paratrain-$p,${v:-0},${var:-unknown}" >>"$RAW"
            done
            for ac in none bf16; do
                v=$($PY benchmarks/torch_models.py $(echo "$7" | tr , ' ') --batch "$4" --threads "$THREADS" \
                    --steps "$8" --warmup 2 --autocast $ac 2>/dev/null | sed -n 's/samples_per_s=//p')
                [ $ac = none ] && name=torch-fp32 || name=torch-autocast-bf16
                echo "$1,$r,$name,${v:-0},oneDNN" >>"$RAW"
            done
        done
    done
    l1=$(cut -d' ' -f1-3 /proc/loadavg)
    $PY - "$RAW" "$CPU" "$FLAGS" "$l0" "$l1" "$OUT/precision_speed.csv" "$THREADS" <<'PY'
import collections, csv, statistics, sys
raw, cpu, flags, l0, l1, out, threads = sys.argv[1:]
runs = collections.OrderedDict()
for row in csv.DictReader(open(raw)):
    runs.setdefault((row["model"], row["run"]), []).append((float(row["samples_per_s"]), row["variant"]))
print(f"CPU: {cpu} ({flags}); {threads} threads; load average before {l0}, after {l1}")
print("| model | run | kernel | samples/s median | min | max | vs paratrain fp32 | vs PyTorch autocast-bf16 |")
print("|---|---|---|---:|---:|---:|---:|---:|")
with open(out, "w") as f:
    f.write("model,run,kernel,median,min,max,vs_paratrain_fp32,vs_torch_autocast_bf16,rounds,cpu,threads,load_before,load_after\n")
    for (model, run), v in runs.items():
        med = statistics.median(x for x, _ in v)
        ref = statistics.median(x for x, _ in runs[(model, "paratrain-fp32")]) if (model, "paratrain-fp32") in runs else 0
        ac = statistics.median(x for x, _ in runs[(model, "torch-autocast-bf16")]) if (model, "torch-autocast-bf16") in runs else 0
        r1 = med / ref if ref else float("nan")
        r2 = med / ac if ac else float("nan")
        xs = [x for x, _ in v]
        f.write(f'{model},{run},{v[0][1]},{med:.1f},{min(xs):.1f},{max(xs):.1f},{r1:.3f},{r2:.3f},{len(v)},"{cpu}",{threads},{l0},{l1}\n')
        print(f"| {model} | {run} | {v[0][1]} | {med:.1f} | {min(xs):.1f} | {max(xs):.1f} | {r1:.2f}x | {r2:.2f}x |")
PY
    exit 0
fi
EPOCHS=${1:-3}
CSV=$OUT/precision.csv
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
MODEL=mlp:784-512-512-10
echo "name,precision,loss_scale,epochs,test_accuracy,val_loss,skipped,final_scale,samples_per_s,variant,cpu,load_before,load_after" >"$CSV"
run() { # name precision loss-scale
    name=$1 prec=$2 ls=$3
    m=$OUT/prec-$name.jsonl ck=$OUT/prec-$name.ckpt
    rm -rf "$ck" "$m"
    l0=$(cut -d' ' -f1 /proc/loadavg)
    OMP_NUM_THREADS=1 timeout 1200 mpirun -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS \
        ./paratrain train --data "$DATA" --model $MODEL --batch 128 --epochs "$EPOCHS" \
        --optimizer momentum --lr 0.05 --schedule cosine --warmup-steps 100 --seed 11 \
        --precision "$prec" ${ls:+--loss-scale "$ls"} --metrics "$m" --ckpt-dir "$ck" \
        >"$OUT/prec-$name.out" 2>&1
    l1=$(cut -d' ' -f1 /proc/loadavg)
    variant=$(sed -n 's/.*GEMM kernel \([a-z0-9]*\).*/\1/p' "$OUT/prec-$name.out" | head -1)
    skipped=$(./pt-ckpt info "$ck" | sed -n 's/^  loss_scale_skipped  *//p')
    scale=$(./pt-ckpt info "$ck" | sed -n 's/^  loss_scale  *//p')
    $PY - "$m" "$name,$prec,${ls:-default},$EPOCHS" "${skipped:-0},${scale:-1}" "${variant:-sgemm}" \
        "$CPU" "$l0" "$l1" >>"$CSV" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
test = [r for r in recs if r["event"] == "eval" and r["split"] == "test"][-1]
val = [r for r in recs if r["event"] == "eval" and r["split"] == "val"][-1]
end = [r for r in recs if r["event"] == "end"][-1]
print(f'{sys.argv[2]},{test["accuracy"]:.4f},{val["loss"]:.4f},{sys.argv[3]},'
      f'{end["samples_per_s"]:.0f},{sys.argv[4]},"{sys.argv[5]}",{sys.argv[6]},{sys.argv[7]}')
PY
}
run fp32 fp32 ""
run bf16 bf16 ""
run fp16-dynamic fp16 dynamic
run fp16-noscale fp16 none
$PY - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ref = float(rows[0]["test_accuracy"])
print(f'CPU: {rows[0]["cpu"]}')
print("| run | loss scale | epochs | test accuracy | vs fp32 (points) | val loss | skipped steps | final scale | samples/s | GEMM | load before/after |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for r in rows:
    d = 100 * (float(r["test_accuracy"]) - ref)
    print(f'| {r["name"]} | {r["loss_scale"]} | {r["epochs"]} | {r["test_accuracy"]} | {d:+.2f} | {r["val_loss"]} | '
          f'{r["skipped"]} | {r["final_scale"]} | {r["samples_per_s"]} | {r["variant"]} | {r["load_before"]}/{r["load_after"]} |')
PY
