#!/bin/sh
# The struct_size rule (docs/build.md, "ABI policy") the way it is used: a
# program compiled against another agave.h than the library's, run on the
# library of this tree. tests/struct_size/program.c is built three times and
# linked to $AGAVE_BUILD/lib/libagave.so:
#  - same:  against include/agave.h itself, the reference;
#  - short: every size-prefixed struct (one that starts with size_t
#           struct_size) one field shorter, as if built against an older
#           header; where the field sat in the struct's tail padding, one more
#           field goes, until the struct really is smaller than the library's;
#  - long:  every such struct with a field more at the end (a newer header).
# The program checks that the library writes nothing past any struct and
# refuses a field it does not know once it is set; the three must print the
# same figures (training, evaluation, a masked convolution) and write the same
# PNG, which they only do if the library took its defaults for what the short
# structs lack and ignored the unset field of the long ones.
#
# usage: tests/struct_size.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD, AGAVE_SAN (sanitizer flags), AGAVE_CC.
set -eu
. tests/support/preamble.sh
lib=$src/$build/lib
[ -f "$lib/libagave.so" ] || fail "$lib/libagave.so not found (run make first)"

# The size-prefixed structs of the header; the program must use each.
structs=$(awk '/^typedef struct [a-z_]+ \{$/ { name = $3; getline
    if ($0 ~ /^    size_t struct_size;/) print name }' include/agave.h)
[ -n "$structs" ] || fail "no size-prefixed struct found in include/agave.h"
for s in $structs; do
    grep -q "$s" tests/struct_size/program.c ||
        fail "tests/struct_size/program.c does not exercise $s: add it"
done

# variant MODE SPEC OUT: include/agave.h with, in MODE short, the last K
# member lines of each struct NAME of SPEC ("NAME=K ...") removed, or in MODE
# long, a uint64_t agave_test_extra appended to every struct of SPEC.
variant() {
    mkdir -p "$3"
    cp include/agave_version.h "$3/"
    awk -v mode="$1" -v spec="$2" '
    BEGIN { n = split(spec, a, " "); for (i = 1; i <= n; i++) { split(a[i], kv, "="); k[kv[1]] = kv[2] } }
    /^typedef struct [a-z_]+ \{$/ { name = $3; inside = (name in k); nb = 0; print; next }
    inside && /^\} [a-z_]+;$/ {
        drop = mode == "short" ? k[name] : 0
        for (i = nb; i >= 1 && drop > 0; i--)
            if (buf[i] ~ /^    [A-Za-z_][^\/]*;/) { gone[i] = 1; drop-- }
        for (i = 1; i <= nb; i++) if (!(i in gone)) print buf[i]
        if (mode == "long") print "    uint64_t agave_test_extra;"
        split("", gone); inside = 0; print; next }
    inside { buf[++nb] = $0; next }
    { print }' include/agave.h >"$3/agave.h"
}

# sizeof of each struct under a header directory, "NAME SIZE" lines.
sizes() {
    {
        printf '%s\n' '#include <stdio.h>' '#include "agave.h"' 'int main(void) {'
        for s in $structs; do printf 'printf("%s %%zu\\n", sizeof(%s));\n' "$s" "$s"; done
        printf '%s\n' 'return 0; }'
    } >"$tmp/probe.c"
    $cc -I"$1" "$tmp/probe.c" -o "$tmp/probe" || fail "cannot compile a probe against $1"
    "$tmp/probe"
}

sizes include >"$tmp/full.sizes"
spec=""
for s in $structs; do
    full=$(sed -n "s/^$s //p" "$tmp/full.sizes")
    k=1
    while :; do
        variant short "$s=$k" "$tmp/try"
        now=$(sizes "$tmp/try" | sed -n "s/^$s //p")
        [ "$now" -lt "$full" ] && break
        k=$((k + 1))
        [ $k -le 4 ] || fail "$s does not get smaller without its last 4 fields"
    done
    spec="$spec $s=$k"
done
variant short "$spec" "$tmp/short"
variant long "$spec" "$tmp/long"
mkdir -p "$tmp/same" && cp include/agave.h include/agave_version.h "$tmp/same/"

# The agave_config keys the short struct lacks: agave_config_set must refuse them.
members() {
    awk '/^typedef struct agave_config \{$/,/^\} agave_config;$/' "$1" |
        grep '^    [A-Za-z_][^/]*;' | sed 's/;.*//'
}
members "$tmp/same/agave.h" >"$tmp/members.same"
members "$tmp/short/agave.h" >"$tmp/members.short"
missing=$(grep -vxF -f "$tmp/members.short" "$tmp/members.same" |
    sed 's/^ *[A-Za-z_][A-Za-z0-9_]* *\**//' | tr -s ', ' '\n\n' | grep . | paste -sd, -)

for v in same short long; do
    flags=""
    [ $v = long ] && flags=-DAGAVE_TEST_LONG
    # shellcheck disable=SC2086 # the flags are words on purpose
    $cc $san -std=c11 -Wall -Wextra -Werror $flags -I"$tmp/$v" tests/struct_size/program.c \
        -L"$lib" -Wl,-rpath,"$lib" -lagave -o "$tmp/$v.bin" >"$tmp/$v.build" 2>&1 ||
        { cat "$tmp/$v.build" >&2; fail "the program does not build against the $v header"; }
    args=""
    [ $v = short ] && args=$missing
    "$tmp/$v.bin" "$tmp/$v.png" $args >"$tmp/$v.out" 2>"$tmp/$v.err" ||
        { cat "$tmp/$v.out" "$tmp/$v.err" >&2; fail "the program built against the $v header failed"; }
    grep -v '^sizes:' "$tmp/$v.out" >"$tmp/$v.figures"
done
for v in short long; do
    cmp -s "$tmp/same.figures" "$tmp/$v.figures" ||
        { diff "$tmp/same.figures" "$tmp/$v.figures" >&2; fail "the $v header gives other figures"; }
    cmp -s "$tmp/same.png" "$tmp/$v.png" || fail "the $v header gives another PNG grid"
done
echo "struct_size: shorter structs (fields dropped:$spec; agave_config lacks $missing) and" \
    "structs with a field more give the same figures as the header's own"
sed -n 's/^sizes: /struct_size: sizes, header: /p' "$tmp/same.out"
sed -n 's/^sizes: /struct_size: sizes, short: /p' "$tmp/short.out"
sed -n 's/^sizes: /struct_size: sizes, long: /p' "$tmp/long.out"
