/* The convolution family (conv2d, conv2d_transpose, nin, dense): forward
 * results against naive double-precision loops written here from the header's
 * definitions, and every error path of the four entry points. Gradients are
 * checked by test_gradcheck (tests/support/gc_cases_conv.c).
 *
 * Tolerance: |got - ref| <= 1e-5 * sum of |terms| (the absolute values of the
 * products x*w and of the bias that make up the output). A float32 sum of K
 * terms has a rounding error of at most about K * 6e-8 * sum|terms|, and with
 * blocked/FMA sums in practice far less; a wrong index, padding or crop moves
 * an output by a whole term, i.e. by O(sum|terms| / K) >= 1e-2 of it here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <agave.h>

#include "ops/conv.h"
#include "support/gradcheck.h"
#include "support/support.h"

#define REL_TOL 1e-5

/* ---- helpers ------------------------------------------------------------------------ */

static void expect_close(const char *label, agave_tensor *out, const double *ref,
                         const double *mag, size_t n)
{
    assert_int_equal(agave_tensor_numel(out), n);
    const float *got = agave_tensor_data(out);
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= REL_TOL * mag[i]))
            fail_msg("%s: element %zu: got %.9g, reference %.9g (|terms| %.3g)", label, i,
                     (double)got[i], ref[i], mag[i]);
}

static void expect_shape(agave_tensor *t, int d0, int d1, int d2, int d3)
{
    assert_int_equal(agave_tensor_ndim(t), 4);
    assert_int_equal(agave_tensor_dim(t, 0), d0);
    assert_int_equal(agave_tensor_dim(t, 1), d1);
    assert_int_equal(agave_tensor_dim(t, 2), d2);
    assert_int_equal(agave_tensor_dim(t, 3), d3);
}

/* ---- conv2d ----------------------------------------------------------------------- */

typedef struct conv_case {
    const char *label;
    int N, Cin, H, W, Cout, KH, KW, stride;
    int pad_top, pad_bottom, pad_left, pad_right;
    int bias;
} conv_case;

static const conv_case conv_cases[] = {
    {"3x3 stride 1 pad 1", 2, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1},
    {"3x2 stride 2 asymmetric pads (0,2,1,0)", 3, 2, 9, 8, 3, 3, 2, 2, 0, 2, 1, 0, 1},
    {"4x3 stride 3 no padding, odd sizes", 3, 2, 11, 10, 5, 4, 3, 3, 0, 0, 0, 0, 0},
    {"down-shifted 2x3 stride 1 (top 1, left 1, right 1)", 2, 5, 8, 8, 6, 2, 3, 1, 1, 0, 1, 1, 1},
    {"down-shifted 2x3 stride 2", 3, 4, 8, 8, 5, 2, 3, 2, 1, 0, 1, 1, 1},
    {"down-right-shifted 2x2 stride 1 (top 1, left 1)", 2, 5, 8, 8, 6, 2, 2, 1, 1, 0, 1, 0, 1},
    {"down-right-shifted 2x2 stride 2", 3, 4, 8, 8, 5, 2, 2, 2, 1, 0, 1, 0, 0},
    {"kernel larger than the image, padded", 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1},
    {"5x5 pad 2, 13 images of 10x10, folded into one GEMM", 13, 3, 10, 10, 4, 5, 5, 1, 2,
     2, 2, 2, 1},
    {"32x32 planes: one image per GEMM, written in place", 2, 3, 32, 32, 4, 3, 3, 1, 1, 1, 1, 1,
     1},
    {"1x1 kernel stride 2", 2, 3, 5, 7, 2, 1, 1, 2, 0, 0, 0, 0, 1},
    /* the conv family runs blocks of images: at least 1024 columns (images x Ho*Wo), more
     * while the column matrix stays under 256K floats. These two split the batch into
     * several blocks with a partial last one (9+2, and 7x4+2); on 2 threads, into equal
     * blocks run on both threads at once (6+5, and again 7x4+2). */
    {"32x32, 3 channels, 11 images: per-image GEMMs, partial last block", 11, 3, 32, 32, 4, 3,
     3, 1, 1, 1, 1, 1, 1},
    {"64 channels at 16x16, 30 images: folded, partial last block", 30, 64, 16, 16, 2, 3, 3, 1,
     1, 1, 1, 1, 1},
};

/* out[n,o,i,j] = b[o] + sum over c,kh,kw of x[n,c,i*s+kh-pt,j*s+kw-pl] w[o,c,kh,kw]. */
static void ref_conv2d(const conv_case *k, int Ho, int Wo, const float *x, const float *w,
                       const float *b, double *ref, double *mag)
{
    for (int n = 0; n < k->N; n++)
        for (int o = 0; o < k->Cout; o++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    double s = b ? b[o] : 0, a = b ? fabs(b[o]) : 0;
                    for (int c = 0; c < k->Cin; c++)
                        for (int kh = 0; kh < k->KH; kh++)
                            for (int kw = 0; kw < k->KW; kw++) {
                                int r = i * k->stride + kh - k->pad_top;
                                int q = j * k->stride + kw - k->pad_left;
                                if (r < 0 || r >= k->H || q < 0 || q >= k->W)
                                    continue;
                                double t = (double)x[((n * k->Cin + c) * k->H + r) * k->W + q] *
                                           w[((o * k->Cin + c) * k->KH + kh) * k->KW + kw];
                                s += t;
                                a += fabs(t);
                            }
                    size_t idx = (((size_t)n * k->Cout + o) * Ho + i) * Wo + j;
                    ref[idx] = s;
                    mag[idx] = a;
                }
}

static void run_conv_case(const conv_case *k, int threads)
{
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    test_rng_seed(11);
    agave_tensor *x = support_uniform_tensor(ctx, 4, k->N, k->Cin, k->H, k->W);
    agave_tensor *w = support_uniform_tensor(ctx, 4, k->Cout, k->Cin, k->KH, k->KW);
    agave_tensor *b = k->bias ? support_uniform_tensor(ctx, 1, k->Cout, 1, 1, 1) : NULL;
    int Ho = (k->H + k->pad_top + k->pad_bottom - k->KH) / k->stride + 1;
    int Wo = (k->W + k->pad_left + k->pad_right - k->KW) / k->stride + 1;
    agave_tensor *y = NULL;
    agave_status st = agave_conv2d(ctx, x, w, b, k->stride, k->pad_top, k->pad_bottom,
                                   k->pad_left, k->pad_right, &y);
    if (st != AGAVE_OK)
        fail_msg("%s: %s", k->label, agave_context_last_error(ctx));
    expect_shape(y, k->N, k->Cout, Ho, Wo);
    size_t n = (size_t)k->N * k->Cout * Ho * Wo;
    double *ref = support_calloc(n, sizeof *ref), *mag = support_calloc(n, sizeof *mag);
    ref_conv2d(k, Ho, Wo, agave_tensor_data(x), agave_tensor_data(w),
               b ? agave_tensor_data(b) : NULL, ref, mag);
    expect_close(k->label, y, ref, mag, n);
    free(ref);
    free(mag);
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(b);
    agave_context_free(ctx);
}

