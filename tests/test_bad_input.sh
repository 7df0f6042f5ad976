#!/bin/sh
# Bad input: each case, run on 2 ranks under a timeout, must end with exactly one
# 'paratrain: error:' line, a message that names the problem, and the exit code of the rule
# (paratrain --help): 2 for a usage error (flag, value, model spec, options that do not fit each
# other or the data), 1 for any other error -- the same code on every rank, never a hang.
. "${srcdir:-.}/tests/lib.sh"
need_data
small="--model mlp:784-16-10 --batch 64 --max-steps 3 --quiet true"

# Each rank records its own exit code (mpirun reports only one, and would kill the other ranks
# at the first non-zero exit, so that is switched off here).

# missing shard file
copy_data "$WORK/d1"
rm "$WORK/d1/train/shard_00001.h5"
expect_error missing-shard 1 "shard file .*shard_00001.h5' is missing" train --data "$WORK/d1" $small
# missing data directory
expect_error missing-data 1 "data index .* not found" train --data "$WORK/nowhere" $small
# truncated shard
copy_data "$WORK/d2"
head -c 20000 "$DATA/train/shard_00002.h5" >"$WORK/d2/train/shard_00002.h5"
expect_error truncated-shard 1 "cannot open shard .*shard_00002.h5" train --data "$WORK/d2" $small
# garbage index
copy_data "$WORK/d3"
head -c 4096 /dev/urandom >"$WORK/d3/index.h5"
expect_error corrupt-index 1 "cannot open data index" train --data "$WORK/d3" $small
# wrong image shape
copy_data "$WORK/d4"
n=$(h5dump -a /count "$WORK/d4/train/shard_00000.h5" | sed -n 's/^ *(0): *//p')
"$H5MANGLE" reshape "$WORK/d4/train/shard_00000.h5" images "$n" 1 14 56
expect_error wrong-shape 1 "has shape (.*, 1, 14, 56), expected" train --data "$WORK/d4" $small
# label out of range (in the validation split: checked as well)
copy_data "$WORK/d5"
"$H5MANGLE" set-i32 "$WORK/d5/val/shard_00001.h5" labels 17 42
expect_error bad-label 1 "has label 42, outside \[0, 10)" train --data "$WORK/d5" $small
# NaN in float32 inputs
"$PT_PREP" fashion-mnist --src "$FMNIST_SRC" --out "$WORK/d6" --shards 2 --limit 3000 --val 500 --float32 >/dev/null
"$H5MANGLE" set-f32 "$WORK/d6/train/shard_00001.h5" images 5000 nan
expect_error nan-input 1 "pixel .* is nan" train --data "$WORK/d6" $small
# unknown flag, bad values, bad model specs
expect_error unknown-flag 2 "unknown option 'bogus'" train --data "$DATA" --bogus 1
expect_error bad-number 2 "--lr wants a finite number, got 'fast'" train --data "$DATA" --lr fast
expect_error bad-spec 2 "bad model spec 'mlp:784-x-10'" train --data "$DATA" --model mlp:784-x-10
expect_error unknown-model 2 "unknown model spec 'transformer:1'" train --data "$DATA" --model transformer:1
expect_error spec-vs-data 2 "takes 100 inputs, but the samples" train --data "$DATA" --model mlp:100-10
expect_error bad-optimizer 2 "unknown optimizer 'lion'" train --data "$DATA" $small --optimizer lion
expect_error big-batch 2 "larger than the 5000 training samples" train --data "$DATA" --batch 8000
expect_error unknown-command 2 "unknown command 'fit'" fit
expect_error bad-augment 2 "bad --augment 'rotate'" train --data "$DATA" $small --augment rotate
expect_error conv-algo 2 "unknown --conv-algo 'winograd'" train --data "$DATA" $small --conv-algo winograd
# compression flags
expect_error compress-density 2 "the density must be in (0, 1]" train --data "$DATA" $small --compress topk:0
expect_error compress-unknown 2 "unknown --compress 'int4'" train --data "$DATA" $small --compress int4
expect_error compress-algo 2 "unknown sparse allreduce 'tree'" train --data "$DATA" $small --compress topk:0.01 --sparse-allreduce tree
expect_error compress-zero 2 "does not combine" train --data "$DATA" $small --compress sign --zero 1
expect_error dgc-no-topk 2 "--dgc needs top-k compression" train --data "$DATA" $small --dgc true
expect_error dgc-adam 2 "--dgc corrects SGD momentum" train --data "$DATA" $small --compress topk:0.01 --dgc true --optimizer adam
expect_error sparcml-switch 2 "--sparcml-switch 0.9" train --data "$DATA" $small --compress topk:0.01 --sparcml-switch 0.9
# checkpoint of another model
mpirun_t 2 60 "$PARATRAIN" train --data "$DATA" $small --ckpt-dir "$WORK/ck" >/dev/null 2>&1 ||
    fail "could not write a checkpoint"
