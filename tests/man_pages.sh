#!/bin/sh
# The man pages (make man, docs/build.md):
#  - every program in $AGAVE_BUILD/bin has a page, and its OPTIONS list the
#    options --help lists, each once, in the same order, with the same
#    defaults (the page is generated from the program: scripts/man.sh);
#  - every page renders with groff without a warning (-ww), names the header's
#    version, and has NAME, SYNOPSIS, DESCRIPTION and OPTIONS;
#  - libagave(3), written by hand, names only functions, types and constants
#    that include/agave.h declares, so a rename cannot leave it behind.
#
# usage: tests/man_pages.sh   (run by make check from the top of the tree)
set -eu
. tests/support/preamble.sh
render=1
command -v groff >/dev/null 2>&1 || {
    render=0
    echo "man_pages: groff is missing (groff-base): pages are not rendered"
}

check_page() { # page section
    page=$1
    [ -s "$page" ] || fail "$page is missing (make man)"
    grep -q "^\.TH .* $2 .*\"libagave $version\"" "$page" || fail "$page: no .TH line of version $version"
    for s in NAME SYNOPSIS DESCRIPTION; do
        grep -q "^\.SH $s\$" "$page" || fail "$page has no $s section"
    done
    if [ "$render" = 1 ]; then
        groff -man -Tutf8 -ww -z "$page" 2>"$tmp/warn" || fail "groff fails on $page"
        [ ! -s "$tmp/warn" ] || fail "groff warns about $page: $(cat "$tmp/warn")"
    fi
}

n=0
for exe in "$build"/bin/agave-*; do
    name=$(basename "$exe")
    page=$build/man/$name.1
    check_page "$page" 1
    grep -q '^\.SH OPTIONS$' "$page" || fail "$page has no OPTIONS section"
    # The options of --help, in order, and their defaults.
    "$exe" --help | sed -n 's/^  \(--[a-z][a-z0-9-]*\).*/\1/p' >"$tmp/help"
    sed -n 's/^\\fB\\-\\-\([a-z][a-z0-9\\-]*\)\\fR.*/--\1/p' "$page" | sed 's/\\-/-/g' >"$tmp/page"
    cmp -s "$tmp/help" "$tmp/page" ||
        fail "$page lists other options than $name --help: $(diff "$tmp/help" "$tmp/page" | tr '\n' ' ')"
    "$exe" --help | tr '\n' ' ' | grep -o '(default: [^)]*)' | tr -s ' ' >"$tmp/help.def"
    tr '\n' ' ' <"$page" | sed 's/\\-/-/g' | grep -o '(default: [^)]*)' | tr -s ' ' >"$tmp/page.def"
    cmp -s "$tmp/help.def" "$tmp/page.def" ||
        fail "$page gives other defaults than $name --help: $(diff "$tmp/help.def" "$tmp/page.def" | tr '\n' ' ')"
    n=$((n + 1))
done
[ "$n" -ge 3 ] || fail "only $n programs in $build/bin"
echo "man_pages: $n program pages list exactly their programs' options and defaults"

page3=$build/man/libagave.3
check_page "$page3" 3
# Names in the page (agave_..., AGAVE_...) that the header does not declare.
grep -o '\(agave\|AGAVE\)_[A-Za-z0-9_]*' man/libagave.3.in | sort -u >"$tmp/names"
missing=""
while read -r id; do
    grep -q "\\b$id\\b" include/agave.h || missing="$missing $id"
done <"$tmp/names"
[ -z "$missing" ] || fail "libagave.3 names what include/agave.h does not declare:$missing"
echo "man_pages: libagave(3) names $(wc -l <"$tmp/names") identifiers, all declared in agave.h"
[ "$render" = 1 ] && echo "man_pages: every page renders with groff -ww without a warning"
echo "man_pages: all checks passed"
