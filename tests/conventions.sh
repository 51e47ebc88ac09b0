#!/bin/sh
# What users of command-line programs expect, checked on agave-train,
# agave-eval and agave-sample:
#  - Ctrl-C in a terminal: the status line is not drawn again below the
#    "stopping" message, and no empty line is left (the summary follows);
#  - --version: exit 0, one line naming the program and the library's
#    version as include/agave_version.h numbers it, and listed by --help;
#  - singular nouns for counts of one ("1 minute", "1 sample").
#
# usage: tests/conventions.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory, default build).
set -eu
. tests/support/preamble.sh
. tests/support/tiny_idx.sh
data=$tmp/data
mkdir "$data"
idx_file "$data/train-images-idx3-ubyte" 64 1
idx_file "$data/t10k-images-idx3-ubyte" 16 2

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

# ---- --version -----------------------------------------------------------------------
for p in agave-train agave-eval agave-sample; do
    out=$("$bin/$p" --version 2>"$tmp/version.err") || fail "$p --version exits with $?"
    [ -s "$tmp/version.err" ] && fail "$p --version writes to stderr: $(cat "$tmp/version.err")"
    [ "$out" = "$p (libagave) $version" ] ||
        fail "$p --version prints '$out', expected '$p (libagave) $version'"
    "$bin/$p" --help | grep -q -- '--version' || fail "$p --help does not list --version"
done
echo "conventions: --version of each program: $version"

# ---- singular and plural -------------------------------------------------------------
"$bin/agave-train" --config tiny --data "$data" --steps 1 --minutes 1 --checkpoint-every 1 \
    --out "$tmp/one" $t1 >"$tmp/one.out" 2>"$tmp/one.err" || fail "agave-train: $(cat "$tmp/one.err")"
grep -q 'for 1 minute;' "$tmp/one.err" || fail "agave-train: not 'for 1 minute': $(cat "$tmp/one.err")"
grep -q 'every 1 step,' "$tmp/one.err" || fail "agave-train: not 'every 1 step': $(cat "$tmp/one.err")"
grep -q ' 0 rejected steps;' "$tmp/one.out" || fail "agave-train: not '0 rejected steps': $(cat "$tmp/one.out")"
"$bin/agave-sample" --checkpoint "$tmp/one/model.ckpt" --count 1 --out "$tmp/one.png" $t1 \
    >"$tmp/sample.out" 2>"$tmp/sample.err" || fail "agave-sample: $(cat "$tmp/sample.err")"
grep -q ': 1 sample (' "$tmp/sample.out" || fail "agave-sample: not '1 sample': $(cat "$tmp/sample.out")"
grep -q 'sampling 1 image,' "$tmp/sample.err" || fail "agave-sample: not '1 image': $(cat "$tmp/sample.err")"
echo "conventions: counts of one take the singular"

echo "conventions: all checks passed"
