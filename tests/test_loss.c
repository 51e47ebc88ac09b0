/* Tests of lib/loss: the auxiliary image, the discretized logistic with b
 * levels, the mixture of logistics (values, normalisation, reference values,
 * sampler), the Gaussian terms and the bound arithmetic, plus the error paths
 * of every public loss function. Gradients are checked by finite differences
 * in test_gradcheck.c (cases in support/gc_cases_loss.c).
 *
 * Reference values (tests/data/losses, see its README.md) are found under
 * $AGAVE_SRCDIR/tests/data/losses when AGAVE_SRCDIR is set, else under
 * tests/data/losses relative to the working directory (make runs the tests
 * from the repository root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loss/loss.h"
#include "support/gradcheck.h"

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double to_net(int v) { return v / 127.5 - 1.0; }

/* Reads a whole file into a new buffer; fails the test if it is not `bytes` long. */
static void *read_data_file(const char *name, size_t bytes)
{
    char path[1024];
    const char *src = getenv("AGAVE_SRCDIR");
    if (src && *src)
        snprintf(path, sizeof path, "%s/tests/data/losses/%s", src, name);
    else
        snprintf(path, sizeof path, "tests/data/losses/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (set AGAVE_SRCDIR to the source tree)", path);
    void *buf = malloc(bytes + 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, bytes + 1, f);
    fclose(f);
    if (got != bytes)
        fail_msg("%s holds %zu bytes, expected %zu", path, got, bytes);
    return buf;
}

/* Pearson's chi-square of observed counts against cell probabilities, cells
 * with an expected count below 5 pooled into one (with `rest_p`/`rest_count`,
 * the mass and count outside the listed cells). *df = cells used - 1. */
static double chi_square(const double *p, const long *count, size_t cells, double rest_p,
                         long rest_count, long total, int *df)
{
    double chi2 = 0, pool_p = rest_p;
    long pool_count = rest_count;
    int used = 0;
    for (size_t i = 0; i < cells; i++) {
        double expected = p[i] * total;
        if (expected < 5) {
            pool_p += p[i];
            pool_count += count[i];
            continue;
        }
        chi2 += (count[i] - expected) * (count[i] - expected) / expected;
        used++;
    }
    double pool_expected = pool_p * total;
    if (pool_expected >= 5) {
        chi2 += (pool_count - pool_expected) * (pool_count - pool_expected) / pool_expected;
        used++;
    } else if (pool_count > 20) {
        chi2 = INFINITY;   /* many samples where the model puts (almost) no mass */
    }
    *df = used - 1;
    return chi2;
}

/* The acceptance bound for a chi-square with df degrees of freedom: six
 * standard deviations above the mean, df + 6 sqrt(2 df). A correct sampler
 * exceeds it with probability ~1e-6 (and the seeds are fixed, so the test is
 * deterministic); a wrong scale, mean, coupling or component choice moves the
 * statistic by thousands. */
static double chi_square_bound(int df) { return df + 6 * sqrt(2.0 * df); }

/* ======================================================================== */
/* An independent double-precision mixture of logistics, written from        */
/* docs/model.md and openai/pixel-cnn's discretized_mix_logistic_loss as     */
/* stated: sigmoid differences taken directly, the branch order of pixel-cnn.*/
/* ======================================================================== */

static double ref_softplus(double v) { return fmax(v, 0) + log1p(exp(-fabs(v))); }
static double ref_sigmoid(double v) { return 1 / (1 + exp(-v)); }

/* Flags set while evaluating one pixel. */
typedef struct ref_flags {
    int near_threshold;   /* an interior bin mass within 1e-5 relative of 1e-5 */
    int underflow;        /* some channel took the centre-density branch */
} ref_flags;

static double ref_channel(int v, double mean, double raw_log_scale, ref_flags *fl)
{
    double log_scale = raw_log_scale < -7 ? -7 : raw_log_scale;
    double x = to_net(v), centered = x - mean, inv_stdv = exp(-log_scale);
    double plus_in = inv_stdv * (centered + 1 / 255.0);
    double min_in = inv_stdv * (centered - 1 / 255.0);
    if (x < -0.999)
        return plus_in - ref_softplus(plus_in);
    if (x > 0.999)
        return -ref_softplus(min_in);
    double cdf_delta = ref_sigmoid(plus_in) - ref_sigmoid(min_in);
    if (fabs(cdf_delta - 1e-5) < 1e-10)
        fl->near_threshold = 1;
    if (cdf_delta > 1e-5)
        return log(fmax(cdf_delta, 1e-12));
    fl->underflow = 1;
    double mid_in = inv_stdv * centered;
    return mid_in - log_scale - 2 * ref_softplus(mid_in) - log(127.5);
}

/* p[k * stride] is parameter channel k of the pixel, x[c * x_stride] sub-pixel c. */
static double ref_pixel(const float *p, size_t stride, int C, int M, const uint8_t *x,
                        size_t x_stride, ref_flags *fl)
{
    double logits_max = -INFINITY, joint[1024];
    assert_true(M <= 1024);
    for (int m = 0; m < M; m++)
        logits_max = fmax(logits_max, p[m * stride]);
    double norm = 0;
    for (int m = 0; m < M; m++)
        norm += exp(p[m * stride] - logits_max);
    double log_norm = logits_max + log(norm);
    double xr = to_net(x[0]), xg = C == 3 ? to_net(x[x_stride]) : 0;
    for (int m = 0; m < M; m++) {
        double sum = p[m * stride] - log_norm;
        for (int c = 0; c < C; c++) {
            const float *blk = p + (size_t)(M + 3 * M * c) * stride;   /* mean, scale, coeff */
            double mean = blk[m * stride];
            if (c == 1)
                mean += tanh(p[(size_t)(3 * M + m) * stride]) * xr;
            if (c == 2)
                mean += tanh(p[(size_t)(6 * M + m) * stride]) * xr +
                        tanh(p[(size_t)(9 * M + m) * stride]) * xg;
            sum += ref_channel(x[c * x_stride], mean, blk[(size_t)(M + m) * stride], fl);
        }
        joint[m] = sum;
    }
    double jmax = -INFINITY, s = 0;
    for (int m = 0; m < M; m++)
        jmax = fmax(jmax, joint[m]);
    for (int m = 0; m < M; m++)
        s += exp(joint[m] - jmax);
    return jmax + log(s);
}

/* Random mixture parameters for n images of hw pixels, drawn per role. */
typedef struct param_ranges {
    double logit, mean, ls_lo, ls_hi, coeff;   /* logits in [-logit, logit], ... */
} param_ranges;

static void random_params(float *p, int n, int C, int M, size_t hw, const param_ranges *r)
{
    int P = (C == 1 ? 3 : 10) * M;
    for (int img = 0; img < n; img++)
        for (int k = 0; k < P; k++) {
            int role = k < M ? 0 : (k - M) / M % 3;   /* 0 mean, 1 log-scale, 2 coeff */
            for (size_t i = 0; i < hw; i++) {
                double v = k < M             ? test_uniform(-r->logit, r->logit)
                           : role == 0       ? test_uniform(-r->mean, r->mean)
                           : role == 1       ? test_uniform(r->ls_lo, r->ls_hi)
                                             : test_uniform(-r->coeff, r->coeff);
                p[((size_t)img * P + k) * hw + i] = (float)v;
            }
        }
}

static void random_pixels(uint8_t *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        double u = test_uniform(0, 1);
        /* a tenth at each end, where the open edge bins are */
        x[i] = u < 0.1 ? 0 : u > 0.9 ? 255 : (uint8_t)test_uniform(1, 255);
    }
}

