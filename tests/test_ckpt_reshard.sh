#!/bin/sh
# Checkpoints in the global layout (design.md #14), resharded on load: tests/t_ckpt_reshard saves
# the tensor-parallel mlp and gpt (pt_model_create with opt.tp), and mlp, gpt, cnn and resnet
# sharded by hand, at every grid (tp, dp) of 1, 2 and 4 ranks (oversubscribed), with and without
# ZeRO-1, and with the tp = 1 pt_ckpt_save of before; then, at 1, 2 and 4 ranks, loads
# every one of those files at every grid of that many ranks, with and without ZeRO-1, and compares
# every parameter, buffer and optimizer-state element bitwise with the serial model's; finally
# every file passes pt_ckpt_verify and every dataset's crc32 and bytes are the same in all files.
. "${srcdir:-.}/tests/lib.sh"
T="$top_builddir/tests/t_ckpt_reshard"
for np in $(test_nps 1 2 4); do
    mpirun_t "$np" 120 "$T" save "$WORK" >"$WORK/save$np.out" 2>&1 || { cat "$WORK/save$np.out"; fail "save at np $np"; }
    grep '^ok' "$WORK/save$np.out"
done
for np in $(test_nps 1 2 4); do
    mpirun_t "$np" 240 "$T" load "$WORK" >"$WORK/load$np.out" 2>&1 || { cat "$WORK/load$np.out"; fail "load at np $np"; }
    grep '^ok' "$WORK/load$np.out"
done
"$T" crc "$WORK" >"$WORK/crc.out" 2>&1 || { cat "$WORK/crc.out"; fail "checksums"; }
grep '^ok' "$WORK/crc.out"
# a file written at tp > 1 is an ordinary checkpoint: PyTorch runs it as paratrain does
PY=${PYTHON:-/usr/bin/python3}
if "$PY" -c 'import torch, h5py, numpy' 2>/dev/null; then
    export OMP_WAIT_POLICY=PASSIVE
    CHECK="$PY $top_srcdir/tests/torch_export_check.py"
    for f in gpt_np4_t4_z1 gpt-tp_np4_t4_z0 mlp-tp_np2_t2_z1 mlp_np4_t2_z1 cnn_np2_t2_z0; do
        [ -d "$WORK/$f" ] || continue
        spec=$("$PT_CKPT" info "$WORK/$f" | sed -n 's/^  model  *//p')
        "$PY" "$top_srcdir/scripts/ckpt_to_torch.py" "$WORK/$f" "$WORK/$f.pt" >/dev/null || fail "$f: ckpt_to_torch"
        $CHECK random "$spec" 4 "$WORK/$f.x.h5" && $CHECK logits "$WORK/$f.pt" "$WORK/$f.x.h5" "$WORK/$f.torch.h5" &&
            "$top_builddir/tests/t_ckpt_logits" "$WORK/$f" "$WORK/$f.x.h5" "$WORK/$f.pt.h5" || fail "$f: logits"
        r=$($CHECK compare "$WORK/$f.pt.h5" "$WORK/$f.torch.h5" 1e-5) || fail "$f: exported logits differ: $r"
        pass "$f exported to PyTorch: logits $r"
    done
else
    echo "note: $PY cannot import torch, h5py and numpy: the export of tp-written files is not checked"
fi
pass "checkpoints written at any (tp, dp, zero) load at any other, bitwise; crc32 independent of the grid"
