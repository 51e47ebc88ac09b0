#!/bin/sh
# The README's "Using the library from your program" example must compile and
# run exactly as shown: the C code between the example markers is extracted,
# built out of tree against a temporary installation with the README's command
# (`cc -o example example.c $(pkg-config --cflags --libs agave)`), and run; its
# output must show 20 training steps, decreasing loss, and the bounds line.
#
# usage: tests/readme_example.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD, AGAVE_SAN (sanitizer flags), AGAVE_CC, MAKE.
set -eu
. tests/support/preamble.sh

sed -n '/<!-- example:begin -->/,/<!-- example:end -->/p' README.md |
    sed '1,2d;$d' | sed '$d' >"$tmp/example.c"
grep -q 'int main(void)' "$tmp/example.c" || fail "no example found between the README's markers"
lines=$(wc -l <"$tmp/example.c")
[ "$lines" -le 40 ] || fail "the example has $lines lines; the README promises about 30"

"$make" -s install PREFIX="$tmp/prefix" BUILD="$build" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install into a temporary prefix failed"; }
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cd "$tmp"
# shellcheck disable=SC2046 # pkg-config's words are meant to split
$cc $san -o example example.c $(pkg-config --cflags --libs agave) >build.log 2>&1 ||
    { cat build.log >&2; fail "the README's build command failed"; }
LD_LIBRARY_PATH="$tmp/prefix/lib" ./example >out.txt 2>&1 || { cat out.txt >&2; fail "the example failed"; }
[ "$(grep -c '^step ' out.txt)" -eq 20 ] || { cat out.txt >&2; fail "expected 20 step lines"; }
first=$(sed -n 's/^step  1: \([0-9.]*\) bits\/dim/\1/p' out.txt)
last=$(sed -n 's/^step 20: \([0-9.]*\) bits\/dim/\1/p' out.txt)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' ||
    fail "the loss did not decrease ($first -> $last bits/dim)"
grep -q '^ELBO [0-9.]* bpd, IWAE-10 [0-9.]* bpd$' out.txt || { cat out.txt >&2; fail "no bounds line"; }
[ -s tiny.ckpt ] || fail "the example did not save tiny.ckpt"
cd "$src"
echo "readme_example: the README's example builds with pkg-config and runs ($first -> $last bits/dim)"
