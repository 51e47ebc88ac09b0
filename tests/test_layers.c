/* Public layers, optimisers, configurations and the model API's error paths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <agave.h>

static agave_context *ctx;

static int setup(void **state)
{
    (void)state;
    return agave_context_create(&ctx, 7) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(ctx);
    return 0;
}

static agave_layer_options opts(int in, int out, int kh, int kw, int stride, agave_shift shift)
{
    agave_layer_options o;
    assert_int_equal(agave_layer_options_init(&o), AGAVE_OK);
    o.in_channels = in, o.out_channels = out, o.kernel_h = kh, o.kernel_w = kw;
    o.stride = stride, o.shift = shift;
    return o;
}

static agave_tensor *random_tensor(int n, int c, int h, int w)
{
    int dims[4] = {n, c, h, w};
    agave_tensor *t;
    assert_int_equal(agave_tensor_create(ctx, 4, dims, &t), AGAVE_OK);
    assert_int_equal(agave_tensor_fill_normal(t, 0.3f, 1.5f), AGAVE_OK);
    return t;
}

static void assert_shape(agave_tensor *t, int n, int c, int h, int w)
{
    assert_int_equal(agave_tensor_dim(t, 0), n);
    assert_int_equal(agave_tensor_dim(t, 1), c);
    assert_int_equal(agave_tensor_dim(t, 2), h);
    assert_int_equal(agave_tensor_dim(t, 3), w);
}

/* ---- shapes of every kind ------------------------------------------------------------ */
static void test_layer_output_shapes(void **state)
{
    (void)state;
    agave_tensor *x = random_tensor(2, 4, 8, 6), *y;
    agave_layer *l;
    agave_layer_options o = opts(4, 5, 3, 3, 2, AGAVE_SHIFT_NONE);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_shape(y, 2, 5, 4, 3);
    agave_layer_free(l);
    o = opts(4, 3, 2, 3, 2, AGAVE_SHIFT_DOWN);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_DECONV, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_shape(y, 2, 3, 16, 12);
    agave_layer_free(l);
    o = opts(4, 7, 1, 1, 1, AGAVE_SHIFT_NONE);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_NIN, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_shape(y, 2, 7, 8, 6);
    agave_layer_free(l);
    o = opts(4 * 8 * 6, 9, 1, 1, 1, AGAVE_SHIFT_NONE);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_DENSE, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_int_equal(agave_tensor_dim(y, 0), 2);
    assert_int_equal(agave_tensor_dim(y, 1), 9);
    agave_layer_free(l);
    o = opts(4, 0, 3, 3, 1, AGAVE_SHIFT_NONE);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_RESNET, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_shape(y, 2, 4, 8, 6);
    agave_layer_free(l);
    o = opts(4, 6, 3, 3, 1, AGAVE_SHIFT_NONE);
    agave_tensor *g[3];
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_COND_STREAM, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward_cond(l, x, g), AGAVE_OK);
    assert_shape(g[0], 2, 6, 8, 6);
    assert_shape(g[1], 2, 6, 4, 3);
    assert_shape(g[2], 2, 6, 2, 2);
    agave_layer_free(l);
    agave_tensor_free(x);
    agave_tape_reset(ctx);
}

