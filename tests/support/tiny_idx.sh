# Sourced by shell tests: idx_file PATH COUNT SEED writes COUNT images of
# 1x8x8 as an IDX file (magic 00 00 08 03, then count, rows, cols as
# big-endian 32-bit numbers, then the pixels; COUNT < 256). The pixels are a
# gradient plus a pseudo-random term (the ZX81's LCG, small enough for exact
# arithmetic in any awk), written as octal escapes for printf. The same
# images as tests/programs.sh's data set.
idx_file() { # path count seed
    n=$2
    count=$(printf '\\%03o' "$n")
    printf "\\000\\000\\010\\003\\000\\000\\000$count\\000\\000\\000\\010\\000\\000\\000\\010" >"$1"
    printf "$(awk -v n="$n" -v s="$3" 'BEGIN {
        for (i = 0; i < n * 64; i++) {
            s = (s * 75 + 74) % 65537
            v = (int(i % 64 / 8) * 24 + (i % 8) * 6 + s % 64) % 256
            printf "\\%03o", v
        } }')" >>"$1"
}
