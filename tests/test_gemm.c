/* The matrix product gemm() (lib/core/blas.c) and the library's AVX-512
 * kernels behind it (lib/core/gemm_avx512.c), in fp32 and bf16, and the
 * precision setting of the context.
 *
 * References are double-precision loops written here. fp32: |got - ref| <=
 * 1e-5 * sum_k |a_ik b_kj| (+ |c| when accumulating): float32 sums of up to
 * a few hundred terms round far below that, while a wrong index, a lost edge
 * row or column or a missed k block moves an element by a whole term.
 * bf16: the same bound against a reference on the operands rounded by
 * bf16_round: a product of two bf16 values is exact in float32, so only the
 * float32 sums round; rounding the operands any other way (truncating, or not
 * at all) errs by about 2^-9 of the terms, far beyond the bound. bf16 is
 * also held against the exact product of the unrounded operands, within
 * bf16's own error (2^-8 of sum |a_ik b_kj|).
 * On a CPU without AVX-512 (BF16) the engine tests skip. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "core/gemm_avx512.h"

#define REL_TOL 1e-5
#define BF16_PRODUCT_TOL (1.01 / 256)

typedef struct gemm_case {
    int M, N, K, trans_a, trans_b, accumulate;
} gemm_case;

/* Tiles are 8 x 48, k blocks 192 (bf16: 384): full tiles, edges in M, N and
 * K, odd K (an unpaired bf16 k), several k blocks, tiny products. */
static const gemm_case cases[] = {
    {.M = 8, .N = 48, .K = 16},
    {.M = 32, .N = 96, .K = 384},
    {.M = 13, .N = 50, .K = 31},
    {.M = 13, .N = 50, .K = 31, .trans_a = 1},
    {.M = 13, .N = 50, .K = 31, .trans_b = 1},
    {.M = 13, .N = 50, .K = 31, .trans_a = 1, .trans_b = 1, .accumulate = 1},
    {.M = 1, .N = 1, .K = 1},
    {.M = 3, .N = 200, .K = 7, .accumulate = 1},
    {.M = 100, .N = 17, .K = 450, .trans_b = 1},
    {.M = 70, .N = 130, .K = 800, .trans_a = 1, .accumulate = 1},
    {.M = 200, .N = 61, .K = 33, .trans_a = 1, .trans_b = 1},
    {.M = 9, .N = 49, .K = 385, .accumulate = 1},
    {.M = 5, .N = 7, .K = 0},
    {.M = 5, .N = 7, .K = 0, .accumulate = 1},
};

static float *random_matrix(size_t n, unsigned seed)
{
    float *m = malloc(n * sizeof *m + 1);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        m[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return m;
}

/* op(X)[i][k] for X of r x c stored row-major (transposed: stored c x r). */
static double at(const float *X, int ld, int trans, int i, int k)
{
    return trans ? X[(size_t)k * ld + i] : X[(size_t)i * ld + k];
}

static float rounded(float x, int bf16) { return bf16 ? bf16_round(x) : x; }

/* Checks C against op(A) op(B) (+ C0) in double, operands bf16-rounded with bf16. */
static void check_product(const gemm_case *g, int bf16, const float *A, int lda, const float *B,
                          int ldb, const float *C0, const float *C)
{
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->N; j++) {
            double ref = g->accumulate ? C0[(size_t)i * g->N + j] : 0.0;
            double scale = fabs(ref), exact = ref;
            for (int k = 0; k < g->K; k++) {
                const float a = (float)at(A, lda, g->trans_a, i, k);
                const float b = (float)at(B, ldb, !g->trans_b, j, k);
                double t = (double)rounded(a, bf16) * (double)rounded(b, bf16);
                ref += t;
                scale += fabs(t);
                exact += (double)a * b;
            }
            /* against the unrounded operands: each bf16 factor errs by at most
             * 2^-9 relative, so a product by at most about 2^-8 */
            double err_exact = fabs(C[(size_t)i * g->N + j] - exact);
            if (err_exact > (BF16_PRODUCT_TOL * bf16 + REL_TOL) * scale + 1e-30)
                fail_msg("M=%d N=%d K=%d bf16=%d: C[%d][%d] = %.9g, exact product %.9g "
                         "(error %.3g)",
                         g->M, g->N, g->K, bf16, i, j, (double)C[(size_t)i * g->N + j], exact,
                         err_exact);
            double err = fabs(C[(size_t)i * g->N + j] - ref);
            if (err > REL_TOL * scale + 1e-30)
                fail_msg("M=%d N=%d K=%d ta=%d tb=%d acc=%d bf16=%d: C[%d][%d] = %.9g, "
                         "reference %.9g (error %.3g, bound %.3g)",
                         g->M, g->N, g->K, g->trans_a, g->trans_b, g->accumulate, bf16, i, j,
                         (double)C[(size_t)i * g->N + j], ref, err, REL_TOL * scale);
        }
}