static void test_gated_resnet_inputs(void **state)
{
    (void)state;
    agave_tensor *x = random_tensor(2, 4, 5, 5), *a = random_tensor(2, 8, 5, 5);
    agave_tensor *h = random_tensor(2, 3, 5, 5), *y;
    agave_layer_options o = opts(4, 0, 2, 2, 1, AGAVE_SHIFT_DOWN_RIGHT);
    o.shortcut_channels = 8;
    o.cond_channels = 3;
    o.dropout = 0.5f;
    agave_layer *l;
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_GATED_RESNET, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_forward_gated(l, x, a, h, &y), AGAVE_OK);
    assert_shape(y, 2, 4, 5, 5);
    /* h may be left out for a pass without conditioning; a may not */
    assert_int_equal(agave_layer_forward_gated(l, x, a, NULL, &y), AGAVE_OK);
    assert_int_equal(agave_layer_forward_gated(l, x, NULL, h, &y), AGAVE_ERR_NULL);
    assert_non_null(strstr(agave_context_last_error(ctx), "expects a"));
    assert_int_equal(agave_layer_forward_gated(l, x, h, h, &y), AGAVE_ERR_SHAPE);
    assert_non_null(strstr(agave_context_last_error(ctx), "(2,3,5,5)"));
    /* dropout only in training mode: evaluation is deterministic */
    agave_tensor *y1, *y2;
    assert_int_equal(agave_layer_set_training(l, 0), AGAVE_OK);
    assert_int_equal(agave_layer_forward_gated(l, x, a, h, &y1), AGAVE_OK);
    assert_int_equal(agave_layer_forward_gated(l, x, a, h, &y2), AGAVE_OK);
    assert_memory_equal(agave_tensor_data(y1), agave_tensor_data(y2), 2 * 4 * 25 * sizeof(float));
    assert_int_equal(agave_layer_set_training(l, 1), AGAVE_OK);
    assert_int_equal(agave_layer_forward_gated(l, x, a, h, &y2), AGAVE_OK);
    assert_memory_not_equal(agave_tensor_data(y1), agave_tensor_data(y2),
                            2 * 4 * 25 * sizeof(float));
    agave_layer_free(l);
    agave_tensor_free(x);
    agave_tensor_free(a);
    agave_tensor_free(h);
    agave_tape_reset(ctx);
}

/* ---- parameters ------------------------------------------------------------------------- */
static void test_parameter_names(void **state)
{
    (void)state;
    agave_layer_options o = opts(4, 0, 2, 3, 1, AGAVE_SHIFT_DOWN);
    o.shortcut_channels = 4;
    o.cond_channels = 2;
    agave_layer *l;
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_GATED_RESNET, &o, &l), AGAVE_OK);
    const char *want[] = {"conv1.v", "conv1.g", "conv1.b", "nin_a.v", "nin_a.g", "nin_a.b",
                          "conv2.v", "conv2.g", "conv2.b", "nin_h.v", "nin_h.g", "nin_h.b"};
    assert_int_equal(agave_layer_param_tensor_count(l), 12);
    for (int i = 0; i < 12; i++) {
        const char *name;
        agave_tensor *p;
        assert_int_equal(agave_layer_param(l, i, &name, &p), AGAVE_OK);
        assert_string_equal(name, want[i]);
        assert_true(agave_tensor_requires_grad(p));
    }
    agave_tensor *v;
    agave_layer_param(l, 6, NULL, &v);   /* conv2.v: (2F, 2F, 2, 3) */
    assert_int_equal(agave_tensor_dim(v, 0), 8);
    assert_int_equal(agave_tensor_dim(v, 1), 8);
    assert_int_equal(agave_tensor_dim(v, 2), 2);
    assert_int_equal(agave_tensor_dim(v, 3), 3);
    assert_int_equal(agave_layer_param(l, 12, NULL, NULL), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_layer_param(l, -1, NULL, NULL), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_layer_param_tensor_count(NULL), 0);
    agave_layer_free(l);
}

/* The first forward sets g and b so that each output channel has mean 0 and
 * standard deviation init_scale on that batch; later forwards do not re-init. */
