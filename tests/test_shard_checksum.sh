#!/bin/sh
# Shard checksums (docs/DATA_FORMAT.md, format version 2): silent damage on disk -- 16 KB of
# random bytes written into the pixels of one shard behind HDF5's back, or 4 bytes into a label --
# must stop training with one message naming the damaged shard, exit 1 on every rank, no hang;
# with the check off (PT_SHARD_VERIFY=0) the same damage trains without a word, which is what the
# checksums are for. Data of format version 1 (a whole directory or one shard) is refused with a
# message that says to re-run pt-prep.
. "${srcdir:-.}/tests/lib.sh"
need_data
small="--model mlp:784-16-10 --batch 64 --quiet true"

EXPECT_ERROR_TIMEOUT=120 # the damaged-data runs read a whole split

# The stored checksum is the documented one, computed independently (h5dump's raw bytes, Python's
# zlib): CRC-32 of the sample's stored image bytes, then its label as int32 little-endian.
for i in 0 5 1665; do
    f="$DATA/train/shard_00001.h5"
    h5dump -d /images -s "$i,0,0,0" -c "1,1,28,28" -b LE -o "$WORK/img.bin" "$f" >/dev/null &&
        h5dump -d /labels -s "$i" -c 1 -b LE -o "$WORK/lab.bin" "$f" >/dev/null || fail "h5dump sample $i"
    stored=$(h5dump -d /crc32 -s "$i" -c 1 "$f" | sed -n "s/^ *($i): *//p")
    want=$(python3 -c 'import sys, zlib; print(zlib.crc32(open(sys.argv[1], "rb").read() + open(sys.argv[2], "rb").read()))' \
           "$WORK/img.bin" "$WORK/lab.bin")
    [ "$stored" = "$want" ] || fail "sample $i: /crc32 holds $stored, the documented checksum is $want"
done
pass "/crc32 is CRC-32(image bytes + int32 LE label), as docs/DATA_FORMAT.md says"

# 16 KB of junk in the middle of the pixels of train shard 1
copy_data "$WORK/pix"
"$H5MANGLE" scribble "$WORK/pix/train/shard_00001.h5" images 400000 16384 7 || fail "h5mangle scribble"
cmp -s "$DATA/train/shard_00001.h5" "$WORK/pix/train/shard_00001.h5" && fail "the shard was not changed"
# found by the scan before step 1 (--validate-data true, the default) ...
expect_error pixels-validate 1 "shard '.*/pix/train/shard_00001.h5' is damaged: sample [0-9]* of the shard" \
    train --data "$WORK/pix" $small --max-steps 3
# ... and, without the scan, by the read of the step that first draws a damaged sample
expect_error pixels-read 1 "shard '.*/pix/train/shard_00001.h5' is damaged: sample [0-9]* of the shard" \
    train --data "$WORK/pix" $small --max-steps 300 --validate-data false
grep -q 'hint: .*re-run pt-prep' "$WORK/pixels-read.err" || { cat "$WORK/pixels-read.err"; fail "no re-run pt-prep hint"; }
# The control: unverified, the damage trains silently (nothing else can notice it).
PT_SHARD_VERIFY=0 mpirun_t 2 120 "$PARATRAIN" train --data "$WORK/pix" $small --max-steps 300 \
    --validate-data false --ckpt-dir "$WORK/ck0" >"$WORK/unverified.out" 2>&1 ||
    { cat "$WORK/unverified.out"; fail "PT_SHARD_VERIFY=0 should train on the damaged shard"; }
pass "PT_SHARD_VERIFY=0: the damaged shard trains without a word (what the checksums catch)"

# One large shard read two samples at a time: the checksums of far-apart samples come from the
# scattered selection, of close ones from one contiguous span (src/io/dataset.c, read_crcs).
# Clean, every read must verify (a wrong index mapping would raise a false alarm); damaged, the
# damage is found.
"$PT_PREP" fashion-mnist --src "$FMNIST_SRC" --out "$WORK/big" --shards 1 --limit 20000 --val 1000 >/dev/null ||
    fail "pt-prep of the one-shard data"
mpirun_t 1 120 "$PARATRAIN" train --data "$WORK/big" --model mlp:784-16-10 --batch 2 --max-steps 2000 \
    --quiet true --validate-data false --ckpt-dir "$WORK/ckbig" >"$WORK/big.out" 2>&1 ||
    { cat "$WORK/big.out"; fail "clean one-shard data, batch 2: reads failed to verify"; }
pass "one shard of 19000, batch 2, 2000 steps: every read verifies"
"$H5MANGLE" scribble "$WORK/big/train/shard_00000.h5" images 7000000 16384 11 || fail "h5mangle scribble"
expect_error big-read 1 "shard '.*/big/train/shard_00000.h5' is damaged: sample [0-9]* of the shard" \
    train --data "$WORK/big" --model mlp:784-16-10 --batch 4 --max-steps 9000 --quiet true --validate-data false

# 4 bytes of junk in the labels of validation shard 0: labels are covered too
copy_data "$WORK/lab"
"$H5MANGLE" scribble "$WORK/lab/val/shard_00000.h5" labels 400 4 3 || fail "h5mangle scribble labels"
expect_error labels 1 "shard '.*/lab/val/shard_00000.h5' is damaged: sample 100 of the shard" \
    train --data "$WORK/lab" $small --max-steps 3

# A whole directory of format version 1
copy_data "$WORK/v1"
"$H5MANGLE" set-attr-i64 "$WORK/v1/index.h5" format_version 1 || fail "h5mangle set-attr-i64"
expect_error v1-index 1 "index.h5: data format version 1, this paratrain reads version $FMT" \
    train --data "$WORK/v1" $small --max-steps 3
grep -q 'hint: version 1 shards carry no checksums: re-run pt-prep' "$WORK/v1-index.err" ||
    { cat "$WORK/v1-index.err"; fail "v1 index: no re-run pt-prep hint"; }
# One version 1 shard (no /crc32) copied into a current directory
copy_data "$WORK/v1s"
"$H5MANGLE" set-attr-i64 "$WORK/v1s/test/shard_00002.h5" format_version 1 || fail "h5mangle set-attr-i64"
"$H5MANGLE" delete "$WORK/v1s/test/shard_00002.h5" crc32 || fail "h5mangle delete"
expect_error v1-shard 1 "shard '.*/v1s/test/shard_00002.h5': data format version 1, this paratrain reads version $FMT" \
    eval --data "$WORK/v1s" --split test --ckpt "$WORK/ck0"
grep -q 'hint: version 1 shards carry no checksums: re-run pt-prep' "$WORK/v1-shard.err" ||
    { cat "$WORK/v1-shard.err"; fail "v1 shard: no re-run pt-prep hint"; }
# A current shard that lost its checksums
copy_data "$WORK/nocrc"
"$H5MANGLE" delete "$WORK/nocrc/train/shard_00000.h5" crc32 || fail "h5mangle delete"
expect_error no-crc 1 "shard '.*/nocrc/train/shard_00000.h5' lacks /images, /labels or /crc32" \
    train --data "$WORK/nocrc" $small --max-steps 3
