#!/bin/sh
# The names agave.h keeps for compatibility ("Compatibility": 0.1's _init
# functions and agave_model_get_config, the param_count functions renamed in
# 1.0):
#  - still link against the shared library and give what their replacements
#    give (tests/deprecated/program.c, built with AGAVE_NO_DEPRECATION_WARNINGS);
#  - warn where a program uses them, naming the replacement, unless
#    AGAVE_NO_DEPRECATION_WARNINGS is defined;
#  - are in the header's Compatibility section, each with AGAVE_DEPRECATED.
#
# usage: tests/check_deprecated.sh   (run by make check from the top of the tree)
# Environment: AGAVE_BUILD, AGAVE_SAN (sanitizer flags), AGAVE_CC.
set -eu
. tests/support/preamble.sh
lib=$src/$build/lib
[ -f "$lib/libagave.so" ] || fail "$lib/libagave.so not found (run make first)"

# Every AGAVE_DEPRECATED declaration names its replacement, which is declared too.
awk '/^AGAVE_DEPRECATED\(/ { r = $0; sub(/^AGAVE_DEPRECATED\(/, "", r); sub(/\).*/, "", r)
    print r }' include/agave.h >"$tmp/replacements"
[ "$(wc -l <"$tmp/replacements")" -ge 8 ] || fail "fewer AGAVE_DEPRECATED declarations than expected"
while read -r r; do
    grep -q "^AGAVE_API.*[ *]$r(" include/agave.h || fail "the replacement $r is not declared"
done <"$tmp/replacements"

# shellcheck disable=SC2086 # the flags are words on purpose
$cc $san -std=c11 -Wall -Werror -DAGAVE_NO_DEPRECATION_WARNINGS -Iinclude \
    tests/deprecated/program.c -L"$lib" -Wl,-rpath,"$lib" -lagave -o "$tmp/program" \
    >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "the program does not build"; }
"$tmp/program" >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; fail "an old name misbehaves"; }

# Without the macro, each use warns with the replacement's name.
printf '#include "agave.h"\nint f(const agave_model *m) { return agave_model_param_tensors(m); }\n' \
    >"$tmp/use.c"
if $cc -std=c11 -Wall -Iinclude -c "$tmp/use.c" -o "$tmp/use.o" >"$tmp/use.log" 2>&1; then
    grep -q "deprecated" "$tmp/use.log" || fail "using agave_model_param_tensors does not warn"
    grep -q "agave_model_param_tensor_count" "$tmp/use.log" ||
        fail "the warning does not name agave_model_param_tensor_count"
else
    cat "$tmp/use.log" >&2
    fail "a program using an old name does not compile"
fi
cat "$tmp/out" | sed 's/^deprecated program: /check_deprecated: /'
echo "check_deprecated: $(wc -l <"$tmp/replacements") old names link and agree; using one warns with its replacement"
