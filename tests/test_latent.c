/* Latent codes: agave_model_encode, agave_model_decode, agave_model_latent_shape.
 *
 * Encoding is checked against a second route through the training code:
 * vae_posterior_sample (the reparameterised sample training draws) with the
 * log standard deviation pushed to -200, where exp() is 0 in float and the
 * sample is the mean itself, then carried through the IAF steps by the same
 * code training uses. Decoding is checked against agave_model_sample: the
 * prior z that sampling draws from its seed, decoded, must give the same
 * f(z) bit for bit. Both use the averaged weights (checked by training a few
 * steps, so that the average differs from the raw parameters).
 *
 * Codes computed on batches of other sizes (encode works in chunks of 16)
 * differ in the last bits: the GEMMs block other shapes. Tolerance 1e-5
 * relative (1e-5 absolute below 1); the differences seen are below 1e-7,
 * while skipping the IAF step, taking the raw weights or the log standard
 * deviation for the mean moves codes by 1e-3 or more. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"
#include "support/support.h"

#define N_IMAGES 20
#define TOL 1e-5

static void assert_codes_near(const float *got, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - (double)want[i]) <=
              TOL * fmax(1.0, fabs((double)want[i]))))
            fail_msg("%s: z[%zu] = %.9g, expected %.9g", what, i, (double)got[i],
                     (double)want[i]);
}

static uint8_t *images(int n, int C)
{
    uint8_t *x = malloc((size_t)n * C * 64);
    assert_non_null(x);
    for (int i = 0; i < n * C * 64; i++)
        x[i] = (uint8_t)((i * 37 + (i / 64) * 53 + (i % 8) * 11) % 256);
    return x;
}

/* A tiny model trained 3 steps: its average is not its raw parameters. */
static agave_model *trained(agave_context *ctx, int C, int T, int s, agave_mode mode)
{
    agave_config cfg = support_tiny_config(C, T, s, 256, mode);
    agave_model *m = NULL;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    uint8_t *x = images(16, C);
    agave_step_stats st = {.struct_size = sizeof st};
    for (int i = 0; i < 3; i++)
        assert_int_equal(agave_model_train_step(m, x, 16, &st), AGAVE_OK);
    free(x);
    return m;
}

/* z by the training path with no noise: vae_posterior_sample at log_std -200. */
static void reference_z(agave_model *m, const uint8_t *x, int n, float *z)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    agave_rng saved = ctx->rng;
    agave_tape_set_recording(ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    agave_tape_reset(ctx);
    agave_tensor *xt = image_tensor(ctx, x, n, c->C, c->H, c->W);
    agave_tensor *mean, *log_std, *context, *zt, *log_q, *log_p;
    assert_int_equal(vae_encode(m, xt, &mean, &log_std, &context), AGAVE_OK);
    agave_tensor_fill(log_std, -200.0f);
    assert_int_equal(vae_posterior_sample(m, mean, log_std, context, &zt, &log_q, &log_p),
                     AGAVE_OK);
    memcpy(z, zt->data, zt->numel * sizeof(float));
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(ctx, 1);
    agave_tape_reset(ctx);
    ctx->rng = saved;
}

static void check_encode(int T)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 7), AGAVE_OK);
    agave_model *m = trained(ctx, 1, T, 1, AGAVE_MODE_AGAVE);
    int Z, h, w;
    assert_int_equal(agave_model_latent_shape(m, &Z, &h, &w), AGAVE_OK);
    assert_int_equal(Z, m->cfg.Z);
    assert_int_equal(h * 10 + w, 22);   /* 8 / 4 = 2 */
    size_t dz = (size_t)Z * h * w;
    uint8_t *x = images(N_IMAGES, 1);
    float *z = malloc(N_IMAGES * dz * sizeof(float)), *ref = malloc(N_IMAGES * dz * sizeof(float));
    float *again = malloc(N_IMAGES * dz * sizeof(float));
    agave_rng before = ctx->rng;
    assert_int_equal(agave_model_encode(m, x, N_IMAGES, z), AGAVE_OK);
    assert_memory_equal(&ctx->rng, &before, sizeof before);   /* no draw, nothing moved */
    reference_z(m, x, N_IMAGES, ref);
    assert_codes_near(z, ref, N_IMAGES * dz, T ? "encode (IAF)" : "encode");
    /* Image by image, the same codes: images do not affect each other. */
    for (int i = 0; i < N_IMAGES; i++)
        assert_int_equal(agave_model_encode(m, x + i * 64, 1, again + i * dz), AGAVE_OK);
    assert_codes_near(again, z, N_IMAGES * dz, "one image at a time");
    /* The raw weights give another code, which the reference matches too. */
    assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
    assert_int_equal(agave_model_encode(m, x, N_IMAGES, again), AGAVE_OK);
    double largest = 0;
    for (size_t i = 0; i < N_IMAGES * dz; i++)
        largest = fmax(largest, fabs((double)again[i] - (double)z[i]));
    assert_true(largest > 1e-3);
    reference_z(m, x, N_IMAGES, ref);
    assert_codes_near(again, ref, N_IMAGES * dz, "encode, raw weights");
    free(x), free(z), free(ref), free(again);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_encode_is_the_noise_free_posterior(void **state)
{
    (void)state;
    check_encode(0);
}