/* ======================================================================== */
/* Auxiliary image                                                           */
/* ======================================================================== */

static void test_image_pool_rounds_halves_up(void **state)
{
    (void)state;
    /* one 2x2 image, s = 2: each 2x2 block of a 4x4 plane */
    const uint8_t x[16] = {1, 2, 0, 0, 2, 2, 0, 1, 0, 1, 254, 255, 0, 1, 255, 255};
    uint8_t y[4];
    assert_int_equal(agave_image_pool(x, 1, 1, 4, 4, 2, y), AGAVE_OK);
    assert_int_equal(y[0], 2);     /* mean 1.75 */
    assert_int_equal(y[1], 0);     /* mean 0.25 */
    assert_int_equal(y[2], 1);     /* mean 0.5: the half rounds up */
    assert_int_equal(y[3], 255);   /* mean 254.75 */
    /* s = 4: sum 8 -> mean 0.5 -> 1; sum 7 -> 0.4375 -> 0 */
    uint8_t z[16] = {0}, out;
    z[0] = 8;
    assert_int_equal(agave_image_pool(z, 1, 1, 4, 4, 4, &out), AGAVE_OK);
    assert_int_equal(out, 1);
    z[0] = 7;
    assert_int_equal(agave_image_pool(z, 1, 1, 4, 4, 4, &out), AGAVE_OK);
    assert_int_equal(out, 0);
}

/* Against floor(mean + 0.5) in double (exact: the means are multiples of 1/16)
 * on random images of several shapes, and s = 1 is the identity. */
static void test_image_pool_random(void **state)
{
    (void)state;
    test_rng_seed(11);
    const int n = 2, c = 3, h = 8, w = 12;
    uint8_t x[2 * 3 * 8 * 12], y[2 * 3 * 8 * 12];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)test_uniform(0, 256);
    assert_int_equal(agave_image_pool(x, n, c, h, w, 1, y), AGAVE_OK);
    assert_memory_equal(x, y, sizeof x);
    for (int s = 2; s <= 4; s *= 2) {
        assert_int_equal(agave_image_pool(x, n, c, h, w, s, y), AGAVE_OK);
        int ho = h / s, wo = w / s;
        for (int p = 0; p < n * c; p++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double sum = 0;
                    for (int di = 0; di < s; di++)
                        for (int dj = 0; dj < s; dj++)
                            sum += x[(size_t)p * h * w + (i * s + di) * w + j * s + dj];
                    int want = (int)floor(sum / (s * s) + 0.5);
                    assert_int_equal(y[(size_t)p * ho * wo + i * wo + j], want);
                }
    }
}

static void test_image_quantize(void **state)
{
    (void)state;
    uint8_t v[256], level[256];
    for (int i = 0; i < 256; i++)
        v[i] = (uint8_t)i;
    for (int b = 2; b <= 256; b *= 2) {
        assert_int_equal(agave_image_quantize(v, 256, b, level), AGAVE_OK);
        for (int i = 0; i < 256; i++) {
            assert_int_equal(level[i], (int)floor(i / (256.0 / b)));
            assert_int_equal(level[i], i * b / 256);   /* the loss's level of value i */
        }
        assert_int_equal(level[255], b - 1);
    }
}

/* ======================================================================== */
/* Discretized logistic with b levels                                         */
/* ======================================================================== */

/* For every b and a grid of means and log-scales from moderate to absurd:
 * every value's log p is finite and <= 0, values of one level share it, and
 * the b level probabilities sum to 1 within 1e-5. */
static void test_dlogistic_levels_sum_to_one(void **state)
{
    (void)state;
    const float means[] = {-1e30f, -50, -5, -3, -1.5f, -1, -0.999f, -0.5f, -0.1f, 0, 0.0031f,
                           0.3f,   0.9f, 1,  1.2f,  3,  5,  50,     1e30f};
    const float scales[] = {-1000, -100, -30, -7, -6.5f, -5, -4, -3, -2, -1,
                            0,     1,    2,   3,  30,    100, 1000};
    uint8_t y[256];
    float mean[256], ls[256], logp[256];
    for (int v = 0; v < 256; v++)
        y[v] = (uint8_t)v;
    for (int b = 2; b <= 256; b *= 2) {
        int width = 256 / b;
        for (size_t i = 0; i < sizeof means / sizeof means[0]; i++)
            for (size_t j = 0; j < sizeof scales / sizeof scales[0]; j++) {
                for (int v = 0; v < 256; v++) {
                    mean[v] = means[i];
                    ls[v] = scales[j];
                }
                assert_int_equal(agave_dlogistic_logprob(y, mean, ls, 256, b, logp), AGAVE_OK);
                double total = 0;
                for (int v = 0; v < 256; v++) {
                    if (!isfinite(logp[v]) || logp[v] > 0)
                        fail_msg("b=%d mean=%g log_scale=%g y=%d: log p = %g", b,
                                 (double)means[i], (double)scales[j], v, (double)logp[v]);
                    assert_true(logp[v] == logp[v - v % width]);
                    if (v % width == 0)
                        total += exp((double)logp[v]);
                }
                if (fabs(total - 1) > 1e-5)
                    fail_msg("b=%d mean=%g log_scale=%g: the levels sum to %.9g", b,
                             (double)means[i], (double)scales[j], total);
            }
    }
}

/* A far-away mean gives the logistic tail, a large finite negative log p:
 *   lowest level:   log sigmoid(a)                     ~ a
 *   interior level: log(sigmoid(a) - sigmoid(b))        ~ a + log(1 - e^-d)
 *   highest level:  log(1 - sigmoid(b))                 ~ -b
 * (a, b the standardised upper and lower edges, d = a - b; the neglected terms
 * are O(e^-|a|), nothing at |a| ~ 6000). */
static void test_dlogistic_far_tail(void **state)
{
    (void)state;
    const uint8_t y[3] = {0, 100, 255};
    const float mean[3] = {5, 5, -5}, ls[3] = {-7, -7, -7};
    float logp[3];
    assert_int_equal(agave_dlogistic_logprob(y, mean, ls, 3, 256, logp), AGAVE_OK);
    double inv_s = exp(7.0), h = 1 / 255.0;
    double a0 = (to_net(0) + h - 5) * inv_s;
    double a1 = (to_net(100) + h - 5) * inv_s, d1 = 2 * h * inv_s;
    double b2 = (to_net(255) - h + 5) * inv_s;
    assert_true(a0 < -6000 && b2 > 6000);
    assert_float_equal(logp[0], a0, 1e-6 * fabs(a0));
    assert_float_equal(logp[1], a1 + log1p(-exp(-d1)), 1e-6 * fabs(a1));
    assert_float_equal(logp[2], -b2, 1e-6 * fabs(b2));
}

/* The tsv holds levels, y, mean, log_scale, log p (float64 reference). */
static void test_dlogistic_reference_values(void **state)
{
    (void)state;
    char path[1024];
    const char *src = getenv("AGAVE_SRCDIR");
    snprintf(path, sizeof path, "%s%stests/data/losses/dlogistic.tsv", src && *src ? src : "",
             src && *src ? "/" : "");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (set AGAVE_SRCDIR to the source tree)", path);
    char line[512];
    int cases = 0, levels_seen = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        int levels, yv;
        float mean, ls;
        double want;
        if (sscanf(line, "%d %d %f %f %lf", &levels, &yv, &mean, &ls, &want) != 5)
            fail_msg("bad line in %s: %s", path, line);
        uint8_t y = (uint8_t)yv;
        float got;
        assert_int_equal(agave_dlogistic_logprob(&y, &mean, &ls, 1, levels, &got), AGAVE_OK);
        /* 1e-5 relative (the README), plus float32's own resolution near 0 */
        if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-7))
            fail_msg("levels %d y %d mean %.9g log_scale %.9g: got %.9g, reference %.17g",
                     levels, yv, (double)mean, (double)ls, (double)got, want);
        cases++;
        levels_seen |= levels;
    }
    fclose(f);
    assert_int_equal(cases, 320);
    assert_int_equal(levels_seen, 256 | 64 | 32 | 8 | 2);
}

