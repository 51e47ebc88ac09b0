#!/bin/sh
# The layer rule of lib/README.md: every #include "..." of a file under lib/
# stays in its own folder or one of the folders the table between the
# "layers: begin" and "layers: end" markers lists for it. Fails (naming the
# file, the line and the rule) on any include that points elsewhere, and on a
# folder the table does not place.
#
# usage: sh tests/check_layers.sh   (from the top of the source tree; make check runs it)
set -eu
top=${AGAVE_SRCDIR:-.}
readme=$top/lib/README.md

# "folder: allowed folders" from the table's rows.
rules=$(sed -n '/<!-- layers: begin -->/,/<!-- layers: end -->/p' "$readme" |
    awk -F'|' 'NF > 3 && $2 !~ /folder|---/ {
        gsub(/^ +| +$/, "", $2); gsub(/^ +| +$/, "", $3); print $2 ":" $3 }')
[ -n "$rules" ] || { echo "check_layers: no table between the layer markers of $readme"; exit 1; }

# Prints one line per include that breaks the rule.
violations() {
    for dir in "$top"/lib/*/; do
        folder=$(basename "$dir")
        if ! printf '%s\n' "$rules" | grep -q "^$folder:"; then
            echo "lib/$folder/: not in the layer table of lib/README.md (add a row in its place)"
            continue
        fi
        allowed=$(printf '%s\n' "$rules" | sed -n "s/^$folder:\(.*\)/\1/p")
        for f in "$dir"*.c "$dir"*.h; do
            [ -e "$f" ] || continue
            grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
                sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1 \2/' | while read -r line inc; do
                case $inc in
                agave.h | agave_version.h) continue ;;
                ../*/*) target=$(printf '%s' "$inc" | cut -d/ -f2) ;;
                */*) target="(a path not of the form ../folder/file.h)" ;;
                *) target=$folder ;;
                esac
                ok=0
                for a in "$folder" $allowed; do [ "$target" = "$a" ] && ok=1; done
                [ $ok -eq 1 ] || echo "lib/$folder/$(basename "$f"):$line: #include \"$inc\":" \
                    "lib/$folder may include only ${allowed:-its own headers}" \
                    "(lib/README.md)"
            done
        done
    done
}

found=$(violations)
if [ -n "$found" ]; then
    printf '%s\n' "$found"
    echo "check_layers: $(printf '%s\n' "$found" | wc -l) include(s) against the layer rule"
    exit 1
fi
echo "check_layers: every include under lib/ points down the layers"
