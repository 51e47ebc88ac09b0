/* Training as docs/model.md's Training section states it: the data-dependent
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
#include "support/support.h"

/* ---- helpers --------------------------------------------------------------------- */
static agave_config tiny(int C, int T)
{
    return support_tiny_config(C, T, 1, 256, AGAVE_MODE_AGAVE);
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
    for (int i = 0; i < agave_layer_param_tensor_count(l); i++) {
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
 * of the same z_0, is close to E softplus(-(2 + s)) = 0.1827 nats per latent
 * element and step for s ~ N(0, 1) (the gate's pre-activation starts with
 * mean 0 and standard deviation 1 per channel on the init batch; the
 * integral is taken here numerically), not the 0.806 of a gate without the
 * bias. The batch's s is only roughly Gaussian: 0.02 of tolerance. */
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
    double expected = 0;   /* E softplus(-(2 + s)), s ~ N(0, 1), by the midpoint rule */
    for (int i = 0; i < 20000; i++) {
        double s = -10 + (i + 0.5) * 20.0 / 20000;
        expected += log1p(exp(-(2 + s))) * exp(-0.5 * s * s) / sqrt(2 * M_PI) * 20.0 / 20000;
    }
    if (fabs(per_element - expected) > 0.02)
        fail_msg("-log sigma is %.4f nats per latent element and step at the start, the "
                 "forget bias gives %.4f (a gate without it gives 0.806)", per_element,
                 expected);
    agave_model_free(m);
    agave_context_free(ctx);
    free(x8);
}

/* ---- parameter averaging ------------------------------------------------------------ */
/* All parameters of m, in checkpoint order, as doubles. */
static double *params_copy(agave_model *m)
{
    double *p = malloc(agave_model_param_numel(m) * sizeof *p);
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++)
        for (size_t j = 0; j < m->params[i]->numel; j++)
            p[off++] = m->params[i]->data[j];
    return p;
}

/* The weights evaluation would use now, as doubles. */
static double *evaluated_params(agave_model *m)
{
    model_apply_average(m);
    double *p = params_copy(m);
    model_restore_params(m);
    return p;
}

/* max |a - b| over max |b|. */
static double relative_gap(const double *a, const double *b, size_t n)
{
    double gap = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        gap = fmax(gap, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return gap / scale;
}

/* docs/model.md's rule by hand over 12 steps with ema = 0.5, so that both of its
 * regimes occur (the warm-up (1 + t) / (10 + t) is below 0.5 for t < 8):
 * avg_0 = the initialised parameters, avg_k = d avg_{k-1} + (1 - d) p_k with
 * d = min(ema, (1 + t) / (10 + t)), t = k - 1, and no bias correction. The
 * average the library evaluates with must follow it at every step (the old
 * rule, a bias-corrected average from 0, gives p_1 itself after one step). */
static void test_average_closed_form(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 8), AGAVE_OK);
    agave_config cfg = tiny(1, 0);
    cfg.ema = 0.5f;
    uint8_t *x = random_images(4, 1, 9);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 4), AGAVE_OK);
    size_t n = agave_model_param_numel(m);
    double *want = params_copy(m), *got = evaluated_params(m);
    assert_true(relative_gap(got, want, n) == 0);
    free(got);
    agave_step_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 1; k <= 12; k++) {
        assert_int_equal(agave_model_train_step(m, x, 4, &st), AGAVE_OK);
        double t = k - 1, d = fmin(0.5, (1 + t) / (10 + t));
        double *p = params_copy(m);
        for (size_t i = 0; i < n; i++)
            want[i] = d * want[i] + (1 - d) * p[i];
        got = evaluated_params(m);
        double gap = relative_gap(got, want, n);
        if (gap > 1e-6)
            fail_msg("step %d: the average is %.3g (relative) away from the rule's", k, gap);
        double *after = params_copy(m);
        assert_true(relative_gap(after, p, n) == 0);   /* raw parameters put back */
        free(p), free(got), free(after);
    }
    free(want);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* Held-out ELBO in bpd of the weights m uses, with the same z draws for
 * every call; the training run's random stream is left as it was. */
