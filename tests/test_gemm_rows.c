/* The row-independent product gemm_rows (lib/core/gemm_rows.c), on which the
 * codec's encoder (a whole image row at once) and decoder (one pixel at a
 * time) must get the same bits.
 *
 * - Exact: with small integer operands every product and partial sum is an
 *   integer below 2^24, so float32 computes it exactly and any other result
 *   (a lost k, a wrong row or column, a missed edge, the bias left out or
 *   added twice) differs from the integer reference.
 * - Close: random operands within (K + 2) float epsilons of sum |a w| of a
 *   double-precision reference (a float32 chain of K terms rounds less).
 * - Row-independent: any split of the rows into calls, and any position of
 *   a row in A, gives every element the same bits; a second accumulator, a
 *   k-blocked sum or another order for tail rows would break it.
 * - Runs: A given as runs of columns read in place (overlapping rows, a
 *   stride of 0, runs of any length) gives the bits of the matrix they
 *   describe, written out and multiplied by gemm_rows.
 * On a CPU without AVX-512F the tests skip. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/gemm_avx512.h"
#include "core/gemm_rows.h"

/* Column counts of 1..4 vectors with and without a ragged edge, and more
 * than 64 columns (two passes); row counts with and without tails. */
static const int shapes[][3] = {   /* rows, N, K */
    {1, 1, 1}, {13, 15, 7}, {32, 32, 448}, {37, 64, 416}, {50, 100, 65},
    {8, 128, 200}, {6, 48, 33}, {25, 17, 3}, {3, 130, 1}, {12, 30, 96},
};

static unsigned lcg(unsigned *s) { return *s = *s * 1103515245u + 12345u; }

static float *matrix(size_t n, unsigned seed, int integers)
{
    float *m = malloc(n * sizeof *m + sizeof *m);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) {
        unsigned r = lcg(&seed) >> 8;
        m[i] = integers ? (float)((int)(r % 9) - 4) : (float)r / (float)(1u << 24) * 2.0f - 1.0f;
    }
    return m;
}

/* C (rows, N) by gemm_rows from W (N, K) packed here. */
static float *product(int rows, int N, int K, const float *A, const float *W, const float *bias)
{
    float *packed = malloc(gemm_rows_packed_floats(N, K) * sizeof *packed);
    float *C = malloc((size_t)rows * N * sizeof *C);
    assert_non_null(packed), assert_non_null(C);
    gemm_rows_pack(N, K, W, packed);
    gemm_rows(rows, N, K, A, (size_t)K, packed, bias, C, (size_t)N);
    free(packed);
    return C;
}

static double reference(const float *A, const float *W, const float *bias, int K, int r, int o,
                        double *abs_sum)
{
    double s = 0, a = 0;
    for (int k = 0; k < K; k++) {
        s += (double)A[(size_t)r * K + k] * W[(size_t)o * K + k];
        a += fabs((double)A[(size_t)r * K + k] * W[(size_t)o * K + k]);
    }
    *abs_sum = a + fabs((double)bias[o]);
    return s + bias[o];
}

static void check_shape(int rows, int N, int K, int integers, unsigned seed)
{
    float *A = matrix((size_t)rows * K, seed, integers), *W = matrix((size_t)N * K, seed + 1, integers);
    float *bias = matrix((size_t)N, seed + 2, integers);
    float *C = product(rows, N, K, A, W, bias);
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < N; o++) {
            double abs_sum, ref = reference(A, W, bias, K, r, o, &abs_sum);
            double tol = integers ? 0.0 : (K + 2) * (double)FLT_EPSILON * abs_sum;
            if (fabs(C[(size_t)r * N + o] - ref) > tol)
                fail_msg("rows %d N %d K %d: C[%d][%d] = %.9g, reference %.9g (tolerance %.3g)",
                         rows, N, K, r, o, C[(size_t)r * N + o], ref, tol);
        }
    free(A), free(W), free(bias), free(C);
}

/* Every shape, on integer operands (exact) or random ones (close). */
static void check_shapes(int integers, unsigned seed)
{
    if (!gemm_avx512_available(0))
        skip();
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], integers, seed + (unsigned)i);
}

static void test_exact_on_integers(void **state)
{
    (void)state;
    check_shapes(1, 10);
}

static void test_close_on_random(void **state)
{
    (void)state;
    check_shapes(0, 50);
}

/* Every row alone, and the rows in runs of 1..MAXRUN from every offset:
 * the same bits as all rows in one call. */
