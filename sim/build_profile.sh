#!/bin/sh
# Builds sim/pt_layer_profile.c against this tree's libparatrain (run ./configure && make first),
# into ${SIM_BUILD:-sim/build}/pt-layer-profile. A real (not simulated) program: mpicc, OpenMP.
set -eu
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
out=${SIM_BUILD:-$top/sim/build}
mkdir -p "$out"
[ -f "$out/.gitignore" ] || echo "*" >"$out/.gitignore"
[ -f "$top/libparatrain.la" ] ||
    { echo "sim/build_profile.sh: no libparatrain.la (make first)" >&2; exit 1; }
cd "$top"
./libtool --quiet --mode=link mpicc -std=c11 -O2 -fopenmp -Iinclude -o "$out/pt-layer-profile" \
    sim/pt_layer_profile.c libparatrain.la -lm
echo "$out/pt-layer-profile"
