#!/bin/sh
# gpt quality (issue 5): paratrain and PyTorch train the same gpt (d 256, 4 layers, 4 heads,
# ctx 128) on the same pt-prep kjv-lm shards for the same steps x batch (so the same tokens), with
# AdamW lr 1e-3, weight decay 0.01, 50 warm-up steps then cosine to 0; both report the validation
# loss in bits per byte (nats / ln 2, every validation window), and paratrain samples a text from
# its checkpoint with `paratrain generate`.
#   benchmarks/bench_gpt_quality.sh [STEPS]     (default 800 steps of 16 windows: 1.6M tokens)
set -eu
cd "$(dirname "$0")/.."
. benchmarks/common.sh
OUT=benchmarks/out
mkdir -p "$OUT"
STEPS=${1:-800}
[ -f data/kjv-lm/index.h5 ] || ./pt-prep kjv-lm --out data/kjv-lm >/dev/null
rm -rf "$OUT/gpt_quality_ckpt"
OMP_NUM_THREADS=2 mpirun -np 1 --bind-to none -x OMP_NUM_THREADS ./paratrain train --data data/kjv-lm \
    --model gpt --batch 16 --optimizer adamw --lr 1e-3 --weight-decay 0.01 --schedule cosine \
    --warmup-steps 50 --max-steps "$STEPS" --log-every 100 --eval-every 100000 \
    --ckpt-dir "$OUT/gpt_quality_ckpt" --metrics "$OUT/gpt_quality.jsonl" | tee "$OUT/gpt_quality_paratrain.txt"
pt_val=$(grep '"split": "val"' "$OUT/gpt_quality.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
pt_secs=$(grep '"event": "end"' "$OUT/gpt_quality.jsonl" | sed 's/.*"train_seconds": \([0-9.]*\).*/\1/')
(cd benchmarks && $PY torch_gpt_quality.py --data ../data/kjv-lm --steps "$STEPS" --batch 16 --threads 2) |
    tee "$OUT/gpt_quality_torch.txt"
th_val=$(sed -n 's/.*val_loss_nats=\([0-9.]*\).*/\1/p' "$OUT/gpt_quality_torch.txt")
th_secs=$(sed -n 's/.*train_seconds=\([0-9.]*\).*/\1/p' "$OUT/gpt_quality_torch.txt")
{
    echo "gpt d256 L4 H4 ctx128, $STEPS steps x 16 windows = $((STEPS * 16 * 128)) target tokens"
    awk -v a="$pt_val" -v b="$th_val" -v s="$pt_secs" -v t="$th_secs" 'BEGIN {
        printf "%-10s %12s %14s %10s\n", "", "val nats", "val bits/byte", "train s";
        printf "%-10s %12.4f %14.4f %10.0f\n", "paratrain", a, a / log(2), s;
        printf "%-10s %12.4f %14.4f %10.0f\n", "pytorch", b, b / log(2), t }'
    echo "sample (paratrain generate --prompt 'And God said' --tokens 300 --temperature 0.8 --top-k 40 --seed 1):"
    OMP_NUM_THREADS=2 ./paratrain generate --ckpt "$OUT/gpt_quality_ckpt" --prompt "And God said" \
        --tokens 300 --temperature 0.8 --top-k 40 --seed 1
} | tee "$OUT/gpt_quality.txt"