static void run_engine_cases(int bf16)
{
    if (!gemm_avx512_available(bf16))
        skip();
    float *buf = aligned_alloc(64, gemm_avx512_buffer_floats() * sizeof(float));
    assert_non_null(buf);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const gemm_case *g = &cases[c];
        const int lda = g->trans_a ? g->M : g->K, ldb = g->trans_b ? g->K : g->N;
        float *A = random_matrix((size_t)g->M * g->K, 1 + (unsigned)c);
        float *B = random_matrix((size_t)g->K * g->N, 100 + (unsigned)c);
        float *C0 = random_matrix((size_t)g->M * g->N, 200 + (unsigned)c);
        float *C = malloc((size_t)g->M * g->N * sizeof *C + 1);
        memcpy(C, C0, (size_t)g->M * g->N * sizeof *C);
        gemm_avx512(bf16, g->trans_a, g->trans_b, g->M, g->N, g->K, A, (size_t)lda, B,
                    (size_t)ldb, g->accumulate, C, (size_t)g->N, buf);
        check_product(g, bf16, A, lda, B, ldb, C0, C);
        free(A), free(B), free(C0), free(C);
    }
    free(buf);
}

static void test_engine_fp32(void **state)
{
    (void)state;
    run_engine_cases(0);
}

static void test_engine_bf16(void **state)
{
    (void)state;
    run_engine_cases(1);
}

/* Round to nearest, ties to even, on the 16 bits dropped; NaN stays NaN. */
static void test_bf16_round(void **state)
{
    (void)state;
    const struct {
        uint32_t in, out;
    } v[] = {
        {0x3f800000u, 0x3f800000u}, /* 1.0 exact */
        {0x3f808000u, 0x3f800000u}, /* tie, even below: down */
        {0x3f818000u, 0x3f820000u}, /* tie, odd below: up */
        {0x3f808001u, 0x3f810000u}, /* above the tie: up */
        {0x3f807fffu, 0x3f800000u}, /* below the tie: down */
        {0xbf818000u, 0xbf820000u}, /* negative tie, odd: away from zero */
        {0x7f7fffffu, 0x7f800000u}, /* largest float rounds to +inf */
        {0x7f800000u, 0x7f800000u}, /* inf */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        float x, y;
        uint32_t got;
        memcpy(&x, &v[i].in, sizeof x);
        y = bf16_round(x);
        memcpy(&got, &y, sizeof got);
        if (got != v[i].out)
            fail_msg("bf16_round(0x%08x) = 0x%08x, expected 0x%08x", v[i].in, got, v[i].out);
    }
    assert_true(isnan(bf16_round(NAN)));
    uint32_t nan_low = 0x7f800001u; /* a NaN whose payload is all in the dropped bits */
    float n;
    memcpy(&n, &nan_low, sizeof n);
    assert_true(isnan(bf16_round(n)));
}

/* With the AVX-512 kernels (bf16, or GEMM_OWN in fp32), gemm() on 1, 2 and 3 threads gives the same
 * bits: panels only split the columns (or rows), never a sum, and the kernels
 * sum an element the same way wherever it is. (OpenBLAS does not promise
 * this: its bits change with the panel widths.) */