static void test_conv2d_forward(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        run_conv_case(&conv_cases[i], 1);
        run_conv_case(&conv_cases[i], 2);
    }
}

/* ---- conv2d_transpose --------------------------------------------------------------- */

typedef struct deconv_case {
    const char *label;
    int N, Cin, H, W, Cout, KH, KW, stride;
    int crop_top, crop_left, out_h, out_w;
    int bias;
} deconv_case;

static const deconv_case deconv_cases[] = {
    {"stride 1, uncropped full size", 2, 3, 4, 5, 2, 3, 3, 1, 0, 0, 6, 7, 1},
    {"stride 1, crop (1,1): same size as x", 2, 2, 5, 3, 3, 3, 3, 1, 1, 1, 5, 3, 1},
    {"stride 2, uncropped full size (2H+KH-1)x(2W+KW-1)", 2, 3, 3, 4, 2, 3, 3, 2, 0, 0, 8, 10,
     0},
    {"PixelCNN++ down-shifted 2x3 stride 2: crop (0,1), 2Hx2W", 3, 4, 4, 4, 5, 2, 3, 2, 0, 1, 8,
     8, 1},
    {"PixelCNN++ down-right-shifted 2x2 stride 2: crop (0,0), 2Hx2W", 3, 4, 4, 4, 5, 2, 2, 2, 0,
     0, 8, 8, 1},
    {"PixelCNN++ down-shifted 2x3 stride 1: crop (0,1), HxW", 2, 3, 5, 6, 4, 2, 3, 1, 0, 1, 5, 6,
     0},
    {"stride 3, crop (2,1), output reaching past F", 2, 2, 3, 3, 3, 2, 3, 3, 2, 1, 10, 11, 1},
    {"13 images of 8x8, PixelCNN++ down-shifted", 13, 3, 8, 8, 2, 2, 3, 2, 0, 1, 16, 16, 1},
    {"32x32 input: one image per GEMM", 2, 2, 32, 32, 3, 2, 2, 2, 0, 0, 64, 64, 1},
    /* batch split into blocks with a partial last one (10+1, and 10x4+3), as above */
    {"32x32 input, 4 outputs, 11 images: per-image GEMMs, partial last block", 11, 2, 32, 32, 4,
     2, 3, 2, 0, 1, 64, 64, 1},
    {"16x16 input, 64 outputs, 43 images: folded, partial last block", 43, 2, 16, 16, 64, 2, 3,
     2, 0, 1, 32, 32, 0},
};

/* Straight from the header: F[n,o,i*s+kh,j*s+kw] += x[n,c,i,j] w[c,o,kh,kw] on a plane
 * big enough for both F and the window, then out = F[r+crop_top, q+crop_left] + b. */
static void ref_deconv(const deconv_case *k, const float *x, const float *w, const float *b,
                       double *ref, double *mag)
{
    int FH = (k->H - 1) * k->stride + k->KH, FW = (k->W - 1) * k->stride + k->KW;
    if (FH < k->crop_top + k->out_h)
        FH = k->crop_top + k->out_h;
    if (FW < k->crop_left + k->out_w)
        FW = k->crop_left + k->out_w;
    size_t plane = (size_t)FH * FW;
    double *F = support_calloc((size_t)k->N * k->Cout * plane, sizeof *F);
    double *A = support_calloc((size_t)k->N * k->Cout * plane, sizeof *A);
    for (int n = 0; n < k->N; n++)
        for (int c = 0; c < k->Cin; c++)
            for (int i = 0; i < k->H; i++)
                for (int j = 0; j < k->W; j++)
                    for (int o = 0; o < k->Cout; o++)
                        for (int kh = 0; kh < k->KH; kh++)
                            for (int kw = 0; kw < k->KW; kw++) {
                                double t = (double)x[((n * k->Cin + c) * k->H + i) * k->W + j] *
                                           w[((c * k->Cout + o) * k->KH + kh) * k->KW + kw];
                                size_t at = ((size_t)n * k->Cout + o) * plane +
                                            (size_t)(i * k->stride + kh) * FW + j * k->stride +
                                            kw;
                                F[at] += t;
                                A[at] += fabs(t);
                            }
    for (int n = 0; n < k->N; n++)
        for (int o = 0; o < k->Cout; o++)
            for (int r = 0; r < k->out_h; r++)
                for (int q = 0; q < k->out_w; q++) {
                    size_t at = ((size_t)n * k->Cout + o) * plane +
                                (size_t)(r + k->crop_top) * FW + q + k->crop_left;
                    size_t idx = (((size_t)n * k->Cout + o) * k->out_h + r) * k->out_w + q;
                    ref[idx] = F[at] + (b ? b[o] : 0);
                    mag[idx] = A[at] + (b ? fabs(b[o]) : 0);
                }
    free(F);
    free(A);
}

static void run_deconv_case(const deconv_case *k, int threads)
{
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    test_rng_seed(12);
    agave_tensor *x = support_uniform_tensor(ctx, 4, k->N, k->Cin, k->H, k->W);
    agave_tensor *w = support_uniform_tensor(ctx, 4, k->Cin, k->Cout, k->KH, k->KW);
    agave_tensor *b = k->bias ? support_uniform_tensor(ctx, 1, k->Cout, 1, 1, 1) : NULL;
    agave_tensor *y = NULL;
    agave_status st = agave_conv2d_transpose(ctx, x, w, b, k->stride, k->crop_top, k->crop_left,
                                             k->out_h, k->out_w, &y);
    if (st != AGAVE_OK)
        fail_msg("%s: %s", k->label, agave_context_last_error(ctx));
    expect_shape(y, k->N, k->Cout, k->out_h, k->out_w);
    size_t n = (size_t)k->N * k->Cout * k->out_h * k->out_w;
    double *ref = support_calloc(n, sizeof *ref), *mag = support_calloc(n, sizeof *mag);
    ref_deconv(k, agave_tensor_data(x), agave_tensor_data(w), b ? agave_tensor_data(b) : NULL,
               ref, mag);
    expect_close(k->label, y, ref, mag, n);
    free(ref);
    free(mag);
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(b);
    agave_context_free(ctx);
}

static void test_conv2d_transpose_forward(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof deconv_cases / sizeof deconv_cases[0]; i++) {
        run_deconv_case(&deconv_cases[i], 1);
        run_deconv_case(&deconv_cases[i], 2);
    }
}

/* PixelCNN++'s causality, which the crops exist for: with the down-shifted
 * crop, output row r depends on input rows <= r/2 only; with the down-right-
 * shifted crop, output (r, q) also only on input columns <= q/2. Checked by
 * perturbing one input pixel and looking at which outputs move. */
