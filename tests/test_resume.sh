#!/bin/sh
# Resume is exact: training 2N steps equals N steps, stop (--stop-at: same configuration, as a
# kill would leave it), resume, N steps, bit for bit
# (parameters and optimizer state), for several optimizers, with dropout, a schedule and
# clipping, across an epoch boundary (5000 samples / batch 128 = 39 steps per epoch).
. "${srcdir:-.}/tests/lib.sh"
need_data
run() { # name optimizer-flags...
    name=$1
    shift
    base="--data $DATA --model mlp:784-48-10 --batch 128 --seed 3 --quiet true --eval-every 20"
    mpirun_t 2 180 "$PARATRAIN" train $base "$@" --max-steps 60 --ckpt-dir "$WORK/$name-full" \
        >"$WORK/$name-full.out" 2>&1 || { cat "$WORK/$name-full.out"; fail "$name: full run"; }
    mpirun_t 2 180 "$PARATRAIN" train $base "$@" --max-steps 60 --stop-at 30 --ckpt-dir "$WORK/$name-split" \
        >"$WORK/$name-a.out" 2>&1 || { cat "$WORK/$name-a.out"; fail "$name: first half"; }
    mpirun_t 2 180 "$PARATRAIN" train $base "$@" --max-steps 60 --ckpt-dir "$WORK/$name-split" \
        --resume latest --metrics "$WORK/$name-b.jsonl" >"$WORK/$name-b.out" 2>&1 ||
        { cat "$WORK/$name-b.out"; fail "$name: resumed half"; }
    grep -q '"event": "start", "step": 30,' "$WORK/$name-b.jsonl" || fail "$name: did not resume at step 30"
    "$PT_CKPT" diff "$WORK/$name-full" "$WORK/$name-split" >"$WORK/$name.diff" ||
        { cat "$WORK/$name.diff"; fail "$name: resumed run differs from the uninterrupted one"; }
    pass "$name: $(tail -1 "$WORK/$name.diff")"
}
run momentum --optimizer momentum --lr 0.05 --dropout 0.2
run adam --optimizer adam --lr 0.002 --schedule cosine --warmup-steps 10 --clip-norm 1.0
run adagrad --optimizer adagrad --lr 0.02 --weight-decay 0.0001
run nesterov --optimizer nesterov --lr 0.02 --schedule step --step-size 25 --gamma 0.5
run adamw --optimizer adamw --lr 0.001 --weight-decay 0.05 --dropout 0.1
