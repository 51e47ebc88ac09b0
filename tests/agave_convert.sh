#!/bin/sh
# agave-convert: data sets from one form into another (docs/data.md,
# "Converting data sets"), checked against bytes built here, not against the
# library's reader:
#  - a folder of PGMs -> IDX: the header says 00 00 08 03, the count, rows and
#    cols; image k's pixels are the last bytes of the file named on line k of
#    train-names.txt;
#  - IDX -> PGM folder -> IDX again: the same bytes;
#  - a two-record CIFAR-10 batch -> colour IDX: magic 00 00 08 04, count 2,
#    3 channels, 32x32, and the records' pixels without their label bytes;
#    that IDX -> PPM folder -> IDX: the same bytes;
#  - refusals: an IDX file already there (without --force), --to jpg, --to ppm
#    of grey images (they would come back as colour).
#
# usage: tests/agave_convert.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory, default build).
set -eu
. tests/support/preamble.sh
. tests/support/pgm.sh
need_programs agave-convert
convert=$bin/agave-convert
# hex FILE SKIP COUNT: COUNT bytes of FILE from SKIP, as one line of hex.
hex() {
    od -An -v -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

# ---- a folder of PGMs -> IDX ------------------------------------------------------------
mkdir -p "$tmp/faces/train/a" "$tmp/faces/test"
for i in 1 2 3 4 5; do
    pgm "$tmp/faces/train/a/$i.pgm" 6 5 "$i"
done
pgm "$tmp/faces/test/q.pgm" 6 5 77
"$convert" --data "$tmp/faces" --to idx --out "$tmp/idx" >"$tmp/out" 2>"$tmp/err" ||
    fail "folder -> idx: $(cat "$tmp/err")"
grep -qF "5 train images of 1x6x5, 1 test image of 1x6x5" "$tmp/out" ||
    fail "folder -> idx says: $(cat "$tmp/out")"
idx=$tmp/idx/train-images-idx3-ubyte
[ "$(hex "$idx" 0 16)" = 00000803000000050000000600000005 ] ||
    fail "IDX header $(hex "$idx" 0 16), expected magic 803, 5 images, 6 rows, 5 cols"
[ "$(wc -c <"$idx")" -eq $((16 + 5 * 30)) ] || fail "IDX file of $(wc -c <"$idx") bytes"
[ "$(wc -l <"$tmp/idx/train-names.txt")" -eq 5 ] || fail "train-names.txt has not 5 lines"
k=0
while read -r name; do
    want=$(hex "$tmp/faces/$name" "$(($(wc -c <"$tmp/faces/$name") - 30))" 30)
    [ "$(hex "$idx" $((16 + k * 30)) 30)" = "$want" ] ||
        fail "image $k of the IDX file is not the pixels of $name"
    k=$((k + 1))
done <"$tmp/idx/train-names.txt"
[ "$(cat "$tmp/idx/t10k-names.txt")" = test/q.pgm ] || fail "t10k-names.txt is not test/q.pgm"
echo "agave_convert: a folder of PGMs -> IDX, pixel for pixel in the order of train-names.txt"

# ---- IDX -> PGM folder -> IDX ----------------------------------------------------------
"$convert" --data "$tmp/idx" --to pgm --out "$tmp/pgm" >/dev/null 2>"$tmp/err" ||
    fail "idx -> pgm: $(cat "$tmp/err")"
[ -f "$tmp/pgm/train/00004.pgm" ] && [ -f "$tmp/pgm/test/00000.pgm" ] ||
    fail "idx -> pgm did not write train/00004.pgm and test/00000.pgm"
"$convert" --data "$tmp/pgm" --to idx --out "$tmp/idx2" >/dev/null 2>"$tmp/err" ||
    fail "pgm -> idx: $(cat "$tmp/err")"
cmp -s "$idx" "$tmp/idx2/train-images-idx3-ubyte" || fail "IDX -> PGM -> IDX changed the train set"
cmp -s "$tmp/idx/t10k-images-idx3-ubyte" "$tmp/idx2/t10k-images-idx3-ubyte" ||
    fail "IDX -> PGM -> IDX changed the test set"
echo "agave_convert: IDX -> PGM folder -> IDX gives the same bytes"

# ---- a CIFAR-10 batch -> colour IDX -> PPM folder -> IDX --------------------------------
# Two records: label 3 then 3072 pixel bytes, label 9 then 3072 more.
printf "$(awk 'BEGIN {
    for (r = 0; r < 2; r++) {
        printf "\\%03o", r == 0 ? 3 : 9
        for (i = 0; i < 3072; i++)
            printf "\\%03o", (i * 7 + r * 101 + int(i / 1024) * 50) % 256
    } }')" >"$tmp/data_batch_1.bin"