static void test_conv2d_transpose_pixelcnn_causality(void **state)
{
    (void)state;
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_tape_set_recording(ctx, 0), AGAVE_OK);
    test_rng_seed(13);
    const int H = 4, W = 4;
    for (int right = 0; right < 2; right++) {
        int KW = right ? 2 : 3, crop_left = right ? 0 : (KW - 1) / 2;
        agave_tensor *x = support_uniform_tensor(ctx, 4, 1, 2, H, W);
        agave_tensor *w = support_uniform_tensor(ctx, 4, 2, 3, 2, KW);
        agave_tensor *y0 = NULL, *y1 = NULL;
        assert_int_equal(
            agave_conv2d_transpose(ctx, x, w, NULL, 2, 0, crop_left, 2 * H, 2 * W, &y0),
            AGAVE_OK);
        const int pi = 2, pj = 1;   // perturbed input pixel
        agave_tensor_data(x)[(0 * H + pi) * W + pj] += 1.0f;
        assert_int_equal(
            agave_conv2d_transpose(ctx, x, w, NULL, 2, 0, crop_left, 2 * H, 2 * W, &y1),
            AGAVE_OK);
        int moved = 0;
        for (int o = 0; o < 3; o++)
            for (int r = 0; r < 2 * H; r++)
                for (int q = 0; q < 2 * W; q++) {
                    size_t idx = ((size_t)o * 2 * H + r) * 2 * W + q;
                    if (agave_tensor_data(y0)[idx] == agave_tensor_data(y1)[idx])
                        continue;
                    moved++;
                    if (r / 2 < pi || (right && q / 2 < pj))
                        fail_msg("%s: output (%d,%d) sees input (%d,%d)",
                                 right ? "down-right-shifted" : "down-shifted", r, q, pi, pj);
                }
        assert_true(moved > 0);
        agave_tensor_free(x);
        agave_tensor_free(w);
        assert_int_equal(agave_tape_reset(ctx), AGAVE_OK);
    }
    agave_context_free(ctx);
}

/* ---- nin and dense ------------------------------------------------------------------ */

static void check_nin(int N, int Cin, int H, int W, int Cout, int with_bias, int threads)
{
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    test_rng_seed(14);
    agave_tensor *x = support_uniform_tensor(ctx, 4, N, Cin, H, W);
    agave_tensor *w = support_uniform_tensor(ctx, 2, Cout, Cin, 1, 1);
    agave_tensor *b = with_bias ? support_uniform_tensor(ctx, 1, Cout, 1, 1, 1) : NULL;
    agave_tensor *y = NULL;
    assert_int_equal(agave_nin(ctx, x, w, b, &y), AGAVE_OK);
    expect_shape(y, N, Cout, H, W);
    size_t P = (size_t)H * W, n = (size_t)N * Cout * P;
    double *ref = support_calloc(n, sizeof *ref), *mag = support_calloc(n, sizeof *mag);
    const float *px = agave_tensor_data(x), *pw = agave_tensor_data(w);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < Cout; o++)
            for (size_t p = 0; p < P; p++) {
                size_t idx = ((size_t)i * Cout + o) * P + p;
                ref[idx] = b ? agave_tensor_data(b)[o] : 0;
                mag[idx] = fabs(ref[idx]);
                for (int c = 0; c < Cin; c++) {
                    double t = (double)pw[o * Cin + c] * px[((size_t)i * Cin + c) * P + p];
                    ref[idx] += t;
                    mag[idx] += fabs(t);
                }
            }
    expect_close("nin", y, ref, mag, n);
    free(ref);
    free(mag);
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(b);
    agave_context_free(ctx);
}

static void test_nin_forward(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        check_nin(3, 5, 3, 5, 7, 1, threads);     // 15-pixel planes: batch folded
        check_nin(2, 3, 33, 32, 4, 0, threads);   // large planes: GEMM per image
        check_nin(23, 4, 8, 8, 3, 1, threads);    // 8x8, folded
        check_nin(33, 512, 16, 16, 3, 1, threads);   // folded, blocks of 4 images, last of 1
    }
}

static void check_dense(int ndim, int N, int d1, int d2, int d3, int M, int with_bias)
{
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    test_rng_seed(15);
    agave_tensor *x = support_uniform_tensor(ctx, ndim, N, d1, d2, d3);
    int K = (int)(agave_tensor_numel(x) / (size_t)N);
    agave_tensor *w = support_uniform_tensor(ctx, 2, M, K, 1, 1);
    agave_tensor *b = with_bias ? support_uniform_tensor(ctx, 1, M, 1, 1, 1) : NULL;
    agave_tensor *y = NULL;
    assert_int_equal(agave_dense(ctx, x, w, b, &y), AGAVE_OK);
    assert_int_equal(agave_tensor_ndim(y), 2);
    assert_int_equal(agave_tensor_dim(y, 0), N);
    assert_int_equal(agave_tensor_dim(y, 1), M);
    size_t n = (size_t)N * M;
    double *ref = support_calloc(n, sizeof *ref), *mag = support_calloc(n, sizeof *mag);
    const float *px = agave_tensor_data(x), *pw = agave_tensor_data(w);
    for (int i = 0; i < N; i++)
        for (int m = 0; m < M; m++) {
            size_t idx = (size_t)i * M + m;
            ref[idx] = b ? agave_tensor_data(b)[m] : 0;
            mag[idx] = fabs(ref[idx]);
            for (int k = 0; k < K; k++) {
                double t = (double)px[(size_t)i * K + k] * pw[(size_t)m * K + k];
                ref[idx] += t;
                mag[idx] += fabs(t);
            }
        }
    expect_close("dense", y, ref, mag, n);
    free(ref);
    free(mag);
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(b);
    agave_context_free(ctx);
}

static void test_dense_forward(void **state)
{
    (void)state;
    check_dense(2, 4, 9, 1, 1, 5, 0);   // x (4,9)
    check_dense(4, 5, 3, 2, 2, 7, 1);   // x (5,3,2,2) read as (5,12)
    check_dense(3, 3, 4, 5, 1, 2, 1);   // x (3,4,5) read as (3,20)
}

/* ---- backward against naive loops, at sizes that split the batch into blocks ---------- */

/* One product term t = a*b flows into a gradient: accumulate value and magnitude. */
static void add_term(double *g, double *mag, size_t i, double a, double b)
{
    g[i] += a * b;
    mag[i] += fabs(a * b);
}

static void expect_grad(const char *label, agave_tensor *t, const double *ref,
                        const double *mag)
{
    assert_non_null(agave_tensor_grad(t));
    size_t n = agave_tensor_numel(t);
    const float *got = agave_tensor_grad(t);
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - ref[i]) <= REL_TOL * mag[i]))
            fail_msg("%s: gradient element %zu: got %.9g, reference %.9g", label, i,
                     (double)got[i], ref[i]);
}

