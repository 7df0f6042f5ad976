#!/bin/sh
# Evaluation's chunk size does not change its metrics (issue 20): for every model (mlp, cnn,
# resnet, textcnn, gpt), 2 ranks train 2 steps and validate at the end with the default
# --eval-batch (0: the per-rank training batch) and with --eval-batch 7 (chunks that do not divide
# the split); the val loss must agree to 2e-6 (the sums per chunk are doubles) and the accuracy
# exactly. `paratrain eval` of the checkpoint (a forward-only model: no activation gradients)
# with --eval-batch larger than the split (and, for mlp, its default chunk) must print the same val
# metrics as training did (to the 4 decimals it prints); training with --eval-batch larger than
# the data (it chunks at the training batch) must give the default's metrics too (mlp).
. "${srcdir:-.}/tests/lib.sh"
need_data
need_kjv
val() { grep '"split": "val"' "$1" | tail -1 | sed 's/.*"loss": \([^,]*\), "accuracy": \([^,]*\),.*/\1 \2/'; }
for spec in "mlp $DATA mlp:784-32-10" "cnn $DATA cnn:c1=4,c2=8,hidden=32" \
            "resnet $DATA resnet:width=4,blocks=1" \
            "textcnn $KJV_BOOKS textcnn:len=32,emb=16,filters=8,widths=2/3" \
            "gpt $KJV_LM gpt:layers=2,heads=2,d=16,ctx=16"; do
    set -- $spec
    name=$1 data=$2 model=$3
    case " ${TEST_MODELS:-mlp cnn resnet textcnn gpt} " in *" $name "*) ;; *) continue ;; esac
    common="--data $data --model $model --batch 24 --max-steps 2 --eval-every 2 --optimizer adam
            --quiet true --validate-data false --seed 3"
    train_run "$name-default" 2
    train_run "$name-eb7" 2 --eval-batch 7
    a=$(val "$WORK/$name-default.jsonl") b=$(val "$WORK/$name-eb7.jsonl")
    [ -n "$a" ] && [ -n "$b" ] || fail "$name: no val record"
    echo "$a $b" | awk -v n="$name" '{ d = $1 - $3; if (d < 0) d = -d
        printf "%s: val loss %s (default) vs %s (--eval-batch 7), accuracy %s vs %s\n", n, $1, $3, $2, $4
        exit (d <= 2e-6 && $2 == $4) ? 0 : 1 }' || fail "$name: --eval-batch 7 changes the val metrics"
    if [ "$name" = mlp ]; then
        train_run "$name-ebhuge" 2 --eval-batch 16777216
        c=$(val "$WORK/$name-ebhuge.jsonl")
        [ "$c" = "$a" ] || fail "$name: --eval-batch 16777216 gives '$c', the default '$a'"
    fi
    want=$(echo "$a" | awk '{ printf "val loss %.4f  val accuracy %.4f", $1, $2 }')
    ebs="--eval-batch=100000"
    [ "$name" = mlp ] && ebs="--eval-batch=100000 --eval-batch=0"
    for eb in $ebs; do
        mpirun_t 2 180 "$PARATRAIN" eval --ckpt "$WORK/$name-default" --split val --validate-data false \
            ${eb%=*} ${eb#*=} >"$WORK/$name-eval.out" 2>&1 || { cat "$WORK/$name-eval.out"; fail "$name: paratrain eval $eb"; }
        got=$(grep -m1 '^val loss' "$WORK/$name-eval.out" || true)
        [ "$got" = "$want" ] || fail "$name: paratrain eval $eb printed '$got', training's eval '$want'"
    done
    pass "$name: the same val metrics for every evaluation chunk, in training and in paratrain eval"
done