[ "$(wc -c <"$tmp/data_batch_1.bin")" -eq 6146 ] || fail "the awk CIFAR batch is not 6146 bytes"
"$convert" --data "$tmp/data_batch_1.bin" --to idx --out "$tmp/cifar" >"$tmp/out" \
    2>"$tmp/err" || fail "cifar -> idx: $(cat "$tmp/err")"
colour=$tmp/cifar/train-images-idx4-ubyte
[ "$(hex "$colour" 0 20)" = 0000080400000002000000030000002000000020 ] ||
    fail "colour IDX header $(hex "$colour" 0 20), expected magic 804, 2 images, 3x32x32"
[ "$(hex "$colour" 20 3072)" = "$(hex "$tmp/data_batch_1.bin" 1 3072)" ] ||
    fail "colour IDX image 0 is not record 0's pixels"
[ "$(hex "$colour" 3092 3072)" = "$(hex "$tmp/data_batch_1.bin" 3074 3072)" ] ||
    fail "colour IDX image 1 is not record 1's pixels"
[ "$(wc -c <"$colour")" -eq $((20 + 2 * 3072)) ] || fail "colour IDX of $(wc -c <"$colour") bytes"
"$convert" --data "$tmp/cifar" --to ppm --split train --out "$tmp/ppm" >/dev/null 2>"$tmp/err" ||
    fail "colour idx -> ppm: $(cat "$tmp/err")"
mkdir "$tmp/ppm/test"   # DIR/train and DIR/test: the train folder is read whole
cp "$tmp/ppm/train/00000.ppm" "$tmp/ppm/test/"
"$convert" --data "$tmp/ppm" --to idx --split train --out "$tmp/cifar2" \
    >/dev/null 2>"$tmp/err" || fail "ppm -> idx: $(cat "$tmp/err")"
cmp -s "$colour" "$tmp/cifar2/train-images-idx4-ubyte" ||
    fail "colour IDX -> PPM -> IDX changed the images"
echo "agave_convert: a CIFAR-10 batch -> colour IDX (labels dropped) -> PPM -> the same IDX"

# ---- refusals ----------------------------------------------------------------------------
refused() { # expected-text command...
    want=$1
    shift
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "$*: exit status $rc, expected 2: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$*: not one line on stderr: $(cat "$tmp/err")"
    grep -qF -- "$want" "$tmp/err" || fail "$*: '$(cat "$tmp/err")' does not say '$want'"
}
refused "train-images-idx3-ubyte exists already (--force replaces it)" \
    "$convert" --data "$tmp/faces" --to idx --out "$tmp/idx"
"$convert" --data "$tmp/faces" --to idx --out "$tmp/idx" --force >/dev/null 2>&1 ||
    fail "--force did not replace the IDX files"
refused "--to jpg: expected idx, png, bmp, ppm or pgm" \
    "$convert" --data "$tmp/faces" --to jpg --out "$tmp/jpg"
[ ! -e "$tmp/jpg" ] || fail "a refused --to jpg created its --out directory"
refused "--to ppm: the images are grey; netpbm keeps them as they are only as PGM (--to pgm)" \
    "$convert" --data "$tmp/faces" --to ppm --out "$tmp/ppm-grey"
[ ! -e "$tmp/ppm-grey/train" ] || fail "a refused --to ppm wrote images"
echo "agave_convert: an existing IDX file without --force, --to jpg and grey PPMs are refused"

echo "agave_convert: all checks passed"