static void test_data_dependent_init(void **state)
{
    (void)state;
    agave_tensor *x = random_tensor(3, 4, 9, 7), *y;
    agave_layer_options o = opts(4, 5, 3, 3, 1, AGAVE_SHIFT_NONE);
    o.init_scale = 0.25f;
    agave_layer *l;
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o, &l), AGAVE_OK);
    assert_false(agave_layer_initialized(l));
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    assert_true(agave_layer_initialized(l));
    const float *d = agave_tensor_data(y);
    for (int c = 0; c < 5; c++) {
        double s = 0, s2 = 0;
        for (int n = 0; n < 3; n++)
            for (int i = 0; i < 63; i++) {
                double v = d[(n * 5 + c) * 63 + i];
                s += v, s2 += v * v;
            }
        double mean = s / 189, sd = sqrt(s2 / 189 - mean * mean);
        assert_true(fabs(mean) < 1e-5);
        assert_true(fabs(sd - 0.25) < 1e-4);
    }
    agave_tensor *g;
    agave_layer_param(l, 1, NULL, &g);
    float g0 = agave_tensor_data(g)[0];
    agave_tensor *x2 = random_tensor(3, 4, 9, 7);
    assert_int_equal(agave_layer_forward(l, x2, &y), AGAVE_OK);
    assert_true(agave_tensor_data(g)[0] == g0);   /* no second initialisation */
    agave_layer_free(l);
    /* skip_init: the first forward uses the parameters as they are */
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o, &l), AGAVE_OK);
    assert_int_equal(agave_layer_skip_init(l), AGAVE_OK);
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
    agave_layer_param(l, 1, NULL, &g);
    assert_true(agave_tensor_data(g)[0] == 1.0f);
    agave_layer_free(l);
    agave_tensor_free(x);
    agave_tensor_free(x2);
    agave_tape_reset(ctx);
}

/* An IAF conv with D = 3 degrees: output channel o sees input channel i only
 * if deg(i) < deg(o) (strict) or <= (inclusive), degrees c mod 3, reversed
 * when mask_reverse. Checked on the gradient of each output channel. */
static void check_mask(int inclusive, int reverse)
{
    agave_layer_options o = opts(3, 6, 3, 3, 1, AGAVE_SHIFT_NONE);
    o.mask_degrees = 3;
    o.mask_inclusive = inclusive;
    o.mask_reverse = reverse;
    agave_layer *l;
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o, &l), AGAVE_OK);
    agave_tensor *x = random_tensor(2, 3, 4, 4), *y, *w, *p, *s;
    agave_layer_forward(l, x, &y);   /* initialise */
    assert_int_equal(agave_tensor_set_requires_grad(x, 1), AGAVE_OK);
    for (int oc = 0; oc < 6; oc++) {
        agave_tape_reset(ctx);
        agave_tensor_zero_grad(x);
        assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_OK);
        int dims[4] = {2, 6, 4, 4};
        agave_tensor_create(ctx, 4, dims, &w);
        for (int i = 0; i < 2 * 16; i++)
            agave_tensor_data(w)[(i / 16) * 96 + oc * 16 + i % 16] = 1.0f;
        agave_mul(ctx, y, w, &p);
        agave_sum(ctx, p, &s);
        assert_int_equal(agave_backward(ctx, s), AGAVE_OK);
        for (int ic = 0; ic < 3; ic++) {
            int di = reverse ? 2 - ic : ic, dout = reverse ? 2 - oc % 3 : oc % 3;
            int allowed = inclusive ? di <= dout : di < dout;
            double g = 0;
            for (int n = 0; n < 2; n++)
                for (int k = 0; k < 16; k++)
                    g += fabs(agave_tensor_grad(x)[(n * 3 + ic) * 16 + k]);
            if (allowed != (g > 0))
                fail_msg("mask (inclusive %d reverse %d): output %d, input %d: gradient %g",
                         inclusive, reverse, oc, ic, g);
        }
        agave_tensor_free(w);
    }
    agave_layer_free(l);
    agave_tensor_free(x);
    agave_tape_reset(ctx);
}

static void test_masked_conv_is_autoregressive(void **state)
{
    (void)state;
    check_mask(0, 0);
    check_mask(1, 0);
    check_mask(0, 1);
    check_mask(1, 1);
}

