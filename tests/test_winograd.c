/* conv2d by Winograd minimal filtering (lib/ops/conv2d_winograd.c): the
 * transform tables against the identity that defines them, and the forward
 * and both gradients against double-precision loops written here, on
 * geometries chosen to reach every edge of the transforms (partial tiles,
 * rows in groups of 16 with a partial last group, padding rows and columns,
 * one to three kernel rows, blocks of images on one and two threads). Each
 * case first asserts that it does run by Winograd.
 *
 * Tolerance: |got - ref| <= 3e-6 * sum of |terms|, as in test_conv but three
 * times tighter: F(4,3)'s transforms multiply by at most 8 and sum at most
 * six terms, so the rounding stays within a few float32 epsilons of the
 * terms (measured: at most 1e-6 on these cases), while a wrong coefficient,
 * tile offset or padding row moves an output by a whole term (>= 1e-2 of the
 * sum here). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <agave.h>

#include "core/core.h"
#include "core/gemm_avx512.h"
#include "ops/fused.h"
#include "ops/winograd.h"
#include "support/gradcheck.h"
#include "support/support.h"

#define REL_TOL 3e-6

typedef struct wcase {
    const char *label;
    int N, C, H, W, Cout, KH, KW;
    int pad_top, pad_bottom, pad_left, pad_right;
} wcase;

static const wcase cases[] = {
    {"down-shifted 2x3 on 28x28 (fashion's grid)", 3, 5, 28, 28, 7, 2, 3, 1, 0, 1, 1},
    {"3x3 pad 1 on 13x12: three tiles, one row group", 2, 3, 13, 12, 4, 3, 3, 1, 1, 1, 1},
    {"2x3 on 20x17: a partial last tile, rows 16 + 4", 2, 4, 20, 17, 3, 2, 3, 1, 0, 1, 1},
    {"1x3, two padding rows: out_h = H + 2", 2, 3, 12, 14, 5, 1, 3, 1, 1, 1, 1},
    {"3x3, left padding 2, right 0", 2, 3, 14, 13, 4, 3, 3, 1, 1, 2, 0},
    {"3x3, top padding 2 (causal), bottom 0", 2, 2, 16, 16, 3, 3, 3, 2, 0, 1, 1},
    {"the widest row, 64", 1, 2, 12, 64, 3, 2, 3, 1, 0, 1, 1},
    {"11 images of 16x16: blocks, a partial last one", 11, 8, 16, 16, 6, 2, 3, 1, 0, 1, 1},
};

static int out_h(const wcase *k) { return k->H + k->pad_top + k->pad_bottom - k->KH + 1; }

static conv_geom geom_of(const wcase *k)
{
    return (conv_geom){k->C, k->H, k->W, k->KH, k->KW, 1, k->pad_top, k->pad_left, out_h(k), k->W};
}

static void expect_close(const char *label, const char *what, const float *got,
                         const double *ref, const double *mag, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= REL_TOL * mag[i]))
            fail_msg("%s, %s: element %zu: got %.9g, reference %.9g (|terms| %.3g)", label, what,
                     i, (double)got[i], ref[i], mag[i]);
}

/* Every product x*w of the convolution: the output gets it, and R (dL/dy)
 * sends it back to both factors. */
typedef struct reference {
    double *y, *my, *gx, *mx, *gw, *mw;
} reference;

static reference reference_of(const wcase *k, const float *x, const float *w, const float *b,
                              const float *R)
{
    const int Ho = out_h(k), Wo = k->W;
    const size_t ny = (size_t)k->N * k->Cout * Ho * Wo, nx = (size_t)k->N * k->C * k->H * k->W;
    const size_t nw = (size_t)k->Cout * k->C * k->KH * k->KW;
    reference r = {support_calloc(ny, 8), support_calloc(ny, 8), support_calloc(nx, 8),
                   support_calloc(nx, 8), support_calloc(nw, 8), support_calloc(nw, 8)};
    for (int n = 0; n < k->N; n++)
        for (int o = 0; o < k->Cout; o++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    const size_t yi = (((size_t)n * k->Cout + o) * Ho + i) * Wo + j;
                    r.y[yi] = b[o], r.my[yi] = fabs(b[o]);
                    for (int c = 0; c < k->C; c++)
                        for (int kh = 0; kh < k->KH; kh++)
                            for (int kw = 0; kw < k->KW; kw++) {
                                const int ih = i + kh - k->pad_top, iw = j + kw - k->pad_left;
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W)
                                    continue;
                                const size_t xi = (((size_t)n * k->C + c) * k->H + ih) * k->W + iw;
                                const size_t wi = (((size_t)o * k->C + c) * k->KH + kh) * k->KW + kw;
                                const double t = (double)x[xi] * w[wi];
                                r.y[yi] += t, r.my[yi] += fabs(t);
                                r.gx[xi] += (double)R[yi] * w[wi];
                                r.mx[xi] += fabs((double)R[yi] * w[wi]);
                                r.gw[wi] += (double)R[yi] * x[xi];
                                r.mw[wi] += fabs((double)R[yi] * x[xi]);
                            }
                }
    return r;
}

