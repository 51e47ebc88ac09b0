/* The cached sampler (lib/model/sample_cached.c) against the naive one on
 * the tiny configuration: mixture parameters equal to pixelcnn_forward's at
 * every position, the same images for the same seed, and the checks' own
 * ability to fail.
 *
 * Tolerance for parameters: |cached - naive| <= 1e-4 * max(1, |naive|), i.e.
 * 1e-4 absolute below 1 and relative above. The two differ only by float
 * rounding (other GEMM shapes and summation orders, another exp): below 1e-6
 * here, while a wrong cache moves parameters by ~1e-2 or more. Checked by
 * planting bugs: the down-pass ul block fed the up-pass u as its short-cut
 * (0.039), the ul levels updated coarse first so that level 1 read a stale
 * ring row (0.67, with the NaN poison off), a lane reading another lane's
 * pixels (1.2, only the tests with lanes see it), a dot-product row written
 * to the wrong place; each failed these tests. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loss/loss.h"
#include "model/model.h"
#include "model/sample_cached.h"
#include "support/gradcheck.h"

#define TOL 1e-4

/* ---- helpers --------------------------------------------------------------------- */
/* Every structural field is explicit: the tiny configuration's values are
 * R = 1, Rv = 1, T = 0, M = 2, W = 8. */
typedef struct variant {
    int C, s, R, Rv, T, M, W;
    agave_mode mode;
} variant;

static agave_config tiny(variant v)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.C = v.C, cfg.s = v.s, cfg.R = v.R, cfg.Rv = v.Rv, cfg.T = v.T, cfg.M = v.M;
    cfg.W = v.W, cfg.mode = v.mode;
    return cfg;
}

static uint8_t *random_bytes(size_t n, unsigned seed)
{
    uint8_t *x = malloc(n);
    test_rng_seed(seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (uint8_t)test_uniform(0, 255.99);
    return x;
}

/* A model after data-dependent initialisation on random images, every
 * parameter then moved by ~10% of its tensor's scale so that nothing is
 * symmetric (biases that the initialisation set to match, gains of 1, ...),
 * in evaluation mode. */
static agave_model *perturbed_model(agave_context *ctx, const agave_config *cfg)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W;
    uint8_t *x = random_bytes(4 * D, 11);
    agave_model *m = NULL;
    assert_int_equal(agave_model_create(ctx, cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 4), AGAVE_OK);
    free(x);
    test_rng_seed(12);
    for (int i = 0; i < m->n_params; i++) {
        agave_tensor *t = m->params[i];
        float *d = agave_tensor_data(t);
        size_t nt = agave_tensor_numel(t);
        double rms = 0;
        for (size_t e = 0; e < nt; e++)
            rms += (double)d[e] * d[e] / (double)nt;
        for (size_t e = 0; e < nt; e++)
            d[e] += (float)((0.1 * sqrt(rms) + 0.01) * test_uniform(-1, 1));
    }
    model_set_training(m, 0);
    return m;
}

/* f(z)-like conditioning input (n,C,H/s,W/s), or NULL for mode pixelcnn. */
static float *random_f(const agave_config *cfg, int n)
{
    if (cfg->mode == AGAVE_MODE_PIXELCNN)
        return NULL;
    size_t count = (size_t)n * cfg->C * (cfg->H / cfg->s) * (cfg->W / cfg->s);
    float *f = malloc(count * sizeof(float));
    test_rng_seed(13);
    for (size_t i = 0; i < count; i++)
        f[i] = (float)test_uniform(-0.9, 0.9);
    return f;
}

/* The naive forward: mixture parameters (n,P,H,W) of x, copied out. */
static float *naive_params(agave_model *m, const uint8_t *x, int n, const float *f)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    agave_tape_reset(ctx);
    agave_tensor *xt = image_tensor(ctx, x, n, c->C, c->H, c->W), *ft = NULL, *params;
    assert_non_null(xt);
    if (f) {
        int dims[4] = {n, c->C, c->H / c->s, c->W / c->s};
        ft = tensor_new_arena(ctx, 4, dims);
        assert_non_null(ft);
        memcpy(ft->data, f, ft->numel * sizeof(float));
    }
    assert_int_equal(pixelcnn_forward(m, xt, ft, &params), AGAVE_OK);
    float *out = malloc(params->numel * sizeof(float));
    memcpy(out, params->data, params->numel * sizeof(float));
    agave_tape_reset(ctx);
    return out;
}