static void test_conv2d_backward_blocks(void **state)
{
    (void)state;
    // the two partial-last-block cases at the end of conv_cases, and stride 2 asymmetric padding
    const conv_case *cases_[] = {&conv_cases[11], &conv_cases[12], &conv_cases[1]};
    for (size_t ci = 0; ci < sizeof cases_ / sizeof cases_[0]; ci++) {
        const conv_case *k = cases_[ci];
        agave_context *ctx = NULL;
        assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
        assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
        test_rng_seed(17);
        agave_tensor *x = support_uniform_tensor(ctx, 4, k->N, k->Cin, k->H, k->W);
        agave_tensor *w = support_uniform_tensor(ctx, 4, k->Cout, k->Cin, k->KH, k->KW);
        agave_tensor *b = support_uniform_tensor(ctx, 1, k->Cout, 1, 1, 1);
        agave_tensor *y = NULL, *R = NULL;
        assert_int_equal(agave_tensor_set_requires_grad(x, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(b, 1), AGAVE_OK);
        assert_int_equal(agave_conv2d(ctx, x, w, b, k->stride, k->pad_top, k->pad_bottom,
                                      k->pad_left, k->pad_right, &y),
                         AGAVE_OK);
        int Ho = agave_tensor_dim(y, 2), Wo = agave_tensor_dim(y, 3);
        const float *r = support_backward_against_random(ctx, y, &R);
        const float *px = agave_tensor_data(x), *pw = agave_tensor_data(w);
        size_t nx = agave_tensor_numel(x), nw = agave_tensor_numel(w);
        double *gx = support_calloc(nx, sizeof *gx), *mx = support_calloc(nx, sizeof *mx);
        double *gw = support_calloc(nw, sizeof *gw), *mw = support_calloc(nw, sizeof *mw);
        double *gb = support_calloc((size_t)k->Cout, sizeof *gb), *mb = support_calloc((size_t)k->Cout, sizeof *mb);
        // every product x*w of the forward sends R to both of its factors
        for (int n = 0; n < k->N; n++)
            for (int o = 0; o < k->Cout; o++)
                for (int i = 0; i < Ho; i++)
                    for (int j = 0; j < Wo; j++) {
                        double g = r[(((size_t)n * k->Cout + o) * Ho + i) * Wo + j];
                        add_term(gb, mb, (size_t)o, g, 1.0);
                        for (int c = 0; c < k->Cin; c++)
                            for (int kh = 0; kh < k->KH; kh++)
                                for (int kw = 0; kw < k->KW; kw++) {
                                    int ih = i * k->stride + kh - k->pad_top;
                                    int iw = j * k->stride + kw - k->pad_left;
                                    if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W)
                                        continue;
                                    size_t xi = (((size_t)n * k->Cin + c) * k->H + ih) * k->W + iw;
                                    size_t wi = (((size_t)o * k->Cin + c) * k->KH + kh) * k->KW + kw;
                                    add_term(gx, mx, xi, g, pw[wi]);
                                    add_term(gw, mw, wi, g, px[xi]);
                                }
                    }
        expect_grad(k->label, x, gx, mx);
        expect_grad(k->label, w, gw, mw);
        expect_grad(k->label, b, gb, mb);
        free(gx), free(mx), free(gw), free(mw), free(gb), free(mb);
        agave_tensor *all[] = {x, w, b, R};
        for (size_t i = 0; i < 4; i++)
            agave_tensor_free(all[i]);
        agave_context_free(ctx);
    }
}

/* With 2 or more threads the blocks of images run on the threads at once and
 * the weight gradient is summed per chunk of blocks, chunks handed out to
 * whichever thread is free (lib/ops/conv_blocks.h). The sums must not depend on
 * which thread took which chunk: repeated runs give the same bits. The sizes
 * make each block's GEMM long enough that the threads' GEMMs overlap in time:
 * summing straight into dW from both threads (a race) fails here. */
#define RG_C 16   /* channels in and out */

static float *weight_grads(int threads, int op)
{
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    test_rng_seed(23);
    // 37 images of 16x20x20: blocks of several images, more blocks than threads
    agave_tensor *x = support_uniform_tensor(ctx, 4, 37, RG_C, 20, 20);
    agave_tensor *w = op == 0   ? support_uniform_tensor(ctx, 4, RG_C, RG_C, 3, 3)
                      : op == 1 ? support_uniform_tensor(ctx, 4, RG_C, RG_C, 2, 3)
                                : support_uniform_tensor(ctx, 2, RG_C, RG_C, 1, 1);
    agave_tensor *y = NULL, *R = NULL;
    assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
    agave_status st = op == 0   ? agave_conv2d(ctx, x, w, NULL, 1, 1, 1, 1, 1, &y)
                      : op == 1 ? agave_conv2d_transpose(ctx, x, w, NULL, 2, 0, 1, 40, 40, &y)
                                : agave_nin(ctx, x, w, NULL, &y);
    assert_int_equal(st, AGAVE_OK);
    support_backward_against_random(ctx, y, &R);
    size_t nw = agave_tensor_numel(w);
    float *gw = support_calloc(nw, sizeof *gw);
    memcpy(gw, agave_tensor_grad(w), nw * sizeof *gw);
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(R);
    agave_context_free(ctx);
    return gw;
}

static void test_weight_grad_reproducible_on_threads(void **state)
{
    (void)state;
    const char *names[] = {"conv2d", "conv2d_transpose", "nin"};
    const size_t nws[] = {RG_C * RG_C * 9, RG_C * RG_C * 6, RG_C * RG_C};
    for (int op = 0; op < 3; op++)
        for (int threads = 2; threads <= 3; threads++) {
            float *one = weight_grads(1, op), *first = weight_grads(threads, op);
            for (int run = 0; run < 6; run++) {
                float *again = weight_grads(threads, op);
                if (memcmp(first, again, nws[op] * sizeof *first) != 0)
                    fail_msg("%s on %d threads: run %d gave other bits", names[op], threads,
                             run + 2);
                free(again);
            }
            // and the chunks' sums are the 1-thread sums up to float rounding: measured
            // 5e-5 apart; a lost or doubled block (hundreds of products of magnitude
            // up to 1) moves an element by 1 or more
            for (size_t i = 0; i < nws[op]; i++)
                if (!(fabsf(first[i] - one[i]) <= 1e-3f))
                    fail_msg("%s on %d threads: dW[%zu] %.9g against %.9g on 1", names[op],
                             threads, i, (double)first[i], (double)one[i]);
            free(one);
            free(first);
        }
}