/* ---- errors ------------------------------------------------------------------------------ */
static void expect_create_error(agave_layer_kind kind, agave_layer_options o, agave_status want,
                                const char *word)
{
    agave_layer *l = (agave_layer *)1;
    assert_int_equal(agave_layer_create(ctx, kind, &o, &l), want);
    assert_null(l);
    if (!strstr(agave_context_last_error(ctx), word))
        fail_msg("message '%s' lacks '%s'", agave_context_last_error(ctx), word);
}

static void test_layer_errors(void **state)
{
    (void)state;
    agave_layer_options o = opts(4, 4, 3, 3, 1, AGAVE_SHIFT_NONE), bad;
    agave_layer *l;
    assert_int_equal(agave_layer_create(NULL, AGAVE_LAYER_CONV, &o, &l), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, NULL, &l), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_options_init(NULL), AGAVE_ERR_NULL);
    expect_create_error((agave_layer_kind)99, o, AGAVE_ERR_INVALID_ARG, "unknown");
    bad = o, bad.struct_size = 0;
    expect_create_error(AGAVE_LAYER_CONV, bad, AGAVE_ERR_INVALID_ARG, "struct_size");
    bad = o, bad.in_channels = 0;
    expect_create_error(AGAVE_LAYER_CONV, bad, AGAVE_ERR_INVALID_ARG, "in_channels");
    bad = o, bad.out_channels = -1;
    expect_create_error(AGAVE_LAYER_NIN, bad, AGAVE_ERR_INVALID_ARG, "out_channels");
    bad = o, bad.kernel_w = 16;
    expect_create_error(AGAVE_LAYER_CONV, bad, AGAVE_ERR_INVALID_ARG, "kernel");
    bad = o, bad.stride = 0;
    expect_create_error(AGAVE_LAYER_CONV, bad, AGAVE_ERR_INVALID_ARG, "stride");
    bad = o, bad.stride = 3;
    expect_create_error(AGAVE_LAYER_DECONV, bad, AGAVE_ERR_INVALID_ARG, "stride");
    bad = o, bad.shift = (agave_shift)7;
    expect_create_error(AGAVE_LAYER_CONV, bad, AGAVE_ERR_INVALID_ARG, "shift");
    bad = o, bad.init_scale = NAN;
    expect_create_error(AGAVE_LAYER_CONV, bad, AGAVE_ERR_INVALID_ARG, "init_scale");
    bad = o, bad.dropout = 1.0f;
    expect_create_error(AGAVE_LAYER_GATED_RESNET, bad, AGAVE_ERR_INVALID_ARG, "dropout");
    bad = o, bad.mask_degrees = 2;
    expect_create_error(AGAVE_LAYER_NIN, bad, AGAVE_ERR_INVALID_ARG, "mask");
    bad = o, bad.cond_channels = -2;
    expect_create_error(AGAVE_LAYER_GATED_RESNET, bad, AGAVE_ERR_INVALID_ARG, "cond_channels");

    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o, &l), AGAVE_OK);
    agave_tensor *x = random_tensor(2, 3, 5, 5), *y = (agave_tensor *)1, *g[3];
    assert_int_equal(agave_layer_forward(l, x, &y), AGAVE_ERR_SHAPE);
    assert_null(y);
    assert_non_null(strstr(agave_context_last_error(ctx), "(2,3,5,5)"));
    assert_int_equal(agave_layer_forward(l, NULL, &y), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_forward(l, x, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_forward(NULL, x, &y), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_forward_gated(l, x, NULL, NULL, &y), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_layer_forward_cond(l, x, g), AGAVE_ERR_INVALID_ARG);
    agave_context *other;
    agave_context_create(&other, 1);
    agave_tensor *foreign;
    int dims[4] = {2, 4, 5, 5};
    agave_tensor_create(other, 4, dims, &foreign);
    assert_int_equal(agave_layer_forward(l, foreign, &y), AGAVE_ERR_CONTEXT);
    agave_tensor_free(foreign);
    agave_context_free(other);
    agave_layer_free(l);
    agave_layer_free(NULL);
    assert_int_equal(agave_layer_set_training(NULL, 1), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_skip_init(NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_layer_initialized(NULL), 0);
    agave_tensor_free(x);
    agave_tape_reset(ctx);
}

/* ---- optimiser ----------------------------------------------------------------------------- */
/* Adamax's first step moves every parameter with a nonzero gradient by exactly
 * -lr * sign(g) (m = (1-b1) g, u = |g|, bias correction 1/(1-b1)). */
static void test_optimizer_first_step(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        agave_layer_options o = opts(3, 2, 1, 1, 1, AGAVE_SHIFT_NONE);
        agave_layer *l;
        agave_optimizer *opt;
        assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_NIN, &o, &l), AGAVE_OK);
        assert_int_equal(agave_layer_skip_init(l), AGAVE_OK);
        assert_int_equal(agave_optimizer_create(ctx, (agave_optimizer_kind)kind, 0.01f, &opt),
                         AGAVE_OK);
        assert_int_equal(agave_optimizer_add_layer(opt, l), AGAVE_OK);
        agave_tensor *x = random_tensor(2, 3, 2, 2), *y, *s;
        agave_tensor *b;
        agave_layer_param(l, 2, NULL, &b);
        float before[2] = {agave_tensor_data(b)[0], agave_tensor_data(b)[1]};
        agave_layer_forward(l, x, &y);
        agave_sum(ctx, y, &s);
        assert_int_equal(agave_backward(ctx, s), AGAVE_OK);
        assert_int_equal(agave_optimizer_step(opt, 0), AGAVE_OK);
        /* d sum / d b = 8 > 0 for both biases: both move by -0.01 (Adam: the same) */
        for (int i = 0; i < 2; i++)
            assert_true(fabsf(agave_tensor_data(b)[i] - (before[i] - 0.01f)) < 1e-6f);
        assert_true(agave_tensor_grad(b)[0] == 0.0f);   /* gradients are zeroed */
        assert_int_equal(agave_optimizer_add_layer(opt, l), AGAVE_ERR_STATE);
        agave_optimizer_free(opt);
        agave_layer_free(l);
        agave_tensor_free(x);
        agave_tape_reset(ctx);
    }
}

