#!/bin/sh
# agave-compress and agave-decompress on a tiny generated IDX data set (64
# training and 16 test images of 1x8x8) and a tiny model trained for 3 steps:
#  - --help lists the interface;
#  - a round trip: the test split compressed and decompressed into one IDX
#    file is the original test file, byte for byte; into PNGs, 16 files;
#    --limit compresses the first N;
#  - refusals: bad arguments, a damaged or truncated file, another
#    checkpoint, another thread count: exit status 2, one line on stderr,
#    nothing on stdout and no output file.
#
# usage: tests/codec_programs.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory, default build).
set -eu
. tests/support/preamble.sh
. tests/support/tiny_idx.sh
need_programs agave-train agave-compress agave-decompress
compress=$bin/agave-compress
decompress=$bin/agave-decompress

data=$tmp/data
mkdir "$data"
idx_file "$data/train-images-idx3-ubyte" 64 1
idx_file "$data/t10k-images-idx3-ubyte" 16 2
"$bin/agave-train" --config tiny --data "$data" --steps 3 --out "$tmp/run" --threads 1 \
    >/dev/null 2>"$tmp/train.err" || fail "agave-train: $(cat "$tmp/train.err")"
ckpt=$tmp/run/model.ckpt

# ---- --help ----------------------------------------------------------------------------
for p in "$compress" "$decompress"; do
    "$p" --help >"$tmp/help" 2>&1 || fail "$p --help exits with $?"
    grep -q '^usage: ' "$tmp/help" || fail "$p --help has no usage line"
done
for opt in --checkpoint --data --limit --out --batch --chunk --latent-bits --no-image-crc \
    --weights --threads 'default: 64' 'default: 4096' 'default: 8'; do
    "$compress" --help | grep -q -- "$opt" || fail "agave-compress --help lacks $opt"
done
for opt in --checkpoint --out --idx --weights --threads F.agz; do
    "$decompress" --help | grep -q -- "$opt" || fail "agave-decompress --help lacks $opt"
done
echo "codec_programs: --help of both programs lists the interface"

# ---- round trips ----------------------------------------------------------------------
"$compress" --checkpoint "$ckpt" --data "$data" --out "$tmp/t.agz" --threads 1 \
    >"$tmp/c.out" 2>"$tmp/c.err" || fail "agave-compress exits with $?: $(cat "$tmp/c.err")"
grep -q '^16 images into .*t.agz: [0-9]* bytes, [0-9.]* bits/dim' "$tmp/c.out" ||
    fail "agave-compress summary: $(cat "$tmp/c.out")"
"$decompress" --checkpoint "$ckpt" --idx "$tmp/t.idx" "$tmp/t.agz" >"$tmp/d.out" 2>"$tmp/d.err" ||
    fail "agave-decompress exits with $?: $(cat "$tmp/d.err")"
cmp -s "$tmp/t.idx" "$data/t10k-images-idx3-ubyte" ||
    fail "the decompressed IDX file differs from the test file"
grep -q '^16 images (1x8x8) from ' "$tmp/d.out" || fail "agave-decompress summary: $(cat "$tmp/d.out")"
"$decompress" --checkpoint "$ckpt" --out "$tmp/png" "$tmp/t.agz" >/dev/null 2>&1 ||
    fail "agave-decompress --out exits with $?"
[ "$(ls "$tmp/png" | wc -l)" -eq 16 ] && [ -f "$tmp/png/000000.png" ] && [ -f "$tmp/png/000015.png" ] ||
    fail "agave-decompress --out did not write 000000.png .. 000015.png: $(ls "$tmp/png")"
[ "$(od -An -tx1 -N8 "$tmp/png/000007.png" | tr -d ' \n')" = "89504e470d0a1a0a" ] ||
    fail "000007.png is not a PNG"
"$compress" --checkpoint "$ckpt" --data "$data/t10k-images-idx3-ubyte" --limit 5 --batch 2 \
    --no-image-crc --out "$tmp/five.agz" --threads 1 >/dev/null 2>&1 || fail "--limit 5 exits with $?"