/* The tape op's per-image NLL is minus the sum of the plain-buffer log p. */
static void test_dlogistic_nll_matches_logprob(void **state)
{
    (void)state;
    enum { N = 3, C = 3, H = 4, W = 5, D = N * C * H * W };
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    agave_tensor *mean, *ls, *out;
    int dims[4] = {N, C, H, W}, cdim = C;
    assert_int_equal(agave_tensor_create(ctx, 4, dims, &mean), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 1, &cdim, &ls), AGAVE_OK);
    test_rng_seed(5);
    uint8_t y[D];
    float m[D], lsv[D], logp[D];
    random_pixels(y, D);
    for (int i = 0; i < D; i++)
        agave_tensor_data(mean)[i] = m[i] = (float)test_uniform(-1.2, 1.2);
    for (int c = 0; c < C; c++)
        agave_tensor_data(ls)[c] = (float)test_uniform(-4, 1);
    for (int i = 0; i < D; i++)
        lsv[i] = agave_tensor_data(ls)[i / (H * W) % C];
    for (int levels = 2; levels <= 256; levels *= 8) {
        assert_int_equal(agave_dlogistic_logprob(y, m, lsv, D, levels, logp), AGAVE_OK);
        assert_int_equal(agave_dlogistic_nll(ctx, y, mean, ls, levels, &out), AGAVE_OK);
        assert_int_equal(agave_tensor_ndim(out), 1);
        assert_int_equal(agave_tensor_dim(out, 0), N);
        for (int n = 0; n < N; n++) {
            double sum = 0;
            for (int i = 0; i < C * H * W; i++)
                sum += logp[n * C * H * W + i];
            assert_float_equal(agave_tensor_data(out)[n], -sum, 1e-5 * fabs(sum));
        }
    }
    agave_tensor_free(mean);
    agave_tensor_free(ls);
    agave_context_free(ctx);
}

/* ======================================================================== */
/* Mixture of logistics: values                                              */
/* ======================================================================== */

/* Compares agave_dmol_logprob on n images with `reference` (per-pixel log p),
 * or with ref_pixel where reference is NULL; when both are there, ref_pixel
 * must match the reference too. Adds to *underflow the pixels where some
 * channel took the centre-density branch, to *edges the sub-pixels at 0 or
 * 255 and to *near the pixels with a bin mass on the 1e-5 threshold. */
static void check_against_ref(const uint8_t *x, const float *params, int n, int C, int H,
                              int W, int M, const double *reference, int *underflow,
                              int *edges, int *near)
{
    size_t hw = (size_t)H * W, P = (size_t)(C == 1 ? 3 : 10) * M;
    float *logp = malloc((size_t)n * hw * sizeof *logp);
    assert_int_equal(agave_dmol_logprob(x, params, n, C, H, W, M, logp), AGAVE_OK);
    for (int img = 0; img < n; img++)
        for (size_t i = 0; i < hw; i++) {
            ref_flags fl = {0, 0};
            const uint8_t *xp = x + (size_t)img * C * hw + i;
            double mine = ref_pixel(params + img * P * hw + i, hw, C, M, xp, hw, &fl);
            double want = reference ? reference[img * hw + i] : mine;
            /* 1e-5 relative; 1e-3 where a bin mass sits on the 1e-5 threshold, so
             * float32 and float64 may take different branches (README). */
            double tol = (fl.near_threshold ? 1e-3 : 1e-5) * fabs(want) + 1e-6;
            double got = logp[img * hw + i];
            if (!(fabs(got - want) <= tol))
                fail_msg("C=%d M=%d image %d pixel %zu: got %.9g, reference %.12g", C, M, img,
                         i, got, want);
            if (reference && !(fabs(mine - want) <= tol))
                fail_msg("the test's own double implementation disagrees with the reference: "
                         "C=%d image %d pixel %zu: %.12g vs %.12g", C, img, i, mine, want);
            *underflow += fl.underflow;
            *near += fl.near_threshold;
            for (int c = 0; c < C; c++)
                *edges += xp[c * hw] == 0 || xp[c * hw] == 255;
        }
    free(logp);
}

static void dmol_reference_case(int C, int M)
{
    enum { N = 2, H = 4, W = 4 };
    size_t P = (size_t)(C == 1 ? 3 : 10) * M;
    char name[64];
    snprintf(name, sizeof name, "dmol_c%d_m%d_x.u8", C, M);
    uint8_t *x = read_data_file(name, (size_t)N * C * H * W);
    snprintf(name, sizeof name, "dmol_c%d_m%d_params.f32", C, M);
    float *params = read_data_file(name, N * P * H * W * sizeof(float));
    snprintf(name, sizeof name, "dmol_c%d_m%d_logp.f64", C, M);
    double *logp = read_data_file(name, (size_t)N * H * W * sizeof(double));
    int underflow = 0, edges = 0, near = 0;
    check_against_ref(x, params, N, C, H, W, M, logp, &underflow, &edges, &near);
    print_message("dmol reference C=%d M=%d: %d pixels with an underflow branch, %d edge "
                  "values, %d near the threshold\n", C, M, underflow, edges, near);
    assert_true(underflow > 0 && edges > 0);
    free(x);
    free(params);
    free(logp);
}

static void test_dmol_reference_values(void **state)
{
    (void)state;
    dmol_reference_case(1, 3);
    dmol_reference_case(3, 4);
}

/* Random inputs across every regime: log-scales -9..1 (clamped below -7; the
 * sharp ones with far means take the underflow branch), pixels often 0 or 255. */
static void test_dmol_matches_double_reimplementation(void **state)
{
    (void)state;
    const param_ranges r = {3, 1.2, -9, 1, 3};
    for (int C = 1; C <= 3; C += 2)
        for (int M = 1; M <= 10; M += 9) {
            enum { N = 3, H = 8, W = 8 };
            size_t P = (size_t)(C == 1 ? 3 : 10) * M;
            float *params = malloc(N * P * H * W * sizeof *params);
            uint8_t x[N * 3 * H * W];
            test_rng_seed(100 + C * 10 + M);
            random_params(params, N, C, M, H * W, &r);
            random_pixels(x, (size_t)N * C * H * W);
            int underflow = 0, edges = 0, near = 0;
            check_against_ref(x, params, N, C, H, W, M, NULL, &underflow, &edges, &near);
            assert_true(underflow > 0 && edges > 0);
            free(params);
        }
}

/* C = 1: the 256 values of a sub-pixel carry probability 1 (within 1e-4), for
 * random mixtures with log-scales >= -4 (where the centre-density fallback
 * only covers far tails, where it is accurate). */
static void test_dmol_c1_sums_to_one(void **state)
{
    (void)state;
    enum { M = 5, P = 3 * M };
    const param_ranges r = {2, 1.1, -4, 1, 0};
    float one[P], params[P * 256], logp[256];
    uint8_t x[256];
    for (int v = 0; v < 256; v++)
        x[v] = (uint8_t)v;
    test_rng_seed(21);
    for (int trial = 0; trial < 50; trial++) {
        random_params(one, 1, 1, M, 1, &r);
        for (int k = 0; k < P; k++)
            for (int v = 0; v < 256; v++)
                params[k * 256 + v] = one[k];
        assert_int_equal(agave_dmol_logprob(x, params, 1, 1, 16, 16, M, logp), AGAVE_OK);
        double total = 0;
        for (int v = 0; v < 256; v++)
            total += exp((double)logp[v]);
        if (fabs(total - 1) > 1e-4)
            fail_msg("trial %d: the 256 values sum to %.9g", trial, total);
    }
}