/* Worst |cached - naive| / max(1, |naive|) over positions 0..last (raster)
 * of every image; cached is (H*W, n, P) as the steps returned it. */
static double worst_error(const agave_config *c, int n, const float *cached, const float *naive,
                          int last, int *where)
{
    int P = dmol_param_count(c->C, c->M), plane = c->H * c->W;
    double worst = 0;
    *where = -1;
    for (int p = 0; p <= last; p++)
        for (int i = 0; i < n; i++)
            for (int k = 0; k < P; k++) {
                double a = cached[((size_t)p * n + i) * P + k];
                double b = naive[((size_t)i * P + k) * plane + p];
                double e = fabs(a - b) / fmax(1.0, fabs(b));
                if (!(e <= worst)) {   /* NaN counts as the worst */
                    worst = isnan(e) ? INFINITY : e;
                    *where = p;
                }
            }
    return worst;
}

/* Steps the cached sampler through pixels 0..last; with draw set, samples
 * each pixel into x as sample_pixels_cached does (from rng), else replays x.
 * Returns the parameters of every step, (H*W, n, P). */
static float *cached_params(agave_model *m, int n, const float *f, uint8_t *x, int last,
                            agave_rng *rng)
{
    const agave_config *c = &m->cfg;
    int P = dmol_param_count(c->C, c->M), plane = c->H * c->W;
    float *all = calloc((size_t)plane * n * P, sizeof(float));
    cached_sampler *s;
    assert_int_equal(cached_sampler_create(m, n, f != NULL, &s), AGAVE_OK);
    assert_int_equal(cached_sampler_begin(s, f, x), AGAVE_OK);
    for (int p = 0; p <= last; p++) {
        const float *params;
        assert_int_equal(cached_sampler_step(s, p / c->W, p % c->W, &params), AGAVE_OK);
        memcpy(all + (size_t)p * n * P, params, (size_t)n * P * sizeof(float));
        for (int i = 0; rng && i < n; i++)
            dmol_pixel_sample(params + (size_t)i * P, 1, c->C, c->M, rng,
                              x + (size_t)i * c->C * plane + p, (size_t)plane);
    }
    cached_sampler_free(s);
    return all;
}

#define AGAVE AGAVE_MODE_AGAVE
#define PIXELCNN AGAVE_MODE_PIXELCNN
static const variant variants[] = {
    /* C  s  R Rv  T  M   W  mode */
    {1, 1, 1, 1, 0, 2, 8, AGAVE},    {3, 1, 1, 1, 0, 2, 8, AGAVE},
    {1, 2, 1, 1, 0, 2, 8, AGAVE},    {3, 2, 1, 1, 0, 2, 8, AGAVE},
    {1, 1, 1, 1, 0, 2, 8, PIXELCNN}, {3, 1, 1, 1, 0, 2, 8, PIXELCNN},
    {1, 2, 1, 1, 0, 2, 8, PIXELCNN}, {3, 2, 1, 1, 0, 2, 8, PIXELCNN},
    /* more blocks per stage (the stack's order) and a non-square image */
    {3, 2, 2, 1, 0, 2, 12, AGAVE},   {1, 1, 3, 1, 0, 2, 12, PIXELCNN},
    /* the edges the configuration allows: R = 0 (no gated blocks: level 2's
     * down pass is empty and the up stack's top feeds the deconvolution),
     * Rv = 0, s = 4 (no decoder upsampling), IAF steps (reconstructions
     * sample z from the flow), one mixture component */
    {1, 1, 0, 1, 0, 2, 8, AGAVE},    {3, 4, 0, 0, 1, 2, 8, AGAVE},
    {3, 1, 0, 1, 0, 2, 8, PIXELCNN}, {1, 4, 1, 0, 2, 1, 8, AGAVE},
    {3, 2, 1, 0, 2, 1, 8, AGAVE},    {1, 1, 2, 0, 1, 1, 12, PIXELCNN},
};
#undef AGAVE
#undef PIXELCNN
#define N_VARIANTS (int)(sizeof variants / sizeof *variants)

