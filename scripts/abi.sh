#!/bin/sh
# ABI baseline of the shared library, with libabigail (Debian: abigail-tools).
#
#   scripts/abi.sh dump  LIBRARY BASELINE [ABIDW-OPTION...]
#       writes BASELINE (abi/libagave.abi) from LIBRARY with abidw
#   scripts/abi.sh check LIBRARY BASELINE [ABIDW-OPTION...] -- [ABIDIFF-OPTION...]
#       dumps LIBRARY the same way next to it and compares that with BASELINE
#       using abidiff; any difference fails, compatible or not
#
# Run through `make abi-dump` and `make abi-check`, which pass the options.
# docs/build.md ("ABI policy") says when and how the baseline is updated.
set -eu

usage() {
    echo "usage: $0 dump|check LIBRARY BASELINE [ABIDW-OPTION...] [-- ABIDIFF-OPTION...]" >&2
    exit 2
}
[ $# -ge 3 ] || usage
mode=$1 lib=$2 baseline=$3
shift 3

# Split the remaining arguments at "--" into abidw and abidiff options.
abidw_opts=""
abidiff_opts=""
seen_sep=0
for a in "$@"; do
    if [ "$a" = "--" ]; then
        seen_sep=1
    elif [ $seen_sep -eq 0 ]; then
        abidw_opts="$abidw_opts $a"
    else
        abidiff_opts="$abidiff_opts $a"
    fi
done

for tool in abidw abidiff readelf; do
    command -v $tool >/dev/null 2>&1 ||
        { echo "abi: $tool not found; run: sh scripts/deps.sh check" >&2; exit 1; }
done
[ -f "$lib" ] || { echo "abi: $lib not found (run make first)" >&2; exit 1; }
# abidw reads the types from DWARF: without -g there is nothing to compare.
if ! readelf -S "$lib" | grep -q '\.debug_info'; then
    echo "abi: $lib has no debug information; build it with -g in OPT (the default)" >&2
    exit 1
fi

# abidw LIBRARY OUT: the XML description, written to a temporary name first.
dump() {
    # shellcheck disable=SC2086 # the options are words on purpose
    abidw $abidw_opts --out-file "$2.tmp" "$1"
    mv -f "$2.tmp" "$2"
}

# Counts for the summary line: exported functions and variables in a dump.
summary() {
    nf=$(grep -c '<elf-symbol .*type=.func-type' "$1" || true)
    nv=$(grep -c '<elf-symbol .*type=.object-type' "$1" || true)
    echo "$nf functions, $nv variables"
}

case $mode in
dump)
    mkdir -p "$(dirname "$baseline")"
    dump "$lib" "$baseline"
    echo "abi: wrote $baseline ($(summary "$baseline")) from $(basename "$(readlink -f "$lib")")"
    echo "abi: commit it together with a CHANGELOG.md entry that says what changed in the ABI"
    ;;
check)
    if [ ! -f "$baseline" ]; then
        echo "abi: no baseline $baseline; create it with 'make abi-dump' and commit it" >&2
        exit 1
    fi
    current=$(dirname "$lib")/../libagave.abi
    dump "$lib" "$current"
    rc=0
    # shellcheck disable=SC2086
    abidiff $abidiff_opts "$baseline" "$current" >"$current.diff" 2>&1 || rc=$?
    if [ $rc -eq 0 ]; then
        echo "abi: $(basename "$(readlink -f "$lib")") matches $baseline ($(summary "$current"))"
        exit 0
    fi
    cat "$current.diff"
    # abidiff's exit status is a bit set: 1 error, 2 usage, 4 ABI change,
    # 8 incompatible ABI change.
    if [ $((rc & 3)) -ne 0 ]; then
        echo "abi: abidiff failed (exit status $rc)" >&2
    elif [ $((rc & 8)) -ne 0 ]; then
        echo "abi: INCOMPATIBLE change against $baseline (a symbol was removed): it breaks" \
            "programs built against the baseline. Undo it, or bump AGAVE_VERSION_MAJOR" \
            "and the version node in lib/agave.map (docs/build.md, ABI policy)." >&2
    else
        echo "abi: the ABI differs from $baseline (report above). Added functions and" \
            "appended status codes are compatible; a changed signature, struct layout or" \
            "enum value is not, even where abidiff does not call it incompatible: add a" \
            "_v2 function instead (docs/build.md, ABI policy)." >&2
    fi
    echo "abi: if the change is deliberate, run 'make abi-dump' and commit" \
        "$baseline with a CHANGELOG.md entry in the same commit (docs/build.md)." >&2
    exit 1
    ;;
*) usage ;;
esac