/* C = 3 with coupling: all 256^3 RGB values of a pixel sum to 1 within 1e-4.
 * 16.7M evaluations of the library's kernel, with the pixel's value-independent
 * terms prepared once (dmol_mixture_prepare), parallel over R. */
static double dmol_c3_total(const float *params, int M)
{
    dmol_component comps[8];
    assert_true(M <= 8);
    dmol_mixture_prepare(params, 1, 3, M, comps);
    double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(dynamic)
    for (int r = 0; r < 256; r++) {
        uint8_t x[3] = {(uint8_t)r, 0, 0};
        double part = 0;
        for (int g = 0; g < 256; g++) {
            x[1] = (uint8_t)g;
            for (int b = 0; b < 256; b++) {
                x[2] = (uint8_t)b;
                part += exp(dmol_mixture_logprob(comps, 3, M, x, 1));
            }
        }
        total += part;
    }
    return total;
}

static void test_dmol_c3_sums_to_one(void **state)
{
    (void)state;
    enum { M = 3, P = 10 * M };
    const param_ranges r = {2, 0.9, -4, 0, 1.5};
    float params[P];
    test_rng_seed(31);
    random_params(params, 1, 3, M, 1, &r);
    double t0 = now_seconds(), total = dmol_c3_total(params, M);
    print_message("C=3 M=%d: 256^3 values sum to %.9f (%.2f s)\n", M, total, now_seconds() - t0);
    if (fabs(total - 1) > 1e-4)
        fail_msg("the 256^3 values sum to %.9g", total);
}

/* The prepared form gives the per-pixel kernel's values, to the last bit. */
static void test_dmol_prepared_matches_pixel_kernel(void **state)
{
    (void)state;
    enum { M = 4 };
    const param_ranges r = {3, 1.2, -9, 1, 3};
    test_rng_seed(32);
    for (int C = 1; C <= 3; C += 2) {
        float params[10 * M];
        dmol_component comps[M];
        for (int trial = 0; trial < 200; trial++) {
            random_params(params, 1, C, M, 1, &r);
            dmol_mixture_prepare(params, 1, C, M, comps);
            uint8_t x[3];
            random_pixels(x, 3);
            double a = dmol_mixture_logprob(comps, C, M, x, 1);
            double b = dmol_pixel_logprob(params, 1, C, M, x, 1);
            assert_float_equal(a, b, 1e-12 * fabs(b));
        }
    }
}

/* The tape op's per-image NLL is minus the sum of agave_dmol_logprob, the same
 * with and without recording, and bit-identical for 1 and 2 threads. */
static void test_dmol_nll_matches_logprob(void **state)
{
    (void)state;
    enum { N = 3, H = 5, W = 7, M = 4 };
    const param_ranges r = {2, 1.1, -8, 1, 2};
    for (int C = 1; C <= 3; C += 2) {
        int P = (C == 1 ? 3 : 10) * M, dims[4] = {N, P, H, W};
        agave_context *ctx;
        assert_int_equal(agave_context_create(&ctx, 3), AGAVE_OK);
        agave_tensor *params, *out;
        assert_int_equal(agave_tensor_create(ctx, 4, dims, &params), AGAVE_OK);
        uint8_t x[N * 3 * H * W];
        float logp[N * H * W], first[N];
        test_rng_seed(41 + C);
        random_params(agave_tensor_data(params), N, C, M, H * W, &r);
        random_pixels(x, (size_t)N * C * H * W);
        assert_int_equal(agave_dmol_logprob(x, agave_tensor_data(params), N, C, H, W, M, logp),
                         AGAVE_OK);
        for (int pass = 0; pass < 3; pass++) {
            /* pass 0: not recording; 1: recording; 2: recording on 2 threads */
            assert_int_equal(agave_tensor_set_requires_grad(params, pass > 0), AGAVE_OK);
            assert_int_equal(agave_context_set_threads(ctx, pass == 2 ? 2 : 1), AGAVE_OK);
            assert_int_equal(agave_dmol_nll(ctx, x, C, params, M, &out), AGAVE_OK);
            assert_int_equal(agave_tape_size(ctx), pass > 0 ? 1 : 0);
            for (int n = 0; n < N; n++) {
                double sum = 0;
                for (int i = 0; i < H * W; i++)
                    sum += logp[n * H * W + i];
                float got = agave_tensor_data(out)[n];
                assert_float_equal(got, -sum, 1e-5 * fabs(sum));
                if (pass == 0)
                    first[n] = got;
                else
                    assert_true(got == first[n]);
            }
            agave_tape_reset(ctx);
        }
        agave_tensor_free(params);
        agave_context_free(ctx);
    }
}

/* ======================================================================== */
/* Mixture of logistics: the sampler                                         */
/* ======================================================================== */

/* params (P) for one pixel replicated over `pixels` pixels of one image. */
static float *replicate(const float *one, int P, size_t pixels)
{
    float *p = malloc((size_t)P * pixels * sizeof *p);
    assert_non_null(p);
    for (int k = 0; k < P; k++)
        for (size_t i = 0; i < pixels; i++)
            p[(size_t)k * pixels + i] = one[k];
    return p;
}

/* One sharp component (log-scale -7, logit 30 against -30), C = 3 with
 * coupling tanh(20) = 1 on G<-R and B<-G, means on levels: R on 100, G on
 * R + 20 given the rounded R, B on G - 50 given the rounded G. With s = e^-7 the
 * noise is logistic with scale 127.5 e^-7 = 0.116 levels, so a draw stays on
 * its level with probability 1 - 2 sigmoid(-0.5/0.116) = 97.3%; the test wants
 * >= 96% (20000 pixels: 12 standard deviations of margin), every miss within
 * 2 levels, and the coupling to see the rounded values: coupling on unrounded
 * values adds R's sub-level noise to G and drops G == R + 20 to ~91%. */
static void test_dmol_sample_sharp_component(void **state)
{
    (void)state;
    enum { M = 2, P = 10 * M, H = 100, W = 200, HW = H * W };
    float one[P] = {0};
    one[0] = 30;
    one[1] = -30;
    for (int c = 0; c < 3; c++) {
        one[M + 3 * M * c + 0] = 0;               /* means of component 0, set below */
        one[M + 3 * M * c + 1] = 0.5f;            /* component 1: elsewhere */
        one[2 * M + 3 * M * c + 0] = -7;
        one[2 * M + 3 * M * c + 1] = -2;
    }
    one[M + 0] = (float)to_net(100);              /* R */
    one[3 * M + 0] = 20;                          /* G <- R */
    one[M + 3 * M + 0] = (float)(20 / 127.5);     /* G = R + 20 levels */
    one[6 * M + 0] = 0;                           /* B <- R: off */
    one[9 * M + 0] = 20;                          /* B <- G */
    one[M + 6 * M + 0] = (float)(-50 / 127.5);    /* B = G - 50 levels */
    float *params = replicate(one, P, HW);
    uint8_t *x = malloc(3 * HW);
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, H, W, M, x), AGAVE_OK);
    int hit_r = 0, hit_g = 0, hit_b = 0;
    for (int i = 0; i < HW; i++) {
        int r = x[i], g = x[HW + i], b = x[2 * HW + i];
        assert_true(abs(r - 100) <= 2 && abs(g - (r + 20)) <= 2 && abs(b - (g - 50)) <= 2);
        hit_r += r == 100;
        hit_g += g == r + 20;
        hit_b += b == g - 50;
    }
    print_message("sharp component: %.4f %.4f %.4f of R, G, B on their level\n",
                  (double)hit_r / HW, (double)hit_g / HW, (double)hit_b / HW);
    assert_true(hit_r >= 0.96 * HW && hit_g >= 0.96 * HW && hit_b >= 0.96 * HW);

    /* Means far outside [-1, 1] are clipped: always 255 (R), 0 (G, B). */
    one[M + 0] = 3;
    one[3 * M + 0] = 0;
    one[M + 3 * M + 0] = -3;
    one[9 * M + 0] = 0;
    one[M + 6 * M + 0] = -2.5f;
    free(params);
    params = replicate(one, P, HW);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, H, W, M, x), AGAVE_OK);
    for (int i = 0; i < HW; i++)
        assert_true(x[i] == 255 && x[HW + i] == 0 && x[2 * HW + i] == 0);
    free(params);
    free(x);
    agave_context_free(ctx);
}

