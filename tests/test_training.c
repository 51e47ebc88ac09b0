/* Training as MODEL.md's Training section states it: the data-dependent
 * initialisation (statistics of the right pre-activations on the init batch),
 * the IAF's forget-gate bias, and (further down) parameter averaging, the
 * learning-rate schedule and changing training settings of a loaded model.
 * Every expected figure is computed here, in double, from the layer's own
 * parameters or from a closed form, never copied from the library. */
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
#include "support/gradcheck.h"

/* ---- helpers --------------------------------------------------------------------- */
static agave_config tiny(int C, int T)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.C = C, cfg.T = T;
    return cfg;
}

/* n images of C x 8 x 8 uniform random bytes. */
static uint8_t *random_images(int n, int C, unsigned seed)
{
    uint8_t *x = malloc((size_t)n * C * 64);
    test_rng_seed(seed);
    for (int i = 0; i < n * C * 64; i++)
        x[i] = (uint8_t)test_uniform(0, 255.99);
    return x;
}

/* Per-channel mean and (1/count) standard deviation of t (N,C,H,W), in double. */
static void channel_stats(const agave_tensor *t, int c, double *mean, double *std)
{
    int N = agave_tensor_dim(t, 0), C = agave_tensor_dim(t, 1);
    size_t plane = agave_tensor_numel(t) / ((size_t)N * C);
    const float *p = agave_tensor_data((agave_tensor *)t);
    double s = 0, q = 0, count = (double)N * (double)plane;
    for (int n = 0; n < N; n++)
        for (size_t i = 0; i < plane; i++)
            s += p[((size_t)n * C + c) * plane + i];
    *mean = s / count;
    for (int n = 0; n < N; n++)
        for (size_t i = 0; i < plane; i++) {
            double d = p[((size_t)n * C + c) * plane + i] - *mean;
            q += d * d;
        }
    *std = sqrt(q / count);
}

/* Every channel of t has mean 0 and standard deviation `scale` on its batch. */
static void expect_init_stats(const agave_tensor *t, double scale, const char *what)
{
    for (int c = 0; c < agave_tensor_dim(t, 1); c++) {
        double mean, std;
        channel_stats(t, c, &mean, &std);
        if (fabs(mean) > 1e-3 * scale || fabs(std - scale) > 1e-3 * scale)
            fail_msg("%s, channel %d: mean %.6g std %.6g after the init, expected 0 and %g",
                     what, c, mean, std, scale);
    }
}

static agave_tensor *layer_param(agave_layer *l, const char *name)
{
    for (int i = 0; i < agave_layer_param_count(l); i++) {
        const char *n;
        agave_tensor *p;
        assert_int_equal(agave_layer_param(l, i, &n, &p), AGAVE_OK);
        if (strcmp(n, name) == 0)
            return p;
    }
    fail_msg("the layer has no parameter %s", name);
    return NULL;
}

static agave_tensor *normal_tensor(agave_context *ctx, int n, int c, int h, int w)
{
    int dims[4] = {n, c, h, w};
    agave_tensor *t;
    assert_int_equal(agave_tensor_create(ctx, 4, dims, &t), AGAVE_OK);
    assert_int_equal(agave_tensor_fill_normal(t, 0.3f, 1.0f), AGAVE_OK);
    return t;
}

/* ---- initialisation: transposed convolutions ------------------------------------ */
/* A stride-2 shifted deconv of kernel KH x KW on (N,in,H,W): the statistics of
 * the data-dependent init are those of TensorFlow's full output
 * (2H + KH - 1) x (2W + KW - 1), computed here from x, v, g and b in double
 * (F[n,o,2i+kh,2j+kw] += x[n,c,i,j] w[o,c,kh,kw], plus b[o] everywhere),
 * not of the cropped 2H x 2W the layer returns; and the layer's output is
 * that plane's crop (top rows; centre or left columns). With the statistics
 * taken on the crop (the defect this checks) the full plane has channel means
 * of ~0.1 and standard deviations ~4% off. */
