#!/bin/sh
# pt-prep kjv-lm / kjv-books: bad text input gets one clear message, exit 1 (2 when the options
# do not fit the text) and no index; a small hand-made text lands in the splits the
# documentation promises.
. "${srcdir:-.}/tests/lib.sh"
expect_error() { # name pattern dataset src [ctx [exit code]]
    _out="$WORK/out-$1"
    set +e
    "$PT_PREP" "$3" --src "$4" --out "$_out" --ctx "${5:-8}" >"$WORK/$1.log" 2>&1
    _rc=$?
    set -e
    [ $_rc = "${6:-1}" ] || { cat "$WORK/$1.log"; fail "$1: exit code $_rc, expected ${6:-1}"; }
    [ "$(grep -c 'error' "$WORK/$1.log")" = 1 ] || { cat "$WORK/$1.log"; fail "$1: not one error line"; }
    grep -q -- "$2" "$WORK/$1.log" || { cat "$WORK/$1.log"; fail "$1: message lacks '$2'"; }
    [ ! -e "$_out/index.h5" ] || fail "$1: an index was written"
    echo "$1: $(cat "$WORK/$1.log")"
}
printf 'Ge1:1 In the beginning God created the heaven and the earth.\n' >"$WORK/good1"
: >"$WORK/empty"
printf 'Ge1:1 In the beginning.\nthis is not a verse\n' >"$WORK/noref"
printf 'Ge1:1 In the beginning.\nXyz3:4 Unknown book.\n' >"$WORK/badbook"
printf 'Ge1:1 In the beginning.\nGe1:x no verse number\n' >"$WORK/badnum"
head -c 3000 /dev/urandom >"$WORK/binary"
# a NUL first: a reader that stops at the first NUL sees an empty file (the random one above
# starts with one 1 time in 256, which is how this was found)
{ printf '\0'; head -c 3000 /dev/urandom; } >"$WORK/nul"
printf 'Ge1:1 In the beginning.\n\0Ge1:2 And the earth was without form.\n' >"$WORK/nul2"
for ds in kjv-lm kjv-books; do
    expect_error "$ds-missing" "cannot open" $ds "$WORK/does-not-exist"
    expect_error "$ds-empty" "empty" $ds "$WORK/empty"
    expect_error "$ds-noref" "line 2 is not a verse" $ds "$WORK/noref"
    expect_error "$ds-badbook" "line 2 is not a verse" $ds "$WORK/badbook"
    expect_error "$ds-badnum" "line 2 is not a verse" $ds "$WORK/badnum"
    expect_error "$ds-binary" "line 1 is not a verse" $ds "$WORK/binary"
    expect_error "$ds-nul" "line 1 is not a verse" $ds "$WORK/nul"
    expect_error "$ds-nul2" "line 2 is not a verse" $ds "$WORK/nul2"
done
expect_error "lm-short" "fewer than" kjv-lm "$WORK/good1" 100 2
expect_error "lm-ctx-1" "--ctx wants an integer in 2\.\.65535, got '1'" kjv-lm "$WORK/good1" 1 2
expect_error "books-ctx-12abc" "--ctx wants an integer in 2\.\.65535, got '12abc'" kjv-books "$WORK/good1" 12abc 2

# Splits: kjv-lm puts Ruth in validation and John in test; kjv-books labels by book group.
{
    i=1; while [ $i -le 20 ]; do echo "Ge1:$i And God saw every thing that he had made, and, behold."; i=$((i + 1)); done
    echo "Ruth1:1 Now it came to pass in the days when the judges ruled."
    echo "John1:1 In the beginning was the Word, and the Word was with God."
    echo "Rev22:21 The grace of our Lord Jesus Christ be with you all. Amen."
} >"$WORK/small"
"$PT_PREP" kjv-lm --src "$WORK/small" --out "$WORK/lm" --ctx 8 --shards 1 >/dev/null || fail "kjv-lm on good text"
counts() { h5dump -d "/$2/counts" "$1/index.h5" | sed -n 's/.*(0): \([0-9]*\).*/\1/p'; }
# expected windows per split from the text itself: (bytes of "text\n" - 1) / ctx
want() { awk -v re="$1" '$1 ~ re { sub(/^[^ ]* /, ""); n += length($0) + 1 } END { print int((n - 1) / 8) }' "$WORK/small"; }
for s in "train ^(Ge|Rev)" "val ^Ruth" "test ^John"; do
    set -- $s
    [ "$(counts "$WORK/lm" $1)" = "$(want "$2")" ] ||
        fail "kjv-lm $1 windows: $(counts "$WORK/lm" $1), want $(want "$2")"
done
"$PT_PREP" kjv-books --src "$WORK/small" --out "$WORK/books" --ctx 16 --shards 1 >/dev/null ||
    fail "kjv-books on good text"
total=0
for s in train val test; do total=$((total + $(counts "$WORK/books" $s))); done
[ $total = 23 ] || fail "kjv-books: $total verses, want 23"
h5dump -a /class_names "$WORK/books/index.h5" | grep -q "Law,History,Poetry/Wisdom,Prophets,Gospels/Acts,Epistles/Revelation" ||
    fail "kjv-books class names"
pass "bad text refused with one message; splits by book and chapter"
