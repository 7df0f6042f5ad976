#!/bin/sh
# pt-prep on the real Fashion-MNIST files: counts, split sizes, shard layout; and one clear error
# for each kind of broken IDX input.
. "${srcdir:-.}/tests/lib.sh"
need_data
out="$WORK/full"
"$PT_PREP" fashion-mnist --src "$FMNIST_SRC" --out "$out" --shards 4 --val 6000 >/dev/null ||
    fail "pt-prep on the full data set"
for s in train val test; do
    n=$(ls "$out/$s" | wc -l)
    [ "$n" = 4 ] || fail "$s has $n shard files, expected 4"
done
# Counts straight from the files (h5dump), independent of paratrain's reader.
count() { h5dump -a /count "$1" | sed -n 's/^ *(0): *//p'; }
total() { t=0; for f in "$out/$1"/shard_*.h5; do t=$((t + $(count "$f"))); done; echo $t; }
[ "$(total train)" = 54000 ] || fail "train has $(total train) examples"
[ "$(total val)" = 6000 ] || fail "val has $(total val) examples"
[ "$(total test)" = 10000 ] || fail "test has $(total test) examples"
h5dump -H -d /images "$out/train/shard_00000.h5" | grep -q "( 13500, 1, 28, 28 )" ||
    fail "images of shard 0 are not (13500, 1, 28, 28)"
pass "full Fashion-MNIST: 54000/6000/10000 in 4 shards each"

# Broken inputs: each gives one 'pt-prep: error:' line and exit 1 (not a usage error).
expect_error() { # dir pattern
    set +e
    "$PT_PREP" fashion-mnist --src "$1" --out "$WORK/bad-out" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    set -e
    [ $rc = 1 ] || fail "pt-prep on $1: exit code $rc, expected 1: $(cat "$WORK/err")"
    [ "$(grep -c 'pt-prep: error:' "$WORK/err")" = 1 ] || fail "not one error line for $1: $(cat "$WORK/err")"
    grep -q "$2" "$WORK/err" || fail "message for $1 lacks '$2': $(cat "$WORK/err")"
}
mkdir -p "$WORK/src"
cp "$FMNIST_SRC"/*.gz "$WORK/src/"
rm "$WORK/src/t10k-labels-idx1-ubyte.gz"
expect_error "$WORK/src" "cannot find t10k-labels"
cp "$FMNIST_SRC/t10k-labels-idx1-ubyte.gz" "$WORK/src/"
# wrong magic: a label file in place of an image file
cp "$FMNIST_SRC/train-labels-idx1-ubyte.gz" "$WORK/src/train-images-idx3-ubyte.gz"
expect_error "$WORK/src" "magic number"
# truncated data
zcat "$FMNIST_SRC/train-images-idx3-ubyte.gz" | head -c 1000000 | gzip -1 >"$WORK/src/train-images-idx3-ubyte.gz"
expect_error "$WORK/src" "header promises"
cp "$FMNIST_SRC/train-images-idx3-ubyte.gz" "$WORK/src/"
# a test label file that does not match the test images
zcat "$FMNIST_SRC/t10k-labels-idx1-ubyte.gz" | head -c 5008 | gzip -1 >"$WORK/src/t10k-labels-idx1-ubyte.gz"
expect_error "$WORK/src" "header promises"
"$PT_PREP" --help | grep -q -- "--shards" || fail "--help lacks --shards"
pass "broken IDX inputs rejected with one message each (exit 1)"

# Usage errors: one message, exit 2, nothing written; values are never clamped silently.
usage_error() { # pattern pt-prep-args...
    pat=$1
    shift
    rm -rf "$WORK/x"
    set +e
    "$PT_PREP" "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    set -e
    [ $rc = 2 ] || fail "pt-prep $*: exit code $rc, expected 2: $(cat "$WORK/err")"
    [ "$(grep -c 'pt-prep: error:' "$WORK/err")" = 1 ] || fail "pt-prep $*: not one error line: $(cat "$WORK/err")"
    grep -q -- "$pat" "$WORK/err" || fail "pt-prep $*: message lacks '$pat': $(cat "$WORK/err")"
    [ ! -e "$WORK/x/index.h5" ] || fail "pt-prep $*: wrote an index"
}
usage_error "unknown option '--bogus' for fashion-mnist" fashion-mnist --out "$WORK/x" --bogus
usage_error "unknown option '--bogus' for fashion-mnist" fashion-mnist --out "$WORK/x" --bogus 3
usage_error "unknown option '--ctx' for fashion-mnist" fashion-mnist --out "$WORK/x" --ctx 16
usage_error "unknown option '--val' for kjv-lm" kjv-lm --src /dev/null --out "$WORK/x" --val 5
usage_error "--shards wants an integer in 1\.\.100000, got '0'" fashion-mnist --out "$WORK/x" --shards 0
usage_error "--shards wants an integer in 1\.\.100000, got '12abc'" fashion-mnist --out "$WORK/x" --shards 12abc
usage_error "--shards wants an integer in 1\.\.100000, got '99999999999'" fashion-mnist --out "$WORK/x" --shards 99999999999
usage_error "--val needs a value" fashion-mnist --out "$WORK/x" --val
usage_error "--val 200 is not below --limit 100" fashion-mnist --src "$FMNIST_SRC" --out "$WORK/x" --limit 100 --val 200
usage_error "--val 70000 leaves no training examples: .* holds 60000" fashion-mnist --src "$FMNIST_SRC" --out "$WORK/x" --val 70000
pass "usage errors: one message each, exit 2, nothing written"