static void reference_free(reference *r)
{
    free(r->y), free(r->my), free(r->gx), free(r->mx), free(r->gw), free(r->mw);
}

/* Fills 128 KiB of stack below the caller's frame with NaN: the transforms
 * keep their column vectors on the stack, so one that reads a vector it did
 * not zero or write then reads NaN, not the zeros a fresh stack happens to
 * hold (threads = 1 cases: the other threads' stacks are not reached). */
static __attribute__((noinline)) void poison_stack(void)
{
    volatile float junk[32768];
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        junk[i] = NAN;
}

static void run_case(const wcase *k, int threads)
{
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    const conv_geom g = geom_of(k);
    if (!winograd_fits(ctx, &g)) {
        agave_context_free(ctx);
        if (!gemm_avx512_available(0))
            return;   // (no AVX-512F: conv2d never runs by Winograd; test_conv covers im2col)
        fail_msg("%s: does not run by Winograd", k->label);
    }
    test_rng_seed(31);
    agave_tensor *x = support_uniform_tensor(ctx, 4, k->N, k->C, k->H, k->W);
    agave_tensor *w = support_uniform_tensor(ctx, 4, k->Cout, k->C, k->KH, k->KW);
    agave_tensor *b = support_uniform_tensor(ctx, 1, k->Cout, 1, 1, 1);
    agave_tensor *y = NULL, *R = NULL;
    assert_int_equal(agave_tensor_set_requires_grad(x, 1), AGAVE_OK);
    assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
    poison_stack();
    assert_int_equal(agave_conv2d(ctx, x, w, b, 1, k->pad_top, k->pad_bottom, k->pad_left,
                                  k->pad_right, &y),
                     AGAVE_OK);
    poison_stack();
    const float *r = support_backward_against_random(ctx, y, &R);
    reference ref = reference_of(k, agave_tensor_data(x), agave_tensor_data(w),
                                 agave_tensor_data(b), r);
    expect_close(k->label, "y", agave_tensor_data(y), ref.y, ref.my, agave_tensor_numel(y));
    expect_close(k->label, "dx", agave_tensor_grad(x), ref.gx, ref.mx, agave_tensor_numel(x));
    expect_close(k->label, "dW", agave_tensor_grad(w), ref.gw, ref.mw, agave_tensor_numel(w));
    reference_free(&ref);
    agave_tensor *all[] = {x, w, b, R};
    for (size_t i = 0; i < 4; i++)
        agave_tensor_free(all[i]);
    agave_context_free(ctx);
}

static void test_against_double(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i], 1);
        run_case(&cases[i], 2);
    }
}

/* y_j = sum_k g_k d_{j+k} for every g and d: sum_a AT[j][a] G[a][k] BT[a][i]
 * must be 1 where i = j + k and 0 elsewhere (in double). */
static void test_tables_compute_the_correlation(void **state)
{
    (void)state;
    const wino_tables *t = wino_tables_for(3);
    assert_non_null(t);
    assert_int_equal(t->alpha, WINO_TILE + t->r - 1);
    for (int j = 0; j < WINO_TILE; j++)
        for (int k = 0; k < t->r; k++)
            for (int i = 0; i < t->alpha; i++) {
                double s = 0.0;
                for (int a = 0; a < t->alpha; a++)
                    s += (double)t->AT[j][a] * t->G[a][k] * t->BT[a][i];
                if (fabs(s - (i == j + k)) > 1e-12)
                    fail_msg("AT G BT at (j %d, k %d, i %d) = %.17g", j, k, i, s);
            }
    assert_null(wino_tables_for(2));
}