static double heldout_elbo(agave_model *m, const uint8_t *x, int n)
{
    agave_eval_stats es;
    memset(&es, 0, sizeof es);
    es.struct_size = sizeof es;
    agave_rng saved = m->ctx->rng;
    assert_int_equal(agave_context_seed(m->ctx, 4242), AGAVE_OK);
    assert_int_equal(agave_model_evaluate(m, x, n, 0, &es), AGAVE_OK);
    m->ctx->rng = saved;
    return es.elbo_bpd;
}

/* The old rule, kept here as the reference the new one must beat: a running
 * sum from 0, s <- ema s + (1 - ema) p, evaluated as s / (1 - ema^t). */
typedef struct old_average {
    float *s;
    int64_t t;
} old_average;

static void old_average_update(old_average *a, agave_model *m, float ema)
{
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++)
        for (size_t j = 0; j < m->params[i]->numel; j++, off++)
            a->s[off] = ema * a->s[off] + (1 - ema) * m->params[i]->data[j];
    a->t++;
}

/* ELBO with the old rule's average in place of the raw parameters. */
static double old_average_elbo(const old_average *a, agave_model *m, float ema, const uint8_t *x,
                               int n)
{
    double *raw = params_copy(m), corr = 1.0 / (1.0 - pow(ema, (double)a->t));
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++)
        for (size_t j = 0; j < m->params[i]->numel; j++, off++)
            m->params[i]->data[j] = (float)(a->s[off] * corr);
    assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
    double elbo = heldout_elbo(m, x, n);
    off = 0;
    for (int i = 0; i < m->n_params; i++)
        for (size_t j = 0; j < m->params[i]->numel; j++, off++)
            m->params[i]->data[j] = (float)raw[off];
    free(raw);
    return elbo;
}

/* Issue 13's criterion on the tiny configuration (ema 0.9995, the constant
 * rate 0.002 it was set for): after 150 and after 600 steps of batch 16, the averaged
 * parameters evaluate no worse than the raw ones by more than 0.02 bpd on
 * 256 held-out images (random bytes, the suite's tiny data; measured +0.008
 * and -0.004). The old rule, followed alongside from the same raw
 * parameters, must fail it at both points (measured +0.082 and +0.046): that
 * is what the test is for. On data learned much faster the new rule trails
 * by more while learning is steep (docs/model.md, "Parameter averaging"). */
static void test_average_no_worse_than_raw(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 10), AGAVE_OK);
    agave_config cfg = tiny(1, 0);
    cfg.lr = 0.002f, cfg.lr_warmup = 0;   /* docs/model.md gives both rates */
    const int train_n = 2048, test_n = 256, B = 16;
    uint8_t *train = random_images(train_n, 1, 11), *test = random_images(test_n, 1, 12);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, train, B), AGAVE_OK);
    old_average old = {calloc(agave_model_param_numel(m), sizeof(float)), 0};
    agave_step_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 1; k <= 600; k++) {
        assert_int_equal(agave_model_train_step(m, train + (size_t)((k - 1) * B % train_n) * 64,
                                                B, &st), AGAVE_OK);
        old_average_update(&old, m, cfg.ema);
        if (k != 150 && k != 600)
            continue;
        assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
        double raw = heldout_elbo(m, test, test_n);
        assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_AVERAGE), AGAVE_OK);
        double avg = heldout_elbo(m, test, test_n);
        double before = old_average_elbo(&old, m, cfg.ema, test, test_n);
        print_message("step %d: held-out ELBO raw %.4f, average %.4f, old rule's average "
                      "%.4f bpd\n", k, raw, avg, before);
        if (avg > raw + 0.02)
            fail_msg("step %d: the average evaluates at %.4f bpd, the raw parameters at %.4f",
                     k, avg, raw);
        if (!(before > raw + 0.02))
            fail_msg("step %d: the old rule's average (%.4f bpd) passes too (raw %.4f): the "
                     "test does not tell the rules apart", k, before, raw);
    }
    free(old.s);
    free(train);
    free(test);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* ---- the weight choice ---------------------------------------------------------------- */
