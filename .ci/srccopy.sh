# Sourced by .ci/sanitize.sh and .ci/valgrind.sh: srccopy DEST copies the source tree (tracked and
# untracked-but-not-ignored files, plus the autogen.sh outputs when present) to DEST, so a second
# build can be configured there even when the checkout itself is configured in-tree (automake
# refuses a VPATH build of a source directory configured in-tree).
srccopy() {
    _dest=$1
    mkdir -p "$_dest"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -co --exclude-standard -z | grep -zv '^tests/fuzz/corpus/' |
            xargs -0 tar -cf - | tar -xf - -C "$_dest"
    else
        tar -cf - --exclude='./build-*' --exclude=./.git . | tar -xf - -C "$_dest"
    fi
    for _g in configure Makefile.in aclocal.m4 config.h.in build-aux m4; do
        [ -e "$_g" ] && cp -a "$_g" "$_dest/"
    done
    [ -x "$_dest/configure" ] || (cd "$_dest" && ./autogen.sh >/dev/null 2>&1)
}
