#!/bin/sh
# Installs the Debian 12 packages paratrain needs to build, test and run its main job (Slurm and
# munge are there for the job-template test, which starts a private Slurm).
# Idempotent and quiet: installs only what is missing. Run as root (or through sudo).
#   scripts/install-deps.sh          build + test + data
#   scripts/install-deps.sh --bench  also what the benchmarks compare against (PyTorch, gnuplot)
#   scripts/install-deps.sh --ci     also the hardening checks' tools (.ci/sanitize.sh: gcc's
#                                    ASan/UBSan and llvm-symbolizer; .ci/valgrind.sh: valgrind;
#                                    tests/fuzz: clang with libFuzzer and its OpenMP runtime)
set -eu
pkgs="autoconf automake libtool pkg-config make gcc openmpi-bin libopenmpi-dev libopenblas-dev libopenblas-openmp-dev
      libhdf5-openmpi-dev hdf5-tools zlib1g-dev dataset-fashion-mnist bible-kjv bible-kjv-text util-linux
      slurm-wlm munge slurm-wlm-torque"
[ "${1:-}" = "--bench" ] && pkgs="$pkgs python3-torch python3-h5py python3-numpy gnuplot-nox"
[ "${1:-}" = "--ci" ] && pkgs="$pkgs valgrind clang-14 libclang-rt-14-dev libomp-14-dev llvm-14"
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
