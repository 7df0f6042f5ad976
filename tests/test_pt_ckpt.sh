#!/bin/sh
# pt-ckpt on a checkpoint with more than 256 datasets (a gpt with 7 layers and AdamW: 88 parameter
# tensors x (weights, exp_avg, exp_avg_sq) = 264), against h5ls's own listing of the file:
#   - info lists and verifies every dataset;
#   - diff walks both files: a file equals itself over every dataset, a change in the dataset that
#     sorts last (beyond the 256th) is found, and a dataset present only in the second file (or
#     only in the first) is a difference.
. "${srcdir:-.}/tests/lib.sh"
need_kjv
command -v h5ls >/dev/null && command -v h5copy >/dev/null ||
    { echo "SKIP: h5ls/h5copy (package hdf5-tools) not installed"; exit 77; }
common="--data $KJV_LM --model gpt:layers=7,heads=2,d=16,ctx=16 --optimizer adamw --batch 8
        --max-steps 2 --log-every 1 --eval-every 1000 --quiet true --seed 5"
train_run gpt7 1
ck="$WORK/gpt7/step_00000002.h5"
[ -f "$ck" ] || fail "no checkpoint $ck"
# the reference: h5ls's recursive listing, names sorted as pt-ckpt prints them
h5ls -r "$ck" | awk '$2 == "Dataset" { print $1 }' | LC_ALL=C sort >"$WORK/h5ls.txt"
n=$(wc -l <"$WORK/h5ls.txt")
[ "$n" -gt 256 ] || fail "the checkpoint has only $n datasets; the test needs more than 256"

"$PT_CKPT" info "$ck" >"$WORK/info" || { cat "$WORK/info"; fail "pt-ckpt info"; }
grep '^  /' "$WORK/info" | awk '{ print $1 }' | LC_ALL=C sort >"$WORK/info.txt"
cmp -s "$WORK/h5ls.txt" "$WORK/info.txt" ||
    { diff "$WORK/h5ls.txt" "$WORK/info.txt" | head; fail "info lists $(wc -l <"$WORK/info.txt") of $n datasets"; }
[ "$(grep -c 'crc32 ok' "$WORK/info")" = "$n" ] || fail "info verified fewer than $n checksums"
pass "info lists and verifies all $n datasets"

"$PT_CKPT" diff "$ck" "$ck" >"$WORK/self" || { cat "$WORK/self"; fail "a checkpoint differs from itself"; }
grep '^  /' "$WORK/self" | awk '{ print $1 }' | LC_ALL=C sort >"$WORK/self.txt"
cmp -s "$WORK/h5ls.txt" "$WORK/self.txt" || fail "diff compared $(wc -l <"$WORK/self.txt") of $n datasets"
tail -1 "$WORK/self" | grep -q "over $n datasets" || { tail -1 "$WORK/self"; fail "diff summary count"; }

# a change in the last dataset by name (past the 256th)
last=$(tail -1 "$WORK/h5ls.txt")
cp "$ck" "$WORK/changed.h5"
"$H5MANGLE" set-f32 "$WORK/changed.h5" "$last" 0 123 || fail "h5mangle $last"
if "$PT_CKPT" diff "$ck" "$WORK/changed.h5" >"$WORK/changed"; then
    cat "$WORK/changed"; fail "a change in $last (dataset $n of $n) was not found"
fi
grep -q "^  $last .*elements differing 1\$" "$WORK/changed" || { grep "$last" "$WORK/changed"; fail "the change was not reported on $last"; }

# a dataset only in the second file, then only in the first
cp "$ck" "$WORK/extra.h5"
h5copy -p -i "$ck" -o "$WORK/extra.h5" -s "$last" -d /extra/copy || fail "h5copy"
if "$PT_CKPT" diff "$ck" "$WORK/extra.h5" >"$WORK/extra2"; then
    cat "$WORK/extra2"; fail "a dataset only in the second file is no difference"
fi
grep -q '^  /extra/copy  *only in the second file' "$WORK/extra2" || { tail -3 "$WORK/extra2"; fail "extra dataset not named"; }
if "$PT_CKPT" diff "$WORK/extra.h5" "$ck" >"$WORK/extra1"; then
    cat "$WORK/extra1"; fail "a dataset only in the first file is no difference"
fi
grep -q '^  /extra/copy  *only in the first file' "$WORK/extra1" || { tail -3 "$WORK/extra1"; fail "extra dataset not named"; }
pass "diff walks all $n datasets of both files: a change in the last, and an extra one in either file, differ"