static void test_encode_with_iaf(void **state)
{
    (void)state;
    check_encode(1);
}

/* The z agave_model_sample draws from seed: N(0, 1) from the context's
 * generator seeded by seed, chunk after chunk (with no PixelCNN sample asked
 * for, nothing else is drawn in between). */
static void prior_z(agave_model *m, int n, uint64_t seed, float *z)
{
    agave_rng saved = m->ctx->rng;
    rng_seed(&m->ctx->rng, seed);
    size_t count = (size_t)n * m->cfg.Z * (m->cfg.H / 4) * (m->cfg.W / 4);
    for (size_t i = 0; i < count; i++)
        z[i] = rng_normal(&m->ctx->rng);
    m->ctx->rng = saved;
}

static void test_decode_matches_sampling(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 3), AGAVE_OK);
    agave_model *m = trained(ctx, 3, 0, 2, AGAVE_MODE_AGAVE);
    const int n = N_IMAGES;   /* two chunks of the sampler */
    size_t dz = (size_t)m->cfg.Z * 4, D = 3 * 64, Dy = D / 4;
    float *z = malloc(n * dz * sizeof(float));
    uint8_t *fz = malloc(n * Dy), *fz_sample = malloc(n * Dy), *x = malloc(n * D),
            *x2 = malloc(n * D), *x3 = malloc(n * D);
    prior_z(m, n, 11, z);
    assert_int_equal(agave_model_sample(m, n, 11, fz_sample, NULL), AGAVE_OK);
    agave_rng before = ctx->rng;
    assert_int_equal(agave_model_decode(m, z, n, 5, fz, x), AGAVE_OK);
    assert_memory_equal(&ctx->rng, &before, sizeof before);
    assert_memory_equal(fz, fz_sample, n * Dy);
    /* The PixelCNN's draws: the same for the same seed, others for another. */
    assert_int_equal(agave_model_decode(m, z, n, 5, NULL, x2), AGAVE_OK);
    assert_memory_equal(x, x2, n * D);
    assert_int_equal(agave_model_decode(m, z, n, 6, NULL, x3), AGAVE_OK);
    assert_true(memcmp(x, x3, n * D) != 0);
    /* Another z, another f(z). */
    z[0] += 3.0f;
    assert_int_equal(agave_model_decode(m, z, 1, 5, fz_sample, NULL), AGAVE_OK);
    assert_true(memcmp(fz, fz_sample, Dy) != 0);
    free(z), free(fz), free(fz_sample), free(x), free(x2), free(x3);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* Mode vae: x is f(z) upsampled by s (nearest neighbour), as in sampling. */
static void test_decode_in_mode_vae(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 4), AGAVE_OK);
    agave_model *m = trained(ctx, 1, 0, 2, AGAVE_MODE_VAE);
    uint8_t *x_in = images(2, 1), fz[2 * 16], x[2 * 64];
    float z[2 * 4 * 4];
    assert_true(m->cfg.Z * 4 <= 16);
    assert_int_equal(agave_model_encode(m, x_in, 2, z), AGAVE_OK);
    assert_int_equal(agave_model_decode(m, z, 2, 1, fz, x), AGAVE_OK);
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++)
                assert_int_equal(x[i * 64 + r * 8 + c], fz[i * 16 + (r / 2) * 4 + c / 2]);
    free(x_in);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_latent_errors(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 5), AGAVE_OK);
    agave_model *m = trained(ctx, 1, 0, 1, AGAVE_MODE_AGAVE);
    uint8_t x[64] = {0};
    float z[64] = {0};
    assert_int_equal(agave_model_encode(m, x, 0, z), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_model_encode(m, NULL, 1, z), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_encode(m, x, 1, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_encode(NULL, x, 1, z), AGAVE_ERR_NULL);
    z[3] = NAN;
    assert_int_equal(agave_model_decode(m, z, 1, 1, NULL, NULL), AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(ctx), "z[3]"));
    z[3] = INFINITY;
    assert_int_equal(agave_model_decode(m, z, 1, 1, NULL, NULL), AGAVE_ERR_INVALID_ARG);
    agave_model_free(m);
    /* Mode pixelcnn: no latent code; an uninitialised model: nothing to encode. */
    m = trained(ctx, 1, 0, 1, AGAVE_MODE_PIXELCNN);
    int Z = -1, h = -1, w = -1;
    assert_int_equal(agave_model_latent_shape(m, &Z, &h, &w), AGAVE_OK);
    assert_int_equal(Z + h + w, 0);
    assert_int_equal(agave_model_encode(m, x, 1, z), AGAVE_ERR_STATE);
    assert_non_null(strstr(agave_context_last_error(ctx), "no latent code"));
    agave_model_free(m);
    agave_config cfg = support_tiny_config(1, 0, 1, 256, AGAVE_MODE_AGAVE);
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_encode(m, x, 1, z), AGAVE_ERR_STATE);
    assert_non_null(strstr(agave_context_last_error(ctx), "not initialised"));
    agave_model_free(m);
    agave_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_is_the_noise_free_posterior),
        cmocka_unit_test(test_encode_with_iaf),
        cmocka_unit_test(test_decode_matches_sampling),
        cmocka_unit_test(test_decode_in_mode_vae),
        cmocka_unit_test(test_latent_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