static void test_conv2d_transpose_backward_blocks(void **state)
{
    (void)state;
    // the two partial-last-block cases at the end of deconv_cases, and the down-shifted crop
    const deconv_case *cases_[] = {&deconv_cases[9], &deconv_cases[10], &deconv_cases[3]};
    for (size_t ci = 0; ci < sizeof cases_ / sizeof cases_[0]; ci++) {
        const deconv_case *k = cases_[ci];
        agave_context *ctx = NULL;
        assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
        assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
        test_rng_seed(18);
        agave_tensor *x = support_uniform_tensor(ctx, 4, k->N, k->Cin, k->H, k->W);
        agave_tensor *w = support_uniform_tensor(ctx, 4, k->Cin, k->Cout, k->KH, k->KW);
        agave_tensor *b = support_uniform_tensor(ctx, 1, k->Cout, 1, 1, 1);
        agave_tensor *y = NULL, *R = NULL;
        assert_int_equal(agave_tensor_set_requires_grad(x, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(b, 1), AGAVE_OK);
        assert_int_equal(agave_conv2d_transpose(ctx, x, w, b, k->stride, k->crop_top,
                                                k->crop_left, k->out_h, k->out_w, &y),
                         AGAVE_OK);
        const float *r = support_backward_against_random(ctx, y, &R);
        const float *px = agave_tensor_data(x), *pw = agave_tensor_data(w);
        size_t nx = agave_tensor_numel(x), nw = agave_tensor_numel(w);
        double *gx = support_calloc(nx, sizeof *gx), *mx = support_calloc(nx, sizeof *mx);
        double *gw = support_calloc(nw, sizeof *gw), *mw = support_calloc(nw, sizeof *mw);
        double *gb = support_calloc((size_t)k->Cout, sizeof *gb), *mb = support_calloc((size_t)k->Cout, sizeof *mb);
        for (int n = 0; n < k->N; n++)
            for (int o = 0; o < k->Cout; o++)
                for (int rr = 0; rr < k->out_h; rr++)
                    for (int q = 0; q < k->out_w; q++)
                        add_term(gb, mb, (size_t)o,
                                 r[(((size_t)n * k->Cout + o) * k->out_h + rr) * k->out_w + q],
                                 1.0);
        // x[n,c,i,j] w[c,o,kh,kw] lands on F (i*s+kh, j*s+kw), i.e. on out at minus the crops
        for (int n = 0; n < k->N; n++)
            for (int c = 0; c < k->Cin; c++)
                for (int i = 0; i < k->H; i++)
                    for (int j = 0; j < k->W; j++)
                        for (int o = 0; o < k->Cout; o++)
                            for (int kh = 0; kh < k->KH; kh++)
                                for (int kw = 0; kw < k->KW; kw++) {
                                    int rr = i * k->stride + kh - k->crop_top;
                                    int q = j * k->stride + kw - k->crop_left;
                                    if (rr < 0 || rr >= k->out_h || q < 0 || q >= k->out_w)
                                        continue;
                                    double g = r[(((size_t)n * k->Cout + o) * k->out_h + rr) *
                                                     k->out_w + q];
                                    size_t xi = (((size_t)n * k->Cin + c) * k->H + i) * k->W + j;
                                    size_t wi = (((size_t)c * k->Cout + o) * k->KH + kh) * k->KW + kw;
                                    add_term(gx, mx, xi, g, pw[wi]);
                                    add_term(gw, mw, wi, g, px[xi]);
                                }
        expect_grad(k->label, x, gx, mx);
        expect_grad(k->label, w, gw, mw);
        expect_grad(k->label, b, gb, mb);
        free(gx), free(mx), free(gw), free(mw), free(gb), free(mb);
        agave_tensor *all[] = {x, w, b, R};
        for (size_t i = 0; i < 4; i++)
            agave_tensor_free(all[i]);
        agave_context_free(ctx);
    }
}

static void test_nin_backward_blocks(void **state)
{
    (void)state;
    const int shapes[][5] = {{33, 512, 16, 16, 3}, {3, 4, 32, 33, 5}};   // N,Cin,H,W,Cout
    for (size_t si = 0; si < 2; si++) {
        const int N = shapes[si][0], Cin = shapes[si][1], Cout = shapes[si][4];
        const size_t P = (size_t)shapes[si][2] * shapes[si][3];
        agave_context *ctx = NULL;
        assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
        assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
        test_rng_seed(19);
        agave_tensor *x = support_uniform_tensor(ctx, 4, N, Cin, shapes[si][2], shapes[si][3]);
        agave_tensor *w = support_uniform_tensor(ctx, 2, Cout, Cin, 1, 1);
        agave_tensor *b = support_uniform_tensor(ctx, 1, Cout, 1, 1, 1);
        agave_tensor *y = NULL, *R = NULL;
        assert_int_equal(agave_tensor_set_requires_grad(x, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
        assert_int_equal(agave_tensor_set_requires_grad(b, 1), AGAVE_OK);
        assert_int_equal(agave_nin(ctx, x, w, b, &y), AGAVE_OK);
        const float *r = support_backward_against_random(ctx, y, &R);
        const float *px = agave_tensor_data(x), *pw = agave_tensor_data(w);
        size_t nx = agave_tensor_numel(x), nw = agave_tensor_numel(w);
        double *gx = support_calloc(nx, sizeof *gx), *mx = support_calloc(nx, sizeof *mx);
        double *gw = support_calloc(nw, sizeof *gw), *mw = support_calloc(nw, sizeof *mw);
        double *gb = support_calloc((size_t)Cout, sizeof *gb), *mb = support_calloc((size_t)Cout, sizeof *mb);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < Cout; o++)
                for (size_t p = 0; p < P; p++) {
                    double g = r[((size_t)n * Cout + o) * P + p];
                    add_term(gb, mb, (size_t)o, g, 1.0);
                    for (int c = 0; c < Cin; c++) {
                        size_t xi = ((size_t)n * Cin + c) * P + p, wi = (size_t)o * Cin + c;
                        add_term(gx, mx, xi, g, pw[wi]);
                        add_term(gw, mw, wi, g, px[xi]);
                    }
                }
        expect_grad("nin", x, gx, mx);
        expect_grad("nin", w, gw, mw);
        expect_grad("nin", b, gb, mb);
        free(gx), free(mx), free(gw), free(mw), free(gb), free(mb);
        agave_tensor *all[] = {x, w, b, R};
        for (size_t i = 0; i < 4; i++)
            agave_tensor_free(all[i]);
        agave_context_free(ctx);
    }
}

/* ---- gradients accumulate and only where asked ---------------------------------------- */

/* Two backward passes over fresh tapes give exactly twice the gradient of one, and
 * a tensor that does not require a gradient gets none. */
static void test_conv2d_backward_accumulates(void **state)
{
    (void)state;
    agave_context *ctx = NULL;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    test_rng_seed(16);
    agave_tensor *x = support_uniform_tensor(ctx, 4, 3, 2, 5, 6);
    agave_tensor *w = support_uniform_tensor(ctx, 4, 4, 2, 2, 3);
    agave_tensor *b = support_uniform_tensor(ctx, 1, 4, 1, 1, 1);
    assert_int_equal(agave_tensor_set_requires_grad(w, 1), AGAVE_OK);
    assert_int_equal(agave_tensor_set_requires_grad(b, 1), AGAVE_OK);
    float first[4 * 2 * 2 * 3], bfirst[4];
    for (int pass = 0; pass < 2; pass++) {
        agave_tensor *y = NULL, *s = NULL;
        assert_int_equal(agave_conv2d(ctx, x, w, b, 2, 1, 0, 1, 1, &y), AGAVE_OK);
        assert_int_equal(agave_sum(ctx, y, &s), AGAVE_OK);
        assert_int_equal(agave_backward(ctx, s), AGAVE_OK);
        if (pass == 0) {
            memcpy(first, agave_tensor_grad(w), sizeof first);
            memcpy(bfirst, agave_tensor_grad(b), sizeof bfirst);
        }
        assert_int_equal(agave_tape_reset(ctx), AGAVE_OK);
    }
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        assert_float_equal(agave_tensor_grad(w)[i], 2 * first[i], 1e-5 * (1 + fabs(first[i])));
    // d sum(y) / d b[o] is the number of output pixels, 3 images of 3x3 here
    for (int o = 0; o < 4; o++)
        assert_float_equal(bfirst[o], 27.0f, 0.0f);
    assert_null(agave_tensor_grad(x));
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(b);
    agave_context_free(ctx);
}

/* ---- error paths -------------------------------------------------------------------- */

typedef struct err_fixture {
    agave_context *ctx, *other;
    agave_tensor *x4, *x3, *w4, *w_cin2, *w2, *b4, *b5, *x_other, *w_other, *b_other;
} err_fixture;

static int err_setup(void **state)
{
    err_fixture *f = support_calloc(1, sizeof *f);
    assert_int_equal(agave_context_create(&f->ctx, 1), AGAVE_OK);
    assert_int_equal(agave_context_create(&f->other, 1), AGAVE_OK);
    f->x4 = support_uniform_tensor(f->ctx, 4, 2, 3, 5, 5);        // (N,Cin,H,W)
    f->x3 = support_uniform_tensor(f->ctx, 3, 2, 3, 5, 1);        // rank 3
    f->w4 = support_uniform_tensor(f->ctx, 4, 4, 3, 3, 3);        // conv (Cout=4,Cin=3,3,3)
    f->w_cin2 = support_uniform_tensor(f->ctx, 4, 4, 2, 3, 3);    // expects 2 input channels
    f->w2 = support_uniform_tensor(f->ctx, 2, 4, 3, 1, 1);        // nin (Cout=4,Cin=3)
    f->b4 = support_uniform_tensor(f->ctx, 1, 4, 1, 1, 1);
    f->b5 = support_uniform_tensor(f->ctx, 1, 5, 1, 1, 1);
    f->x_other = support_uniform_tensor(f->other, 4, 2, 3, 5, 5);
    f->w_other = support_uniform_tensor(f->other, 4, 4, 3, 3, 3);
    f->b_other = support_uniform_tensor(f->other, 1, 4, 1, 1, 1);
    *state = f;
    return 0;
}

static int err_teardown(void **state)
{
    err_fixture *f = *state;
    agave_tensor *all[] = {f->x4, f->x3, f->w4, f->w_cin2, f->w2, f->b4, f->b5,
                           f->x_other, f->w_other, f->b_other};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        agave_tensor_free(all[i]);
    agave_context_free(f->ctx);
    agave_context_free(f->other);
    free(f);
    return 0;
}

/* The call failed with `want`, left *out NULL and its message holds every needle. */
static void expect_error(agave_context *ctx, agave_status got, agave_status want,
                         agave_tensor *out, const char *needle1, const char *needle2)
{
    if (got != want)
        fail_msg("status %s, expected %s (message: %s)", agave_status_string(got),
                 agave_status_string(want), agave_context_last_error(ctx));
    assert_null(out);
    const char *msg = agave_context_last_error(ctx);
    if (needle1 && !strstr(msg, needle1))
        fail_msg("message \"%s\" does not name \"%s\"", msg, needle1);
    if (needle2 && !strstr(msg, needle2))
        fail_msg("message \"%s\" does not name \"%s\"", msg, needle2);
}

/* Runs call with y preset to a non-NULL value that the op must clear. */
#define EXPECT_ERR(call, want, needle1, needle2)                                            \
    do {                                                                                    \
        y = (agave_tensor *)f;                                                              \
        agave_status st_ = (call);                                                          \
        expect_error(c, st_, want, y, needle1, needle2);                                    \
    } while (0)

static void test_conv2d_errors(void **state)
{
    err_fixture *f = *state;
    agave_context *c = f->ctx;
    agave_tensor *y = NULL;
    assert_int_equal(agave_conv2d(NULL, f->x4, f->w4, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_NULL);
    expect_error(c, agave_conv2d(c, f->x4, f->w4, NULL, 1, 0, 0, 0, 0, NULL), AGAVE_ERR_NULL,
                 NULL, "out is NULL", NULL);
    EXPECT_ERR(agave_conv2d(c, NULL, f->w4, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_NULL,
               "x is NULL", NULL);
    EXPECT_ERR(agave_conv2d(c, f->x4, NULL, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_NULL,
               "w is NULL", NULL);
    EXPECT_ERR(agave_conv2d(c, f->x3, f->w4, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_SHAPE,
               "(2,3,5)", "4-D");
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w2, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_SHAPE, "(4,3)",
               "4-D");
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w_cin2, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_SHAPE,
               "(2,3,5,5)", "(4,2,3,3)");
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w4, f->b5, 1, 0, 0, 0, 0, &y), AGAVE_ERR_SHAPE, "(5)",
               "(4,3,3,3)");
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w4, NULL, 0, 0, 0, 0, 0, &y), AGAVE_ERR_INVALID_ARG,
               "stride 0", NULL);
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w4, NULL, 1, 0, 0, -1, 0, &y), AGAVE_ERR_INVALID_ARG,
               "left -1", NULL);
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w4, NULL, 1, -2, 0, 0, 0, &y), AGAVE_ERR_INVALID_ARG,
               "top -2", NULL);
    // a 5x5 image padded to 6x7 cannot hold a 7x7 kernel: w (4,3,7,7)
    agave_tensor *w7 = support_uniform_tensor(c, 4, 4, 3, 7, 7);
    EXPECT_ERR(agave_conv2d(c, f->x4, w7, NULL, 1, 1, 0, 1, 1, &y), AGAVE_ERR_SHAPE,
               "(2,3,5,5)", "(4,3,7,7)");
    assert_int_equal(agave_conv2d(c, f->x4, w7, NULL, 1, 1, 1, 1, 1, &y), AGAVE_OK);
    expect_shape(y, 2, 4, 1, 1);   // just fits once padded to 7x7
    agave_tensor_free(w7);
    EXPECT_ERR(agave_conv2d(c, f->x_other, f->w4, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_CONTEXT,
               "x belongs to another context", NULL);
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w_other, NULL, 1, 0, 0, 0, 0, &y), AGAVE_ERR_CONTEXT,
               "w belongs to another context", NULL);
    EXPECT_ERR(agave_conv2d(c, f->x4, f->w4, f->b_other, 1, 0, 0, 0, 0, &y), AGAVE_ERR_CONTEXT,
               "bias belongs to another context", NULL);
}