"$decompress" --checkpoint "$ckpt" --idx "$tmp/five.idx" "$tmp/five.agz" >/dev/null 2>&1 ||
    fail "decompressing five images exits with $?"
[ "$(tail -c +17 "$tmp/five.idx" | cmp - "$data/t10k-images-idx3-ubyte" -i 0:16 -n 320 && echo same)" = same ] ||
    fail "the five decompressed images are not the first five"
ls -a "$tmp" | grep -q '\.tmp' && fail "a temporary file was left behind"
echo "codec_programs: round trips to IDX (identical file) and PNGs, --limit, --no-image-crc"

# ---- refusals --------------------------------------------------------------------------
errors=0
expect_error() { # words-expected-in-message command...
    want=$1
    shift
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "exit status $rc, expected 2: $* (stderr: $(cat "$tmp/err"))"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "not exactly one line on stderr: $*: $(cat "$tmp/err")"
    grep -q -- "$want" "$tmp/err" || fail "stderr of '$*' does not mention '$want': $(cat "$tmp/err")"
    [ -s "$tmp/out" ] && fail "output on stdout from a failing command: $*"
    errors=$((errors + 1))
}
never=$tmp/never
expect_error "--out FILE is required" "$compress" --checkpoint "$ckpt" --data "$data"
expect_error "--data PATH is required" "$compress" --checkpoint "$ckpt" --out "$never.agz"
expect_error "smaller than --batch" "$compress" --checkpoint "$ckpt" --data "$data" --out "$never.agz" --batch 8 --chunk 4
expect_error "does not exist" "$compress" --checkpoint "$ckpt" --data "$data" --out "$tmp/no/dir.agz"
expect_error "give one of --out DIR and --idx FILE" "$decompress" --checkpoint "$ckpt" "$tmp/t.agz"
expect_error "F.agz is required" "$decompress" --checkpoint "$ckpt" --out "$never"
expect_error "unexpected argument" "$decompress" --checkpoint "$ckpt" --out "$never" "$tmp/t.agz" "$tmp/t.agz"
# damaged: a flipped bit in the middle, and the last 10 bytes cut off
size=$(wc -c <"$tmp/t.agz")
cp "$tmp/t.agz" "$tmp/bad.agz"
printf '\377' | dd of="$tmp/bad.agz" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_error "damaged" "$decompress" --checkpoint "$ckpt" --out "$never" "$tmp/bad.agz"
head -c $((size - 10)) "$tmp/t.agz" >"$tmp/cut.agz"
expect_error "truncated" "$decompress" --checkpoint "$ckpt" --idx "$never.idx" "$tmp/cut.agz"
expect_error "not a libagave compressed file" "$decompress" --checkpoint "$ckpt" --out "$never" "$ckpt"
# another thread count; another checkpoint (3 more steps)
expect_error "compressed with 1 threads" "$decompress" --checkpoint "$ckpt" --threads 2 --out "$never" "$tmp/t.agz"
"$bin/agave-train" --config tiny --data "$data" --steps 6 --out "$tmp/run" --resume --threads 1 \
    >/dev/null 2>&1 || fail "agave-train --resume exits with $?"
expect_error "another model" "$decompress" --checkpoint "$ckpt" --out "$never" "$tmp/t.agz"
# FIFOs in place of files are refused at once, never waited on (issue 18).
mkfifo "$tmp/fifo"
expect_error "FIFO" timeout 20 "$decompress" --checkpoint "$ckpt" --out "$never" "$tmp/fifo"
expect_error "FIFO" timeout 20 "$decompress" --checkpoint "$tmp/fifo" --out "$never" "$tmp/t.agz"
expect_error "FIFO" timeout 20 "$compress" --checkpoint "$tmp/fifo" --data "$data" --out "$never.agz"
rm -f "$tmp/fifo"
[ -e "$never" ] || [ -e "$never.idx" ] || [ -e "$never.agz" ] && fail "a refused command wrote an output"
ls -a "$tmp" | grep -q '\.tmp' && fail "a refused command left a temporary file"
echo "codec_programs: $errors bad commands exit with status 2 and one line on stderr, writing nothing"
