/* Products whose every element has the same bits however many rows are
 * multiplied at once (lib/core/gemm_rows.c): C (rows, N) = A (rows, K) W^T
 * + bias, for the cached sampler's fixed products (the codec's encoder runs
 * a whole image row where its decoder runs one pixel, and both must round
 * alike). AVX-512F only: call gemm_rows only where gemm_avx512_available(0)
 * (lib/core/gemm_avx512.h) says this CPU has it. */
#ifndef AGAVE_CORE_GEMM_ROWS_H
#define AGAVE_CORE_GEMM_ROWS_H

#include <stddef.h>

/* Floats of W (N, K) packed for gemm_rows: K rows of N rounded up to 16. */
size_t gemm_rows_packed_floats(int N, int K);

/* packed = W (N, K, row-major) as gemm_rows reads it: (K, N16), zero past N. */
void gemm_rows_pack(int N, int K, const float *W, float *packed);

/* C[r][o] = (sum over k = 0, 1, ..., K-1 of A[r][k] W[o][k], a chain of fused
 * multiply-adds from zero in that order) + bias[o], for r < rows, o < N.
 * A has leading dimension lda, C ldc. An element depends only on its row of
 * A, its row of W and its bias. */
void gemm_rows(int rows, int N, int K, const float *A, size_t lda, const float *packed,
               const float *bias, float *C, size_t ldc);

/* A run of A's columns read in place: A[r][k0 + k] = base[r * stride + k]
 * for k < len, k0 the sum of the earlier runs' len. stride may be smaller
 * than len (rows that overlap) or 0 (every row the same, e.g. zeros). */
typedef struct gemm_run {
    const float *base;
    size_t stride;
    int len;
} gemm_run;

/* gemm_rows with A given as runs of columns (sum of len = K) instead of a
 * matrix: the same chains in the same order, so the same bits as gemm_rows
 * on the matrix the runs describe, without copying it (a convolution's taps
 * read straight from its input). */
void gemm_rows_runs(int rows, int N, const gemm_run *runs, int n_runs, const float *packed,
                    const float *bias, float *C, size_t ldc);

#endif
