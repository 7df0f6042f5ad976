#!/bin/sh
# Fashion-MNIST test accuracy of the MLP (784-1024-1024-10) trained data parallel on 2 ranks,
# for the configurations below; prints a table (epochs, wall time, best validation accuracy,
# test accuracy) and writes benchmarks/out/accuracy.csv. Compare with the MLP rows of the
# benchmark table of Debian's dataset-fashion-mnist (README.md.gz).
#
#   benchmarks/bench_accuracy.sh            (about 2-4 minutes per configuration on 2 cores)
set -eu
cd "$(dirname "$0")/.."
OUT=benchmarks/out
mkdir -p "$OUT"
DATA=${DATA:-data/fashion-mnist}
[ -f "$DATA/index.h5" ] || ./pt-prep fashion-mnist --out "$DATA" >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
CSV=$OUT/accuracy.csv
echo "name,epochs,wall_s,best_val_accuracy,test_accuracy,flags" >"$CSV"
run() { # name flags...
    name=$1
    shift
    m=$OUT/acc-$name.jsonl
    t0=$(date +%s.%N)
    mpirun -np 2 ./paratrain train --data "$DATA" --model mlp:784-1024-1024-10 --batch 128 \
        --quiet true --metrics "$m" "$@" >/dev/null
    t1=$(date +%s.%N)
    /usr/bin/python3 - "$m" "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$*" >>"$CSV" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
val = [r["accuracy"] for r in recs if r["event"] == "eval" and r["split"] == "val"]
test = [r["accuracy"] for r in recs if r["event"] == "eval" and r["split"] == "test"][-1]
end = [r for r in recs if r["event"] == "end"][-1]
print(f'{sys.argv[2]},{end["epoch"]:.0f},{float(sys.argv[3]):.1f},{max(val):.4f},{test:.4f},"{sys.argv[4]}"')
PY
}
run momentum-cosine --epochs 20 --optimizer momentum --lr 0.05 --schedule cosine --warmup-steps 200 --dropout 0.2
run adamw-cosine --epochs 20 --optimizer adamw --lr 0.001 --weight-decay 0.05 --schedule cosine --warmup-steps 200 --dropout 0.2
/usr/bin/python3 - "$CSV" <<'PY'
import csv, sys
print("| configuration | epochs | wall time (s) | best val accuracy | test accuracy |")
print("|---|---:|---:|---:|---:|")
for r in csv.DictReader(open(sys.argv[1])):
    print(f'| {r["name"]} | {r["epochs"]} | {r["wall_s"]} | {r["best_val_accuracy"]} | {r["test_accuracy"]} |')
PY