static agave_model *trained_tiny(agave_context *ctx, float ema, int steps)
{
    agave_config cfg = tiny(1, 0);
    cfg.ema = ema;
    uint8_t *x = random_images(8, 1, 13);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 8), AGAVE_OK);
    agave_step_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < steps; k++)
        assert_int_equal(agave_model_train_step(m, x, 8, &st), AGAVE_OK);
    free(x);
    return m;
}

static void expect_error(agave_context *ctx, agave_status got, agave_status want,
                         const char *words)
{
    assert_int_equal(got, want);
    if (!strstr(agave_context_last_error(ctx), words))
        fail_msg("message '%s' does not say '%s'", agave_context_last_error(ctx), words);
}

/* The choice and what it reports: the average by default when the model has
 * one, refused when it has none; RAW always allowed. */
static void test_weights_choice_states(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 14), AGAVE_OK);
    agave_config cfg = tiny(1, 0);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_has_average(m), 0);   /* not initialised yet */
    assert_int_equal(agave_model_weights(m), AGAVE_WEIGHTS_RAW);
    expect_error(ctx, agave_model_set_weights(m, AGAVE_WEIGHTS_AVERAGE), AGAVE_ERR_STATE,
                 "no averaged parameters");
    agave_model_free(m);
    m = trained_tiny(ctx, 0.9995f, 2);
    assert_int_equal(agave_model_has_average(m), 1);
    assert_int_equal(agave_model_weights(m), AGAVE_WEIGHTS_AVERAGE);
    assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
    assert_int_equal(agave_model_weights(m), AGAVE_WEIGHTS_RAW);
    assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_AVERAGE), AGAVE_OK);
    assert_int_equal(agave_model_weights(m), AGAVE_WEIGHTS_AVERAGE);
    expect_error(ctx, agave_model_set_weights(m, (agave_weights)7), AGAVE_ERR_INVALID_ARG,
                 "neither");
    agave_model_free(m);
    m = trained_tiny(ctx, 0.0f, 2);
    assert_int_equal(agave_model_has_average(m), 0);
    assert_int_equal(agave_model_weights(m), AGAVE_WEIGHTS_RAW);
    expect_error(ctx, agave_model_set_weights(m, AGAVE_WEIGHTS_AVERAGE), AGAVE_ERR_STATE,
                 "ema");
    assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
    agave_model_free(m);
    assert_int_equal(agave_model_set_weights(NULL, AGAVE_WEIGHTS_RAW), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_weights(NULL), AGAVE_WEIGHTS_RAW);
    assert_int_equal(agave_model_has_average(NULL), 0);
    agave_context_free(ctx);
}

/* Evaluation, sampling and reconstruction use the chosen set: with RAW they
 * give exactly what the same model gives once its average is discarded
 * (agave_model_update_config with ema = 0), and with the average something
 * else; training is unaffected by the choice. */
