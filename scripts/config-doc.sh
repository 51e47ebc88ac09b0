#!/bin/sh
# docs/model.md's generated tables, from the built library (scripts/config-doc.c):
# the named configurations between <!-- presets:begin --> and <!-- presets:end -->,
# the configuration keys between <!-- keys:begin --> and <!-- keys:end -->.
#
#   scripts/config-doc.sh [--write] [docs/model.md]
#       prints the page with both tables regenerated; --write updates it in place.
# tests/check_model_doc.sh (make check) fails when the page differs from this.
# Environment: AGAVE_BUILD (default build), AGAVE_CC, AGAVE_SAN.
set -eu
write=0
[ "${1:-}" = "--write" ] && { write=1; shift; }
page=${1:-docs/model.md}
build=${AGAVE_BUILD:-build}
cc=${AGAVE_CC:-cc}
san=${AGAVE_SAN:-}
lib=$(pwd)/$build/lib
[ -f "$lib/libagave.so" ] || { echo "config-doc: $lib/libagave.so not found (run make first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086 # the flags are words on purpose
$cc $san -std=c11 -Wall -Werror -Iinclude scripts/config-doc.c -L"$lib" -Wl,-rpath,"$lib" \
    -lagave -o "$tmp/config-doc"
"$tmp/config-doc" presets >"$tmp/presets"
"$tmp/config-doc" keys >"$tmp/keys"
# Replaces the lines between each pair of markers with the generated table.
awk -v presets="$tmp/presets" -v keys="$tmp/keys" '
    function emit(f,   line) { while ((getline line < f) > 0) print line; close(f) }
    /^<!-- presets:begin -->$/ { print; emit(presets); skip = 1; next }
    /^<!-- keys:begin -->$/ { print; emit(keys); skip = 1; next }
    /^<!-- (presets|keys):end -->$/ { skip = 0 }
    !skip { print }' "$page" >"$tmp/page"
grep -q '^<!-- presets:begin -->$' "$page" && grep -q '^<!-- keys:begin -->$' "$page" ||
    { echo "config-doc: $page lacks the table markers" >&2; exit 1; }
if [ $write -eq 1 ]; then
    cp "$tmp/page" "$page"
else
    cat "$tmp/page"
fi