/* Network scale to pixels, by hand: x~ = v/127.5 - 1 maps back to v; a
 * value 0.49 of a level above v still rounds to v, 0.51 to v + 1; the edges
 * clip; NaN is 0, infinities and values beyond the double range clip. */
static void test_net_to_pixel(void **state)
{
    (void)state;
    for (int v = 0; v < 256; v++) {
        assert_int_equal(loss_net_to_pixel(loss_pixel_to_net(v)), v);
        assert_int_equal(loss_net_to_pixel((v + 0.49) / 127.5 - 1), v);
        assert_int_equal(loss_net_to_pixel((v - 0.49) / 127.5 - 1), v);
        if (v < 255)
            assert_int_equal(loss_net_to_pixel((v + 0.51) / 127.5 - 1), v + 1);
    }
    assert_int_equal(loss_net_to_pixel(0.0), 128);   /* 127.5: halves up */
    assert_int_equal(loss_net_to_pixel(-1.0 - 0.6 / 127.5), 0);
    assert_int_equal(loss_net_to_pixel(1.0 + 0.6 / 127.5), 255);
    assert_int_equal(loss_net_to_pixel(-3.0), 0);
    assert_int_equal(loss_net_to_pixel(3.0), 255);
    assert_int_equal(loss_net_to_pixel(1e300), 255);
    assert_int_equal(loss_net_to_pixel(-1e300), 0);
    assert_int_equal(loss_net_to_pixel(DBL_MAX), 255);   /* (v + 1) * 127.5 overflows */
    assert_int_equal(loss_net_to_pixel(-DBL_MAX), 0);
    assert_int_equal(loss_net_to_pixel(INFINITY), 255);
    assert_int_equal(loss_net_to_pixel(-INFINITY), 0);
    assert_int_equal(loss_net_to_pixel(NAN), 0);
    assert_int_equal(loss_net_to_pixel(-NAN), 0);
}

/* Sampling from non-finite mixture parameters gives defined pixels: a NaN
 * mean 0, an infinite one the edge it points to (the conversion to uint8_t
 * would be undefined behaviour: make sanitize reports it). */
static void test_dmol_sample_non_finite(void **state)
{
    (void)state;
    enum { M = 1, P = 10 * M, HW = 16 };
    float one[P] = {0};
    one[M + 0] = NAN;        /* R */
    one[M + 3 * M] = INFINITY;   /* G */
    one[M + 6 * M] = -INFINITY;  /* B */
    float *params = replicate(one, P, HW);
    uint8_t x[3 * HW];
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, 4, 4, M, x), AGAVE_OK);
    for (int i = 0; i < HW; i++)
        assert_true(x[i] == 0 && x[HW + i] == 255 && x[2 * HW + i] == 0);
    for (int k = 0; k < P; k++)
        one[k] = NAN;
    free(params);
    params = replicate(one, P, HW);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, 4, 4, M, x), AGAVE_OK);
    for (int i = 0; i < 3 * HW; i++)
        assert_int_equal(x[i], 0);
    free(params);
    agave_context_free(ctx);
}

/* C = 1, three components (one near each edge, so 0 and 255 carry mass): the
 * histogram of 100,000 draws against exp(log p) of all 256 values. */
static void test_dmol_sample_histogram_c1(void **state)
{
    (void)state;
    enum { M = 3, P = 3 * M, H = 100, W = 1000, HW = H * W };
    const float one[P] = {0.5f, -0.3f, 0.2f, -0.97f, 0.1f, 0.93f, -3, -2.2f, -3.5f};
    float *params = replicate(one, P, 256), logp[256];
    uint8_t values[256];
    for (int v = 0; v < 256; v++)
        values[v] = (uint8_t)v;
    assert_int_equal(agave_dmol_logprob(values, params, 1, 1, 16, 16, M, logp), AGAVE_OK);
    free(params);
    double p[256];
    for (int v = 0; v < 256; v++)
        p[v] = exp((double)logp[v]);
    params = replicate(one, P, HW);
    uint8_t *x = malloc(HW);
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 2024), AGAVE_OK);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 1, H, W, M, x), AGAVE_OK);
    long count[256] = {0};
    for (int i = 0; i < HW; i++)
        count[x[i]]++;
    assert_true(count[0] > 1000 && count[255] > 1000);   /* the edges are exercised */
    int df;
    double chi2 = chi_square(p, count, 256, 0, 0, HW, &df);
    print_message("C=1 histogram: chi-square %.1f on %d degrees of freedom (bound %.1f)\n",
                  chi2, df, chi_square_bound(df));
    assert_true(df > 100 && chi2 < chi_square_bound(df));

    /* The same seed gives identical samples; another seed does not. */
    uint8_t *again = malloc(HW);
    assert_int_equal(agave_context_seed(ctx, 2024), AGAVE_OK);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 1, H, W, M, again), AGAVE_OK);
    assert_memory_equal(x, again, HW);
    assert_int_equal(agave_context_seed(ctx, 2025), AGAVE_OK);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 1, H, W, M, again), AGAVE_OK);
    assert_memory_not_equal(x, again, HW);
    free(again);
    free(x);
    free(params);
    agave_context_free(ctx);
}

/* C = 3 with coupling on a small value grid: two components with scales of
 * ~2 levels and coupled means between 122 and 135, so all but ~1e-4 of the
 * mass lies in the box 96..159 of each channel. The joint histogram of 100,000
 * draws over the box's 64^3 cells (and one cell for everything outside it)
 * against the probabilities the loss gives each (r, g, b). */