expect_error other-model 1 "holds model 'mlp:784-16-10', this run builds 'mlp:784-32-10'" \
    train --data "$DATA" --model mlp:784-32-10 --batch 64 --max-steps 6 --ckpt-dir "$WORK/ck" --resume latest
expect_error other-optimizer 1 "trained with optimizer 'momentum'" \
    train --data "$DATA" $small --max-steps 6 --optimizer adam --ckpt-dir "$WORK/ck" --resume latest
# damaged checkpoint: overwrite 8 bytes in the middle of /params/fc1/weight's data (its file offset
# from h5dump), so the file still opens and only the checksum can tell
cp -r "$WORK/ck" "$WORK/ck-bad"
f=$(ls "$WORK/ck-bad"/step_*.h5)
off=$(h5dump -p -H -d /params/fc1/weight "$f" | sed -n 's/^ *OFFSET \([0-9]*\)/\1/p')
[ -n "$off" ] || fail "cannot locate /params/fc1/weight in $f"
printf '\377\377\377\377\377\377\377\377' | dd of="$f" bs=1 seek=$((off + 20000)) conv=notrunc 2>/dev/null
expect_error damaged-ckpt 1 "checksum mismatch for 'params/fc1/weight'" eval --ckpt "$WORK/ck-bad" --data "$DATA"
expect_error damaged-ckpt-resume 1 "checksum mismatch for 'params/fc1/weight'" \
    train --data "$DATA" $small --max-steps 6 --ckpt-dir "$WORK/ck-bad" --resume latest
expect_error missing-ckpt 1 "cannot read .*latest" eval --ckpt "$WORK/empty-dir-that-is-not-there/latest" --data "$DATA"

