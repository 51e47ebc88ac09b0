# Sourced by shell tests: pgm PATH H W SEED writes a binary PGM (P5) of H
# rows and W columns: a gradient plus a pseudo-random term (the ZX81's LCG,
# as tests/support/tiny_idx.sh), written as octal escapes for printf.
pgm() {
    printf 'P5\n%d %d\n255\n' "$3" "$2" >"$1"
    printf "$(awk -v n="$(($2 * $3))" -v s="$4" -v w="$3" 'BEGIN {
        for (i = 0; i < n; i++) {
            s = (s * 75 + 74) % 65537
            printf "\\%03o", (int(i / w) * 20 + (i % w) * 9 + s % 48) % 256
        } }')" >>"$1"
}