static void test_rows_independent(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const int rows = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        float *A = matrix((size_t)rows * K, 90 + (unsigned)i, 0);
        float *W = matrix((size_t)N * K, 91 + (unsigned)i, 0), *bias = matrix((size_t)N, 92, 0);
        float *all = product(rows, N, K, A, W, bias);
        float *packed = malloc(gemm_rows_packed_floats(N, K) * sizeof *packed);
        float *part = malloc((size_t)rows * N * sizeof *part);
        gemm_rows_pack(N, K, W, packed);
        for (int run = 1; run <= 13; run++) {
            memset(part, 0xff, (size_t)rows * N * sizeof *part);
            for (int r = 0; r < rows; r += run) {
                int m = rows - r < run ? rows - r : run;
                gemm_rows(m, N, K, A + (size_t)r * K, (size_t)K, packed, bias,
                          part + (size_t)r * N, (size_t)N);
            }
            if (memcmp(part, all, (size_t)rows * N * sizeof *part) != 0)
                fail_msg("rows %d N %d K %d: runs of %d rows round differently from one call",
                         rows, N, K, run);
        }
        free(A), free(W), free(bias), free(all), free(packed), free(part);
    }
}

/* A (rows, K) written out from runs over src: the matrix they describe. */
static float *runs_matrix(int rows, const gemm_run *runs, int n_runs, int K)
{
    float *A = malloc((size_t)rows * K * sizeof *A);
    assert_non_null(A);
    for (int r = 0; r < rows; r++)
        for (int q = 0, k0 = 0; q < n_runs; k0 += runs[q].len, q++)
            for (int k = 0; k < runs[q].len; k++)
                A[(size_t)r * K + k0 + k] = runs[q].base[(size_t)r * runs[q].stride + k];
    return A;
}

/* Runs as a convolution's taps read them (overlapping rows of a source, a
 * tap of zeros, a last run of its own), in row counts with and without
 * tails and column counts of one to five vectors: bit for bit the product of
 * the matrix they describe. */
static void test_runs_match_matrix(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    static const int cases[][3] = {{1, 16, 4}, {7, 32, 5}, {29, 64, 8}, {48, 70, 3}, {13, 5, 16}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int rows = cases[i][0], N = cases[i][1], ch = cases[i][2];
        float *src = matrix((size_t)(rows + 3) * ch, 200 + (unsigned)i, 0);
        float *side = matrix((size_t)rows * 7, 300 + (unsigned)i, 0);
        float *zeros = calloc((size_t)ch, sizeof *zeros), *seven = matrix(5, 400, 0);
        const gemm_run runs[] = {
            {src, (size_t)ch, ch},            /* tap 0 */
            {src + ch, (size_t)ch, ch},       /* tap 1: the next position */
            {zeros, 0, ch},                   /* a tap on padding */
            {src + 2 * ch, (size_t)ch, 2 * ch},   /* two taps as one run, rows overlapping */
            {side, 7, 7},                     /* a short-cut of its own */
            {seven, 0, 5},                    /* the same five values on every row */
        };
        const int n_runs = (int)(sizeof runs / sizeof *runs);
        int K = 0;
        for (int q = 0; q < n_runs; q++)
            K += runs[q].len;
        float *A = runs_matrix(rows, runs, n_runs, K), *W = matrix((size_t)N * K, 500, 0);
        float *bias = matrix((size_t)N, 501, 0), *want = product(rows, N, K, A, W, bias);
        float *packed = malloc(gemm_rows_packed_floats(N, K) * sizeof *packed);
        float *got = malloc((size_t)rows * N * sizeof *got);
        gemm_rows_pack(N, K, W, packed);
        memset(got, 0xff, (size_t)rows * N * sizeof *got);
        gemm_rows_runs(rows, N, runs, n_runs, packed, bias, got, (size_t)N);
        if (memcmp(got, want, (size_t)rows * N * sizeof *got) != 0)
            fail_msg("rows %d N %d ch %d: runs round differently from their matrix", rows, N, ch);
        free(src), free(side), free(zeros), free(seven), free(A), free(W), free(bias);
        free(want), free(packed), free(got);
    }
}

/* Leading dimensions wider than the operands: C's other columns untouched. */
static void test_leading_dimensions(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    const int rows = 9, N = 20, K = 11, lda = 16, ldc = 29;
    float *A = matrix((size_t)rows * lda, 7, 1), *W = matrix((size_t)N * K, 8, 1);
    float *bias = matrix((size_t)N, 9, 1), *C = malloc((size_t)rows * ldc * sizeof *C);
    float *packed = malloc(gemm_rows_packed_floats(N, K) * sizeof *packed);
    for (int i = 0; i < rows * ldc; i++)
        C[i] = 12345.0f;
    gemm_rows_pack(N, K, W, packed);
    gemm_rows(rows, N, K, A, (size_t)lda, packed, bias, C, (size_t)ldc);
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < ldc; o++) {
            double want = 12345.0;
            if (o < N) {
                want = bias[o];
                for (int k = 0; k < K; k++)
                    want += (double)A[(size_t)r * lda + k] * W[(size_t)o * K + k];
            }
            assert_true(C[(size_t)r * ldc + o] == (float)want);
        }
    free(A), free(W), free(bias), free(C), free(packed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_on_integers),
        cmocka_unit_test(test_close_on_random),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_leading_dimensions),
        cmocka_unit_test(test_runs_match_matrix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