# ---- every value is checked when it is read, before any work: one message, exit 2 ----------
# expect_early: expect_error, and the run must not have started (no metrics file opened)
expect_early() { # name code pattern paratrain-args...
    _n=$1
    expect_error "$@" --metrics "$WORK/$_n.jsonl"
    [ ! -e "$WORK/$_n.jsonl" ] || fail "$_n: the run started before the error was found"
}
# --eval-batch 0 is the default (the training batch, issue 20); below it is out of range
expect_early eval-batch-neg 2 "--eval-batch -1 is out of range (allowed: 0\.\." train --data "$DATA" $small --eval-batch -1
expect_early lr-neg 2 "--lr -0.5 is out of range (allowed: -1 or >= 0)" train --data "$DATA" $small --lr -0.5
expect_early lr-inf 2 "--lr wants a finite number, got 'inf'" train --data "$DATA" $small --lr inf
expect_early lr-nan 2 "--lr wants a finite number, got 'nan'" train --data "$DATA" $small --lr nan
expect_early lr-overflow 2 "--lr wants a finite number, got '1e400'" train --data "$DATA" $small --lr 1e400
expect_early max-steps-neg 2 "--max-steps -5 is out of range (allowed: >= 0)" train --data "$DATA" $small --max-steps -5
expect_early weight-decay-neg 2 "--weight-decay -3 is out of range" train --data "$DATA" $small --weight-decay -3
expect_early clip-norm-neg 2 "--clip-norm -1 is out of range" train --data "$DATA" $small --clip-norm -1
expect_early warmup-neg 2 "--warmup-steps -3 is out of range" train --data "$DATA" $small --warmup-steps -3
expect_early log-every-neg 2 "--log-every -3 is out of range (allowed: >= 1)" train --data "$DATA" $small --log-every -3
expect_early eval-every-neg 2 "--eval-every -2 is out of range" train --data "$DATA" $small --eval-every -2
expect_early ckpt-every-neg 2 "--ckpt-every -1 is out of range" train --data "$DATA" $small --ckpt-every -1
expect_early momentum-5 2 "--momentum 5 is out of range (allowed: -1 or \[0, 1\])" train --data "$DATA" $small --momentum 5
expect_early epochs-neg 2 "--epochs -1 is out of range" train --data "$DATA" --model mlp:784-16-10 --epochs -1
expect_early epochs-0 2 "nothing to train: --epochs and --max-steps are both 0" train --data "$DATA" --model mlp:784-16-10 --epochs 0
# the same class of error, the same exit code
expect_early batch-0 2 "--batch 0 is out of range (allowed: 1\.\." train --data "$DATA" $small --batch 0
expect_early batch-12abc 2 "--batch wants an integer, got '12abc'" train --data "$DATA" $small --batch 12abc
expect_early seed-neg 2 "--seed wants a non-negative integer, got '-1'" train --data "$DATA" $small --seed -1
expect_early dropout-1 2 "--dropout 1 is out of range (allowed: \[0, 1))" train --data "$DATA" $small --dropout 1
expect_early zero-2 2 "--zero 2 is out of range (allowed: 0\.\.1 or auto)" train --data "$DATA" $small --zero 2
printf 'data = %s\nlr = -0.5\n' "$DATA" >"$WORK/bad.conf"
expect_early config-file 2 "bad.conf:2: --lr -0.5 is out of range" train --config "$WORK/bad.conf" $small
# names and combinations: found before the data is opened
expect_early step-no-size 2 "the step schedule needs --step-size > 0" train --data "$DATA" $small --schedule step
expect_early dgc-adam-early 2 "--dgc corrects SGD momentum" train --data "$DATA" $small --compress topk:0.01 --dgc true --optimizer adam

# the other commands: an unknown option is named as such, eval refuses options it would ignore
expect_error generate-bogus 2 "unknown option '--bogus' (see generate --help)" generate --bogus
expect_error generate-temp-inf 2 "bad value 'inf' for --temperature" generate --ckpt "$WORK/ck" --temperature inf
expect_error eval-train-flag 2 "eval takes --ckpt, --split, .* not --lr" eval --ckpt "$WORK/ck" --data "$DATA" --lr 0.1

