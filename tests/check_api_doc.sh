#!/bin/sh
# docs/api.md must be exactly what scripts/api-doc.sh makes of include/agave.h,
# and must mention every function the header declares: a public function
# cannot be added without its reference entry.
# Fix a failure with:  sh scripts/api-doc.sh > docs/api.md
set -eu
. tests/support/preamble.sh
sh scripts/api-doc.sh include/agave.h > "$tmp/api.md"
if ! cmp -s "$tmp/api.md" docs/api.md; then
    echo "check_api_doc: FAIL: docs/api.md is out of date with include/agave.h" >&2
    echo "check_api_doc: run: sh scripts/api-doc.sh > docs/api.md" >&2
    diff "$tmp/api.md" docs/api.md | head -20 >&2
    exit 1
fi
missing=0
for f in $(sed -n 's/^AGAVE_API[^(]*[ *]\(agave_[a-z0-9_]*\)(.*/\1/p' include/agave.h); do
    if ! grep -q "$f(" docs/api.md; then
        echo "check_api_doc: FAIL: $f is not in docs/api.md" >&2
        missing=1
    fi
done
n=$(grep -c '^AGAVE_API' include/agave.h)
[ "$n" -gt 50 ] || fail "found only $n declarations"
[ "$missing" -eq 0 ] || exit 1
echo "check_api_doc: docs/api.md covers all $n public declarations"
