#!/bin/sh
# The library never aborts, exits or prints (DESIGN.md): its shared object
# must not call abort, exit, assert's failure handler or a function that
# writes to the terminal, nor touch stdout or stderr. A header-only
# dependency compiled into it (stb_image_write's assert on a failed
# allocation was one) shows up here as an undefined symbol.
#
# usage: tests/check_no_abort.sh [LIBRARY]   (default: $AGAVE_BUILD/lib/libagave.so)
set -eu
. tests/support/preamble.sh
lib=${1:-$build/lib/libagave.so}
[ -f "$lib" ] || fail "$lib not found (run make first)"

forbidden='abort exit _exit _Exit quick_exit __assert_fail __assert_perror_fail __assert
printf vprintf fprintf vfprintf dprintf puts fputs putchar perror psignal
__printf_chk __vprintf_chk __fprintf_chk __vfprintf_chk __dprintf_chk stdout stderr'

# "U name@version" for every symbol the library takes from elsewhere.
found=""
for sym in $(nm -D --undefined-only "$lib" | awk '{ print $NF }' | sed 's/@.*//'); do
    for f in $forbidden; do
        [ "$sym" = "$f" ] && found="$found $sym"
    done
done
[ -z "$found" ] || fail "$(basename "$lib") calls$found"
echo "check_no_abort: $(basename "$lib") calls none of abort, exit, assert, printing to the terminal"
