#!/bin/sh
# Checkpoints in the global layout (design.md #14), resharded on load: tests/t_ckpt_reshard saves
# mlp, gpt, cnn and resnet at every grid (tp, dp) of 1, 2 and 4 ranks (oversubscribed), with and
# without ZeRO-1, and with the tp = 1 pt_ckpt_save of before; then, at 1, 2 and 4 ranks, loads
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
pass "checkpoints written at any (tp, dp, zero) load at any other, bitwise; crc32 independent of the grid"
