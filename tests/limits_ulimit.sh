#!/bin/sh
# Out of memory as a user meets it (docs/reliability.md): agave-train under
# `ulimit -v` must report a model that does not fit as an error (exit 2, one
# line on stderr, no output directory), not crash or hang.
#
# The limit is set from the address space a tiny run really uses (its VmPeak,
# sampled from /proc while it trains), plus 128 MiB: enough for that run,
# checked first, and far too little for the parameters of F = 256, R = 4
# (about 400 MB). OpenBLAS runs single-threaded (OPENBLAS_NUM_THREADS=1) so
# that its thread pool, whose size depends on the machine, does not move the
# figure.
#
# OpenBLAS 0.3.21 (Debian 12) maps a 128 MiB work buffer at its first
# product and, if that fails, retries for ever (OpenMathLib/OpenBLAS#5289;
# later versions exit instead). libagave maps it when a context is made and
# refuses with AGAVE_ERR_NOMEM if it cannot (lib/core/blas_reserve.c); case 4
# runs below the buffer's need, where a hang used to be. Timeouts turn a hang
# into a failure that says so (-k: a stuck program ignores SIGTERM, which
# only asks it to stop after the step). tests/test_limits.c checks the
# library's own out-of-memory paths inside one process.
#
# usage: tests/limits_ulimit.sh   (run by make check from the top of the tree)
# Skipped (exit 77) under make sanitize: ASan reserves terabytes of address
# space for its shadow memory and cannot start under `ulimit -v`.
set -eu
. tests/support/preamble.sh
train=$bin/agave-train
[ -z "$san" ] || skip "sanitizer builds cannot run under ulimit -v"
need_programs agave-train
export OPENBLAS_NUM_THREADS=1

# A tiny IDX data set (magic 00 00 08 03, 32 images of 8x8).
mkdir "$tmp/data"
f=$tmp/data/train-images-idx3-ubyte
printf '\000\000\010\003\000\000\000\040\000\000\000\010\000\000\000\010' >"$f"
head -c 2048 /dev/urandom >>"$f"

# 1. The address space of a tiny run, without a limit (agave-train itself in
#    the background, so that $! is its pid).
"$train" --config tiny --data "$tmp/data" --out "$tmp/calibrate" --steps 3 --batch 4 \
    --threads 1 >"$tmp/out" 2>"$tmp/err" &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
    v=$(sed -n 's/^VmPeak:[^0-9]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null || true)
    if [ -n "$v" ] && [ "$v" -gt "$peak" ]; then peak=$v; fi
    sleep 0.01
done
wait "$pid" || fail "the tiny run fails without a limit: $(cat "$tmp/err")"
[ "$peak" -gt 0 ] || fail "could not read VmPeak of the tiny run"
limit=$((peak + 131072))

# 2. Under the limit the tiny run still trains (so the library loads and works).
rc=0
(ulimit -v "$limit" && timeout -k 5 120 "$train" --config tiny --data "$tmp/data" --out "$tmp/a" \
    --steps 3 --batch 4 --threads 1 >"$tmp/out" 2>"$tmp/err") || rc=$?
[ "$rc" -ne 124 ] || fail "the tiny run hangs under ulimit -v $limit KiB (OpenBLAS retrying a failed allocation?)"
[ "$rc" -eq 0 ] || fail "the tiny run fails under ulimit -v $limit KiB (exit $rc): $(cat "$tmp/err")"

# 3. A model that cannot fit: a clean error, quickly, and nothing written.
rc=0
(ulimit -v "$limit" && timeout -k 5 120 "$train" --config tiny --set F=256 --set R=4 \
    --data "$tmp/data" --out "$tmp/b" --steps 3 --batch 4 --threads 1 \
    >"$tmp/out" 2>"$tmp/err") || rc=$?
[ "$rc" -ne 124 ] || fail "agave-train hangs when the model does not fit"
[ "$rc" -eq 2 ] || fail "exit status $rc, expected 2, when the model does not fit: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "not one line on stderr: $(cat "$tmp/err")"
grep -qi "allocate\|memory" "$tmp/err" || fail "the message does not say memory ran out: $(cat "$tmp/err")"
[ ! -e "$tmp/b" ] || fail "a refused run created its output directory"
# 4. Too little even for OpenBLAS's work buffer (128 MiB of address space,
#    which 0.3.21 retries for ever to map): libagave maps it when the context
#    is made, so this is a clean error too, not a hang in the first product.
tight=$((peak - 65536))
rc=0
(ulimit -v "$tight" && timeout -k 5 120 "$train" --config tiny --data "$tmp/data" \
    --out "$tmp/c" --steps 3 --batch 4 --threads 1 >"$tmp/out" 2>"$tmp/err2") || rc=$?
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] ||
    fail "agave-train hangs under ulimit -v $tight KiB (OpenBLAS retrying its buffer?)"
[ "$rc" -eq 2 ] || fail "exit status $rc under ulimit -v $tight KiB, expected 2: $(cat "$tmp/err2")"
grep -q "OpenBLAS" "$tmp/err2" || fail "the message does not name OpenBLAS's buffer: $(cat "$tmp/err2")"
echo "limits_ulimit: under ulimit -v $tight KiB (peak - 64 MiB): exit 2, no hang: $(cat "$tmp/err2")"

echo "limits_ulimit: under ulimit -v $limit KiB (tiny run's peak $peak + 128 MiB) a tiny run" \
    "trains, and F=256 R=4 exits 2: $(cat "$tmp/err")"