static const char *describe(variant v)
{
    static char buf[96];
    snprintf(buf, sizeof buf, "C=%d s=%d R=%d Rv=%d T=%d M=%d W=%d %s", v.C, v.s, v.R, v.Rv, v.T,
             v.M, v.W, v.mode == AGAVE_MODE_AGAVE ? "agave" : "pixelcnn");
    return buf;
}

/* ---- parameters at every position ---------------------------------------------------- */
/* A whole random image replayed through the cached sampler: every position's
 * parameters against one naive forward of the same image. threads > 1 splits
 * the images into lanes that step in parallel. */
static void check_whole_image(variant var, int n, int threads, unsigned seed)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 2), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    agave_config cfg = tiny(var);
    agave_model *m = perturbed_model(ctx, &cfg);
    int plane = cfg.H * cfg.W;
    uint8_t *x = random_bytes((size_t)n * cfg.C * plane, seed);
    float *f = random_f(&cfg, n);
    float *naive = naive_params(m, x, n, f);
    float *cached = cached_params(m, n, f, x, plane - 1, NULL);
    int where;
    double e = worst_error(&cfg, n, cached, naive, plane - 1, &where);
    print_message("%-40s whole image, %d images, %d threads: worst error %.2e\n", describe(var),
                  n, threads, e);
    if (!(e <= TOL))
        fail_msg("%s: parameters differ by %.3g at pixel %d", describe(var), e, where);
    free(cached), free(naive), free(f), free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_params_match_on_a_whole_image(void **state)
{
    (void)state;
    for (int v = 0; v < N_VARIANTS; v++)
        check_whole_image(variants[v], 3, 1, 21 + v);
}

/* Other batch shapes: 6 images in one lane (a ul layer's rows as dot
 * products, 4 + 1 + 1), 12 (through sgemm), and lanes: 5 images over 2 and 3
 * threads (lanes of unequal sizes). */
static void test_params_match_other_batches(void **state)
{
    (void)state;
    check_whole_image(variants[0], 6, 1, 60);
    check_whole_image(variants[3], 12, 1, 61);
    check_whole_image(variants[1], 5, 2, 62);
    check_whole_image(variants[8], 5, 3, 63);
}

/* Lanes multiply alike: on 2 threads, the second lane's images, copies of
 * the first lane's, get the same parameters bit for bit (a lane's own
 * context multiplies inside the lanes' team; its GEMM buffer is its slot 0,
 * not the thread's number, which once sent lane 1's products to OpenBLAS). */
static void test_lanes_multiply_alike(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 2), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
    agave_config cfg = tiny(variants[1]);
    agave_model *m = perturbed_model(ctx, &cfg);
    const int half = 2, n = 2 * half, plane = cfg.H * cfg.W, P = dmol_param_count(cfg.C, cfg.M);
    const size_t img = (size_t)cfg.C * plane, fimg = img / ((size_t)cfg.s * cfg.s);
    uint8_t *x = random_bytes((size_t)n * img, 71);
    memcpy(x + half * img, x, half * img);
    float *f = random_f(&cfg, n);
    memcpy(f + half * fimg, f, half * fimg * sizeof *f);
    float *cached = cached_params(m, n, f, x, plane - 1, NULL);
    for (int p = 0; p < plane; p++) {
        const float *at = cached + (size_t)p * n * P;
        if (memcmp(at, at + (size_t)half * P, (size_t)half * P * sizeof *at))
            fail_msg("pixel %d: the lanes' parameters differ", p);
    }
    free(cached), free(f), free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* The cached sampler draws the first `last` pixels itself (the rest of the
 * buffer is noise it must never read); its parameters at pixels 0..last
 * against a naive forward of that partially generated image. */
static void test_params_match_while_sampling(void **state)
{
    (void)state;
    for (int v = 0; v < N_VARIANTS; v++) {
        agave_context *ctx;
        assert_int_equal(agave_context_create(&ctx, 2), AGAVE_OK);
        agave_config cfg = tiny(variants[v]);
        agave_model *m = perturbed_model(ctx, &cfg);
        int n = 2, plane = cfg.H * cfg.W, last = plane / 2 + 5;
        uint8_t *x = random_bytes((size_t)n * cfg.C * plane, 31 + v);
        float *f = random_f(&cfg, n);
        agave_rng rng;
        rng_seed(&rng, 77);
        float *cached = cached_params(m, n, f, x, last, &rng);
        float *naive = naive_params(m, x, n, f);
        int where;
        double e = worst_error(&cfg, n, cached, naive, last, &where);
        print_message("%-40s partial image: worst error %.2e\n", describe(variants[v]), e);
        if (!(e <= TOL))
            fail_msg("%s: parameters differ by %.3g at pixel %d", describe(variants[v]), e, where);
        free(cached), free(naive), free(f), free(x);
        agave_model_free(m);
        agave_context_free(ctx);
    }
}

