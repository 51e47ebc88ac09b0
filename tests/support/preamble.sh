# Sourced first by every shell test (tests/*.sh and tests/mpi/*.sh, run from
# the top of the source tree): what they all need, written once.
#
# Sets
#   test_name  the test's file name without .sh, which starts its messages
#   build    the build directory ($AGAVE_BUILD, default build); bin its programs
#   san cc make   the build's sanitizer flags, compiler and make ($AGAVE_SAN,
#            $AGAVE_CC, $MAKE) for tests that compile or install
#   src      the top of the source tree, absolute
#   version major   the library's version as include/agave_version.h numbers it
#   t1       "--threads 1": figures that must not depend on the machine
#   tmp      a new temporary directory, removed when the test exits, after
#            killing $bg_pid (set it to a background process the test starts)
# and defines
#   fail MESSAGE...     "NAME: FAIL: MESSAGE" on stderr, exit 1
#   skip MESSAGE...     "NAME: SKIPPED: MESSAGE" on stdout, exit 77 (a skip
#                       for scripts/run-tests.sh)
#   quiet COMMAND...    runs COMMAND with its output in $tmp/log, shown if it fails
#   need_programs P...  fails unless $bin/P is built, for each P
set -eu

test_name=$(basename "$0" .sh)
build=${AGAVE_BUILD:-build}
bin=$build/bin
san=${AGAVE_SAN:-}
cc=${AGAVE_CC:-cc}
make=${MAKE:-make}
src=$(pwd)
version=$(sed -n 's/^#define AGAVE_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
    include/agave_version.h | paste -sd.)
major=${version%%.*}
t1="--threads 1"

tmp=$(mktemp -d)
bg_pid=""
preamble_cleanup() {
    if [ -n "$bg_pid" ]; then kill -KILL "$bg_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap preamble_cleanup EXIT

fail() {
    echo "$test_name: FAIL: $*" >&2
    exit 1
}
skip() {
    echo "$test_name: SKIPPED: $*"
    exit 77
}
quiet() {
    if ! "$@" >"$tmp/log" 2>&1; then
        cat "$tmp/log" >&2
        fail "command failed: $*"
    fi
}
need_programs() {
    for p in "$@"; do
        [ -x "$bin/$p" ] || fail "$bin/$p is not built"
    done
}
# Every variable above is for the tests that source this file.
: "$san" "$cc" "$make" "$src" "$major" "$t1"