static void check_deconv_init(agave_shift shift, int kh, int kw)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 31), AGAVE_OK);
    const int N = 3, in = 3, out = 4, H = 4, W = 4, S = 2;
    const float scale = 0.7f;
    agave_layer_options o;
    agave_layer_options_init(&o);
    o.in_channels = in, o.out_channels = out, o.kernel_h = kh, o.kernel_w = kw;
    o.stride = S, o.shift = shift, o.init_scale = scale;
    agave_layer *l;
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_DECONV, &o, &l), AGAVE_OK);
    agave_tensor *x = normal_tensor(ctx, N, in, H, W), *y;
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_int_equal(agave_tensor_dim(y, 2), S * H);
    assert_int_equal(agave_tensor_dim(y, 3), S * W);
    const float *v = agave_tensor_data(layer_param(l, "v"));
    const float *g = agave_tensor_data(layer_param(l, "g"));
    const float *b = agave_tensor_data(layer_param(l, "b"));
    const float *xd = agave_tensor_data(x), *yd = agave_tensor_data(y);
    const int FH = S * H + kh - 1, FW = S * W + kw - 1, K = in * kh * kw;
    const int top = 0, left = shift == AGAVE_SHIFT_DOWN ? (kw - 1) / 2 : 0;
    double *full = calloc((size_t)N * out * FH * FW, sizeof *full);
    for (int oc = 0; oc < out; oc++) {
        double norm = 0;
        for (int k = 0; k < K; k++)
            norm += (double)v[oc * K + k] * v[oc * K + k];
        norm = sqrt(norm);
        for (int n = 0; n < N; n++) {
            double *f = full + ((size_t)n * out + oc) * FH * FW;
            for (int r = 0; r < FH * FW; r++)
                f[r] = b[oc];
            for (int c = 0; c < in; c++)
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < W; j++)
                        for (int a = 0; a < kh; a++)
                            for (int e = 0; e < kw; e++)
                                f[(S * i + a) * FW + S * j + e] +=
                                    xd[((n * in + c) * H + i) * W + j] * g[oc] *
                                    v[((oc * in + c) * kh + a) * kw + e] / norm;
        }
        double s = 0, q = 0, count = (double)N * FH * FW;
        for (int n = 0; n < N; n++)
            for (int r = 0; r < FH * FW; r++)
                s += full[((size_t)n * out + oc) * FH * FW + r];
        double mean = s / count;
        for (int n = 0; n < N; n++)
            for (int r = 0; r < FH * FW; r++) {
                double d = full[((size_t)n * out + oc) * FH * FW + r] - mean;
                q += d * d;
            }
        double std = sqrt(q / count);
        if (fabs(mean) > 1e-4 || fabs(std - scale) > 1e-4)
            fail_msg("deconv %dx%d channel %d: the full output has mean %.6g std %.6g, "
                     "expected 0 and %g", kh, kw, oc, mean, std, (double)scale);
        for (int n = 0; n < N; n++)
            for (int r = 0; r < S * H; r++)
                for (int c = 0; c < S * W; c++) {
                    double want = full[(((size_t)n * out + oc) * FH + r + top) * FW + c + left];
                    double got = yd[(((size_t)n * out + oc) * S * H + r) * S * W + c];
                    if (fabs(got - want) > 1e-4)
                        fail_msg("deconv output (%d,%d,%d,%d) = %g, the full plane's crop %g",
                                 n, oc, r, c, got, want);
                }
    }
    free(full);
    agave_tensor_free(x);
    agave_layer_free(l);
    agave_context_free(ctx);
}

static void test_deconv_init_on_full_output_down(void **state)
{
    (void)state;
    check_deconv_init(AGAVE_SHIFT_DOWN, 2, 3);
}

static void test_deconv_init_on_full_output_down_right(void **state)
{
    (void)state;
    check_deconv_init(AGAVE_SHIFT_DOWN_RIGHT, 2, 2);
}

/* ---- initialisation: the model's layers ------------------------------------------ */
/* A tiny model initialised on a batch with the context seeded, so that the
 * same z can be drawn again afterwards (dropout is 0 in tiny: the z samples
 * are the init's only random draws). */
#define INIT_SEED 77
#define INIT_N 8
static agave_model *initialised_model(agave_context *ctx, agave_config cfg, const uint8_t *x)
{
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_context_seed(ctx, INIT_SEED), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, INIT_N), AGAVE_OK);
    agave_tape_set_recording(ctx, 0);
    return m;
}

/* The second conv's output of residual block l on its input h: the
 * pre-activation that is added to h. */
