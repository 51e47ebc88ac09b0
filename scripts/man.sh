#!/bin/sh
# Writes a program's man page: man/PROGRAM.1.in (or man/default.1.in) with
# @GENERATED@ replaced by the synopsis, description and options the program
# itself prints (AGAVE_HELP_FORMAT=man PROGRAM --help, from the option table
# in examples/common/cli.c), and @VERSION@ by the library version. So a page
# cannot drift from --help; tests/man_pages.sh checks the result.
#
# usage: scripts/man.sh PROGRAM_PATH VERSION > PROGRAM.1
#        scripts/man.sh --page TEMPLATE VERSION > PAGE     (a page without a program)
set -eu

if [ "$1" = "--page" ]; then
    sed "s/@VERSION@/$3/g" "$2"
    exit 0
fi
exe=$1
version=$2
name=$(basename "$exe")
template=man/$name.1.in
[ -f "$template" ] || template=man/default.1.in
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT
AGAVE_HELP_FORMAT=man "$exe" --help >"$generated"
grep -q '^\.SH OPTIONS$' "$generated" || { echo "man.sh: $exe printed no options" >&2; exit 1; }
upper=$(echo "$name" | tr 'a-z' 'A-Z' | sed 's/-/\\-/g')
troff_name=$(echo "$name" | sed 's/-/\\-/g')
awk -v gen="$generated" -v version="$version" -v upper="$upper" -v tname="$troff_name" '
    $0 == "@GENERATED@" { while ((getline line < gen) > 0) print line; next }
    { gsub(/@VERSION@/, version); gsub(/@PROGRAM_UPPER@/, upper); gsub(/@PROGRAM_TROFF@/, tname); print }
' "$template"
