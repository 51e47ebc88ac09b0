#!/bin/sh
# Writes the API reference (markdown) from include/agave.h to stdout: the
# overview, every section banner as a heading, and every comment with the
# declarations it documents, in header order. docs/api.md is this script's
# output, and `make check` fails when the two differ, so the reference cannot
# fall behind the header. POSIX awk only (Debian's default is mawk).
# usage: scripts/api-doc.sh [include/agave.h] > docs/api.md
set -eu
header=${1:-include/agave.h}
awk '
function flush_block() {
    if (decl != "") { print "```c"; printf "%s%s", comment, decl; print "```"; print "" }
    else if (comment != "") { t = comment
        gsub(/^\/\*+ ?/, "", t); gsub(/\n \* ?/, "\n", t); gsub(/ *\*\/\n$/, "", t)
        print t; print "" }
    comment = ""; decl = ""
}
function depth(s,   o, c) { o = gsub(/\{/, "{", s); c = gsub(/\}/, "}", s); return o - c }
BEGIN {
    print "# libagave API reference"
    print ""
    print "Generated from `include/agave.h` by `scripts/api-doc.sh`; do not edit by hand."
    print "Each entry is the header comment and the declarations it documents."
    print ""
    state = "out"
}
# Build machinery that is not API: the include guard, includes, extern "C", the export macro.
/^#if defined\(AGAVE_BUILDING_LIBRARY\)/ { skip = 1; next }
skip { if ($0 ~ /^#endif/) skip = 0; next }
/^#(ifndef|define|endif) AGAVE_H/ || /^#include/ || /^#ifdef __cplusplus/ || /^extern "C"/ || /^}$/ || /^#endif/ { next }
# The opening comment is the overview, as text.
NR == 1 && /^\/\*$/ { state = "overview"; next }
state == "overview" { if ($0 ~ /^ \*\/$/) { print ""; print "@@CONTENTS@@"; state = "out"; next }
    t = $0; sub(/^ \* ?/, "", t); print t; next }
# Banners, one line /* ---- Title ---- */: "Part N: ..." is a level-2 heading,
# every other title a level-3 heading.
/^\/\* ---- .* ------* ?\*\/$/ { flush_block(); t = $0; sub(/^\/\* ---- /, "", t)
    sub(/ ------* ?\*\/$/, "", t); print (t ~ /^Part / ? "## " : "### ") t; print ""
    state = "out"; next }
# The experimental section is documented like the rest (its banner says so).
/^#if defined\(AGAVE_EXPERIMENTAL\)/ { next }
# Comments, declarations, blank lines.
state == "comment" { comment = comment $0 "\n"; if ($0 ~ /\*\//) state = "after_comment"; next }
state == "decl" { decl = decl $0 "\n"
    if (($0 ~ /;/ && depth(decl) == 0) || $0 ~ /^#define/) state = "after_decl"; next }
/^\/\*/ { if (state == "after_decl" || state == "after_comment") flush_block()
    comment = $0 "\n"; state = ($0 ~ /\*\//) ? "after_comment" : "comment"; next }
/^(AGAVE_API|AGAVE_DEPRECATED|typedef|#define AGAVE_|#define agave_)/ { decl = decl $0 "\n"
    state = (($0 ~ /;/ && depth(decl) == 0) || $0 ~ /^#define/) ? "after_decl" : "decl"; next }
/^[ \t]*$/ { if (state == "after_comment" || state == "after_decl") flush_block(); state = "out"; next }
END { flush_block() }
' "$header" | awk -v header="$header" '
# The contents: every banner of the header, linked to its heading (GitHub anchors).
function slug(t) { t = tolower(t); gsub(/[^a-z0-9 _-]/, "", t); gsub(/ /, "-", t); return t }
/^@@CONTENTS@@$/ {
    print "Contents:"; print ""
    while ((getline line < header) > 0) {
        if (line !~ /^\/\* ---- .* ------* ?\*\/$/) continue
        t = line; sub(/^\/\* ---- /, "", t); sub(/ ------* ?\*\/$/, "", t)
        if (t ~ /^Part /) print "- [" t "](#" slug(t) ")"
        else print "  - [" t "](#" slug(t) ")"
    }
    print ""; next
}
{ print }'
