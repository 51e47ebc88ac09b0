#!/bin/sh
# The three programs under valgrind memcheck, on a tiny generated IDX data
# set (run by scripts/valgrind.sh, which sets VALGRIND_OPTS: any error or
# definite leak makes valgrind exit 99). Covers the model end to end as a
# user runs it: training with checkpoints, a resumed run, evaluation with
# importance samples, sampling and reconstruction to PNG.
#
# usage: scripts/valgrind-programs.sh   (from the top of the tree)
# Environment: AGAVE_BUILD is the valgrind directory BUILD/valgrind; the
# programs are in BUILD/bin.
set -eu

bin=${AGAVE_BUILD:-build/valgrind}/../bin
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "valgrind-programs: FAIL: $*" >&2
    exit 1
}

# IDX: magic 00 00 08 03, count, rows, cols (big-endian u32), then pixels:
# 32 images of 8x8 with a gradient and a pseudo-random term.
idx_file() { # path count seed
    count=$(printf '\\%03o' "$2")
    printf "\\000\\000\\010\\003\\000\\000\\000$count\\000\\000\\000\\010\\000\\000\\000\\010" >"$1"
    printf "$(awk -v n="$2" -v s="$3" 'BEGIN {
        for (i = 0; i < n * 64; i++) {
            s = (s * 75 + 74) % 65537
            printf "\\%03o", (int(i % 64 / 8) * 24 + (i % 8) * 6 + s % 64) % 256
        } }')" >>"$1"
}
mkdir "$tmp/data"
idx_file "$tmp/data/train-images-idx3-ubyte" 32 1
idx_file "$tmp/data/t10k-images-idx3-ubyte" 8 2

vg() { # command... (fails on a non-zero exit, memcheck's 99 included)
    rc=0
    valgrind "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 0 ] || fail "exit status $rc: $*
$(cat "$tmp/err")"
}
common="--threads 2 --data $tmp/data"
vg "$bin/agave-train" --config tiny --set T=1 --set dropout=0.1 --steps 2 --batch 4 \
    --checkpoint-every 1 --log-every 1 --out "$tmp/run" $common
vg "$bin/agave-train" --steps 3 --resume --out "$tmp/run" $common
vg "$bin/agave-eval" --checkpoint "$tmp/run/model.ckpt" --limit 4 --samples 2 --json $common
grep -q '"iwae_bpd"' "$tmp/out" || fail "agave-eval --json printed no iwae_bpd"
vg "$bin/agave-sample" --checkpoint "$tmp/run/model.ckpt" --count 2 --out "$tmp/s.png"
vg "$bin/agave-sample" --checkpoint "$tmp/run/model.ckpt" --count 2 --reconstruct \
    --data "$tmp/data" --out "$tmp/r.png"
echo "valgrind-programs: agave-train (2 steps, resumed to 3), agave-eval, agave-sample: no errors, no definite leaks"