static void run_split(int engine, agave_precision precision)
{
    const int M = 40, N = 1000, K = 300;
    float *A = random_matrix((size_t)M * K, 7), *B = random_matrix((size_t)K * N, 8);
    float *C[3];
    for (int t = 0; t < 3; t++) {
        agave_context *ctx;
        assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
        assert_int_equal(agave_context_set_threads(ctx, t + 1), AGAVE_OK);
        assert_int_equal(agave_context_set_precision(ctx, precision), AGAVE_OK);
        ctx->gemm_engine = engine;
        C[t] = malloc((size_t)M * N * sizeof *C[t]);
        gemm(ctx, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C[t], N);
        /* and a tall one, split by rows */
        gemm(ctx, 1, 0, N, M, M, 1.0f, B, N, A, K, 1.0f, C[t], M);
        agave_context_free(ctx);
    }
    assert_memory_equal(C[0], C[1], (size_t)M * N * sizeof *C[0]);
    assert_memory_equal(C[0], C[2], (size_t)M * N * sizeof *C[0]);
    for (int t = 0; t < 3; t++)
        free(C[t]);
    free(A), free(B);
}

static void test_split_same_bits(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    run_split(GEMM_OWN, AGAVE_PRECISION_FP32);
    if (agave_precision_available(AGAVE_PRECISION_BF16))
        run_split(GEMM_AUTO, AGAVE_PRECISION_BF16);
}

/* The fp32 engine's summation order, written out: each element is summed
 * over blocks of GEMM_KC k, k in order by fused multiply-adds from zero,
 * each block's sum then added to C (the first block stored as it is when
 * not accumulating). Every product must give exactly these bits, whichever
 * operand is transposed, whatever the edges: the blas layer's split into
 * panels and the golden step's bits rest on it. */
static float ordered_element(const float *A, size_t lda, int ta, const float *B, size_t ldb,
                             int tb, int i, int j, int K, int accumulate, float c)
{
    for (int pc = 0; pc < K; pc += GEMM_KC) {
        float s = 0.0f;
        for (int k = pc; k < K && k < pc + GEMM_KC; k++)
            s = fmaf((float)at(A, (int)lda, ta, i, k), (float)at(B, (int)ldb, !tb, j, k), s);
        c = accumulate || pc > 0 ? s + c : s;
    }
    return K == 0 && !accumulate ? 0.0f : c;
}

typedef struct ld_case {
    int M, N, K, accumulate, pad;   /* pad: extra floats on every leading dimension */
} ld_case;

static void run_ordered(const ld_case *g, int ta, int tb, float *buf)
{
    const size_t lda = (size_t)(ta ? g->M : g->K) + g->pad, ldb = (size_t)(tb ? g->K : g->N) + g->pad;
    const size_t ldc = (size_t)g->N + g->pad;
    float *A = random_matrix((size_t)(ta ? g->K : g->M) * lda, 7u + (unsigned)g->M);
    float *B = random_matrix((size_t)(tb ? g->N : g->K) * ldb, 9u + (unsigned)g->N);
    float *C = random_matrix((size_t)g->M * ldc, 11u + (unsigned)g->K);
    float *C0 = malloc((size_t)g->M * ldc * sizeof *C0 + 1);
    memcpy(C0, C, (size_t)g->M * ldc * sizeof *C0);
    gemm_avx512(0, ta, tb, g->M, g->N, g->K, A, lda, B, ldb, g->accumulate, C, ldc, buf);
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < (int)ldc; j++) {
            const float c0 = C0[(size_t)i * ldc + j], got = C[(size_t)i * ldc + j];
            const float want = j < g->N ? ordered_element(A, lda, ta, B, ldb, tb, i, j, g->K,
                                                          g->accumulate, c0)
                                        : c0;   // past N: untouched
            if (memcmp(&got, &want, sizeof got))
                fail_msg("M=%d N=%d K=%d ta=%d tb=%d acc=%d pad=%d: C[%d][%d] = %.9g, in the "
                         "engine's order %.9g",
                         g->M, g->N, g->K, ta, tb, g->accumulate, g->pad, i, j, (double)got,
                         (double)want);
        }
    free(A), free(B), free(C), free(C0);
}

/* Every transpose pair on shapes with tiles of 8 x 48 and ragged edges in
 * both, long and short sides either way, several k blocks, padded leading
 * dimensions (the columns past N must stay untouched), K = 1 and 0. */