/* What runs by Winograd: stride 1, a grid as wide as the image, 3 wide, both
 * sides at least WINO_MIN_SIDE, at most WINO_MAX_WIDTH wide; fp32 only, not
 * under OpenBLAS or conv_plain. */
static void test_which_geometries(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    const conv_geom shifted = {8, 28, 28, 2, 3, 1, 1, 1, 28, 28};
    assert_true(winograd_fits(ctx, &shifted));
    conv_geom g = shifted;
    g.stride = 2, g.out_h = 14, g.out_w = 14;
    assert_false(winograd_fits(ctx, &g));
    g = shifted, g.k_w = 2, g.pad_left = 1;   // the down-right 2x2
    assert_false(winograd_fits(ctx, &g));
    g = shifted, g.in_h = g.out_h = 7, g.in_w = g.out_w = 7;
    assert_false(winograd_fits(ctx, &g));
    g = shifted, g.in_w = g.out_w = WINO_MAX_WIDTH + 1;
    assert_false(winograd_fits(ctx, &g));
    g = shifted, g.out_w = 26;   // a grid narrower than the image
    assert_false(winograd_fits(ctx, &g));
    ctx->conv_plain = 1;
    assert_false(winograd_fits(ctx, &shifted));
    ctx->conv_plain = 0;
    ctx->gemm_engine = GEMM_OPENBLAS;
    assert_false(winograd_fits(ctx, &shifted));
    ctx->gemm_engine = GEMM_AUTO;
    if (agave_precision_available(AGAVE_PRECISION_BF16)) {
        assert_int_equal(agave_context_set_precision(ctx, AGAVE_PRECISION_BF16), AGAVE_OK);
        assert_false(winograd_fits(ctx, &shifted));
    }
    agave_context_free(ctx);
}

/* conv2d_ce (concat_elu inside the conv) by Winograd gives the bits of
 * concat_elu then conv2d by Winograd: forward, dx and dW. */
static void test_concat_elu_inside(void **state)
{
    (void)state;
    if (!gemm_avx512_available(0))
        skip();
    float *out[2][3];
    for (int fused = 0; fused < 2; fused++) {
        agave_context *ctx = NULL;
        assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
        assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
        test_rng_seed(5);
        agave_tensor *x = support_uniform_tensor(ctx, 4, 5, 3, 16, 16);
        agave_tensor *w = support_uniform_tensor(ctx, 4, 4, 6, 2, 3);
        agave_tensor *y = NULL, *t = NULL, *R = NULL;
        assert_int_equal(agave_tensor_set_requires_grad(x, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
        if (fused) {
            assert_int_equal(conv2d_ce(ctx, x, w, NULL, 1, 1, 0, 1, 1, &y), AGAVE_OK);
        } else {
            assert_int_equal(agave_concat_elu(ctx, x, &t), AGAVE_OK);
            assert_int_equal(agave_conv2d(ctx, t, w, NULL, 1, 1, 0, 1, 1, &y), AGAVE_OK);
        }
        support_backward_against_random(ctx, y, &R);
        agave_tensor *src[3] = {y, x, w};
        for (int i = 0; i < 3; i++) {
            const size_t n = agave_tensor_numel(src[i]);
            out[fused][i] = support_calloc(n, sizeof(float));
            memcpy(out[fused][i], i ? agave_tensor_grad(src[i]) : agave_tensor_data(src[i]),
                   n * sizeof(float));
        }
        const size_t sizes[3] = {agave_tensor_numel(y), agave_tensor_numel(x),
                                 agave_tensor_numel(w)};
        agave_tensor *all[] = {x, w, R};
        for (size_t i = 0; i < 3; i++)
            agave_tensor_free(all[i]);
        agave_context_free(ctx);
        if (fused)
            for (int i = 0; i < 3; i++)
                if (memcmp(out[0][i], out[1][i], sizes[i] * sizeof(float)))
                    fail_msg("conv2d_ce differs from concat_elu + conv2d in %s",
                             i == 0 ? "y" : i == 1 ? "dx" : "dW");
    }
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 3; i++)
            free(out[f][i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_compute_the_correlation),
        cmocka_unit_test(test_which_geometries),
        cmocka_unit_test(test_against_double),
        cmocka_unit_test(test_concat_elu_inside),
    };
    return cmocka_run_group_tests_name("winograd", tests, NULL, NULL);
}
