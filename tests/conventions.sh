#!/bin/sh
# What users of command-line programs expect, checked on agave-train,
# agave-eval and agave-sample:
#  - Ctrl-C in a terminal: the status line is not drawn again below the
#    "stopping" message, and no empty line is left (the summary follows);
#
# usage: tests/conventions.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory, default build).
set -eu

build=${AGAVE_BUILD:-build}
bin=$build/bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "conventions: FAIL: $*" >&2
    exit 1
}
. tests/support/tiny_idx.sh
data=$tmp/data
mkdir "$data"
idx_file "$data/train-images-idx3-ubyte" 64 1
idx_file "$data/t10k-images-idx3-ubyte" 16 2
t1="--threads 1"

# ---- Ctrl-C in a terminal ----------------------------------------------------------
# script(1) (util-linux) runs agave-train on a pseudo-terminal and copies its
# own stdin there: the byte 0x03 is the terminal's Ctrl-C, which the line
# discipline turns into SIGINT for the program. The transcript must show the
# "stopping" message followed directly by the "stopped by SIGINT" line.
if command -v script >/dev/null 2>&1; then
    # (env --default-signal: a shell starts background jobs with SIGINT ignored)
    # The writer stays until the program is done: an early end of input would
    # make script(1) hang up the terminal.
    (sleep 3; printf '\003'; while [ ! -e "$tmp/tty.done" ]; do sleep 0.1; done) |
        env --default-signal=INT script -qefc "$bin/agave-train --config tiny --data $data --steps 1000000 --out $tmp/run \
            --log-every 1000 $t1" "$tmp/tty.txt" >/dev/null 2>&1 &
    pipe_pid=$!
    i=0
    until grep -q 'checkpoint run\|checkpoint /' "$tmp/tty.txt" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le 600 ] || fail "Ctrl-C in a terminal: agave-train did not stop within 60 s"
        sleep 0.1
    done
    : >"$tmp/tty.done"
    wait "$pipe_pid" 2>/dev/null || true
    tr -d '\r' <"$tmp/tty.txt" | sed 's/\x1b\[K/\n/g' >"$tmp/tty.lines"
    between=$(sed -n '/stopping after this step/,/stopped by SIGINT/p' "$tmp/tty.lines" |
        sed '1d;$d' | wc -l)
    [ "$between" -eq 0 ] ||
        fail "Ctrl-C in a terminal: $between lines between the stopping message and the summary:
$(cat "$tmp/tty.lines")"
    grep -q 'stopped by SIGINT' "$tmp/tty.lines" || fail "Ctrl-C in a terminal: no summary"
    echo "conventions: Ctrl-C in a terminal: the status line is not repeated after the message"
else
    echo "conventions: script(1) is missing (util-linux): the terminal test is skipped"
fi

echo "conventions: all checks passed"
