#!/bin/sh
# Installs the Debian 12 packages paratrain needs to build, test and run its main job (Slurm and
# munge are there for the job-template test, which starts a private Slurm; SimGrid's
# libsimgrid-dev for the simulated-scale test, tests/test_sim.sh).
# Idempotent and quiet: installs only what is missing. Run as root (or through sudo).
#   scripts/install-deps.sh          build + test + data (PyTorch, h5py and numpy too: the
#                                    checkpoint export test runs the exported model in PyTorch)
#   scripts/install-deps.sh --bench  also what the benchmarks compare against (gnuplot)
#   scripts/install-deps.sh --ci     also the hardening checks' tools (.ci/sanitize.sh: gcc's
#                                    ASan/UBSan and llvm-symbolizer; .ci/valgrind.sh: valgrind;
#                                    tests/fuzz: clang with libFuzzer and its OpenMP runtime)
#   scripts/install-deps.sh --mpich  also MPICH and its parallel HDF5 (.ci/mpich.sh)
#   scripts/install-deps.sh --cross  also the AArch64 cross compiler (.ci/cross-aarch64.sh)
# (options combine; Open MPI stays the default mpicc, MPICH is mpicc.mpich)
set -eu
pkgs="autoconf automake libtool pkg-config make gcc openmpi-bin libopenmpi-dev libopenblas-dev libopenblas-openmp-dev
      libhdf5-openmpi-dev hdf5-tools zlib1g-dev dataset-fashion-mnist bible-kjv bible-kjv-text util-linux
      slurm-wlm munge slurm-wlm-torque libsimgrid-dev
      python3-torch python3-h5py python3-numpy"  # the last three: tests/test_torch_export.sh
for opt in "$@"; do
    case $opt in
    --bench) pkgs="$pkgs gnuplot-nox" ;;
    --ci) pkgs="$pkgs valgrind clang-14 libclang-rt-14-dev libomp-14-dev llvm-14" ;;
    --mpich) pkgs="$pkgs mpich libmpich-dev libhdf5-mpich-dev" ;;
    --cross) pkgs="$pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross file" ;;
    *) echo "install-deps: unknown option $opt (--bench, --ci, --mpich, --cross)" >&2; exit 2 ;;
    esac
done
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