static void test_weights_choice_is_used(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 15), AGAVE_OK);
    agave_model *m = trained_tiny(ctx, 0.9995f, 20);
    uint8_t *x = random_images(4, 1, 16);
    uint8_t fz[3][4 * 64], xs[3][4 * 64], rf[3][4 * 64], rx[3][4 * 64];
    double elbo[3];
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1)
            assert_int_equal(agave_model_set_weights(m, AGAVE_WEIGHTS_RAW), AGAVE_OK);
        if (pass == 2) {
            agave_config c;
            agave_model_get_config(m, &c);
            c.ema = 0;
            assert_int_equal(agave_model_update_config(m, &c), AGAVE_OK);
            assert_int_equal(agave_model_has_average(m), 0);
        }
        elbo[pass] = heldout_elbo(m, x, 4);
        assert_int_equal(agave_model_sample(m, 4, 99, fz[pass], xs[pass]), AGAVE_OK);
        assert_int_equal(agave_model_reconstruct(m, x, 4, 98, rf[pass], rx[pass]), AGAVE_OK);
    }
    assert_true(elbo[1] == elbo[2]);
    assert_memory_equal(fz[1], fz[2], sizeof fz[1]);
    assert_memory_equal(xs[1], xs[2], sizeof xs[1]);
    assert_memory_equal(rf[1], rf[2], sizeof rf[1]);
    assert_memory_equal(rx[1], rx[2], sizeof rx[1]);
    assert_true(elbo[0] != elbo[1]);
    assert_memory_not_equal(fz[0], fz[1], sizeof fz[0]);
    assert_memory_not_equal(rf[0], rf[1], sizeof rf[0]);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* ---- checkpoints keep both sets ------------------------------------------------------- */
static char tmpdir[64];

static int setup_tmpdir(void **state)
{
    (void)state;
    return support_tmpdir_make(tmpdir, sizeof tmpdir, "agave_training_test");
}

static int teardown_tmpdir(void **state)
{
    (void)state;
    return support_tmpdir_remove(tmpdir);
}

/* Saved and loaded, a model keeps its raw and its averaged parameters (both
 * compared value for value), and the averaging continues from them: one
 * more step on each gives the same bits. */
static void test_checkpoint_keeps_both_sets(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 17), AGAVE_OK);
    agave_model *m = trained_tiny(ctx, 0.9995f, 5), *back;
    char path[128];
    snprintf(path, sizeof path, "%s/both.ckpt", tmpdir);
    assert_int_equal(agave_model_save(m, path), AGAVE_OK);
    assert_int_equal(agave_model_load(ctx, path, NULL, &back), AGAVE_OK);
    size_t n = agave_model_param_numel(m);
    double *raw = params_copy(m), *raw2 = params_copy(back);
    double *avg = evaluated_params(m), *avg2 = evaluated_params(back);
    assert_true(relative_gap(raw2, raw, n) == 0);
    assert_true(relative_gap(avg2, avg, n) == 0);
    assert_true(relative_gap(avg, raw, n) > 0);
    uint8_t *x = random_images(8, 1, 18);
    agave_step_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    agave_rng rng = ctx->rng;
    assert_int_equal(agave_model_train_step(m, x, 8, &st), AGAVE_OK);
    ctx->rng = rng;
    assert_int_equal(agave_model_train_step(back, x, 8, &st), AGAVE_OK);
    double *a1 = evaluated_params(m), *a2 = evaluated_params(back);
    assert_true(relative_gap(a2, a1, n) == 0);
    free(raw), free(raw2), free(avg), free(avg2), free(a1), free(a2), free(x);
    agave_model_free(back);
    agave_model_free(m);
    agave_context_free(ctx);
}

static uint32_t crc32_of(const unsigned char *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* A checkpoint of format version 1 (docs/checkpoint.md) stored the old
 * rule's running sum s, evaluated as s / (1 - ema^t). The test turns a
 * version-2 file into the version-1 file the old library would have written
 * for the same model (version field, s = avg (1 - ema^t), CRC) and loads it:
 * the raw parameters are the file's and the averaged ones are s / (1 -
 * ema^t), i.e. the average the old library evaluated with. A file at t = 0
 * (s all zero) gets the parameters as its average. */