static void test_dmol_sample_histogram_c3(void **state)
{
    (void)state;
    enum { M = 2, P = 10 * M, H = 200, W = 500, HW = H * W, LO = 96, SIDE = 64 };
    float one[P];
    one[0] = 0.4f;   /* logits */
    one[1] = -0.2f;
    const float mean[2][3] = {{0.0f, 0.05f, 0.0f}, {0.06f, -0.02f, 0.0f}};
    const float coeff[2][3] = {{0.8f, -0.5f, 0.6f}, {-0.4f, 0.3f, 0.9f}};
    for (int m = 0; m < M; m++)
        for (int c = 0; c < 3; c++) {
            one[M + 3 * M * c + m] = mean[m][c];
            one[2 * M + 3 * M * c + m] = -4.3f + 0.2f * m;
            one[3 * M + 3 * M * c + m] = coeff[m][c];
        }
    /* Probabilities of the box LO..LO+SIDE-1 in each channel. */
    size_t cells = (size_t)SIDE * SIDE * SIDE;
    double *p = malloc(cells * sizeof *p), inside = 0;
    for (size_t i = 0; i < cells; i++) {
        uint8_t v[3] = {(uint8_t)(LO + i / (SIDE * SIDE)), (uint8_t)(LO + i / SIDE % SIDE),
                        (uint8_t)(LO + i % SIDE)};
        p[i] = exp(dmol_pixel_logprob(one, 1, 3, M, v, 1));
        inside += p[i];
    }
    assert_true(inside > 0.999 && inside < 1 + 1e-4);
    float *params = replicate(one, P, HW);
    uint8_t *x = malloc(3 * HW);
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 99), AGAVE_OK);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, H, W, M, x), AGAVE_OK);
    long *count = calloc(cells, sizeof *count), outside = 0;
    for (int i = 0; i < HW; i++) {
        int r = x[i] - LO, g = x[HW + i] - LO, b = x[2 * HW + i] - LO;
        if (r < 0 || g < 0 || b < 0 || r >= SIDE || g >= SIDE || b >= SIDE)
            outside++;
        else
            count[((size_t)r * SIDE + g) * SIDE + b]++;
    }
    int df;
    double chi2 = chi_square(p, count, cells, fmax(1 - inside, 0), outside, HW, &df);
    print_message("C=3 histogram: chi-square %.1f on %d degrees of freedom (bound %.1f), "
                  "%ld draws outside the box (expected %.1f)\n", chi2, df,
                  chi_square_bound(df), outside, (1 - inside) * HW);
    assert_true(df > 500 && chi2 < chi_square_bound(df));
    free(count);
    free(x);
    free(params);
    free(p);
    agave_context_free(ctx);
}

/* ======================================================================== */
/* Gaussian terms                                                            */
/* ======================================================================== */

/* Closed forms at chosen points: log N(mean; mean, s^2) = -0.5 log 2pi - log s,
 * and the KL of N(0, 1) is 0. */
static void test_gaussian_known_values(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    int dims[2] = {2, 3};
    agave_tensor *mean, *ls, *lp, *kl;
    assert_int_equal(agave_tensor_create(ctx, 2, dims, &mean), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 2, dims, &ls), AGAVE_OK);
    const float m[6] = {0, 0, 0, 1, -2, 0.5f}, l[6] = {0, 0, 0, -1, 0.5f, 2};
    agave_tensor_copy_in(mean, m, 6);
    agave_tensor_copy_in(ls, l, 6);
    assert_int_equal(agave_gaussian_logprob(ctx, mean, mean, ls, &lp), AGAVE_OK);
    assert_int_equal(agave_gaussian_kl(ctx, mean, ls, &kl), AGAVE_OK);
    const double half_log_2pi = 0.5 * log(2 * M_PI);
    assert_float_equal(agave_tensor_data(lp)[0], -3 * half_log_2pi, 1e-6);
    assert_float_equal(agave_tensor_data(lp)[1], -3 * half_log_2pi - (-1 + 0.5 + 2), 1e-6);
    assert_float_equal(agave_tensor_data(kl)[0], 0, 1e-7);
    double want = 0;
    for (int i = 3; i < 6; i++)
        want += 0.5 * (m[i] * m[i] + exp(2.0 * l[i]) - 1) - l[i];
    assert_float_equal(agave_tensor_data(kl)[1], want, 1e-5 * want);
    agave_tensor_free(mean);
    agave_tensor_free(ls);
    agave_context_free(ctx);
}

/* The analytic KL against a Monte Carlo estimate: 10^6 draws z ~ q (by
 * agave_gaussian_sample) of log q(z) - log p(z) (by agave_gaussian_logprob, p
 * = N(0, I)), in 3 dimensions. The estimate's standard error is measured from
 * the draws; the test wants agreement within 5 standard errors (a correct
 * implementation fails with probability 6e-7; the seed is fixed). */
static void test_gaussian_kl_monte_carlo(void **state)
{
    (void)state;
    enum { N = 1000000, D = 3 };
    const float m[D] = {0.3f, -0.8f, 1.1f}, l[D] = {-0.5f, 0.2f, -1.2f};
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 12345), AGAVE_OK);
    int dims[2] = {N, D}, one_dims[2] = {1, D};
    agave_tensor *mean, *ls, *zero, *mean1, *ls1, *z, *lq, *lp, *kl;
    assert_int_equal(agave_tensor_create(ctx, 2, dims, &mean), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 2, dims, &ls), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 2, dims, &zero), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 2, one_dims, &mean1), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 2, one_dims, &ls1), AGAVE_OK);
    for (size_t i = 0; i < (size_t)N * D; i++) {
        agave_tensor_data(mean)[i] = m[i % D];
        agave_tensor_data(ls)[i] = l[i % D];
    }
    agave_tensor_copy_in(mean1, m, D);
    agave_tensor_copy_in(ls1, l, D);
    assert_int_equal(agave_gaussian_sample(ctx, mean, ls, &z), AGAVE_OK);
    assert_int_equal(agave_gaussian_logprob(ctx, z, mean, ls, &lq), AGAVE_OK);
    assert_int_equal(agave_gaussian_logprob(ctx, z, zero, zero, &lp), AGAVE_OK);
    assert_int_equal(agave_gaussian_kl(ctx, mean1, ls1, &kl), AGAVE_OK);
    double sum = 0, sum2 = 0;
    for (int n = 0; n < N; n++) {
        double d = (double)agave_tensor_data(lq)[n] - agave_tensor_data(lp)[n];
        sum += d;
        sum2 += d * d;
    }
    double mc = sum / N, se = sqrt((sum2 / N - mc * mc) / N);
    double analytic = agave_tensor_data(kl)[0];
    print_message("KL: analytic %.6f, Monte Carlo %.6f +- %.6f\n", analytic, mc, se);
    assert_true(fabs(mc - analytic) < 5 * se);
    agave_tensor_free(mean);
    agave_tensor_free(ls);
    agave_tensor_free(zero);
    agave_tensor_free(mean1);
    agave_tensor_free(ls1);
    agave_context_free(ctx);
}

/* ======================================================================== */
/* Bounds                                                                    */
/* ======================================================================== */

static void test_iwae_single_sample_is_elbo(void **state)
{
    (void)state;
    const double w[4] = {-3.5, -1e4, 12.25, -0.001};
    double elbo[4], iwae[4];
    assert_int_equal(agave_elbo_from_log_weights(w, 4, 1, elbo), AGAVE_OK);
    assert_int_equal(agave_iwae_from_log_weights(w, 4, 1, iwae), AGAVE_OK);
    for (int i = 0; i < 4; i++) {
        assert_true(elbo[i] == w[i]);
        assert_true(iwae[i] == elbo[i]);
    }
}

static void test_iwae_equal_weights(void **state)
{
    (void)state;
    const double values[4] = {-0.1, -1234.567, -1e4 - 0.3, 7};
    double w[150], elbo, iwae;
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 150; k++)
            w[k] = values[i];
        assert_int_equal(agave_elbo_from_log_weights(w, 1, 150, &elbo), AGAVE_OK);
        assert_int_equal(agave_iwae_from_log_weights(w, 1, 150, &iwae), AGAVE_OK);
        assert_true(elbo == values[i]);
        assert_true(iwae == values[i]);
    }
}

/* Jensen: IWAE >= ELBO on random rows, near 0 and around -1e4 (where exp
 * underflows without the max shift); and the value is log mean exp, computed
 * directly for the rows near 0 and shifted by 1e4 for the others. */