static void test_optimizer_rejects_nan(void **state)
{
    (void)state;
    agave_layer_options o = opts(3, 2, 1, 1, 1, AGAVE_SHIFT_NONE);
    agave_layer *l;
    agave_optimizer *opt;
    assert_int_equal(agave_layer_create(ctx, AGAVE_LAYER_NIN, &o, &l), AGAVE_OK);
    agave_layer_skip_init(l);
    assert_int_equal(agave_optimizer_create(ctx, AGAVE_OPTIM_ADAMAX, 0.01f, &opt), AGAVE_OK);
    assert_int_equal(agave_optimizer_add_layer(opt, l), AGAVE_OK);
    agave_tensor *v;
    agave_layer_param(l, 0, NULL, &v);
    float keep[6];
    memcpy(keep, agave_tensor_data(v), sizeof keep);
    agave_tensor_grad(v)[3] = NAN;
    assert_int_equal(agave_optimizer_step(opt, 0), AGAVE_ERR_NUMERIC);
    assert_memory_equal(keep, agave_tensor_data(v), sizeof keep);
    assert_true(agave_tensor_grad(v)[3] == 0.0f);
    agave_optimizer_free(opt);
    assert_int_equal(agave_optimizer_create(ctx, AGAVE_OPTIM_ADAM, 0.0f, &opt), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_optimizer_create(ctx, (agave_optimizer_kind)5, 0.1f, &opt),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_optimizer_step(NULL, 0), AGAVE_ERR_NULL);
    agave_optimizer_free(NULL);
    agave_layer_free(l);
}

