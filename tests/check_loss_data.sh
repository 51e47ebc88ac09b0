#!/bin/sh
# tests/data/losses holds reference values of the two likelihoods made by
# tests/data/losses/gen_losses.c (long double, written from docs/losses.md,
# independent of lib/loss). This builds the generator, runs it into a
# temporary directory and requires the committed files to be byte for byte
# what it writes: the references can always be regenerated and reviewed.
# Fix a failure by regenerating (see gen_losses.c) and saying why in the commit.
set -eu
. tests/support/preamble.sh
top=${AGAVE_SRCDIR:-.}
# No sanitizer or optimisation flags of the build under test: the generator
# is the reference, built plainly.
$cc -std=c11 -O2 -Wall -Wextra -Werror -o "$tmp/gen_losses" "$top/tests/data/losses/gen_losses.c" -lm
mkdir "$tmp/out"
"$tmp/gen_losses" "$tmp/out"
bad=0
for f in "$tmp"/out/*; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$top/tests/data/losses/$name"; then
        echo "check_loss_data: tests/data/losses/$name differs from what gen_losses.c writes"
        bad=1
    fi
done
for f in "$top"/tests/data/losses/*; do
    name=$(basename "$f")
    case $name in README.md | gen_losses.c) continue ;; esac
    [ -e "$tmp/out/$name" ] || { echo "check_loss_data: tests/data/losses/$name is not made by gen_losses.c"; bad=1; }
done
[ $bad -eq 0 ] || exit 1
echo "check_loss_data: tests/data/losses is exactly what gen_losses.c writes ($(ls "$tmp/out" | wc -l) files)"