/* The comparison itself can fail: the cached parameters of image A against
 * the naive ones of an image B that differs from A in one pixel p only must
 * agree up to p (causality) and differ after it. */
static void test_comparison_detects_a_different_image(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 2), AGAVE_OK);
    variant v = {3, 1, 1, 1, 0, 2, 8, AGAVE_MODE_AGAVE};
    agave_config cfg = tiny(v);
    agave_model *m = perturbed_model(ctx, &cfg);
    int n = 2, plane = cfg.H * cfg.W, p = 27;
    uint8_t *x = random_bytes((size_t)n * cfg.C * plane, 41);
    float *f = random_f(&cfg, n);
    float *cached = cached_params(m, n, f, x, plane - 1, NULL);
    x[p] ^= 0x80;   /* image 0, channel 0, pixel p */
    float *naive = naive_params(m, x, n, f);
    int where;
    assert_true(worst_error(&cfg, n, cached, naive, p, &where) <= TOL);
    double e = worst_error(&cfg, n, cached, naive, plane - 1, &where);
    if (!(e > 100 * TOL))
        fail_msg("a changed pixel moved the parameters by only %.3g", e);
    assert_true(where > p);
    free(cached), free(naive), free(f), free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* ---- identical images --------------------------------------------------------------- */
static void check_same_samples(variant v, int n, uint64_t seed, int threads)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 2), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
    agave_config cfg = tiny(v);
    agave_model *m = perturbed_model(ctx, &cfg);
    size_t D = (size_t)cfg.C * cfg.H * cfg.W, Dy = D / (size_t)(cfg.s * cfg.s);
    uint8_t *a = malloc(n * D), *b = malloc(n * D), *d = malloc(n * D);
    uint8_t *fa = malloc(n * Dy), *fb = malloc(n * Dy);
    assert_int_equal(model_sample_with(m, MODEL_SAMPLER_NAIVE, NULL, n, seed, fa, a), AGAVE_OK);
    assert_int_equal(model_sample_with(m, MODEL_SAMPLER_CACHED, NULL, n, seed, fb, b), AGAVE_OK);
    assert_memory_equal(a, b, n * D);
    if (cfg.mode != AGAVE_MODE_PIXELCNN)
        assert_memory_equal(fa, fb, n * Dy);
    /* the public entry point is the cached sampler */
    assert_int_equal(agave_model_sample(m, n, seed, NULL, d), AGAVE_OK);
    assert_memory_equal(b, d, n * D);
    /* and another seed gives other images (the comparison can fail) */
    assert_int_equal(model_sample_with(m, MODEL_SAMPLER_CACHED, NULL, n, seed + 1, NULL, d),
                     AGAVE_OK);
    assert_memory_not_equal(b, d, n * D);
    if (cfg.mode != AGAVE_MODE_PIXELCNN) {
        uint8_t *x = random_bytes(n * D, 51);
        assert_int_equal(model_sample_with(m, MODEL_SAMPLER_NAIVE, x, n, seed, fa, a), AGAVE_OK);
        assert_int_equal(model_sample_with(m, MODEL_SAMPLER_CACHED, x, n, seed, fb, b), AGAVE_OK);
        assert_memory_equal(a, b, n * D);
        assert_memory_equal(fa, fb, n * Dy);
        assert_int_equal(agave_model_reconstruct(m, x, n, seed, NULL, d), AGAVE_OK);
        assert_memory_equal(b, d, n * D);
        free(x);
    }
    free(a), free(b), free(d), free(fa), free(fb);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_same_images_as_naive(void **state)
{
    (void)state;
    for (int v = 0; v < N_VARIANTS; v++)
        check_same_samples(variants[v], 3, 1000 + (uint64_t)v, 1);
}

/* 17 images: two chunks of the sampling frame, each with its own caches,
 * the first split into two lanes. */
