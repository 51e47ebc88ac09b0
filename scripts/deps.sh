#!/bin/sh
# Installs the Debian packages a target needs, when missing.
# usage: scripts/deps.sh build|check|demo|fuzz|mutate|valgrind|mpi|bench|paper
# As root it runs apt-get; otherwise it prints the exact apt-get line and stops
# (exit 1). Prints nothing when everything is there. Every name below exists in
# Debian 12 (bookworm).
set -eu

# The library: compiler, C library headers (and libc.a for static links),
# OpenBLAS (cblas.h, libopenblas.so/.a, openblas.pc), zlib, stb_image(_write),
# libpng and libjpeg-turbo (PNG and JPEG images; stb_image decodes BMP),
# pkg-config. GCC brings libgomp (OpenMP) and the ASan/UBSan runtimes.
build="gcc make libc6-dev libopenblas-dev zlib1g-dev libstb-dev libpng-dev libjpeg62-turbo-dev
    pkg-config"
# make check: cmocka for the unit tests; abigail-tools (abidw, abidiff) for the
# ABI check; binutils (nm, readelf) for the export and consumer tests; gfortran
# for libgfortran.a, which openblas.pc names for static links (the consumer
# test links a fully static program); cmake for the CMake package's test;
# python3-numpy for the Python binding's; groff-base to render the man pages;
# gnuplot-nox for scripts/agave-plot's.
check="libcmocka-dev abigail-tools binutils gfortran cmake python3-numpy groff-base gnuplot-nox"

case "${1:-build}" in
build) pkgs="$build" ;;
check) pkgs="$build $check" ;;
demo) pkgs="$build dataset-fashion-mnist" ;;
# fuzz: clang with libFuzzer and the sanitizer runtimes (libclang-rt-dev),
# LLVM's OpenMP runtime for clang's -fopenmp (libomp-dev), llvm-cov and
# llvm-profdata for the coverage report (llvm).
fuzz) pkgs="$build libcmocka-dev clang libclang-rt-dev libomp-dev llvm" ;;
# mutate: scripts/mutate.sh, make check's packages and python3 (its mutant applier).
mutate) pkgs="$build $check python3" ;;
# valgrind: memcheck over the test suite (make valgrind).
valgrind) pkgs="$build libcmocka-dev valgrind" ;;
# mpi: make MPI=1 and make check-mpi: Open MPI's mpicc and headers
# (libopenmpi-dev) and mpirun (openmpi-bin). Only the programs in build-mpi/
# use them; the library never links MPI.
mpi) pkgs="$build libopenmpi-dev openmpi-bin" ;;
# bench: the benchmark programs; bench/gemm also times oneDNN (libdnnl-dev) and
# libxsmm (libxsmm-dev) beside the library's kernels, and bench/torch_step.py
# runs the same model in PyTorch (python3-torch) for the same-run comparison
# of docs/performance.md. bench/codec.sh compares the codec with PNG (optipng),
# WebP (cwebp) and JPEG XL (cjxl) on Fashion-MNIST. The library links none of them.
bench) pkgs="$build libdnnl-dev libxsmm-dev python3-torch dataset-fashion-mnist optipng webp libjxl-tools" ;;
# paper: scripts/paper.sh, the paper's experiments on Fashion-MNIST, plotted
# with gnuplot (PNG terminal, no X).
paper) pkgs="$build dataset-fashion-mnist gnuplot-nox" ;;
*) echo "deps.sh: unknown target '$1' (build, check, demo, fuzz, mutate, valgrind, mpi, bench, paper)" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: not a Debian system; make sure the equivalents of these are installed:" >&2
    echo "deps.sh:   $pkgs" >&2
    exit 0
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages:$missing" >&2
    echo "deps.sh: install them with:  sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "deps.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $missing