static void test_iwae_jensen_and_value(void **state)
{
    (void)state;
    enum { N = 200, K = 150 };
    double *w = malloc(N * K * sizeof *w), elbo[N], iwae[N];
    test_rng_seed(77);
    for (int i = 0; i < N; i++) {
        double offset = i % 2 ? -1e4 : 0, spread = 0.01 + 3 * test_uniform(0, 1);
        for (int k = 0; k < K; k++)
            w[i * K + k] = offset + test_uniform(-spread, spread);
    }
    assert_int_equal(agave_elbo_from_log_weights(w, N, K, elbo), AGAVE_OK);
    assert_int_equal(agave_iwae_from_log_weights(w, N, K, iwae), AGAVE_OK);
    for (int i = 0; i < N; i++) {
        double offset = i % 2 ? -1e4 : 0, mean = 0, direct = 0;
        for (int k = 0; k < K; k++) {
            mean += w[i * K + k];
            direct += exp(w[i * K + k] - offset);
        }
        mean /= K;
        direct = offset + log(direct / K);
        assert_true(isfinite(iwae[i]));
        assert_true(iwae[i] >= elbo[i]);
        assert_float_equal(elbo[i], mean, 1e-12 * fabs(mean) + 1e-12);
        assert_float_equal(iwae[i], direct, 1e-12 * fabs(direct) + 1e-12);
    }
    free(w);
    /* A zero weight (log w = -inf) is allowed; all zero gives -inf. */
    const double some_zero[2] = {-INFINITY, -2}, all_zero[2] = {-INFINITY, -INFINITY};
    double v;
    assert_int_equal(agave_iwae_from_log_weights(some_zero, 1, 2, &v), AGAVE_OK);
    assert_float_equal(v, -2 - log(2.0), 1e-12);
    assert_int_equal(agave_iwae_from_log_weights(all_zero, 1, 2, &v), AGAVE_OK);
    assert_true(isinf(v) && v < 0);
}

static void test_nats_to_bpd(void **state)
{
    (void)state;
    assert_float_equal(agave_nats_to_bpd(3072 * M_LN2, 3072), 1.0, 1e-15);
    assert_float_equal(agave_nats_to_bpd(2000, 784), 2000 / (784 * log(2.0)), 1e-12);
    assert_true(isnan(agave_nats_to_bpd(1, 0)));
    assert_true(isnan(agave_nats_to_bpd(1, -3)));
    assert_true(isnan(agave_nats_to_bpd(1, NAN)));
}

/* ======================================================================== */
/* Error paths: every public function refuses bad arguments, and the plain-  */
/* buffer ones write nothing then (outputs are filled with a sentinel).      */
/* ======================================================================== */

static void test_errors_aux_image(void **state)
{
    (void)state;
    uint8_t x[64] = {0}, y[64];
    memset(y, 0xA5, sizeof y);
    assert_int_equal(agave_image_pool(NULL, 1, 1, 4, 4, 2, y), AGAVE_ERR_NULL);
    assert_int_equal(agave_image_pool(x, 1, 1, 4, 4, 2, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_image_pool(x, 0, 1, 4, 4, 2, y), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_pool(x, 1, 0, 4, 4, 2, y), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_pool(x, 1, 1, -4, 4, 2, y), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_pool(x, 1, 1, 4, 0, 2, y), AGAVE_ERR_INVALID_ARG);
    for (int s = -1; s <= 8; s++)
        if (s != 1 && s != 2 && s != 4)
            assert_int_equal(agave_image_pool(x, 1, 1, 8, 8, s, y), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_pool(x, 1, 1, 6, 8, 4, y), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_image_pool(x, 1, 1, 8, 6, 4, y), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_image_pool(x, 1, 1, 3, 4, 2, y), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_image_pool(x, INT_MAX, INT_MAX, INT_MAX, INT_MAX, 1, y),
                     AGAVE_ERR_LIMIT);
    assert_int_equal(agave_image_quantize(NULL, 4, 2, y), AGAVE_ERR_NULL);
    assert_int_equal(agave_image_quantize(x, 4, 2, NULL), AGAVE_ERR_NULL);
    const int bad_levels[] = {-2, 0, 1, 3, 6, 100, 255, 257, 512};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++)
        assert_int_equal(agave_image_quantize(x, 4, bad_levels[i], y), AGAVE_ERR_INVALID_ARG);
    for (size_t i = 0; i < sizeof y; i++)
        assert_int_equal(y[i], 0xA5);
}

static void test_errors_dlogistic_logprob(void **state)
{
    (void)state;
    uint8_t y[4] = {0, 1, 2, 255};
    float mean[4] = {0}, ls[4] = {0}, logp[4];
    const float sentinel = -12345.0f;
    for (int i = 0; i < 4; i++)
        logp[i] = sentinel;
    assert_int_equal(agave_dlogistic_logprob(NULL, mean, ls, 4, 256, logp), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_logprob(y, NULL, ls, 4, 256, logp), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_logprob(y, mean, NULL, 4, 256, logp), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_logprob(y, mean, ls, 4, 256, NULL), AGAVE_ERR_NULL);
    const int bad_levels[] = {-256, 0, 1, 3, 48, 255, 257, 512, 1024};
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++)
        assert_int_equal(agave_dlogistic_logprob(y, mean, ls, 4, bad_levels[i], logp),
                         AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dlogistic_logprob(y, mean, ls, SIZE_MAX, 256, logp), AGAVE_ERR_LIMIT);
    for (int i = 0; i < 4; i++)
        assert_true(logp[i] == sentinel);
}

static void test_errors_dmol_logprob(void **state)
{
    (void)state;
    uint8_t x[3 * 4] = {0};
    float params[30 * 4] = {0}, logp[8];
    const float sentinel = -12345.0f;
    for (int i = 0; i < 8; i++)
        logp[i] = sentinel;
    assert_int_equal(agave_dmol_logprob(NULL, params, 1, 3, 2, 2, 3, logp), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_logprob(x, NULL, 1, 3, 2, 2, 3, logp), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_logprob(x, params, 1, 3, 2, 2, 3, NULL), AGAVE_ERR_NULL);
    const int bad_channels[] = {-1, 0, 2, 4};
    for (int i = 0; i < 4; i++)
        assert_int_equal(agave_dmol_logprob(x, params, 1, bad_channels[i], 2, 2, 3, logp),
                         AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_logprob(x, params, 1, 3, 2, 2, 0, logp), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_logprob(x, params, 1, 3, 2, 2, -1, logp), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_logprob(x, params, 1, 3, 2, 2, INT_MAX, logp), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_dmol_logprob(x, params, 0, 3, 2, 2, 3, logp), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_logprob(x, params, 1, 3, -2, 2, 3, logp), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_logprob(x, params, 1, 3, 2, 0, 3, logp), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_logprob(x, params, INT_MAX, 3, INT_MAX, INT_MAX, 3, logp),
                     AGAVE_ERR_LIMIT);
    for (int i = 0; i < 8; i++)
        assert_true(logp[i] == sentinel);
}

static void test_errors_dmol_sample(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    float params[30 * 4] = {0};
    uint8_t x[12];
    memset(x, 0xA5, sizeof x);
    assert_int_equal(agave_dmol_sample(NULL, params, 1, 3, 2, 2, 3, x), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_sample(ctx, NULL, 1, 3, 2, 2, 3, x), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, 2, 2, 3, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 2, 2, 2, 3, x), AGAVE_ERR_INVALID_ARG);
    assert_true(strstr(agave_context_last_error(ctx), "channels") != NULL);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, 2, 2, 0, x), AGAVE_ERR_INVALID_ARG);
    assert_true(strstr(agave_context_last_error(ctx), "n_mix") != NULL);
    assert_int_equal(agave_dmol_sample(ctx, params, 0, 3, 2, 2, 3, x), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_sample(ctx, params, 1, 3, 2, -1, 3, x), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_sample(ctx, params, INT_MAX, 3, INT_MAX, 2, 3, x),
                     AGAVE_ERR_LIMIT);
    for (size_t i = 0; i < sizeof x; i++)
        assert_int_equal(x[i], 0xA5);
    agave_context_free(ctx);
}