static void test_same_images_across_chunks(void **state)
{
    (void)state;
    variant v = {3, 2, 1, 1, 0, 2, 8, AGAVE_MODE_AGAVE};
    check_same_samples(v, 17, 7, 2);
}

/* ---- non-finite networks ------------------------------------------------------------ */
/* A model whose every parameter is NaN (what a diverged run holds in memory;
 * the loader refuses such checkpoints) samples, reconstructs and decodes into
 * defined pixels: all 0, since NaN maps to 0. Casting NaN to uint8_t, as
 * f(z)'s conversion once did, is undefined behaviour: it happened to give 0
 * on x86-64, so the plain build cannot tell, and make sanitize reports it. */
static void test_non_finite_network_gives_defined_pixels(void **state)
{
    (void)state;
    static const agave_mode modes[] = {AGAVE_MODE_AGAVE, AGAVE_MODE_VAE};
    for (int k = 0; k < 2; k++) {
        agave_context *ctx;
        assert_int_equal(agave_context_create(&ctx, 2), AGAVE_OK);
        variant v = {3, 2, 1, 1, 1, 2, 8, modes[k]};
        agave_config cfg = tiny(v);
        agave_model *m = perturbed_model(ctx, &cfg);
        for (int i = 0; i < m->n_params; i++)
            for (size_t e = 0; e < m->params[i]->numel; e++)
                m->params[i]->data[e] = NAN;
        assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
        enum { N = 2 };
        size_t D = (size_t)cfg.C * cfg.H * cfg.W, Dy = D / (size_t)(cfg.s * cfg.s);
        uint8_t *x = malloc(N * D), *fz = malloc(N * Dy), *in = random_bytes(N * D, 81);
        memset(x, 7, N * D), memset(fz, 7, N * Dy);
        assert_int_equal(agave_model_sample(m, N, 5, fz, x), AGAVE_OK);
        for (size_t i = 0; i < N * D; i++)
            assert_int_equal(x[i], 0);
        for (size_t i = 0; i < N * Dy; i++)
            assert_int_equal(fz[i], 0);
        memset(x, 7, N * D), memset(fz, 7, N * Dy);
        assert_int_equal(agave_model_reconstruct(m, in, N, 5, fz, x), AGAVE_OK);
        for (size_t i = 0; i < N * D; i++)
            assert_int_equal(x[i], 0);
        for (size_t i = 0; i < N * Dy; i++)
            assert_int_equal(fz[i], 0);
        free(x), free(fz), free(in);
        agave_model_free(m);
        agave_context_free(ctx);
    }
}

/* ---- misuse ------------------------------------------------------------------------- */
static void test_steps_in_raster_order_only(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    variant v = {1, 1, 1, 1, 0, 2, 8, AGAVE_MODE_PIXELCNN};
    agave_config cfg = tiny(v);
    agave_model *m = perturbed_model(ctx, &cfg);
    uint8_t x[64] = {0};
    const float *params;
    cached_sampler *s;
    assert_int_equal(cached_sampler_create(m, 1, 0, &s), AGAVE_OK);
    assert_int_equal(cached_sampler_step(s, 0, 0, &params), AGAVE_ERR_STATE);   /* no begin */
    assert_int_equal(cached_sampler_begin(s, NULL, x), AGAVE_OK);
    assert_int_equal(cached_sampler_step(s, 0, 1, &params), AGAVE_ERR_STATE);
    assert_int_equal(cached_sampler_step(s, 0, 0, &params), AGAVE_OK);
    assert_int_equal(cached_sampler_step(s, 0, 0, &params), AGAVE_ERR_STATE);
    assert_int_equal(cached_sampler_step(s, 0, 1, &params), AGAVE_OK);
    assert_int_equal(cached_sampler_step(s, 8, 0, &params), AGAVE_ERR_STATE);
    cached_sampler_free(s);
    agave_model_free(m);
    agave_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_match_on_a_whole_image),
        cmocka_unit_test(test_params_match_other_batches),
        cmocka_unit_test(test_lanes_multiply_alike),
        cmocka_unit_test(test_params_match_while_sampling),
        cmocka_unit_test(test_comparison_detects_a_different_image),
        cmocka_unit_test(test_same_images_as_naive),
        cmocka_unit_test(test_same_images_across_chunks),
        cmocka_unit_test(test_non_finite_network_gives_defined_pixels),
        cmocka_unit_test(test_steps_in_raster_order_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
