#!/usr/bin/env bash
# Regenerates the HDF5 seed corpora (fuzz_dataset, fuzz_index, fuzz_ckpt) from pt-prep and
# paratrain output, so they follow a change of the shard or checkpoint format: run it after one,
# check the corpus sizes (a few KB each) and commit tests/fuzz/corpus/. The text seeds
# (fuzz_config, fuzz_spec, fuzz_idx, fuzz_kjv) are written by hand and kept as they are.
#   tests/fuzz/make-seeds.sh [BUILD_DIR]   (the directory holding pt-prep and paratrain; default .)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=$(cd "${1:-.}" && pwd)
FM=${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=0
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
C=$here/corpus
mkdir -p "$C/fuzz_dataset" "$C/fuzz_index" "$C/fuzz_ckpt"
rm -f "$C"/fuzz_dataset/* "$C"/fuzz_index/* "$C"/fuzz_ckpt/*
"$B/pt-prep" fashion-mnist --src "$FM" --out "$W/fm" --shards 1 --limit 3 --val 1 >/dev/null
"$B/pt-prep" fashion-mnist --src "$FM" --out "$W/fm32" --shards 1 --limit 3 --val 1 --float32 >/dev/null
printf 'Ge1:1 In the beginning God created the heaven and the earth.\nRuth1:1 Now it came to pass\nEst1:1 Now it came to pass in the days of Ahasuerus\n' >"$W/kjv.txt"
"$B/pt-prep" kjv-lm --src "$W/kjv.txt" --out "$W/lm" --ctx 8 --shards 1 >/dev/null
"$B/pt-prep" kjv-books --src "$W/kjv.txt" --out "$W/books" --ctx 8 --shards 1 >/dev/null
le32() { # 4-byte little-endian
    for s in 0 8 16 24; do printf "\\$(printf %03o $((($1 >> s) & 255)))"; done
}
for d in fm fm32 lm books; do
    cp "$W/$d/index.h5" "$C/fuzz_index/$d-index.h5"
    n=$(stat -c %s "$W/$d/index.h5")
    { le32 "$n"; cat "$W/$d/index.h5" "$W/$d/train/shard_00000.h5"; } >"$C/fuzz_dataset/$d"
done
# a checkpoint of a small MLP after one step, with and without optimizer state
for opt in sgd momentum; do
    "$B/paratrain" train --data "$W/fm" --model mlp:784-2-10 --batch 2 --max-steps 1 --optimizer "$opt" \
        --eval-every 1000 --quiet true --ckpt-dir "$W/ck-$opt" >/dev/null
    cp "$W/ck-$opt/step_00000001.h5" "$C/fuzz_ckpt/mlp-$opt.h5"
done
du -b "$C"/fuzz_dataset/* "$C"/fuzz_index/* "$C"/fuzz_ckpt/*
