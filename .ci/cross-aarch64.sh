#!/usr/bin/env bash
# Compile-only check that the code builds for AArch64 (Debian's gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross): no x86 intrinsic, x86 header or x86-only builtin may appear outside the
# dispatched x86 kernels.
#
# What is covered: every C file of the library (src/, kernels/cpu/) and of the programs
# (src/cli/), compiled with -c -O2 -fopenmp -Wall -Werror=implicit-function-declaration for
# aarch64-linux-gnu, exactly as the build does except for -march. What is not: linking, and
# kernels/cpu/conv_direct_isa.c and the low-precision GEMM kernels lowp_blocked.c,
# lowp_avx512bf16.c and lowp_amx.c, which are x86-only by design (configure builds them only on
# x86 hosts; on AArch64 the im2col + BLAS path and the lowp fallback run). There are no AArch64 builds of the MPI, HDF5 and
# OpenBLAS headers here, so the x86-64 Debian ones are used (Open MPI's mpi.h, hdf5/openmpi,
# openblas-openmp): their declarations are the same on both 64-bit little-endian ABIs, but a
# type size that differs on AArch64 would not be caught. config.h is written here the way configure
# writes it for a non-x86 host (PT_HAVE_X86_KERNELS 0).
#   .ci/cross-aarch64.sh        (needs scripts/install-deps.sh --cross)
# Prints "cross-aarch64 check: N passed, N failed" (one per file) and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
CROSS_CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
command -v "$CROSS_CC" >/dev/null ||
    { echo "cross-aarch64: $CROSS_CC not found (Debian package gcc-aarch64-linux-gnu)"; echo "cross-aarch64 check: 0 passed, 1 failed"; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
version=$(sed -n 's/^AC_INIT(\[paratrain\], \[\([^]]*\)\].*/\1/p' configure.ac)
cat >"$out/config.h" <<CONFIG
/* config.h for the AArch64 compile check (.ci/cross-aarch64.sh) */
#define PACKAGE_VERSION "$version"
#define PT_HAVE_X86_KERNELS 0
#define HAVE_OPENBLAS_SET_NUM_THREADS 1
#define HAVE_OPENBLAS_GET_PARALLEL 1
CONFIG
ma=x86_64-linux-gnu
inc="-I$out -Iinclude -I/usr/lib/$ma/openmpi/include -I/usr/include/hdf5/openmpi -I/usr/include/$ma/openblas-openmp"
for d in /usr/lib/$ma/openmpi/include /usr/include/hdf5/openmpi /usr/include/$ma/openblas-openmp; do
    [ -d "$d" ] || { echo "cross-aarch64: $d missing (install-deps.sh installs it)"; echo "cross-aarch64 check: 0 passed, 1 failed"; exit 1; }
done
pass=0 failed=0
for f in $(ls src/*/*.c kernels/cpu/*.c | grep -v -E '^kernels/cpu/(conv_direct_isa|lowp_blocked|lowp_avx512bf16|lowp_amx)\.c$'); do
    # shellcheck disable=SC2086
    if "$CROSS_CC" -std=gnu11 -O2 -fopenmp -Wall -Werror=implicit-function-declaration $inc \
        -c "$f" -o "$out/obj.o" 2>"$out/err"; then
        pass=$((pass + 1))
    else
        failed=$((failed + 1))
        echo "cross-aarch64: FAIL $f"
        sed 's/^/    /' "$out/err" | head -20
    fi
done
# the objects really are AArch64 code
"$CROSS_CC" -std=gnu11 -O2 -fopenmp $inc -c src/core/cpu.c -o "$out/cpu.o" 2>/dev/null &&
    file "$out/cpu.o" 2>/dev/null | grep -q aarch64 || { command -v file >/dev/null && { echo "cross-aarch64: FAIL the compiler did not emit AArch64 objects"; failed=$((failed + 1)); }; }
echo "cross-aarch64 ($("$CROSS_CC" -dumpfullversion)): $pass files compiled for aarch64, $failed failed"
echo "cross-aarch64 check: ${pass} passed, ${failed} failed"
[ "$failed" -eq 0 ]
