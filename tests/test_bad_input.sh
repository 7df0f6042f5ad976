#!/bin/sh
# Bad input: each case, run on 2 ranks under a timeout, must end with a non-zero exit (not the
# timeout's 124), exactly one 'paratrain: error:' line, and a message that names the problem.
. "${srcdir:-.}/tests/lib.sh"
need_data
small="--model mlp:784-16-10 --batch 64 --max-steps 3 --quiet true"

expect_error() { # name pattern paratrain-args...
    name=$1 pattern=$2
    shift 2
    set +e
    mpirun_t 2 60 "$PARATRAIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    rc=$?
    set -e
    [ $rc -ne 0 ] || fail "$name: exit code 0"
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "$name: hung (timeout)"
    n=$(grep -c 'paratrain: error:' "$WORK/$name.err" || true)
    [ "$n" = 1 ] || { cat "$WORK/$name.err"; fail "$name: $n error lines, expected 1"; }
    grep -q -- "$pattern" "$WORK/$name.err" || { cat "$WORK/$name.err"; fail "$name: message lacks '$pattern'"; }
    pass "$name (exit $rc): $(grep 'paratrain: error:' "$WORK/$name.err" | sed 's/.*error: //' | cut -c1-100)"
}

# missing shard file
copy_data "$WORK/d1"
rm "$WORK/d1/train/shard_00001.h5"
expect_error missing-shard "shard file .*shard_00001.h5' is missing" train --data "$WORK/d1" $small
# missing data directory
expect_error missing-data "data index .* not found" train --data "$WORK/nowhere" $small
# truncated shard
copy_data "$WORK/d2"
head -c 20000 "$DATA/train/shard_00002.h5" >"$WORK/d2/train/shard_00002.h5"
expect_error truncated-shard "cannot open shard .*shard_00002.h5" train --data "$WORK/d2" $small
# garbage index
copy_data "$WORK/d3"
head -c 4096 /dev/urandom >"$WORK/d3/index.h5"
expect_error corrupt-index "cannot open data index" train --data "$WORK/d3" $small
# wrong image shape
copy_data "$WORK/d4"
n=$(h5dump -a /count "$WORK/d4/train/shard_00000.h5" | sed -n 's/^ *(0): *//p')
"$H5MANGLE" reshape "$WORK/d4/train/shard_00000.h5" images "$n" 1 14 56
expect_error wrong-shape "has shape (.*, 1, 14, 56), expected" train --data "$WORK/d4" $small
# label out of range (in the validation split: checked as well)
copy_data "$WORK/d5"
"$H5MANGLE" set-i32 "$WORK/d5/val/shard_00001.h5" labels 17 42
expect_error bad-label "has label 42, outside \[0, 10)" train --data "$WORK/d5" $small
# NaN in float32 inputs
"$PT_PREP" fashion-mnist --src "$FMNIST_SRC" --out "$WORK/d6" --shards 2 --limit 3000 --val 500 --float32 >/dev/null
"$H5MANGLE" set-f32 "$WORK/d6/train/shard_00001.h5" images 5000 nan
expect_error nan-input "pixel .* is nan" train --data "$WORK/d6" $small
# unknown flag, bad values, bad model specs
expect_error unknown-flag "unknown option 'bogus'" train --data "$DATA" --bogus 1
expect_error bad-number "--lr wants a number" train --data "$DATA" --lr fast
expect_error bad-spec "bad model spec 'mlp:784-x-10'" train --data "$DATA" --model mlp:784-x-10
expect_error unknown-model "unknown model spec 'transformer:1'" train --data "$DATA" --model transformer:1
expect_error spec-vs-data "takes 100 inputs, but the samples" train --data "$DATA" --model mlp:100-10
expect_error bad-optimizer "unknown optimizer 'lion'" train --data "$DATA" $small --optimizer lion
expect_error big-batch "larger than the 5000 training samples" train --data "$DATA" --batch 8000
expect_error unknown-command "unknown command 'fit'" fit
expect_error bad-augment "bad --augment 'rotate'" train --data "$DATA" $small --augment rotate
expect_error conv-algo "unknown --conv-algo 'winograd'" train --data "$DATA" $small --conv-algo winograd
# compression flags
expect_error compress-density "the density must be in (0, 1]" train --data "$DATA" $small --compress topk:0
expect_error compress-unknown "unknown --compress 'int4'" train --data "$DATA" $small --compress int4
expect_error compress-algo "unknown sparse allreduce 'tree'" train --data "$DATA" $small --compress topk:0.01 --sparse-allreduce tree
expect_error compress-zero "does not combine" train --data "$DATA" $small --compress sign --zero 1
expect_error dgc-no-topk "--dgc needs top-k compression" train --data "$DATA" $small --dgc true
expect_error dgc-adam "--dgc corrects SGD momentum" train --data "$DATA" $small --compress topk:0.01 --dgc true --optimizer adam
expect_error sparcml-switch "--sparcml-switch 0.9" train --data "$DATA" $small --compress topk:0.01 --sparcml-switch 0.9
# checkpoint of another model
mpirun_t 2 60 "$PARATRAIN" train --data "$DATA" $small --ckpt-dir "$WORK/ck" >/dev/null 2>&1 ||
    fail "could not write a checkpoint"
expect_error other-model "holds model 'mlp:784-16-10', this run builds 'mlp:784-32-10'" \
    train --data "$DATA" --model mlp:784-32-10 --batch 64 --max-steps 6 --ckpt-dir "$WORK/ck" --resume latest
expect_error other-optimizer "trained with optimizer 'momentum'" \
    train --data "$DATA" $small --max-steps 6 --optimizer adam --ckpt-dir "$WORK/ck" --resume latest
# damaged checkpoint: overwrite 8 bytes in the middle of /params/fc1/weight's data (its file offset
# from h5dump), so the file still opens and only the checksum can tell
cp -r "$WORK/ck" "$WORK/ck-bad"
f=$(ls "$WORK/ck-bad"/step_*.h5)
off=$(h5dump -p -H -d /params/fc1/weight "$f" | sed -n 's/^ *OFFSET \([0-9]*\)/\1/p')
[ -n "$off" ] || fail "cannot locate /params/fc1/weight in $f"
printf '\377\377\377\377\377\377\377\377' | dd of="$f" bs=1 seek=$((off + 20000)) conv=notrunc 2>/dev/null
expect_error damaged-ckpt "checksum mismatch for 'params/fc1/weight'" eval --ckpt "$WORK/ck-bad" --data "$DATA"
expect_error damaged-ckpt-resume "checksum mismatch for 'params/fc1/weight'" \
    train --data "$DATA" $small --max-steps 6 --ckpt-dir "$WORK/ck-bad" --resume latest
expect_error missing-ckpt "cannot read .*latest" eval --ckpt "$WORK/empty-dir-that-is-not-there/latest" --data "$DATA"
