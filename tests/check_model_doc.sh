#!/bin/sh
# docs/model.md's tables of named configurations and configuration keys must be
# what the library says (scripts/config-doc.sh), and the page must be the
# project's whole model contract: no reference to a MODEL.md outside the
# repository may remain anywhere in the tree.
# Fix a table with:  sh scripts/config-doc.sh --write
set -eu
. tests/support/preamble.sh
sh scripts/config-doc.sh docs/model.md >"$tmp/model.md"
if ! cmp -s "$tmp/model.md" docs/model.md; then
    echo "check_model_doc: FAIL: docs/model.md's generated tables differ from the library" >&2
    echo "check_model_doc: run: sh scripts/config-doc.sh --write" >&2
    diff docs/model.md "$tmp/model.md" | head -20 >&2
    exit 1
fi
refs=$(grep -rln --exclude-dir=.git --exclude-dir='build*' --exclude=CHANGELOG.md \
    --exclude=check_model_doc.sh -e 'MODEL\.md' -e '\.\./shared/MODEL' . || true)
[ -z "$refs" ] || fail "MODEL.md is cited in: $refs"
keys=$(grep -c '^| `' docs/model.md || true)
echo "check_model_doc: docs/model.md's tables match the library; no MODEL.md reference is left ($keys table rows)"