static agave_tensor *resnet_inner(agave_context *ctx, agave_layer *l, agave_tensor *h)
{
    agave_tensor *t;
    assert_int_equal(agave_elu(ctx, h, &t), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l->child[0], t, &t), AGAVE_OK);
    assert_int_equal(agave_elu(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l->child[1], t, &t), AGAVE_OK);
    return t;
}

/* After the init, on the init batch: the second conv of every VAE residual
 * block (encoder and decoder) has outputs of mean 0 and std 0.1 per channel,
 * and the PixelCNN's output nin (the mixture parameters) mean 0 and std 1.
 * The layers run again on the init batch (encoder input, then the same z
 * drawn again through the reseeded context) and the statistics are taken
 * here. Before the fix these were 1.0 (residual blocks) and 0.1 (output). */
static void test_model_init_scales(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 3), AGAVE_OK);
    agave_config cfg = tiny(1, 0);
    cfg.Rv = 2;
    uint8_t *x8 = random_images(INIT_N, 1, 5);
    agave_model *m = initialised_model(ctx, cfg, x8);
    vae_net *v = &m->vae;
    agave_tape_reset(ctx);
    agave_context_seed(ctx, INIT_SEED);
    agave_tensor *x = image_tensor(ctx, x8, INIT_N, 1, 8, 8), *h, *mean, *log_std, *context, *z,
                 *log_q, *log_p, *f, *params;
    assert_int_equal(agave_layer_forward(v->enc_in, x, &h), AGAVE_OK);
    for (int s = 0; s < 2; s++) {
        for (int r = 0; r < cfg.Rv; r++) {
            expect_init_stats(resnet_inner(ctx, v->enc_res[s][r], h), 0.1,
                              "encoder residual block's second conv");
            assert_int_equal(agave_layer_forward(v->enc_res[s][r], h, &h), AGAVE_OK);
        }
        assert_int_equal(agave_layer_forward(v->enc_down[s], h, &h), AGAVE_OK);
    }
    assert_int_equal(vae_encode(m, x, &mean, &log_std, &context), AGAVE_OK);
    assert_int_equal(vae_posterior_sample(m, mean, log_std, context, &z, &log_q, &log_p),
                     AGAVE_OK);
    assert_int_equal(agave_layer_forward(v->dec_in, z, &h), AGAVE_OK);
    for (int s = 0; s < v->n_up; s++) {
        assert_int_equal(agave_upsample2x(ctx, h, &h), AGAVE_OK);
        assert_int_equal(agave_layer_forward(v->dec_up[s], h, &h), AGAVE_OK);
        for (int r = 0; r < cfg.Rv; r++) {
            expect_init_stats(resnet_inner(ctx, v->dec_res[s][r], h), 0.1,
                              "decoder residual block's second conv");
            assert_int_equal(agave_layer_forward(v->dec_res[s][r], h, &h), AGAVE_OK);
        }
    }
    assert_int_equal(vae_decode(m, z, &f), AGAVE_OK);
    expect_init_stats(f, 0.1, "f(z), the decoder's last conv");
    assert_int_equal(pixelcnn_forward(m, x, f, &params), AGAVE_OK);
    expect_init_stats(params, 1.0, "the PixelCNN's output nin");
    agave_model_free(m);
    agave_context_free(ctx);
    free(x8);
}

/* ---- the IAF's forget-gate bias ---------------------------------------------------- */
/* With the last conv of the IAF step zeroed (g = b = 0, so m = s = 0 exactly)
 * the step is z_T = sigmoid(2) z_0: the measured single-sample KL
 * log q(z_T|x) - log p(z_T) must equal the closed form
 *   sum [log N(z_0; mean, std) - log sigmoid(2) - log N(sigmoid(2) z_0; 0, 1)]
 * computed here in double from the encoder's mean and log-std and the same
 * z_0 (drawn again from the reseeded context). Without the bias the gate is
 * sigmoid(0) = 0.5 and the KL differs by several nats per image. */