static void check_v1_average(int steps)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 19), AGAVE_OK);
    agave_model *m = trained_tiny(ctx, 0.9995f, steps), *back;
    agave_config c0;
    agave_model_get_config(m, &c0);
    c0.lr_warmup = 9, c0.lr_decay = 0.5f;   /* dropped with the 2 fields */
    assert_int_equal(agave_model_update_config(m, &c0), AGAVE_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/v1.ckpt", tmpdir);
    assert_int_equal(agave_model_save(m, path), AGAVE_OK);
    size_t len, n = agave_model_param_numel(m);
    unsigned char *p = support_read_file(path, &len);
    uint32_t version = 1, fields = 20;
    memcpy(p + 8, &version, 4);
    /* Version 1's configuration block had 20 fields: no lr_warmup, lr_decay. */
    const size_t cut = 24 + 4 + 20 * 4;
    memmove(p + cut, p + cut + 8, len - cut - 8);
    len -= 8;
    uint64_t payload = len - 24 - 4;
    memcpy(p + 16, &payload, 8);
    memcpy(p + 24, &fields, 4);
    uint64_t t;   /* the averaging count precedes the average, which ends before the CRC */
    memcpy(&t, p + len - 4 - 4 * n - 8, 8);
    assert_true(t == (uint64_t)steps);
    double keep = 1.0 - pow((double)0.9995f, (double)t);   /* the stored float ema */
    double *want = evaluated_params(m), *raw = params_copy(m);
    for (size_t i = 0; i < n; i++) {
        float s = t ? (float)(want[i] * keep) : 0.0f;
        memcpy(p + len - 4 - 4 * n + 4 * i, &s, 4);
    }
    uint32_t crc = crc32_of(p, len - 4);
    memcpy(p + len - 4, &crc, 4);
    support_write_file(path, p, len);
    assert_int_equal(agave_model_load(ctx, path, NULL, &back), AGAVE_OK);
    assert_int_equal(agave_model_has_average(back), 1);
    agave_config c;
    agave_model_get_config(back, &c);
    assert_true(c.lr_warmup == 0 && c.lr_decay == 1.0f);   /* no schedule */
    double *got = evaluated_params(back), *raw2 = params_copy(back);
    assert_true(relative_gap(raw2, raw, n) == 0);
    double gap = relative_gap(got, t ? want : raw, n);
    if (gap > 1e-6)
        fail_msg("version-1 file at t = %d: the loaded average is %.3g (relative) away from "
                 "s / (1 - ema^t)", steps, gap);
    free(p), free(want), free(raw), free(got), free(raw2);
    agave_model_free(back);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_checkpoint_version1_average(void **state)
{
    (void)state;
    check_v1_average(7);
    check_v1_average(0);
}

/* ---- the learning-rate schedule ------------------------------------------------------ */
/* lr * min(1, k / warmup) * decay^(k - 1) for step k, by hand. */
static double schedule(double lr, int warmup, double decay, int k)
{
    double ramp = warmup > 0 && k < warmup ? (double)k / warmup : 1.0;
    double d = 1;
    for (int i = 1; i < k; i++)
        d *= decay;
    return lr * ramp * d;
}

/* agave_model_learning_rate follows the schedule step by step, and the
 * optimiser uses it: Adamax's first update moves every parameter with a
 * nonzero gradient by exactly the step's learning rate (m = (1 - b1) g,
 * u = |g|, bias correction 1 / (1 - b1): the step is lr * sign(g)), which
 * is lr / warmup here, not lr. Changing the schedule with
 * agave_model_update_config takes effect at the next step's count. */
static void test_lr_schedule(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 20), AGAVE_OK);
    agave_config cfg = tiny(1, 0);
    cfg.lr = 0.01f, cfg.lr_warmup = 4, cfg.lr_decay = 0.9f;
    uint8_t *x = random_images(8, 1, 21);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 8), AGAVE_OK);
    size_t n = agave_model_param_numel(m);
    double *before = params_copy(m);
    agave_step_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 1; k <= 8; k++) {
        double want = schedule(0.01f, 4, 0.9f, k), got = agave_model_learning_rate(m);
        if (fabs(got - want) > 1e-6 * want)
            fail_msg("step %d: learning rate %.9g, the schedule gives %.9g", k, got, want);
        assert_int_equal(agave_model_train_step(m, x, 8, &st), AGAVE_OK);
        if (k > 1)
            continue;
        /* |g| / (|g| + 1e-8) shortens the step of a tiny gradient (never lengthens it). */
        double *after = params_copy(m);
        int moved = 0, exact = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs(after[i] - before[i]);
            if (d == 0)
                continue;   /* no gradient (e.g. a part the mode does not train) */
            moved++;
            exact += fabs(d - want) <= 1e-4 * want + 4e-7 * fabs(before[i]);
            if (d > want * (1 + 1e-4) + 4e-7 * fabs(before[i]))
                fail_msg("parameter value %zu moved by %.6g in the first step, the step's "
                         "learning rate is %.6g", i, d, want);
        }
        assert_true(moved > (int)(n / 2));
        if (exact < moved * 0.9)
            fail_msg("only %d of %d moved parameter values moved by the learning rate %.6g",
                     exact, moved, want);
        free(after);
    }
    agave_model_get_config(m, &cfg);
    cfg.lr = 0.004f, cfg.lr_decay = 0.5f;
    assert_int_equal(agave_model_update_config(m, &cfg), AGAVE_OK);
    double want = schedule(0.004f, 4, 0.5f, 9), got = agave_model_learning_rate(m);
    assert_true(fabs(got - want) <= 1e-6 * want);
    assert_true(agave_model_learning_rate(NULL) == 0);
    free(before);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* The schedule's keys: set by text, validated, kept by checkpoints. */
