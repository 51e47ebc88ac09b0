#!/bin/sh
# scripts/agave-plot on the train.csv layouts it must read:
#  - a file with agave-train's first six columns only (older runs): a PNG of
#    the requested size, without held-out series;
#  - a file with the later columns (test_elbo_bpd, test_kl_bpd, test_aux_bpd,
#    elapsed_s, epoch, lr, grad_norm) whose held-out cells are empty on the
#    rows without an evaluation: the held-out series are drawn from the right
#    columns, found by name (also when the columns come in another order);
#  - held-out columns present but never filled: left out;
#  - not a train.csv, or no file: exit 2 with one line on stderr.
#
# usage: tests/agave_plot.sh   (run by make check from the top of the tree)
set -eu
. tests/support/preamble.sh
plot=scripts/agave-plot
command -v gnuplot >/dev/null 2>&1 || skip "gnuplot is missing (apt-get install gnuplot-nox)"

# The width and height of a PNG, from its IHDR chunk (bytes 16..23, big-endian).
png_size() {
    [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$1 is not a PNG"
    od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8 }'
}

old=$tmp/old.csv
printf 'step,images_per_s,train_bpd,pixelcnn_bpd,aux_bpd,kl_bpd\n' >"$old"
for s in 10 20 30 40 50; do
    printf '%d,%d,%s,%s,%s,%s\n' "$s" $((100 + s)) "9.$((90 - s))" "5.$((90 - s))" "4.$((60 - s))" "0.0$s" >>"$old"
done
sh "$plot" --size 800x600 "$old" "$tmp/old.png" >/dev/null || fail "agave-plot on a six-column file"
[ "$(png_size "$tmp/old.png")" = 800x600 ] || fail "old.png is $(png_size "$tmp/old.png"), not 800x600"
sh "$plot" --script "$old" "$tmp/x.png" >"$tmp/old.gp"
grep -q "using 1:3 with lines lw 2 title 'train objective'" "$tmp/old.gp" ||
    fail "the six-column file's train_bpd (column 3) is not plotted: $(cat "$tmp/old.gp")"
grep -q "held-out" "$tmp/old.gp" && fail "held-out series plotted for a file without them"
echo "agave_plot: a six-column train.csv gives an 800x600 PNG without held-out series"

new=$tmp/run/train.csv
mkdir "$tmp/run"
printf 'step,images_per_s,train_bpd,pixelcnn_bpd,aux_bpd,kl_bpd,test_elbo_bpd,test_kl_bpd,test_aux_bpd,elapsed_s,epoch,lr,grad_norm\n' >"$new"
printf '10,100,9,5,4,0.1,,,,1.5,0,0.002,3.1\n20,110,8,4.5,3.8,0.12,5.2,0.2,4.4,3.0,0,0.002,2.9\n' >>"$new"
printf '30,105,7.5,4.2,3.6,0.13,,,,4.4,1,0.002,2.5\n40,108,7.1,4.0,3.5,0.15,4.8,0.25,4.1,6.0,1,0.002,2.2\n' >>"$new"
sh "$plot" "$tmp/run" >/dev/null || fail "agave-plot on a run directory"
[ "$(png_size "$tmp/run/train.png")" = 1000x700 ] || fail "the default PNG is not 1000x700"
sh "$plot" --script "$tmp/run" >"$tmp/new.gp"
for want in "using 1:7 with linespoints lw 2 pt 7 ps 0.6 title 'held-out ELBO'" \
    "using 1:9 with linespoints lw 2 pt 7 ps 0.6 title 'held-out VAE bound on y'" \
    "using 1:8 with linespoints lw 2 pt 7 ps 0.6 title 'held-out'"; do
    grep -qF "$want" "$tmp/new.gp" || fail "not plotted: $want"
done
echo "agave_plot: the thirteen-column layout with empty held-out cells: held-out ELBO, aux and KL drawn"

# The same columns in another order: found by name.
awk -F, -v OFS=, '{ t = $3; $3 = $7; $7 = t; print }' "$new" >"$tmp/swapped.csv"
sh "$plot" --script "$tmp/swapped.csv" "$tmp/x.png" >"$tmp/swapped.gp"
grep -qF "using 1:3 with linespoints lw 2 pt 7 ps 0.6 title 'held-out ELBO'" "$tmp/swapped.gp" ||
    fail "test_elbo_bpd is not found by its name"
grep -qF "using 1:7 with lines lw 2 title 'train objective'" "$tmp/swapped.gp" ||
    fail "train_bpd is not found by its name"

# Held-out columns that no row fills are left out.
cut -d, -f1-6,10- "$new" | awk -F, -v OFS=, 'NR == 1 { print $0 ",test_elbo_bpd"; next } { print $0 "," }' >"$tmp/empty.csv"
sh "$plot" --script "$tmp/empty.csv" "$tmp/x.png" | grep -q "held-out" &&
    fail "an empty test_elbo_bpd column is plotted"
echo "agave_plot: columns are found by name, and empty ones left out"

refused() { # expected-text args...
    want=$1
    shift
    rc=0
    sh "$plot" "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] || fail "agave-plot $*: exit $rc, expected 2"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF -- "$want" "$tmp/err" ||
        fail "agave-plot $*: '$(cat "$tmp/err")' does not say '$want'"
}
printf 'a,b\n1,2\n' >"$tmp/foreign.csv"
refused "no 'step' column" "$tmp/foreign.csv"
refused "no such file" "$tmp/missing.csv"
refused "--size 10: expected WxH" --size 10 "$old"
echo "agave_plot: a foreign file, a missing one and a bad --size are refused"
echo "agave_plot: all checks passed"
