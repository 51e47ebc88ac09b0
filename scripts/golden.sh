#!/bin/sh
# The training step's golden values (tests/test_golden.c, reference in
# tests/data/golden/train_step.txt).
#
# usage:
#   sh scripts/golden.sh write          rebuild and rewrite the reference from this tree:
#                                       only in a commit that changes the numbers on
#                                       purpose, whose message says why
#   sh scripts/golden.sh compare REV    A/B: the lines of this tree (working copy)
#                                       against those of commit REV, built in a
#                                       temporary directory; exit 1 if they differ
#   sh scripts/golden.sh print          this tree's lines on standard output
# Environment: BUILD (default build), the build directory of this tree.
# REV is built with its own tests/test_golden.c when it has one, else with
# this tree's (to check commits made before the golden test existed).
set -eu

build=${BUILD:-build}
top=$(git rev-parse --show-toplevel)
cd "$top"

lines() {   # DIR BUILD: the lines of the tree in DIR
    make -C "$1" --no-print-directory -s -j2 BUILD="$2" "$2/tests/test_golden" >&2
    (cd "$1" && "$2/tests/test_golden" --print)
}

case ${1:-} in
write)
    lines . "$build" >tests/data/golden/train_step.txt.new
    mv tests/data/golden/train_step.txt.new tests/data/golden/train_step.txt
    echo "golden.sh: wrote tests/data/golden/train_step.txt; commit it saying why the numbers changed"
    ;;
print)
    lines . "$build"
    ;;
compare)
    rev=${2:?usage: golden.sh compare REV}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    git archive "$rev" | tar -x -C "$tmp"
    if [ ! -f "$tmp/tests/test_golden.c" ]; then
        cp tests/test_golden.c "$tmp/tests/"
        mkdir -p "$tmp/tests/support"
        cp tests/support/support.c tests/support/support.h "$tmp/tests/support/"
    fi
    lines "$tmp" build >"$tmp/old.txt"
    lines . "$build" >"$tmp/new.txt"
    if cmp -s "$tmp/old.txt" "$tmp/new.txt"; then
        echo "golden.sh: identical to $rev ($(wc -l <"$tmp/new.txt") lines)"
    else
        diff "$tmp/old.txt" "$tmp/new.txt" | head -40
        echo "golden.sh: the training step differs from $rev" >&2
        exit 1
    fi
    ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
