#!/bin/sh
# Checkpoints to and from PyTorch (scripts/ckpt_to_torch.py, scripts/torch_to_ckpt.py,
# scripts/torch_models.py), for every model:
#   export: train 3 steps with paratrain, export the checkpoint to a state_dict, load it into the
#     PyTorch definition and compare its logits on 16 validation samples with paratrain's own
#     (tests/t_ckpt_logits loads the checkpoint and runs the evaluation forward);
#   import: a PyTorch-initialized model (batch-norm and layer-norm parameters and statistics drawn
#     at random, so they count) written as a checkpoint: its logits in paratrain equal PyTorch's,
#     `paratrain eval` on the validation split gives PyTorch's loss and accuracy, and
#     `paratrain train --resume` continues from it.
# Tolerances: logits max|paratrain - torch| / max|torch| <= 1e-5 (both float32; summation order
# differs); eval loss within 2e-4 and accuracy within 1e-4 (paratrain prints 4 decimals).
. "${srcdir:-.}/tests/lib.sh"
PY=${PYTHON:-/usr/bin/python3}
"$PY" -c 'import torch, h5py, numpy' 2>/dev/null ||
    { echo "SKIP: $PY cannot import torch, h5py and numpy (packages python3-torch python3-h5py python3-numpy)"; exit 77; }
export OMP_WAIT_POLICY=PASSIVE
need_data
need_kjv
CHECK="$PY $top_srcdir/tests/torch_export_check.py"
LOGITS="$top_builddir/tests/t_ckpt_logits"
TOL=1e-5

one() { # name data model extra-train-flags...
    name=$1 data=$2 model=$3
    shift 3
    act=relu
    [ "${1:-}" = "--activation" ] && act=$2
    mpirun_t 1 180 "$PARATRAIN" train --data "$data" --model "$model" --batch 16 --max-steps 3 \
        --optimizer adam --log-every 1 --eval-every 1000 --quiet true --seed 3 \
        --ckpt-dir "$WORK/$name" "$@" >"$WORK/$name.out" 2>&1 || { cat "$WORK/$name.out"; fail "training $name"; }
    $CHECK inputs "$data" val 16 "$WORK/$name.x.h5" || fail "$name: reading the inputs"

    # export
    "$PY" "$top_srcdir/scripts/ckpt_to_torch.py" "$WORK/$name" "$WORK/$name.pt" >/dev/null || fail "$name: ckpt_to_torch"
    $CHECK logits "$WORK/$name.pt" "$WORK/$name.x.h5" "$WORK/$name.torch.h5" || fail "$name: torch logits"
    "$LOGITS" "$WORK/$name" "$WORK/$name.x.h5" "$WORK/$name.pt.h5" || fail "$name: paratrain logits"
    r=$($CHECK compare "$WORK/$name.pt.h5" "$WORK/$name.torch.h5" $TOL) || fail "$name: exported logits differ: $r"
    pass "$name export: $r"

    # import
    $CHECK init "$model" "$act" 11 "$WORK/$name.init.pt" || fail "$name: torch init"
    "$PY" "$top_srcdir/scripts/torch_to_ckpt.py" --model "$model" --activation "$act" \
        --state-dict "$WORK/$name.init.pt" --optimizer adam --data "$data" "$WORK/$name.imp" >/dev/null ||
        fail "$name: torch_to_ckpt"
    "$PT_CKPT" info "$WORK/$name.imp" >"$WORK/$name.imp.info" || { cat "$WORK/$name.imp.info"; fail "$name: pt-ckpt info of the import"; }
    $CHECK logits "$WORK/$name.init.pt" "$WORK/$name.x.h5" "$WORK/$name.itorch.h5" || fail "$name: torch logits (import)"
    "$LOGITS" "$WORK/$name.imp" "$WORK/$name.x.h5" "$WORK/$name.ipt.h5" || fail "$name: paratrain logits (import)"
    r=$($CHECK compare "$WORK/$name.ipt.h5" "$WORK/$name.itorch.h5" $TOL) || fail "$name: imported logits differ: $r"
    mpirun_t 1 120 "$PARATRAIN" eval --ckpt "$WORK/$name.imp" --data "$data" --split val \
        >"$WORK/$name.eval" 2>&1 || { cat "$WORK/$name.eval"; fail "$name: paratrain eval of the import"; }
    # and training resumes from it (torch_to_ckpt.py wrote seed 0 and zero Adam state)
    mpirun_t 1 120 "$PARATRAIN" train --data "$data" --model "$model" --activation "$act" --batch 16 \
        --max-steps 1 --optimizer adam --seed 0 --eval-every 1000 --quiet true --resume "$WORK/$name.imp" \
        --ckpt-dir "$WORK/$name.resumed" >"$WORK/$name.resume.out" 2>&1 &&
        [ -f "$WORK/$name.resumed/step_00000001.h5" ] || { cat "$WORK/$name.resume.out"; fail "$name: resuming from the import"; }
    set -- $(sed -n 's/.*val loss \([0-9.naif-]*\)  val accuracy \([0-9.naif-]*\).*/\1 \2/p' "$WORK/$name.eval")
    [ $# = 2 ] || { cat "$WORK/$name.eval"; fail "$name: no loss in paratrain eval's output"; }
    set -- "$@" $($CHECK evalloss "$WORK/$name.init.pt" "$data" val)
    awk -v a="$1" -v b="$3" -v c="$2" -v d="$4" 'BEGIN { e = a - b; f = c - d; exit !(e <= 2e-4 && -e <= 2e-4 && f <= 1e-4 && -f <= 1e-4) }' ||
        fail "$name: paratrain eval loss $1 accuracy $2, PyTorch $3 $4"
    pass "$name import: logits $r; eval loss $1 / torch $3, accuracy $2 / torch $4"
}

one mlp "$DATA" mlp:784-32-16-10 --activation gelu --dropout 0.1
one cnn "$DATA" cnn:c1=4,c2=8,hidden=32
one resnet "$DATA" resnet:width=4,blocks=1
one textcnn "$KJV_BOOKS" textcnn:len=32,emb=16,filters=8,widths=2/3
one gpt "$KJV_LM" gpt:layers=2,heads=2,d=16,ctx=16
