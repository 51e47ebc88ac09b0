#!/bin/sh
# agave-sample's latent-space tools on a tiny model (tests/support/tiny_idx.sh's
# data, 1x8x8):
#  - --encode writes a CSV of the posterior means: a header, one row per
#    test image, Z x 2 x 2 numbers; image by image (--first, --count 1) the
#    same codes (to 1e-5: other batch sizes round differently);
#  - --decode draws the codes of that file, with or without its header, the
#    same picture both times; a malformed row is refused by its line number;
#  - --interpolate I,J --count 5 writes a PGM whose first row holds test images
#    I and J at its ends (pixel for pixel, scaled 2x) and blank cells between,
#    three rows of five cells; --caption adds a band above it;
#  - refusals: a .jpg picture (no file appears), the same image twice, an
#    index past the data, --encode without --data, --caption with --encode.
#
# usage: tests/latent_tools.sh   (run by make check from the top of the tree)
set -eu
. tests/support/preamble.sh
. tests/support/tiny_idx.sh
data=$tmp/data
mkdir "$data"
idx_file "$data/train-images-idx3-ubyte" 64 1
idx_file "$data/t10k-images-idx3-ubyte" 16 2
sample=$bin/agave-sample
# shellcheck disable=SC2086
"$bin/agave-train" --config tiny --data "$data" --steps 3 --out "$tmp/run" $t1 >/dev/null 2>&1 ||
    fail "agave-train did not make the tiny model"
ckpt=$tmp/run/model.ckpt

# ---- --encode -------------------------------------------------------------------------
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --data "$data" --encode --count 4 --out "$tmp/z.csv" $t1 \
    >/dev/null 2>"$tmp/err" || fail "--encode: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/z.csv")" -eq 5 ] || fail "--encode --count 4 wrote $(wc -l <"$tmp/z.csv") lines"
head -n 1 "$tmp/z.csv" | grep -q '^index,name,z0,z1,.*,z15$' || fail "--encode: the header is $(head -n 1 "$tmp/z.csv")"
awk -F, 'NR > 1 && (NF != 18 || $1 != NR - 2) { exit 1 }' "$tmp/z.csv" ||
    fail "--encode: rows are not index, name and 16 numbers"
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --data "$data" --encode --first 2 --count 1 --out "$tmp/z2.csv" \
    $t1 >/dev/null 2>&1 || fail "--encode --first 2"
sed -n 4p "$tmp/z.csv" >"$tmp/row.batch"
sed -n 2p "$tmp/z2.csv" >"$tmp/row.alone"
awk -F, 'NR == FNR { for (i = 3; i <= NF; i++) a[i] = $i; next }
    { for (i = 3; i <= NF; i++) { d = a[i] - $i; if (d < 0) d = -d; m = a[i] < 0 ? -a[i] : a[i]
        if (d > 1e-5 * (m > 1 ? m : 1)) exit 1 } }' "$tmp/row.batch" "$tmp/row.alone" ||
    fail "test image 2's code differs alone and in a batch: $(cat "$tmp/row.batch" "$tmp/row.alone")"
echo "latent_tools: --encode writes one row of 16 numbers per image, the same alone or in a batch"

# ---- --decode -------------------------------------------------------------------------
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --decode "$tmp/z.csv" --out "$tmp/dec1.png" $t1 >"$tmp/out" 2>&1 ||
    fail "--decode: $(cat "$tmp/out")"
grep -q 'wrote .*: 4 decoded codes' "$tmp/out" || fail "--decode: $(cat "$tmp/out")"
tail -n +2 "$tmp/z.csv" >"$tmp/bare.csv"
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --decode "$tmp/bare.csv" --out "$tmp/dec2.png" $t1 >/dev/null 2>&1 ||
    fail "--decode without the header"
cmp -s "$tmp/dec1.png" "$tmp/dec2.png" || fail "--decode draws other pictures without the header"
sed '3s/,[^,]*$//' "$tmp/z.csv" >"$tmp/short.csv"
rc=0
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --decode "$tmp/short.csv" --out "$tmp/dec3.png" $t1 >/dev/null \
    2>"$tmp/err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q 'line 3, number' "$tmp/err" ||
    fail "a row one number short: exit $rc: $(cat "$tmp/err")"
