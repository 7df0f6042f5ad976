#!/bin/sh
# The CUDA backend trains like the CPU one: every model (mlp, cnn and resnet on Fashion-MNIST,
# textcnn on kjv-books, gpt on kjv-lm; tiny configurations) trained 8 steps from the same seed on
# --backend cpu and on --backend cuda, one rank each; the per-step losses must agree within 2e-3
# relative. Not bitwise: cuBLAS sums a GEMM in another order than OpenBLAS and the device's
# expf/erff/tanhf are not glibc's (a few ulp each), which compounds over the steps; dropout masks
# are the same bits (the Philox of src/core/rng.c on the device). Also: --backend cuda with --tp 2
# is refused with one message. SKIPs, with the reason, when the build has no CUDA or no GPU is
# present.
. "${srcdir:-.}/tests/lib.sh"
grep -q '^#define HAVE_CUDA 1' "$top_builddir/config.h" ||
    { echo "SKIP: no CUDA backend in this build (configure --with-cuda; .ci/cuda-build.sh builds it)"; exit 77; }
need_data
need_kjv
STEPS=8 TOL=2e-3
run() { # name backend data model extra...
    _name=$1 _be=$2 _data=$3 _model=$4
    shift 4
    mpirun_t 1 300 "$PARATRAIN" train --backend "$_be" --data "$_data" --model "$_model" \
        --batch 16 --max-steps $STEPS --optimizer adamw --lr 2e-3 --log-every 1 --eval-every 1000 \
        --quiet true --seed 7 --ckpt-dir "$WORK/$_name" --metrics "$WORK/$_name.jsonl" "$@" \
        >"$WORK/$_name.out" 2>&1
}
# a GPU at all? the first model's CUDA run tells (the message names what is missing)
if ! run probe cuda "$DATA" mlp:784-16-10; then
    if grep -q 'no CUDA device' "$WORK/probe.out"; then
        echo "SKIP: $(grep -m1 -o 'no CUDA device: [^;]*' "$WORK/probe.out")"
        exit 77
    fi
    cat "$WORK/probe.out"
    fail "the first --backend cuda run failed"
fi
losses() { grep '"event": "train"' "$1" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }
for spec in "mlp $DATA mlp:784-32-10" \
            "cnn $DATA cnn:c1=4,c2=8,hidden=32 --dropout 0.1" \
            "resnet $DATA resnet:width=4,blocks=1" \
            "textcnn $KJV_BOOKS textcnn:len=32,emb=16,filters=8,widths=2/3 --dropout 0.1" \
            "gpt $KJV_LM gpt:layers=2,heads=2,d=16,ctx=16 --dropout 0.1"; do
    set -- $spec
    name=$1 data=$2 model=$3
    shift 3
    for be in cpu cuda; do
        run "$name-$be" $be "$data" "$model" "$@" ||
            { cat "$WORK/$name-$be.out"; fail "training $name on --backend $be"; }
    done
    losses "$WORK/$name-cpu.jsonl" >"$WORK/l-$name-cpu"
    losses "$WORK/$name-cuda.jsonl" >"$WORK/l-$name-cuda"
    paste "$WORK/l-$name-cpu" "$WORK/l-$name-cuda" | awk -v n="$name" -v tol=$TOL -v steps=$STEPS '
        { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 1e-3 ? $1 : 1e-3); if (r > w) w = r
          if (r > tol) printf "%s: step %d: cpu %s, cuda %s (relative %.2e)\n", n, NR, $1, $2, r }
        END { printf "%s: max relative loss difference cpu vs cuda %.2e over %d steps (tolerance %s)\n",
                     n, w, NR, tol; exit (w <= tol && NR == steps) ? 0 : 1 }' ||
        fail "$name: --backend cuda does not train like --backend cpu"
done
# a mode whose communication is not staged through host memory: one clear refusal
if mpirun_t 2 120 "$PARATRAIN" train --backend cuda --tp 2 --data "$KJV_LM" \
        --model gpt:layers=2,heads=2,d=16,ctx=16 --max-steps 1 --ckpt-dir "$WORK/tp" \
        >"$WORK/tp.out" 2>&1; then
    fail "--backend cuda --tp 2 ran; it must be refused"
fi
grep -q 'does not support --tp > 1 yet' "$WORK/tp.out" || { cat "$WORK/tp.out"; fail "no refusal message for --tp 2"; }
pass "mlp, cnn, resnet, textcnn and gpt train alike on --backend cpu and cuda ($STEPS steps, $TOL)"
