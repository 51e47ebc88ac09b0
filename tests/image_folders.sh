#!/bin/sh
# The programs on a folder of image files (docs/data.md, "Image folders"):
#  - agave-train, agave-eval and agave-sample --reconstruct read DIR/train and
#    DIR/test of PGM files of another size with --resize 8x8; agave-eval's
#    --per-image CSV names each test image by its path in the folder;
#  - --crop and --resize in the wrong form, a folder of mixed sizes, a model
#    of another size and a PNG given as a data file: exit 2 with one line on
#    stderr that says what is wrong (naming the offending file).
#
# usage: tests/image_folders.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD (build directory, default build).
set -eu
. tests/support/preamble.sh

. tests/support/pgm.sh
mkdir -p "$tmp/faces/train/a" "$tmp/faces/test"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    pgm "$tmp/faces/train/a/$i.pgm" 12 10 "$i"
done
for i in 1 2 3 4; do
    pgm "$tmp/faces/test/$i.pgm" 12 10 "$((i + 50))"
done

# Expects exit status 2 and exactly one line on stderr containing $1.
refused() { # expected-text command...
    want=$1
    shift
    rc=0
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "$*: exit status $rc, expected 2: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$*: not one line on stderr: $(cat "$tmp/err")"
    grep -qF -- "$want" "$tmp/err" || fail "$*: '$(cat "$tmp/err")' does not say '$want'"
}

# ---- training, evaluation and reconstruction with --resize -------------------------
# shellcheck disable=SC2086
"$bin/agave-train" --config tiny --data "$tmp/faces" --resize 8x8 --steps 2 --out "$tmp/run" \
    $t1 >"$tmp/train.out" 2>"$tmp/train.err" || fail "agave-train: $(cat "$tmp/train.err")"
grep -q '12 training images (1x8x8)' "$tmp/train.err" ||
    fail "agave-train did not read 12 images of 1x8x8: $(cat "$tmp/train.err")"
# shellcheck disable=SC2086
"$bin/agave-eval" --checkpoint "$tmp/run/model.ckpt" --data "$tmp/faces" --resize 8 --samples 0 \
    --json $t1 >"$tmp/eval.json" 2>"$tmp/eval.err" || fail "agave-eval: $(cat "$tmp/eval.err")"
grep -q '"n_images": 4' "$tmp/eval.json" || fail "agave-eval did not read 4 test images"
# shellcheck disable=SC2086
"$bin/agave-eval" --checkpoint "$tmp/run/model.ckpt" --data "$tmp/faces" --resize 8 --samples 0 \
    --per-image "$tmp/scores.csv" $t1 >/dev/null 2>"$tmp/eval.err" ||
    fail "agave-eval --per-image: $(cat "$tmp/eval.err")"
[ "$(cut -d, -f1,2 "$tmp/scores.csv" | tr '\n' ' ')" = \
    "index,name 0,test/1.pgm 1,test/2.pgm 2,test/3.pgm 3,test/4.pgm " ] ||
    fail "agave-eval --per-image does not name the images: $(cut -d, -f1,2 "$tmp/scores.csv")"
# shellcheck disable=SC2086
"$bin/agave-sample" --checkpoint "$tmp/run/model.ckpt" --reconstruct --data "$tmp/faces" \
    --resize 8x8 --count 4 --out "$tmp/recon.png" $t1 >/dev/null 2>"$tmp/sample.err" ||
    fail "agave-sample --reconstruct: $(cat "$tmp/sample.err")"
echo "image_folders: train, evaluate (images named in --per-image) and reconstruct on a folder of 12x10 PGMs with --resize 8x8"

# ---- refusals ------------------------------------------------------------------------
refused "--resize 8y8: expected HxW" "$bin/agave-train" --config tiny --data "$tmp/faces" \
    --resize 8y8 --out "$tmp/bad"
refused "--crop aspect takes the shape of --resize" "$bin/agave-eval" \
    --checkpoint "$tmp/run/model.ckpt" --data "$tmp/faces" --crop aspect
refused "holds 1x12x10 images (CxHxW) but the model is for 1x8x8; --resize HxW" \
    "$bin/agave-eval" --checkpoint "$tmp/run/model.ckpt" --data "$tmp/faces"
refused "smaller than the crop window 16x16" "$bin/agave-eval" \
    --checkpoint "$tmp/run/model.ckpt" --data "$tmp/faces" --crop 16x16 --resize 8x8
pgm "$tmp/faces/test/5.pgm" 8 8 99
refused "faces/test/5.pgm is 8x8 pixels (HxW) but" "$bin/agave-eval" \
    --checkpoint "$tmp/run/model.ckpt" --data "$tmp/faces"
printf '\211PNG\r\n\032\n\0\0\0\rIHDR' >"$tmp/photo.png"
refused "photo.png: a PNG image, not a CIFAR-10 batch or an IDX file" "$bin/agave-eval" \
    --checkpoint "$tmp/run/model.ckpt" --data "$tmp/photo.png"
[ ! -e "$tmp/bad" ] || fail "a refused agave-train created its --out directory"
echo "image_folders: bad --resize/--crop, a mixed folder and a PNG given as data are refused"

echo "image_folders: all checks passed"