/* ---- configurations -------------------------------------------------------------------------- */
static void test_named_configs(void **state)
{
    (void)state;
    agave_config c;
    const char *names[] = {"tiny", "fashion", "cifar-small", "cifar-paper"};
    int F[] = {8, 32, 64, 160}, Z[] = {4, 8, 16, 32}, T[] = {0, 0, 0, 2};
    float lambda[] = {2, 2, 4, 12};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(agave_config_init(&c, names[i]), AGAVE_OK);
        assert_int_equal(c.F, F[i]);
        assert_int_equal(c.Z, Z[i]);
        assert_int_equal(c.T, T[i]);
        assert_true(c.lambda == lambda[i]);
        assert_true(c.lr == 0.004f && c.lr_warmup == 100 && c.lr_decay == 1.0f);
        assert_int_equal(c.optimizer, AGAVE_OPTIM_ADAMAX);
        assert_int_equal(agave_config_validate(&c, NULL, 0), AGAVE_OK);
    }
    assert_int_equal(agave_config_init(&c, "cifar"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_init(NULL, "tiny"), AGAVE_ERR_NULL);
}

static void test_config_set(void **state)
{
    (void)state;
    agave_config c;
    agave_config_init(&c, "tiny");
    assert_int_equal(agave_config_set(&c, "F", "12"), AGAVE_OK);
    assert_int_equal(c.F, 12);
    assert_int_equal(agave_config_set(&c, "lambda", "0.5"), AGAVE_OK);
    assert_true(c.lambda == 0.5f);
    assert_int_equal(agave_config_set(&c, "mode", "naive"), AGAVE_OK);
    assert_int_equal(c.mode, AGAVE_MODE_NAIVE);
    assert_int_equal(agave_config_set(&c, "optimizer", "adam"), AGAVE_OK);
    assert_int_equal(c.optimizer, AGAVE_OPTIM_ADAM);
    assert_int_equal(agave_config_set(&c, "ema", "0"), AGAVE_OK);
    assert_int_equal(agave_config_set(&c, "F", "12x"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "F", ""), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "lambda", "nan"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "mode", "gan"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "depth", "3"), AGAVE_ERR_UNKNOWN_KEY);
    assert_int_equal(agave_config_set(&c, NULL, "3"), AGAVE_ERR_NULL);
    assert_int_equal(c.F, 12);   /* failed sets change nothing */
}

static void expect_invalid(const char *key, const char *value, const char *word)
{
    agave_config c;
    char msg[256];
    agave_config_init(&c, "tiny");
    assert_int_equal(agave_config_set(&c, key, value), AGAVE_OK);
    assert_int_equal(agave_config_validate(&c, msg, sizeof msg), AGAVE_ERR_CONFIG);
    if (!strstr(msg, word))
        fail_msg("%s=%s: message '%s' lacks '%s'", key, value, msg, word);
    agave_model *m = (agave_model *)1;
    assert_int_equal(agave_model_create(ctx, &c, &m), AGAVE_ERR_CONFIG);
    assert_null(m);
    assert_non_null(strstr(agave_context_last_error(ctx), word));
}

static void test_config_validation(void **state)
{
    (void)state;
    expect_invalid("H", "10", "multiple of 4");
    expect_invalid("W", "1000000", "multiple of 4");
    expect_invalid("b", "24", "power of two");
    expect_invalid("b", "512", "power of two");
    expect_invalid("s", "3", "1, 2 or 4");
    expect_invalid("C", "2", "1 or 3");
    expect_invalid("M", "0", "mixture");
    expect_invalid("dropout", "1", "dropout");
    expect_invalid("lambda", "-1", "lambda");
    expect_invalid("lr", "0", "lr");
    expect_invalid("ema", "1", "ema");
    expect_invalid("T", "99", "IAF");
    expect_invalid("Z", "0", "latent");
    expect_invalid("F", "100000", "filters");
    agave_config c;
    agave_config_init(&c, "tiny");
    c.struct_size = 3;
    assert_int_equal(agave_config_validate(&c, NULL, 0), AGAVE_ERR_CONFIG);
    assert_int_equal(agave_config_validate(NULL, NULL, 0), AGAVE_ERR_NULL);
}