[ ! -e "$tmp/dec3.png" ] || fail "a refused --decode wrote its picture"
echo "latent_tools: --decode draws a file's codes, header or not, and names a bad line"

# ---- --interpolate ------------------------------------------------------------------
# The pixel at (row, col) of a binary PGM.
pgm_size() { head -c 20 "$1" | sed -n 2p; }
pgm_pixel() { # file row col
    w=$(pgm_size "$1" | cut -d' ' -f1)
    head_len=$(head -n 3 "$1" | wc -c)
    od -An -tu1 -j $((head_len + $2 * w + $3)) -N1 "$1" | tr -d ' '
}
idx_pixel() { # image row col (the test file: 16 header bytes, 64 per image)
    od -An -tu1 -j $((16 + $1 * 64 + $2 * 8 + $3)) -N1 "$data/t10k-images-idx3-ubyte" | tr -d ' '
}
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --data "$data" --interpolate 3,7 --count 5 --out "$tmp/walk.pgm" \
    $t1 >"$tmp/out" 2>&1 || fail "--interpolate: $(cat "$tmp/out")"
head -c 2 "$tmp/walk.pgm" | grep -q P5 || fail "walk.pgm is not a PGM"
# Scale 2: cells of 16, gaps of 2: 2 + 5 x 18 = 92 wide, 2 + 3 x 18 = 56 high.
[ "$(pgm_size "$tmp/walk.pgm")" = "92 56" ] || fail "walk.pgm is $(pgm_size "$tmp/walk.pgm"), not 92 56"
for rc_ in "0 0" "5 3" "7 7"; do
    r=${rc_% *}
    c=${rc_#* }
    [ "$(pgm_pixel "$tmp/walk.pgm" $((2 + 2 * r)) $((2 + 2 * c)))" = "$(idx_pixel 3 "$r" "$c")" ] ||
        fail "the first cell at ($r,$c) is not test image 3's pixel"
    [ "$(pgm_pixel "$tmp/walk.pgm" $((2 + 2 * r + 1)) $((2 + 4 * 18 + 2 * c + 1)))" = \
        "$(idx_pixel 7 "$r" "$c")" ] || fail "the last cell at ($r,$c) is not test image 7's pixel"
    [ "$(pgm_pixel "$tmp/walk.pgm" $((2 + 2 * r)) $((2 + 2 * 18 + 2 * c)))" = 255 ] ||
        fail "the middle cell of the first row is not blank"
done
# shellcheck disable=SC2086
"$sample" --checkpoint "$ckpt" --data "$data" --interpolate 3,7 --count 5 --caption \
    --out "$tmp/walk-cap.pgm" $t1 >/dev/null 2>&1 || fail "--interpolate --caption"
h=$(pgm_size "$tmp/walk-cap.pgm" | cut -d' ' -f2)
[ "$h" -gt 56 ] || fail "--caption added no band ($h rows)"
echo "latent_tools: --interpolate 3,7 --count 5: test images 3 and 7 end the first row; --caption adds a band"

# ---- refusals ------------------------------------------------------------------------
refused() { # expected-text args...
    want=$1
    shift
    rc=0
    "$sample" --checkpoint "$ckpt" "$@" --threads 1 >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "$*: exit $rc, expected 2: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF -- "$want" "$tmp/err" ||
        fail "$*: '$(cat "$tmp/err")' does not say '$want'"
}
refused ".jpg files are not written" --out "$tmp/x.jpg"
[ ! -e "$tmp/x.jpg" ] || fail "a refused .jpg was written"
refused "expected I,J, two different" --data "$data" --interpolate 3,3 --out "$tmp/y.png"
refused "has 16 test images" --data "$data" --interpolate 3,99 --out "$tmp/y.png"
refused "--encode needs --data" --encode --out "$tmp/y.csv"
refused "--caption is for pictures" --data "$data" --encode --caption --out "$tmp/y.csv"
refused "exclude each other" --data "$data" --encode --reconstruct --out "$tmp/y.csv"
echo "latent_tools: bad names, pairs, indices and combinations are refused"
echo "latent_tools: all checks passed"
