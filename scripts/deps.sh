#!/bin/sh
# Installs the Debian packages a target needs, when missing.
# usage: scripts/deps.sh build|check|demo|fuzz|mpi
# As root it runs apt-get; otherwise it prints the exact apt-get line and stops.
set -eu
build="gcc make libc6-dev libopenblas-dev zlib1g-dev libstb-dev pkg-config"
case "${1:-build}" in
build) pkgs="$build" ;;
check) pkgs="$build libcmocka-dev abigail-tools binutils" ;;
demo) pkgs="$build dataset-fashion-mnist" ;;
fuzz) pkgs="$build libcmocka-dev clang libclang-rt-dev" ;;
mpi) pkgs="$build libcmocka-dev libopenmpi-dev openmpi-bin" ;;
*) echo "deps.sh: unknown target '$1' (build, check, demo, fuzz, mpi)" >&2; exit 2 ;;
esac
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
apt-get install -y -qq --no-install-recommends$missing
