#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/fuzz_*.c) with Debian's clang:
# -fsanitize=fuzzer,address,undefined. The library sources are compiled once into
# tests/fuzz/build/libpt_fuzz.a with -fsanitize=fuzzer-no-link,address,undefined; each harness
# links it with Open MPI, parallel HDF5, OpenBLAS (OpenMP build) and clang's OpenMP runtime.
# Needs config.h (./autogen.sh && ./configure in the source tree, or CONFIG_H=path/to/config.h).
#   tests/fuzz/build.sh [OUTDIR]        (default tests/fuzz/build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-$here/build}
CLANG=${CLANG:-$(command -v clang-14 || command -v clang)}
[ -x "$CLANG" ] || { echo "fuzz/build: clang not found (Debian packages clang-14 libclang-rt-14-dev libomp-14-dev)" >&2; exit 1; }
mkdir -p "$out/obj" "$out/inc"
# config.h: the configured tree's, else a minimal one (the sources use only PACKAGE_VERSION)
if [ -n "${CONFIG_H:-}" ]; then cp "$CONFIG_H" "$out/inc/config.h"
elif [ -f "$top/config.h" ]; then cp "$top/config.h" "$out/inc/config.h"
else printf '#define PACKAGE_VERSION "fuzz"\n#define VERSION "fuzz"\n' >"$out/inc/config.h"; fi
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
blas_pc=/usr/lib/$multiarch/openblas-openmp/pkgconfig
CFLAGS="-std=gnu11 -g -O1 -march=native -fno-omit-frame-pointer -fopenmp -fsanitize=address,undefined \
 -fno-sanitize-recover=undefined -Wno-unused-command-line-argument -Wno-pass-failed \
 -I$top/include -I$top/src/io -I$out/inc $(mpicc -showme:compile) $(pkg-config --cflags hdf5-openmpi) \
 $(PKG_CONFIG_PATH=$blas_pc pkg-config --cflags openblas)"
LIBS="$(pkg-config --libs hdf5-openmpi) -lhdf5_hl $(mpicc -showme:link) \
 -L/usr/lib/$multiarch/openblas-openmp -Wl,-rpath,/usr/lib/$multiarch/openblas-openmp -lopenblas -lz -lm"
# the library: every source Makefile.am lists for libparatrain (src/comm/half.h no longer uses
# _Float16, which clang 14 supports on x86 only with AVX512-FP16, so nothing is left out)
srcs=$(sed -n '/^libparatrain_la_SOURCES/,/^[^\t ]/p' "$top/Makefile.am" | tr ' \\\t' '\n\n\n' | grep '\.c$')
objs=()
pids=()
for s in $srcs; do
    o=$out/obj/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')
    objs+=("$o")
    if [ ! -f "$o" ] || [ "$top/$s" -nt "$o" ]; then
        "$CLANG" $CFLAGS -fsanitize=fuzzer-no-link -c "$top/$s" -o "$o" &
        pids+=($!)
        [ ${#pids[@]} -ge "${JOBS:-2}" ] && { wait "${pids[0]}"; pids=("${pids[@]:1}"); }
    fi
done
for p in "${pids[@]}"; do wait "$p"; done
# the per-ISA conv kernels (libconv_*.la in Makefile.am), which kernels/cpu/conv_direct.c dispatches to
for isa in avx2 avx512; do
    o=$out/obj/conv_kernels_$isa.o
    objs+=("$o")
    [ -f "$o" ] && [ "$o" -nt "$top/kernels/cpu/conv_direct_isa.c" ] ||
        "$CLANG" $CFLAGS -DPT_CONV_SUFFIX=$isa -fsanitize=fuzzer-no-link -c "$top/kernels/cpu/conv_direct_isa.c" -o "$o"
done
# the elementwise kernels (libew_*.la): the baseline table (which holds the dispatcher) and the
# per-ISA ones, all with -ffp-contract=off as Makefile.am builds them
for isa in baseline avx2 avx512; do
    o=$out/obj/elementwise_kernels_$isa.o
    objs+=("$o")
    def=""
    [ $isa = baseline ] || def="-DPT_EW_SUFFIX=$isa"
    [ -f "$o" ] && [ "$o" -nt "$top/kernels/cpu/elementwise_kernels.c" ] ||
        "$CLANG" $CFLAGS -ffp-contract=off $def -fsanitize=fuzzer-no-link -c "$top/kernels/cpu/elementwise_kernels.c" -o "$o"
done
rm -f "$out/libpt_fuzz.a"
ar rcs "$out/libpt_fuzz.a" "${objs[@]}"
for h in "$here"/fuzz_*.c; do
    n=$(basename "$h" .c)
    "$CLANG" $CFLAGS -fsanitize=fuzzer -I"$top/src" "$h" "$out/libpt_fuzz.a" $LIBS -o "$out/$n"
    echo "fuzz/build: $out/$n"
done
