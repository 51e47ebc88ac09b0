#!/bin/sh
# The layer rule of lib/README.md: every #include "..." of a file under lib/
# stays in its own folder or one of the folders the table between the
# "layers: begin" and "layers: end" markers lists for it. Fails (naming the
# file, the line and the rule) on any include that points elsewhere, and on a
# folder the table does not place. With a build ($AGAVE_BUILD, default
# build/), the same rule on symbols: an object of a folder may take functions
# and data only from the folders it may include.
#
# usage: sh tests/check_layers.sh   (from the top of the source tree; make check runs it)
set -eu
. tests/support/preamble.sh
top=${AGAVE_SRCDIR:-.}
readme=$top/lib/README.md

# "folder: allowed folders" from the table's rows.
rules=$(sed -n '/<!-- layers: begin -->/,/<!-- layers: end -->/p' "$readme" |
    awk -F'|' 'NF > 3 && $2 !~ /folder|---/ {
        gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $3); print $2 ":" $3 }')
[ -n "$rules" ] || fail "no table between the layer markers of $readme"

# Prints one line per symbol that an object of one folder takes from a folder
# it may not use: the link-level rule (an include may be missing where a
# prototype is declared by hand, as the op table once did with the loss ops).
# Needs the built objects, $AGAVE_BUILD/obj/lib/FOLDER/*.o.
link_violations() {
    for o in "$build"/obj/lib/*/*.o; do
        folder=$(basename "$(dirname "$o")")
        src=lib/$folder/$(basename "$o" .o).c
        [ -e "$top/$src" ] || continue   # a stale object of a removed source
        nm "$o" | awk -v f="$folder" -v src="$src" '
            $1 == "U" { print "U", $2, f, src }
            NF == 3 && $2 ~ /^[TDBRVW]$/ { print "D", $3, f }'
    done | awk -v rules="$rules" '
        BEGIN {
            n = split(rules, rows, "\n")
            for (i = 1; i <= n; i++) {
                split(rows[i], kv, ":")
                allowed[kv[1]] = " " kv[1] " " kv[2] " "
            }
        }
        $1 == "D" { home[$2] = $3; next }
        { use[++u] = $0 }
        END {
            for (i = 1; i <= u; i++) {
                split(use[i], w, " ")
                sym = w[2]; f = w[3]; src = w[4]
                if (!(sym in home)) continue   # outside the library (libc, BLAS, zlib)
                if (index(allowed[f], " " home[sym] " ")) continue
                printf "%s uses %s of lib/%s: lib/%s may use only%s(lib/README.md)\n",
                    src, sym, home[sym], f, substr(allowed[f], length(f) + 2)
            }
        }'
}

# Prints one line per include that breaks the rule, or per folder the table
# does not place.
violations() {
    for dir in "$top"/lib/*/; do
        folder=$(basename "$dir")
        printf '%s\n' "$rules" | grep -q "^$folder:" ||
            echo "lib/$folder/: not in the layer table of lib/README.md (add a row in its place)"
    done
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$top"/lib/*/*.[ch] |
        awk -v rules="$rules" -v top="$top/" '
        BEGIN {
            n = split(rules, rows, "\n")
            for (i = 1; i <= n; i++) {
                split(rows[i], kv, ":")
                allowed[kv[1]] = " " kv[1] " " kv[2] " "
            }
        }
        {
            # FILE:LINE:#include "PATH"
            file = $0; sub(/:.*/, "", file); sub("^" top, "", file)
            rest = substr($0, length(top) + length(file) + 2)
            line = rest; sub(/:.*/, "", line)
            inc = rest; sub(/^[^"]*"/, "", inc); sub(/".*/, "", inc)
            split(file, parts, "/"); folder = parts[2]
            if (inc == "agave.h" || inc == "agave_version.h") next
            if (inc ~ /^\.\.\/[^\/]+\/[^\/]+$/) { split(inc, q, "/"); target = q[2] }
            else if (inc ~ /\//) target = "(a path not of the form ../folder/file.h)"
            else target = folder
            if (!(folder in allowed) || index(allowed[folder], " " target " ")) next
            printf "%s:%s: #include \"%s\": lib/%s may include only%s(lib/README.md)\n",
                file, line, inc, folder, substr(allowed[folder], length(folder) + 2)
        }'
}

what="every include and every symbol"
found=$(violations)
if [ -d "$build/obj/lib" ]; then
    found=$(printf '%s\n%s' "$found" "$(link_violations)" | sed '/^$/d')
else
    echo "check_layers: no objects in $build/obj/lib: the link-level check is skipped"
    what="every include"
fi
if [ -n "$found" ]; then
    printf '%s\n' "$found"
    echo "check_layers: $(printf '%s\n' "$found" | wc -l) violation(s) of the layer rule"
    exit 1
fi
echo "check_layers: $what under lib/ points down the layers"