static void test_errors_tape_losses(void **state)
{
    (void)state;
    agave_context *ctx, *other;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    assert_int_equal(agave_context_create(&other, 1), AGAVE_OK);
    int d4[4] = {2, 3, 2, 2}, d3 = 3, d4b[4] = {2, 3, 2, 3}, dp[4] = {2, 9, 2, 2};
    agave_tensor *mean, *ls, *foreign, *mean_b, *params, *params3, *out = NULL;
    assert_int_equal(agave_tensor_create(ctx, 4, d4, &mean), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 1, &d3, &ls), AGAVE_OK);
    assert_int_equal(agave_tensor_create(other, 4, d4, &foreign), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 4, d4b, &mean_b), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 4, dp, &params), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 3, dp, &params3), AGAVE_OK);
    uint8_t y[2 * 3 * 2 * 3] = {0};

    /* dlogistic_nll */
    assert_int_equal(agave_dlogistic_nll(NULL, y, mean, ls, 256, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_nll(ctx, y, mean, ls, 256, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_nll(ctx, NULL, mean, ls, 256, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_nll(ctx, y, NULL, ls, 256, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_nll(ctx, y, mean, NULL, 256, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dlogistic_nll(ctx, y, mean, ls, 3, &out), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dlogistic_nll(ctx, y, mean, ls, 512, &out), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dlogistic_nll(ctx, y, mean, mean, 256, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_dlogistic_nll(ctx, y, ls, ls, 256, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_dlogistic_nll(ctx, y, foreign, ls, 256, &out), AGAVE_ERR_CONTEXT);
    assert_true(strlen(agave_context_last_error(ctx)) > 0);
    assert_null(out);

    /* dmol_nll */
    assert_int_equal(agave_dmol_nll(NULL, y, 1, params, 3, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_nll(ctx, NULL, 1, params, 3, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_nll(ctx, y, 1, NULL, 3, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_nll(ctx, y, 1, params, 3, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_dmol_nll(ctx, y, 2, params, 3, &out), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_nll(ctx, y, 1, params, 0, &out), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dmol_nll(ctx, y, 1, params, 2, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_dmol_nll(ctx, y, 3, params, 3, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_dmol_nll(ctx, y, 1, params3, 3, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_dmol_nll(ctx, y, 1, foreign, 1, &out), AGAVE_ERR_CONTEXT);
    assert_null(out);

    /* Gaussian terms */
    assert_int_equal(agave_gaussian_sample(NULL, mean, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_sample(ctx, NULL, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_sample(ctx, mean, NULL, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_sample(ctx, mean, mean, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_sample(ctx, mean, mean_b, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_gaussian_sample(ctx, mean, foreign, &out), AGAVE_ERR_CONTEXT);
    assert_int_equal(agave_gaussian_logprob(NULL, mean, mean, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_logprob(ctx, NULL, mean, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_logprob(ctx, mean, NULL, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_logprob(ctx, mean, mean, NULL, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_logprob(ctx, mean, mean, mean, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_logprob(ctx, mean_b, mean, mean, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_gaussian_logprob(ctx, mean, mean, mean_b, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_gaussian_logprob(ctx, foreign, mean, mean, &out), AGAVE_ERR_CONTEXT);
    assert_int_equal(agave_gaussian_kl(NULL, mean, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_kl(ctx, NULL, mean, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_kl(ctx, mean, NULL, &out), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_kl(ctx, mean, mean, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_gaussian_kl(ctx, mean_b, mean, &out), AGAVE_ERR_SHAPE);
    assert_int_equal(agave_gaussian_kl(ctx, mean, foreign, &out), AGAVE_ERR_CONTEXT);
    assert_null(out);
    assert_int_equal(agave_tape_size(ctx), 0);

    agave_tensor_free(mean);
    agave_tensor_free(ls);
    agave_tensor_free(foreign);
    agave_tensor_free(mean_b);
    agave_tensor_free(params);
    agave_tensor_free(params3);
    agave_context_free(other);
    agave_context_free(ctx);
}

static void test_errors_bounds(void **state)
{
    (void)state;
    const double w[4] = {-1, -2, -3, -4};
    double out[4] = {7, 7, 7, 7};
    agave_status (*fns[2])(const double *, int, int, double *) = {agave_elbo_from_log_weights,
                                                                 agave_iwae_from_log_weights};
    for (int f = 0; f < 2; f++) {
        assert_int_equal(fns[f](NULL, 2, 2, out), AGAVE_ERR_NULL);
        assert_int_equal(fns[f](w, 2, 2, NULL), AGAVE_ERR_NULL);
        assert_int_equal(fns[f](w, 0, 2, out), AGAVE_ERR_INVALID_ARG);
        assert_int_equal(fns[f](w, 2, 0, out), AGAVE_ERR_INVALID_ARG);
        assert_int_equal(fns[f](w, -1, 2, out), AGAVE_ERR_INVALID_ARG);
        assert_int_equal(fns[f](w, 2, -5, out), AGAVE_ERR_INVALID_ARG);
    }
    for (int i = 0; i < 4; i++)
        assert_true(out[i] == 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_pool_rounds_halves_up),
        cmocka_unit_test(test_image_pool_random),
        cmocka_unit_test(test_image_quantize),
        cmocka_unit_test(test_dlogistic_levels_sum_to_one),
        cmocka_unit_test(test_dlogistic_far_tail),
        cmocka_unit_test(test_dlogistic_reference_values),
        cmocka_unit_test(test_dlogistic_nll_matches_logprob),
        cmocka_unit_test(test_dmol_reference_values),
        cmocka_unit_test(test_dmol_matches_double_reimplementation),
        cmocka_unit_test(test_dmol_c1_sums_to_one),
        cmocka_unit_test(test_dmol_c3_sums_to_one),
        cmocka_unit_test(test_dmol_prepared_matches_pixel_kernel),
        cmocka_unit_test(test_dmol_nll_matches_logprob),
        cmocka_unit_test(test_dmol_sample_sharp_component),
        cmocka_unit_test(test_net_to_pixel),
        cmocka_unit_test(test_dmol_sample_non_finite),
        cmocka_unit_test(test_dmol_sample_histogram_c1),
        cmocka_unit_test(test_dmol_sample_histogram_c3),
        cmocka_unit_test(test_gaussian_known_values),
        cmocka_unit_test(test_gaussian_kl_monte_carlo),
        cmocka_unit_test(test_iwae_single_sample_is_elbo),
        cmocka_unit_test(test_iwae_equal_weights),
        cmocka_unit_test(test_iwae_jensen_and_value),
        cmocka_unit_test(test_nats_to_bpd),
        cmocka_unit_test(test_errors_aux_image),
        cmocka_unit_test(test_errors_dlogistic_logprob),
        cmocka_unit_test(test_errors_dmol_logprob),
        cmocka_unit_test(test_errors_dmol_sample),
        cmocka_unit_test(test_errors_tape_losses),
        cmocka_unit_test(test_errors_bounds),
    };
    return cmocka_run_group_tests_name("loss", tests, NULL, NULL);
}
