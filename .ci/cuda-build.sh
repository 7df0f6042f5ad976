#!/usr/bin/env bash
# The second build of CI: the CUDA backend (configure --with-cuda), a VPATH build in build-cuda/
# that must compile and link with nvcc; then tests/t_backend_ops (every entry on every backend:
# CUDA against the reference and the CPU backend where a GPU is present, its CUDA part reported as
# SKIP-part where none is) and tests/test_cuda_step.sh (every model's training on --backend cuda against
# --backend cpu) in it, which run where a GPU is present and SKIP (with the reason) where none is. Without nvcc the whole check is skipped with the reason (exit 77).
# Automake refuses a VPATH build of a source tree configured in place (as .ci/run's first build
# is), so the sources are copied to build-cuda/src (.ci/srccopy.sh) and build-cuda/obj builds.
#   .ci/cuda-build.sh   -> "cuda build: ok" / "cuda build: SKIP: reason"; non-zero on failure
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
B=$top/build-cuda
bail() { echo "cuda build: FAIL: $*"; exit 1; }
# The toolkit's own directory first: an nvcc found on PATH may be a wrapper script in /usr/local/bin
# (as on the CI image), whose parent directory holds no CUDA headers. configure asks nvcc where
# its toolkit is either way.
if test -x /usr/local/cuda/bin/nvcc; then
    cuda_dir=/usr/local/cuda
elif command -v nvcc >/dev/null; then
    cuda_dir=$(dirname "$(dirname "$(command -v nvcc)")")
else
    echo "cuda build: SKIP: no nvcc (neither on PATH nor /usr/local/cuda/bin): the CUDA toolkit is not installed"
    exit 77
fi
. .ci/srccopy.sh
rm -rf "$B/src" "$B/obj"
srccopy "$B/src"
mkdir -p "$B/obj"
cd "$B/obj"
../src/configure --with-cuda="$cuda_dir" ${CUDA_ARCH:+--with-cuda-arch=$CUDA_ARCH} >"$B/configure.log" 2>&1 ||
    { tail -30 "$B/configure.log"; bail "configure --with-cuda=$cuda_dir failed"; }
sed -n '/paratrain .* configured/,$p' "$B/configure.log"
grep -q '^#define HAVE_CUDA 1' config.h || bail "configure --with-cuda did not define HAVE_CUDA"
make -j2 >"$B/make.log" 2>&1 || { grep -B2 -A8 -i 'error' "$B/make.log" | head -60; bail "the CUDA build failed"; }
# runtime API only: a binary that needs libcuda.so does not even start without a driver
# (whole outputs into variables: grep -q would close the pipe early, and pipefail fail it)
libs=$(ldd .libs/libparatrain.so) syms=$(nm -D --defined-only .libs/libparatrain.so)
case $libs in *libcuda.so*) bail "libparatrain links libcuda.so (use the runtime API only)" ;; esac
case $syms in *" T pt_backend_cuda_select"*) ;;
*) bail "libparatrain has no pt_backend_cuda_select: kernels/cuda was not linked in" ;; esac
./paratrain --help >/dev/null 2>&1 || bail "the CUDA build's paratrain does not start"
make check TESTS="tests/t_backend_ops tests/test_cuda_step.sh" >"$B/check.log" 2>&1
rc=$?
for t in tests/t_backend_ops tests/test_cuda_step.sh; do
    [ -f "$t.log" ] && grep -E '^(SKIP:|SKIP-part|t_backend_ops:)|FAIL|max relative|checks,' "$t.log" | sed "s|^|cuda build: ${t#tests/}: |"
done
[ "$rc" -eq 0 ] || { tail -30 tests/t_backend_ops.log tests/test_cuda_step.sh.log 2>/dev/null; bail "the CUDA tests failed"; }
result() { sed -n 's/^:test-result: //p' "$1.trs"; }
echo "cuda build: ok (CUDA backend compiled and linked; t_backend_ops $(result tests/t_backend_ops), test_cuda_step $(result tests/test_cuda_step.sh))"