/* ---- model API errors ------------------------------------------------------------------------ */
static void test_model_errors(void **state)
{
    (void)state;
    agave_config c;
    agave_config_init(&c, "tiny");
    agave_model *m;
    assert_int_equal(agave_model_create(NULL, &c, &m), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_create(ctx, NULL, &m), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_create(ctx, &c, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_create(ctx, &c, &m), AGAVE_OK);
    uint8_t x[4 * 64] = {0};
    agave_eval_stats e = {sizeof e, 0, 0, 0, 0, 0, 0, 0};
    agave_step_stats s = {sizeof s, 0, 0, 0, 0, 0, 0, 0, 0, 0}, small = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(agave_model_evaluate(m, x, 4, 0, &e), AGAVE_ERR_STATE);
    assert_non_null(strstr(agave_context_last_error(ctx), "not initialised"));
    uint8_t out[64];
    assert_int_equal(agave_model_sample(m, 1, 1, NULL, out), AGAVE_ERR_STATE);
    assert_int_equal(agave_model_train_step(m, NULL, 4, &s), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_train_step(m, x, 0, &s), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_model_train_step(m, x, 4, &small), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_model_train_step(NULL, x, 4, &s), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_train_step(m, x, 4, NULL), AGAVE_OK);   /* stats optional */
    assert_int_equal(agave_model_evaluate(m, x, 4, -1, &e), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_model_evaluate(m, x, 4, 1000000000, &e), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_model_evaluate(m, x, 4, 0, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_sample(m, 0, 1, NULL, out), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_model_reconstruct(m, NULL, 1, 1, NULL, out), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_save(m, "/nonexistent-dir/x.ckpt"), AGAVE_ERR_IO);
    assert_non_null(strstr(agave_context_last_error(ctx), "/nonexistent-dir/x.ckpt"));
    assert_int_equal(agave_model_save(m, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_load(ctx, NULL, NULL, &m), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_get_config(m, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_param_numel(NULL), 0);
    agave_model_free(m);
    agave_model_free(NULL);
}

/* A NaN planted in a parameter makes every step's loss non-finite: each is
 * rejected (parameters, optimiser state and step count untouched) until
 * max_bad_steps in a row stops training with AGAVE_ERR_NUMERIC. */
static void test_nonfinite_steps_are_rejected(void **state)
{
    (void)state;
    agave_config c;
    agave_config_init(&c, "tiny");
    c.max_bad_steps = 3;
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &c, &m), AGAVE_OK);
    uint8_t x[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        x[i] = (uint8_t)(i * 7);
    agave_step_stats s = {sizeof s, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(agave_model_train_step(m, x, 4, &s), AGAVE_OK);
    assert_false(s.rejected);
    int n = agave_model_param_tensor_count(m);
    const char *name;
    agave_tensor *p;
    assert_int_equal(agave_model_param(m, n - 1, &name, &p), AGAVE_OK);
    assert_string_equal(name, "aux_log_scale");
    assert_int_equal(agave_model_param(m, n, &name, &p), AGAVE_ERR_INVALID_ARG);
    /* snapshot every parameter, then poison one */
    size_t total = agave_model_param_numel(m), off = 0;
    float *before = malloc(total * sizeof(float)), *after = malloc(total * sizeof(float));
    for (int i = 0; i < n; i++) {
        agave_model_param(m, i, NULL, &p);
        agave_tensor_copy_out(p, before + off, agave_tensor_numel(p));
        off += agave_tensor_numel(p);
    }
    agave_tensor_data(p)[0] = NAN;
    before[total - 1] = NAN;
    for (int k = 1; k <= 3; k++) {
        agave_status st = agave_model_train_step(m, x, 4, &s);
        assert_true(s.rejected);
        assert_int_equal(st, k < 3 ? AGAVE_OK : AGAVE_ERR_NUMERIC);
        assert_int_equal(agave_model_step_count(m), 1);
        assert_int_equal(agave_model_rejected_count(m), k);
    }
    assert_non_null(strstr(agave_context_last_error(ctx), "3 consecutive"));
    off = 0;
    for (int i = 0; i < n; i++) {
        agave_model_param(m, i, NULL, &p);
        agave_tensor_copy_out(p, after + off, agave_tensor_numel(p));
        off += agave_tensor_numel(p);
    }
    assert_memory_equal(before, after, (total - 1) * sizeof(float));
    assert_true(isnan(after[total - 1]));
    /* mending the parameter lets training continue */
    agave_tensor_data(p)[0] = 0.0f;
    assert_int_equal(agave_model_train_step(m, x, 4, &s), AGAVE_OK);
    assert_false(s.rejected);
    assert_int_equal(agave_model_step_count(m), 2);
    free(before);
    free(after);
    agave_model_free(m);
}

/* Training settings change on a live model; the architecture does not. */
static void test_model_update_config(void **state)
{
    (void)state;
    agave_config c, d;
    agave_config_init(&c, "tiny");
    c.mode = AGAVE_MODE_VAE;   /* the paper's schedule: pretrain the VAE, then switch */
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &c, &m), AGAVE_OK);
    uint8_t x[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        x[i] = (uint8_t)(i * 5);
    agave_step_stats s = {sizeof s, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(agave_model_train_step(m, x, 4, &s), AGAVE_OK);
    assert_true(s.pixelcnn_nll == 0.0);
    d = c;
    d.mode = AGAVE_MODE_AGAVE;
    d.lr = 0.0005f;
    d.lambda = 1.0f;
    d.ema = 0.0f;
    assert_int_equal(agave_model_update_config(m, &d), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, 4, &s), AGAVE_OK);
    assert_true(s.pixelcnn_nll > 0.0);
    agave_config got;
    agave_model_get_config(m, &got);
    assert_int_equal(got.mode, AGAVE_MODE_AGAVE);
    assert_true(got.lr == 0.0005f && got.lambda == 1.0f && got.ema == 0.0f);
    d.F = 16;
    assert_int_equal(agave_model_update_config(m, &d), AGAVE_ERR_CONFIG);
    assert_non_null(strstr(agave_context_last_error(ctx), "architecture"));
    d.F = c.F;
    d.optimizer = AGAVE_OPTIM_ADAM;
    assert_int_equal(agave_model_update_config(m, &d), AGAVE_ERR_CONFIG);
    d.optimizer = c.optimizer;
    d.lr = -1;
    assert_int_equal(agave_model_update_config(m, &d), AGAVE_ERR_CONFIG);
    assert_int_equal(agave_model_update_config(NULL, &d), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_update_config(m, NULL), AGAVE_ERR_NULL);
    agave_model_get_config(m, &got);
    assert_true(got.lr == 0.0005f);   /* refused updates change nothing */
    agave_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_output_shapes),
        cmocka_unit_test(test_gated_resnet_inputs),
        cmocka_unit_test(test_parameter_names),
        cmocka_unit_test(test_data_dependent_init),
        cmocka_unit_test(test_masked_conv_is_autoregressive),
        cmocka_unit_test(test_layer_errors),
        cmocka_unit_test(test_optimizer_first_step),
        cmocka_unit_test(test_optimizer_rejects_nan),
        cmocka_unit_test(test_named_configs),
        cmocka_unit_test(test_config_set),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_nonfinite_steps_are_rejected),
        cmocka_unit_test(test_model_update_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