static void test_engine_order(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    static const ld_case shapes[] = {
        {.M = 64, .N = 256, .K = 256},
        {.M = 32, .N = 130, .K = 450, .accumulate = 1, .pad = 3},
        {.M = 256, .N = 64, .K = 200, .accumulate = 1},
        {.M = 131, .N = 50, .K = 31, .pad = 5},
        {.M = 17, .N = 97, .K = 385, .accumulate = 1, .pad = 1},
        {.M = 3, .N = 16, .K = 192},
        {.M = 49, .N = 49, .K = 1},
        {.M = 5, .N = 7, .K = 0},
    };
    float *buf = aligned_alloc(64, gemm_avx512_buffer_floats() * sizeof(float));
    assert_non_null(buf);
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++)
        for (int t = 0; t < 4; t++)
            run_ordered(&shapes[c], t & 1, t >> 1, buf);
    free(buf);
}

/* gemm() goes through the engine in the context's precision: a bf16 context
 * gives the bf16 reference's numbers, an fp32 one the fp32 reference's. */
static void test_gemm_uses_precision(void **state)
{
    (void)state;
    if (!agave_precision_available(AGAVE_PRECISION_BF16))
        skip();
    const gemm_case g = {.M = 24, .N = 100, .K = 64};
    float *A = random_matrix(24 * 64, 3), *B = random_matrix(64 * 100, 4);
    float *C = malloc(24 * 100 * sizeof *C);
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    assert_int_equal(agave_context_precision(ctx), AGAVE_PRECISION_FP32);
    gemm(ctx, 0, 0, 24, 100, 64, 1.0f, A, 64, B, 100, 0.0f, C, 100);
    check_product(&g, 0, A, 64, B, 100, NULL, C);
    assert_int_equal(agave_context_set_precision(ctx, AGAVE_PRECISION_BF16), AGAVE_OK);
    assert_int_equal(agave_context_precision(ctx), AGAVE_PRECISION_BF16);
    gemm(ctx, 0, 0, 24, 100, 64, 1.0f, A, 64, B, 100, 0.0f, C, 100);
    check_product(&g, 1, A, 64, B, 100, NULL, C);
    /* the bf16 result is not the fp32 one: the operands were rounded */
    float *F = malloc(24 * 100 * sizeof *F);
    ctx->precision = AGAVE_PRECISION_FP32;
    gemm(ctx, 0, 0, 24, 100, 64, 1.0f, A, 64, B, 100, 0.0f, F, 100);
    assert_memory_not_equal(C, F, 24 * 100 * sizeof *C);
    agave_context_free(ctx);
    free(A), free(B), free(C), free(F);
}

static void test_precision_setting(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    assert_int_equal(agave_context_set_precision(NULL, AGAVE_PRECISION_FP32), AGAVE_ERR_NULL);
    assert_int_equal(agave_context_precision(NULL), AGAVE_PRECISION_FP32);
    assert_int_equal(agave_context_set_precision(ctx, (agave_precision)7), AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(ctx), "precision 7"));
    assert_int_equal(agave_precision_available(AGAVE_PRECISION_FP32), 1);
    assert_int_equal(agave_precision_available((agave_precision)7), 0);
    agave_status st = agave_context_set_precision(ctx, AGAVE_PRECISION_BF16);
    if (agave_precision_available(AGAVE_PRECISION_BF16)) {
        assert_int_equal(st, AGAVE_OK);
        assert_int_equal(agave_context_precision(ctx), AGAVE_PRECISION_BF16);
    } else {
        assert_int_equal(st, AGAVE_ERR_INVALID_ARG);
        assert_non_null(strstr(agave_context_last_error(ctx), "AVX-512 BF16"));
        assert_int_equal(agave_context_precision(ctx), AGAVE_PRECISION_FP32);
    }
    assert_int_equal(agave_context_set_precision(ctx, AGAVE_PRECISION_FP32), AGAVE_OK);
    assert_int_equal(agave_context_precision(ctx), AGAVE_PRECISION_FP32);
    agave_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_fp32),
        cmocka_unit_test(test_engine_bf16),
        cmocka_unit_test(test_engine_order),
        cmocka_unit_test(test_bf16_round),
        cmocka_unit_test(test_split_same_bits),
        cmocka_unit_test(test_gemm_uses_precision),
        cmocka_unit_test(test_precision_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