static void test_conv2d_transpose_errors(void **state)
{
    err_fixture *f = *state;
    agave_context *c = f->ctx;
    // w4 (4,3,3,3) reads here as (Cin=4,Cout=3): x4 with 3 channels does not fit it
    agave_tensor *w = support_uniform_tensor(c, 4, 3, 4, 2, 3);   // (Cin=3,Cout=4,2,3)
    agave_tensor *w_other = support_uniform_tensor(f->other, 4, 3, 4, 2, 3);
    agave_tensor *y = NULL;
    assert_int_equal(agave_conv2d_transpose(NULL, f->x4, w, NULL, 2, 0, 1, 10, 10, &y),
                     AGAVE_ERR_NULL);
    expect_error(c, agave_conv2d_transpose(c, f->x4, w, NULL, 2, 0, 1, 10, 10, NULL),
                 AGAVE_ERR_NULL, NULL, "out is NULL", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, NULL, w, NULL, 2, 0, 1, 10, 10, &y), AGAVE_ERR_NULL,
               "x is NULL", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, NULL, NULL, 2, 0, 1, 10, 10, &y), AGAVE_ERR_NULL,
               "w is NULL", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x3, w, NULL, 2, 0, 1, 10, 10, &y), AGAVE_ERR_SHAPE,
               "(2,3,5)", "4-D");
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, f->w2, NULL, 2, 0, 1, 10, 10, &y),
               AGAVE_ERR_SHAPE, "(4,3)", "4-D");
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, f->w4, NULL, 2, 0, 1, 10, 10, &y),
               AGAVE_ERR_SHAPE, "(2,3,5,5)", "(4,3,3,3)");
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, f->b5, 2, 0, 1, 10, 10, &y), AGAVE_ERR_SHAPE,
               "(5)", "(3,4,2,3)");
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, NULL, 0, 0, 1, 10, 10, &y),
               AGAVE_ERR_INVALID_ARG, "stride 0", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, NULL, 2, -1, 1, 10, 10, &y),
               AGAVE_ERR_INVALID_ARG, "top -1", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, NULL, 2, 0, -3, 10, 10, &y),
               AGAVE_ERR_INVALID_ARG, "left -3", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, NULL, 2, 0, 1, 0, 10, &y),
               AGAVE_ERR_INVALID_ARG, "0x10", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, NULL, 2, 0, 1, 10, -1, &y),
               AGAVE_ERR_INVALID_ARG, "10x-1", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x_other, w, NULL, 2, 0, 1, 10, 10, &y),
               AGAVE_ERR_CONTEXT, "x belongs to another context", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w_other, NULL, 2, 0, 1, 10, 10, &y),
               AGAVE_ERR_CONTEXT, "w belongs to another context", NULL);
    EXPECT_ERR(agave_conv2d_transpose(c, f->x4, w, f->b_other, 2, 0, 1, 10, 10, &y),
               AGAVE_ERR_CONTEXT, "bias belongs to another context", NULL);
    assert_int_equal(agave_conv2d_transpose(c, f->x4, w, f->b4, 2, 0, 1, 10, 10, &y), AGAVE_OK);
    expect_shape(y, 2, 4, 10, 10);
    agave_tensor_free(w);
    agave_tensor_free(w_other);
}