static void test_lr_schedule_keys(void **state)
{
    (void)state;
    agave_config cfg = tiny(1, 0);
    char msg[256];
    assert_int_equal(agave_config_set(&cfg, "lr_warmup", "250"), AGAVE_OK);
    assert_int_equal(agave_config_set(&cfg, "lr_decay", "0.9999"), AGAVE_OK);
    assert_true(cfg.lr_warmup == 250 && cfg.lr_decay == 0.9999f);
    assert_int_equal(agave_config_validate(&cfg, msg, sizeof msg), AGAVE_OK);
    assert_int_equal(agave_config_set(&cfg, "lr_warmup", "x"), AGAVE_ERR_INVALID_ARG);
    cfg.lr_warmup = -1;
    assert_int_equal(agave_config_validate(&cfg, msg, sizeof msg), AGAVE_ERR_CONFIG);
    assert_non_null(strstr(msg, "lr_warmup"));
    cfg.lr_warmup = 250;
    float bad[] = {0.0f, 1.5f, -0.1f, NAN};
    for (int i = 0; i < 4; i++) {
        cfg.lr_decay = bad[i];
        assert_int_equal(agave_config_validate(&cfg, msg, sizeof msg), AGAVE_ERR_CONFIG);
        assert_non_null(strstr(msg, "lr_decay"));
    }
    cfg.lr_decay = 0.9999f;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 22), AGAVE_OK);
    agave_model *m, *back;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/schedule.ckpt", tmpdir);
    assert_int_equal(agave_model_save(m, path), AGAVE_OK);
    assert_int_equal(agave_model_load(ctx, path, NULL, &back), AGAVE_OK);
    agave_config got;
    agave_model_get_config(back, &got);
    assert_true(got.lr_warmup == 250 && got.lr_decay == 0.9999f);
    agave_model_free(back);
    agave_model_free(m);
    agave_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deconv_init_on_full_output_down),
        cmocka_unit_test(test_deconv_init_on_full_output_down_right),
        cmocka_unit_test(test_model_init_scales),
        cmocka_unit_test(test_iaf_forget_bias_closed_form),
        cmocka_unit_test(test_iaf_starts_near_identity),
        cmocka_unit_test(test_average_closed_form),
        cmocka_unit_test(test_average_no_worse_than_raw),
        cmocka_unit_test(test_weights_choice_states),
        cmocka_unit_test(test_weights_choice_is_used),
        cmocka_unit_test(test_checkpoint_keeps_both_sets),
        cmocka_unit_test(test_checkpoint_version1_average),
        cmocka_unit_test(test_lr_schedule),
        cmocka_unit_test(test_lr_schedule_keys),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