# Every numeric option --help lists refuses a malformed value, and every integer option the
# values just outside the range --help states for it (singletons: no mpirun needed).
opts=$("$PARATRAIN" --help | sed -n 's/^  --\([a-z0-9-]*\) N .*/\1/p')
[ "$(echo $opts | wc -w)" -ge 25 ] || fail "--help lists only these numeric options: $opts"
bad_value() { # option value pattern
    set +e
    "$PARATRAIN" train --data "$DATA" --quiet true --"$1" "$2" >"$WORK/opt.out" 2>"$WORK/opt.err"
    rc=$?
    set -e
    [ $rc = 2 ] || { cat "$WORK/opt.err"; fail "--$1 '$2': exit code $rc, expected 2"; }
    [ "$(grep -c 'paratrain: error:' "$WORK/opt.err")" = 1 ] && grep -q -- "$3" "$WORK/opt.err" ||
        { cat "$WORK/opt.err"; fail "--$1 '$2': message lacks '$3'"; }
}
checked=0
for o in $opts; do
    bad_value "$o" 12abc "--$o wants"
    range=$("$PARATRAIN" --help | grep -- "^  --$o N" | sed -n 's/.*(allowed: \([^)]*\))$/\1/p')
    case $range in
    *"["*|*"("*|*"-1 or"*|*"> "*) bad_value "$o" nan "--$o wants a finite number" ;; # real-valued
    esac
    case $range in
    [0-9]*..[0-9]*" or auto") # --zero, --repro-chunk: -1 is auto, so below the range is -2 there
        r=${range% or auto}
        lo=${r%..*} hi=${r#*..} below=$((${r%..*} - 1))
        [ $below != -1 ] || below=-2
        bad_value "$o" $below "--$o $below is out of range"
        bad_value "$o" $((hi + 1)) "--$o $((hi + 1)) is out of range" ;;
    [0-9]*..[0-9]*)
        lo=${range%..*} hi=${range#*..}
        bad_value "$o" $((lo - 1)) "--$o $((lo - 1)) is out of range"
        bad_value "$o" $((hi + 1)) "--$o $((hi + 1)) is out of range" ;;
    ">= "[0-9]*)
        lo=${range#>= }
        bad_value "$o" $((lo - 1)) "--$o $((lo - 1)) is out of range" ;;
    esac
    checked=$((checked + 1))
done
pass "all $checked numeric options refuse malformed and out-of-range values (exit 2)"

# ---- model specs ------------------------------------------------------------------------------
expect_early mlp-trailing-dash 2 "bad model spec 'mlp:784-64-10-': an empty layer width" train --data "$DATA" $small --model mlp:784-64-10-
expect_early mlp-zero-width 2 "bad model spec 'mlp:784-0-10': '0' is not a positive layer width" train --data "$DATA" $small --model mlp:784-0-10
expect_early spec-empty-field 2 "bad model spec 'cnn:c1=4,,c2=8': empty key=value field" train --data "$DATA" $small --model cnn:c1=4,,c2=8
expect_early spec-key-twice 2 "key 'c1' given twice" train --data "$DATA" $small --model cnn:c1=4,c1=8
expect_error gpt-ctx-hint 2 "hint: gpt's ctx must be one less than the tokens per sample" \
    train --data "$DATA" $small --model gpt:d=32,layers=1,heads=2,ctx=16
# resume compares the model, not its text: an MLP's activation counts, the order of keys does not
expect_error other-activation 1 "was trained with --activation relu, this run uses gelu" \
    train --data "$DATA" $small --max-steps 6 --activation gelu --ckpt-dir "$WORK/ck" --resume latest
mpirun_t 2 60 "$PARATRAIN" train --data "$DATA" --model cnn:c1=2,c2=4,hidden=8 --batch 64 --max-steps 2 \
    --quiet true --ckpt-dir "$WORK/cnn" >/dev/null 2>&1 || fail "could not write a cnn checkpoint"
mpirun_t 2 60 "$PARATRAIN" train --data "$DATA" --model cnn:hidden=8,size=28,c2=4,c1=2 --batch 64 \
    --max-steps 4 --ckpt-dir "$WORK/cnn" --resume latest >"$WORK/cnn-resume.out" 2>&1 ||
    { cat "$WORK/cnn-resume.out"; fail "the same cnn with its keys in another order was refused on resume"; }
grep -q "resumed from .* at step 2" "$WORK/cnn-resume.out" || { cat "$WORK/cnn-resume.out"; fail "cnn resume did not resume"; }
pass "resume accepts the same cnn with its keys reordered"

# ---- checkpoint directory: refused before training, not at the first save --------------------
echo x >"$WORK/a-file"
expect_early ckpt-dir-file 1 "--ckpt-dir '.*a-file' is not a directory" train --data "$DATA" $small --ckpt-dir "$WORK/a-file"
expect_early ckpt-dir-under-file 1 "cannot create directory '.*a-file/sub': Not a directory" \
    train --data "$DATA" $small --ckpt-dir "$WORK/a-file/sub"
expect_early resume-latest-missing 1 "--resume latest: no checkpoint in '.*no-such-dir'" \
    train --data "$DATA" $small --ckpt-dir "$WORK/no-such-dir" --resume latest
grep -q -- "hint: use --resume auto" "$WORK/resume-latest-missing.err" || fail "resume-latest-missing: no hint at --resume auto"
[ ! -e "$WORK/no-such-dir" ] || fail "resume-latest-missing: created the directory"
# (with a missing data directory too: the paths are checked before the data is opened)
expect_early resume-path-missing 1 "checkpoint '.*no-such-file.h5' not found" \
    train --data "$WORK/nowhere" $small --resume "$WORK/no-such-file.h5"
expect_error metrics-under-file 1 "cannot create directory '.*a-file/m': Not a directory" \
    train --data "$WORK/nowhere" $small --metrics "$WORK/a-file/m/run.jsonl"