static void test_nin_errors(void **state)
{
    err_fixture *f = *state;
    agave_context *c = f->ctx;
    agave_tensor *w_cin2 = support_uniform_tensor(c, 2, 4, 2, 1, 1);
    agave_tensor *w_other = support_uniform_tensor(f->other, 2, 4, 3, 1, 1);
    agave_tensor *y = NULL;
    assert_int_equal(agave_nin(NULL, f->x4, f->w2, NULL, &y), AGAVE_ERR_NULL);
    expect_error(c, agave_nin(c, f->x4, f->w2, NULL, NULL), AGAVE_ERR_NULL, NULL, "out is NULL",
                 NULL);
    EXPECT_ERR(agave_nin(c, NULL, f->w2, NULL, &y), AGAVE_ERR_NULL, "x is NULL", NULL);
    EXPECT_ERR(agave_nin(c, f->x4, NULL, NULL, &y), AGAVE_ERR_NULL, "w is NULL", NULL);
    EXPECT_ERR(agave_nin(c, f->x3, f->w2, NULL, &y), AGAVE_ERR_SHAPE, "(2,3,5)", "4-D");
    EXPECT_ERR(agave_nin(c, f->x4, f->w4, NULL, &y), AGAVE_ERR_SHAPE, "(4,3,3,3)", "2-D");
    EXPECT_ERR(agave_nin(c, f->x4, w_cin2, NULL, &y), AGAVE_ERR_SHAPE, "(2,3,5,5)", "(4,2)");
    EXPECT_ERR(agave_nin(c, f->x4, f->w2, f->b5, &y), AGAVE_ERR_SHAPE, "(5)", "(4,3)");
    EXPECT_ERR(agave_nin(c, f->x_other, f->w2, NULL, &y), AGAVE_ERR_CONTEXT,
               "x belongs to another context", NULL);
    EXPECT_ERR(agave_nin(c, f->x4, w_other, NULL, &y), AGAVE_ERR_CONTEXT,
               "w belongs to another context", NULL);
    EXPECT_ERR(agave_nin(c, f->x4, f->w2, f->b_other, &y), AGAVE_ERR_CONTEXT,
               "bias belongs to another context", NULL);
    agave_tensor_free(w_cin2);
    agave_tensor_free(w_other);
}

static void test_dense_errors(void **state)
{
    err_fixture *f = *state;
    agave_context *c = f->ctx;
    agave_tensor *x1 = support_uniform_tensor(c, 1, 6, 1, 1, 1);
    agave_tensor *w75 = support_uniform_tensor(c, 2, 4, 75, 1, 1);   // x4 reads as (2,75)
    agave_tensor *w74 = support_uniform_tensor(c, 2, 4, 74, 1, 1);
    agave_tensor *w_other = support_uniform_tensor(f->other, 2, 4, 75, 1, 1);
    agave_tensor *y = NULL;
    assert_int_equal(agave_dense(NULL, f->x4, w75, NULL, &y), AGAVE_ERR_NULL);
    expect_error(c, agave_dense(c, f->x4, w75, NULL, NULL), AGAVE_ERR_NULL, NULL, "out is NULL",
                 NULL);
    EXPECT_ERR(agave_dense(c, NULL, w75, NULL, &y), AGAVE_ERR_NULL, "x is NULL", NULL);
    EXPECT_ERR(agave_dense(c, f->x4, NULL, NULL, &y), AGAVE_ERR_NULL, "w is NULL", NULL);
    EXPECT_ERR(agave_dense(c, x1, w75, NULL, &y), AGAVE_ERR_SHAPE, "(6)", "(N,K)");
    EXPECT_ERR(agave_dense(c, f->x4, f->w4, NULL, &y), AGAVE_ERR_SHAPE, "(4,3,3,3)", "2-D");
    EXPECT_ERR(agave_dense(c, f->x4, w74, NULL, &y), AGAVE_ERR_SHAPE, "(2,3,5,5)", "(4,74)");
    EXPECT_ERR(agave_dense(c, f->x4, w75, f->b5, &y), AGAVE_ERR_SHAPE, "(5)", "(4,75)");
    EXPECT_ERR(agave_dense(c, f->x_other, w75, NULL, &y), AGAVE_ERR_CONTEXT,
               "x belongs to another context", NULL);
    EXPECT_ERR(agave_dense(c, f->x4, w_other, NULL, &y), AGAVE_ERR_CONTEXT,
               "w belongs to another context", NULL);
    EXPECT_ERR(agave_dense(c, f->x4, w75, f->b_other, &y), AGAVE_ERR_CONTEXT,
               "bias belongs to another context", NULL);
    assert_int_equal(agave_dense(c, f->x4, w75, f->b4, &y), AGAVE_OK);
    assert_int_equal(agave_tensor_dim(y, 1), 4);
    agave_tensor_free(x1);
    agave_tensor_free(w75);
    agave_tensor_free(w74);
    agave_tensor_free(w_other);
}

/* col2im_add (lib/ops/im2col.c, internal) against the scatter written out
 * here, to the bit: every pixel gets the same float adds in the same order
 * (tap by tap), whichever way the kernel walks the taps. Columns over padding
 * hold junk that must be dropped; and an image of -0.0 fed -0.0 stays -0.0
 * everywhere (the stride-1 path adds -0.0 in place of the dropped columns,
 * which must leave every float, -0.0 included, unchanged). */