static void test_iaf_forget_bias_closed_form(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 4), AGAVE_OK);
    agave_config cfg = tiny(1, 1);
    uint8_t *x8 = random_images(INIT_N, 1, 6);
    agave_model *m = initialised_model(ctx, cfg, x8);
    agave_tensor_fill(layer_param(m->vae.iaf_out[0], "g"), 0.0f);
    agave_tensor_fill(layer_param(m->vae.iaf_out[0], "b"), 0.0f);
    agave_tape_reset(ctx);
    agave_context_seed(ctx, 123);
    model_terms t;
    assert_int_equal(model_forward(m, x8, INIT_N, plan_for_mode(AGAVE_MODE_AGAVE), &t),
                     AGAVE_OK);
    agave_tensor *x = image_tensor(ctx, x8, INIT_N, 1, 8, 8), *mean, *log_std, *context, *z0;
    assert_int_equal(vae_encode(m, x, &mean, &log_std, &context), AGAVE_OK);
    agave_context_seed(ctx, 123);
    assert_int_equal(agave_gaussian_sample(ctx, mean, log_std, &z0), AGAVE_OK);
    const double sig = 1.0 / (1.0 + exp(-2.0)), half_log_2pi = 0.5 * log(2 * M_PI);
    size_t per = agave_tensor_numel(z0) / INIT_N;
    for (int n = 0; n < INIT_N; n++) {
        double kl = 0;
        for (size_t i = n * per; i < (n + 1) * per; i++) {
            double zi = agave_tensor_data(z0)[i], mu = agave_tensor_data(mean)[i];
            double ls = agave_tensor_data(log_std)[i], e = (zi - mu) / exp(ls);
            double log_q0 = -half_log_2pi - ls - 0.5 * e * e;
            double log_p = -half_log_2pi - 0.5 * sig * zi * sig * zi;
            kl += log_q0 - log(sig) - log_p;
        }
        double got = agave_tensor_data(t.kl)[n];
        if (fabs(got - kl) > 1e-4 * fmax(1, fabs(kl)))
            fail_msg("image %d: KL %.6f with the IAF step at m = s = 0, closed form %.6f", n,
                     got, kl);
    }
    agave_model_free(m);
    agave_context_free(ctx);
    free(x8);
}

/* Right after the init, on the init batch, with T = 3 steps: the flow's part
 * of log q, log q(z_T|x) - log q_0(z_0|x) = -sum log sigma, measured as the
 * difference between the library's log q and the base Gaussian's log-density
 * of the same z_0, is close to the closed form softplus(-2) = 0.127 nats per
 * latent element and step (s starts with a spread of 0.1, which moves the
 * mean by less than 0.001), not the ln 2 = 0.693 of a gate at sigmoid(0). */
static void test_iaf_starts_near_identity(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 5), AGAVE_OK);
    const int T = 3;
    agave_config cfg = tiny(1, T);
    uint8_t *x8 = random_images(INIT_N, 1, 7);
    agave_model *m = initialised_model(ctx, cfg, x8);
    agave_tape_reset(ctx);
    agave_tensor *x = image_tensor(ctx, x8, INIT_N, 1, 8, 8), *mean, *log_std, *context, *z,
                 *log_q, *log_p, *z0, *log_q0;
    assert_int_equal(vae_encode(m, x, &mean, &log_std, &context), AGAVE_OK);
    agave_context_seed(ctx, INIT_SEED);
    assert_int_equal(vae_posterior_sample(m, mean, log_std, context, &z, &log_q, &log_p),
                     AGAVE_OK);
    agave_context_seed(ctx, INIT_SEED);
    assert_int_equal(agave_gaussian_sample(ctx, mean, log_std, &z0), AGAVE_OK);
    assert_int_equal(agave_gaussian_logprob(ctx, z0, mean, log_std, &log_q0), AGAVE_OK);
    double flow = 0;
    for (int n = 0; n < INIT_N; n++)
        flow += agave_tensor_data(log_q)[n] - agave_tensor_data(log_q0)[n];
    double per_element = flow / ((double)agave_tensor_numel(z0) * T);
    double closed = log1p(exp(-2.0));
    if (fabs(per_element - closed) > 0.01)
        fail_msg("-log sigma is %.4f nats per latent element and step at the start, the "
                 "forget bias gives %.4f (a gate at sigmoid(0) gives ln 2 = 0.693)",
                 per_element, closed);
    agave_model_free(m);
    agave_context_free(ctx);
    free(x8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deconv_init_on_full_output_down),
        cmocka_unit_test(test_deconv_init_on_full_output_down_right),
        cmocka_unit_test(test_model_init_scales),
        cmocka_unit_test(test_iaf_forget_bias_closed_form),
        cmocka_unit_test(test_iaf_starts_near_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