static void scatter_reference(const conv_geom *g, const float *col, int nb, float *img)
{
    const size_t P = (size_t)g->out_h * g->out_w, ld = (size_t)nb * P;
    for (int n = 0; n < nb; n++)
        for (int c = 0; c < g->channels; c++)
            for (int kh = 0; kh < g->k_h; kh++)
                for (int kw = 0; kw < g->k_w; kw++) {
                    size_t r = ((size_t)c * g->k_h + kh) * g->k_w + kw;
                    for (int oh = 0; oh < g->out_h; oh++)
                        for (int ow = 0; ow < g->out_w; ow++) {
                            int ih = oh * g->stride + kh - g->pad_top;
                            int iw = ow * g->stride + kw - g->pad_left;
                            if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w)
                                continue;
                            img[(((size_t)n * g->channels + c) * g->in_h + ih) * g->in_w + iw] +=
                                col[r * ld + (size_t)n * P + (size_t)oh * g->out_w + ow];
                        }
                }
}

static void test_col2im_matches_scatter(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    test_rng_seed(77);
    /* {C, in_h, in_w, k_h, k_w, stride, pad_top, pad_left, out_h, out_w}:
     * the PixelCNN's down-shifted 2x3 and down-right 2x2, a centred 3x3,
     * a stride-2 and a narrower grid (the row-by-row path) */
    const conv_geom geoms[] = {{3, 5, 6, 2, 3, 1, 1, 1, 5, 6}, {2, 4, 7, 2, 2, 1, 1, 1, 4, 7},
                               {2, 6, 5, 3, 3, 1, 1, 1, 6, 5}, {2, 6, 6, 2, 3, 2, 1, 1, 3, 3},
                               {2, 5, 6, 2, 3, 1, 0, 0, 4, 4}};
    const int nb = 2;
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const conv_geom *g = &geoms[gi];
        const size_t K = (size_t)g->channels * g->k_h * g->k_w;
        const size_t cols = K * nb * g->out_h * g->out_w;
        const size_t pixels = (size_t)nb * g->channels * g->in_h * g->in_w;
        float *col = malloc(cols * sizeof *col), *col2 = malloc(cols * sizeof *col);
        float *img = malloc(pixels * sizeof *img), *ref = malloc(pixels * sizeof *ref);
        assert_true(col && col2 && img && ref);
        for (size_t i = 0; i < cols; i++)
            col[i] = col2[i] = (float)test_uniform(-1, 1);
        for (size_t i = 0; i < pixels; i++)
            img[i] = ref[i] = (float)test_uniform(-1, 1);
        col2im_add(ctx, g, col, nb, img);
        scatter_reference(g, col2, nb, ref);
        assert_memory_equal(img, ref, pixels * sizeof *img);
        /* -0.0 in, -0.0 out; junk (1.0) over padding, which must not arrive */
        for (size_t i = 0; i < pixels; i++)
            img[i] = -0.0f;
        const size_t P = (size_t)g->out_h * g->out_w;
        for (size_t r = 0; r < K; r++)
            for (size_t j = 0; j < nb * P; j++) {
                int kh = (int)(r % ((size_t)g->k_h * g->k_w) / g->k_w), kw = (int)(r % g->k_w);
                int oh = (int)(j % P / g->out_w), ow = (int)(j % P % g->out_w);
                int ih = oh * g->stride + kh - g->pad_top, iw = ow * g->stride + kw - g->pad_left;
                int inside = ih >= 0 && ih < g->in_h && iw >= 0 && iw < g->in_w;
                col[r * nb * P + j] = inside ? -0.0f : 1.0f;
            }
        col2im_add(ctx, g, col, nb, img);
        for (size_t i = 0; i < pixels; i++)
            assert_true(img[i] == 0.0f && signbit(img[i]));
        free(col), free(col2), free(img), free(ref);
    }
    agave_context_free(ctx);
}

/* The bias gradient: gb[c] += the sum of channel c of g (N,C,P) in double,
 * position by position in the order n then p, rounded once. The reference
 * sums exactly so, so the library's result must match it to the bit, for
 * whole blocks of 16 channels and a remainder, positions in whole vectors of
 * 16 and a tail, and 1 and 2 threads. Every 16th position holds 2^60 and
 * the next -2^60: in order they cancel exactly, while an add of a value in
 * (-1, 1) between them is lost in the 2^60 (its ulp is 256), so another order
 * gives another sum. */
static void test_bias_grad_sums_each_channel_in_order(void **state)
{
    (void)state;
    const int N = 3, C = 37;
    const size_t sizes[] = {50, 16, 7, 1};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int threads = 1; threads <= 2; threads++) {
            const size_t P = sizes[si];
            agave_context *ctx = NULL;
            assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
            assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
            test_rng_seed(41);
            float *g = support_calloc((size_t)N * C * P, sizeof *g);
            float *gb = support_calloc((size_t)C, sizeof *gb);
            float *want = support_calloc((size_t)C, sizeof *want);
            for (size_t i = 0; i < (size_t)N * C * P; i++)
                g[i] = i % P % 16 == 0 ? 0x1p60f : i % P % 16 == 1 ? -0x1p60f
                                                                : (float)test_uniform(-1, 1);
            for (int c = 0; c < C; c++) {
                gb[c] = (float)test_uniform(-1, 1);
                double sum = 0.0;
                for (int n = 0; n < N; n++)
                    for (size_t p = 0; p < P; p++)
                        sum += g[((size_t)n * C + c) * P + p];
                want[c] = gb[c] + (float)sum;
            }
            bias_grad(ctx, g, N, C, P, gb);
            for (int c = 0; c < C; c++)
                if (memcmp(&gb[c], &want[c], sizeof(float)))
                    fail_msg("P %zu, %d threads: channel %d: %.9g, in order %.9g", P, threads, c,
                             (double)gb[c], (double)want[c]);
            free(g), free(gb), free(want);
            agave_context_free(ctx);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_forward),
        cmocka_unit_test(test_conv2d_transpose_forward),
        cmocka_unit_test(test_conv2d_transpose_pixelcnn_causality),
        cmocka_unit_test(test_nin_forward),
        cmocka_unit_test(test_dense_forward),
        cmocka_unit_test(test_conv2d_backward_accumulates),
        cmocka_unit_test(test_conv2d_backward_blocks),
        cmocka_unit_test(test_conv2d_transpose_backward_blocks),
        cmocka_unit_test(test_nin_backward_blocks),
        cmocka_unit_test(test_weight_grad_reproducible_on_threads),
        cmocka_unit_test(test_col2im_matches_scatter),
        cmocka_unit_test(test_bias_grad_sums_each_channel_in_order),
        cmocka_unit_test_setup_teardown(test_conv2d_errors, err_setup, err_teardown),
        cmocka_unit_test_setup_teardown(test_conv2d_transpose_errors, err_setup, err_teardown),
        cmocka_unit_test_setup_teardown(test_nin_errors, err_setup, err_teardown),
        cmocka_unit_test_setup_teardown(test_dense_errors, err_setup, err_teardown),
    };
    return cmocka_run_group_tests_name("conv", tests, NULL, NULL);
}
