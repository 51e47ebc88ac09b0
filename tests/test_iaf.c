/* The inverse autoregressive flow of q(z|x) (lib/model/vae.c) against its
 * definition, with the flow treated as a black box z0 -> zT:
 *  - log q(zT|x) = log N(z0; mean, std) - log |det dzT/dz0|, the Jacobian
 *    taken by central finite differences and its determinant by LU, in
 *    double (an IAF step's log-determinant is sum log sigma; with the sign
 *    of s flipped, softplus(s) for softplus(-s), log q moves by sum s, about
 *    2 nats per latent element at the forget-gate bias);
 *  - one step's Jacobian is triangular in its channel order: output channel
 *    o depends on input channel i != o (at any position) only when i comes
 *    before o, and on itself only at its own position (by sigma); step 0
 *    runs over the channels in their order, step 1 in reverse (docs/model.md:
 *    the order is reversed between steps).
 * Every expectation comes from these definitions and the flow's own outputs,
 * so it holds whatever the gate's bias or the initialisation. The flow is
 * driven through vae_posterior_sample with log_std = -80: exp(-80) * eps
 * vanishes next to the mean, so z0 is the mean given. */
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

enum { N = 2 };   /* images */

typedef struct flow_case {
    agave_model *m;
    int Z, h, w, D;   /* D = Z h w latent values per image */
    float *context;   /* (N, Z, h, w) from the encoder */
} flow_case;

/* The tiny model (1x8x8, Z = 4 over 2x2: D = 16) with T IAF steps, after the
 * data-dependent initialisation, every parameter moved by ~10% of its
 * tensor's scale so that no gate sits exactly at its initial value. */
static agave_model *iaf_model(agave_context *ctx, int T)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.C = 1, cfg.T = T;
    uint8_t x[4 * 64];
    test_rng_seed(3);
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)test_uniform(0, 255.99);
    agave_model *m = NULL;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 4), AGAVE_OK);
    test_rng_seed(4);
    for (int i = 0; i < m->n_params; i++) {
        agave_tensor *t = m->params[i];
        double rms = 0;
        for (size_t e = 0; e < t->numel; e++)
            rms += (double)t->data[e] * t->data[e] / (double)t->numel;
        for (size_t e = 0; e < t->numel; e++)
            t->data[e] += (float)((0.1 * sqrt(rms) + 0.01) * test_uniform(-1, 1));
    }
    model_set_training(m, 0);
    return m;
}

static agave_tensor *arena_copy(agave_context *ctx, const int *dims, const float *src)
{
    agave_tensor *t = tensor_new_arena(ctx, 4, dims);
    assert_non_null(t);
    memcpy(t->data, src, t->numel * sizeof(float));
    return t;
}

/* Encodes random images: mean, log_std (kept in *mean_out, *log_std_out)
 * and the context, all (N, Z, h, w). */
static flow_case encode(agave_model *m, float **mean_out, float **log_std_out)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    flow_case f = {m, c->Z, c->H / 4, c->W / 4, c->Z * (c->H / 4) * (c->W / 4), NULL};
    uint8_t x[N * 64];
    test_rng_seed(5);
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)test_uniform(0, 255.99);
    agave_tape_reset(ctx);
    agave_tensor *xt = image_tensor(ctx, x, N, c->C, c->H, c->W), *mean, *log_std, *context;
    assert_non_null(xt);
    assert_int_equal(vae_encode(m, xt, &mean, &log_std, &context), AGAVE_OK);
    size_t bytes = (size_t)N * f.D * sizeof(float);
    if (context) {   /* NULL without a flow */
        f.context = malloc(bytes);
        memcpy(f.context, context->data, bytes);
    }
    if (mean_out) {
        *mean_out = malloc(bytes);
        *log_std_out = malloc(bytes);
        memcpy(*mean_out, mean->data, bytes);
        memcpy(*log_std_out, log_std->data, bytes);
    }
    agave_tape_reset(ctx);
    return f;
}

/* zT = the flow applied to z0 (N*D values), the context fixed. */
static void flow(const flow_case *f, const float *z0, float *zT)
{
    agave_context *ctx = f->m->ctx;
    int dims[4] = {N, f->Z, f->h, f->w};
    agave_tape_reset(ctx);
    agave_tensor *mean = arena_copy(ctx, dims, z0), *log_std = tensor_new_arena(ctx, 4, dims);
    agave_tensor *context = f->context ? arena_copy(ctx, dims, f->context) : NULL;
    agave_tensor *z, *log_q, *log_p;
    assert_non_null(log_std);
    agave_tensor_fill(log_std, -80.0f);
    assert_int_equal(vae_posterior_sample(f->m, mean, log_std, context, &z, &log_q, &log_p),
                     AGAVE_OK);
    memcpy(zT, z->data, (size_t)N * f->D * sizeof(float));
    agave_tape_reset(ctx);
}

/* J[a][b] = d zT[a] / d z0[b] for image n, by central differences (D x D). */
static double *jacobian(const flow_case *f, const float *z0, int n, double step)
{
    int D = f->D;
    size_t all = (size_t)N * D;
    double *J = calloc((size_t)D * D, sizeof(double));
    float *zp = malloc(all * sizeof(float)), *zm = malloc(all * sizeof(float));
    float *fp = malloc(all * sizeof(float)), *fm = malloc(all * sizeof(float));
    for (int b = 0; b < D; b++) {
        memcpy(zp, z0, all * sizeof(float));
        memcpy(zm, z0, all * sizeof(float));
        zp[(size_t)n * D + b] += (float)step;
        zm[(size_t)n * D + b] -= (float)step;
        /* the step actually taken, after rounding to float */
        double taken = (double)zp[(size_t)n * D + b] - (double)zm[(size_t)n * D + b];
        flow(f, zp, fp);
        flow(f, zm, fm);
        for (int a = 0; a < D; a++)
            J[(size_t)a * D + b] =
                ((double)fp[(size_t)n * D + a] - (double)fm[(size_t)n * D + a]) / taken;
    }
    free(zp), free(zm), free(fp), free(fm);
    return J;
}

/* log |det A| of a D x D matrix by LU with partial pivoting (A is consumed). */
static double log_abs_det(double *A, int D)
{
    double sum = 0;
    for (int k = 0; k < D; k++) {
        int p = k;
        for (int r = k + 1; r < D; r++)
            if (fabs(A[(size_t)r * D + k]) > fabs(A[(size_t)p * D + k]))
                p = r;
        if (p != k)
            for (int c = 0; c < D; c++) {
                double t = A[(size_t)k * D + c];
                A[(size_t)k * D + c] = A[(size_t)p * D + c];
                A[(size_t)p * D + c] = t;
            }
        double pivot = A[(size_t)k * D + k];
        assert_true(pivot != 0);
        sum += log(fabs(pivot));
        for (int r = k + 1; r < D; r++) {
            double l = A[(size_t)r * D + k] / pivot;
            for (int c = k; c < D; c++)
                A[(size_t)r * D + c] -= l * A[(size_t)k * D + c];
        }
    }
    return sum;
}

/* ---- log q through the flow ------------------------------------------------------ */
static void check_log_q(int T)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    agave_model *m = iaf_model(ctx, T);
    float *mean, *log_std;
    flow_case f = encode(m, &mean, &log_std);
    int D = f.D;
    size_t all = (size_t)N * D;
    int dims[4] = {N, f.Z, f.h, f.w};

    /* The library's sample: z0 is drawn by the same generator state as
     * agave_gaussian_sample draws it here. */
    agave_context_seed(ctx, 11);
    agave_rng saved = ctx->rng;
    agave_tape_reset(ctx);
    agave_tensor *mt = arena_copy(ctx, dims, mean), *st = arena_copy(ctx, dims, log_std), *z0t;
    assert_int_equal(agave_gaussian_sample(ctx, mt, st, &z0t), AGAVE_OK);
    float *z0 = malloc(all * sizeof(float));
    memcpy(z0, z0t->data, all * sizeof(float));
    ctx->rng = saved;
    agave_tape_reset(ctx);
    mt = arena_copy(ctx, dims, mean), st = arena_copy(ctx, dims, log_std);
    agave_tensor *ct = f.context ? arena_copy(ctx, dims, f.context) : NULL, *zt, *log_q, *log_p;
    assert_int_equal(vae_posterior_sample(m, mt, st, ct, &zt, &log_q, &log_p), AGAVE_OK);
    float *z_lib = malloc(all * sizeof(float));
    memcpy(z_lib, zt->data, all * sizeof(float));
    double lib_log_q[N];
    for (int n = 0; n < N; n++)
        lib_log_q[n] = log_q->data[n];
    agave_tape_reset(ctx);

    /* The black-box flow reproduces the library's zT from that z0. */
    float *z_flow = malloc(all * sizeof(float));
    flow(&f, z0, z_flow);
    for (size_t i = 0; i < all; i++)
        assert_true(fabs((double)z_flow[i] - z_lib[i]) <= 1e-5 * fmax(1, fabs(z_lib[i])));

    for (int n = 0; n < N; n++) {
        double log_n = 0;   /* log N(z0; mean, std), in double */
        for (int i = 0; i < D; i++) {
            size_t k = (size_t)n * D + i;
            double s = exp((double)log_std[k]), u = ((double)z0[k] - mean[k]) / s;
            log_n += -0.5 * u * u - log(s) - 0.5 * log(2 * M_PI);
        }
        double *J = jacobian(&f, z0, n, 1e-2);
        double log_det = log_abs_det(J, D);
        double want = log_n - log_det, err = fabs(lib_log_q[n] - want);
        print_message("T = %d, image %d: log q %.6f, log N(z0) - log|det J| = %.6f - %.6f = "
                      "%.6f (difference %.2e)\n", T, n, lib_log_q[n], log_n, log_det, want, err);
        if (!(err <= 1e-3))
            fail_msg("T = %d: log q(z|x) = %.6f, expected %.6f from the Jacobian", T,
                     lib_log_q[n], want);
        if (T > 0 && !(fabs(log_det) > 0.5))
            fail_msg("T = %d: log |det J| = %.3g: the flow is too close to the identity for "
                     "the test to see its determinant", T, log_det);
        free(J);
    }
    free(z0), free(z_lib), free(z_flow), free(mean), free(log_std), free(f.context);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_log_q_without_flow(void **state)
{
    (void)state;
    check_log_q(0);
}

static void test_log_q_one_step(void **state)
{
    (void)state;
    check_log_q(1);
}

static void test_log_q_two_steps(void **state)
{
    (void)state;
    check_log_q(2);
}

/* ---- each step's channel order ------------------------------------------------------- */
/* Makes IAF step t the identity: its output layer's weights off (g = 0), m = 0
 * and s = 40, so sigma = sigmoid(40 + bias) is 1 in float and z' = 0 + 1 * z. */
static void make_identity(agave_model *m, int t)
{
    agave_layer *l = m->vae.iaf_out[t];
    int Z = m->cfg.Z;
    for (int i = 0; i < agave_layer_param_tensor_count(l); i++) {
        const char *name;
        agave_tensor *p;
        assert_int_equal(agave_layer_param(l, i, &name, &p), AGAVE_OK);
        if (strcmp(name, "g") == 0)
            agave_tensor_fill(p, 0.0f);
        if (strcmp(name, "b") == 0)
            for (int c = 0; c < 2 * Z; c++)
                p->data[c] = c < Z ? 0.0f : 40.0f;
    }
}

/* Step `step` alone (the other made the identity): its Jacobian for image 0,
 * in the order (channel, position), is triangular in the step's channel
 * order (forward for step 0, reversed for step 1), sigma in (0, 1) on the
 * diagonal, zero between distinct positions of one channel, and not
 * diagonal (some earlier channel does reach a later one). */
static void check_step_order(int step)
{
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    agave_model *m = iaf_model(ctx, 2);
    make_identity(m, 1 - step);
    flow_case f = encode(m, NULL, NULL);
    int D = f.D, Z = f.Z, P = f.h * f.w;
    float *z0 = malloc((size_t)N * D * sizeof(float));
    test_rng_seed(17);
    for (int i = 0; i < N * D; i++)
        z0[i] = (float)test_uniform(-1.5, 1.5);
    double *J = jacobian(&f, z0, 0, 1e-2);
    double reach = 0;   /* largest dependence of a channel on an earlier one */
    for (int o = 0; o < Z; o++)
        for (int i = 0; i < Z; i++) {
            int before = step == 0 ? i < o : i > o;   /* i comes before o in the step's order */
            for (int p = 0; p < P; p++)
                for (int q = 0; q < P; q++) {
                    double v = J[(size_t)(o * P + p) * D + i * P + q];
                    if (i == o && p == q) {
                        if (!(v > 0 && v < 1))
                            fail_msg("step %d: dz'/dz of channel %d at %d is %.4g, expected "
                                     "sigma in (0, 1)", step, o, p, v);
                    } else if (i == o || !before) {
                        if (!(fabs(v) < 1e-6))
                            fail_msg("step %d: channel %d depends on channel %d (%.3g): the "
                                     "step's order is %s", step, o, i, v,
                                     step == 0 ? "0, 1, .., Z-1" : "Z-1, .., 1, 0");
                    } else if (fabs(v) > reach) {
                        reach = fabs(v);
                    }
                }
        }
    print_message("step %d: triangular in its order; largest reach of an earlier channel %.3g\n",
                  step, reach);
    assert_true(reach > 1e-3);
    free(J), free(z0), free(f.context);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_step0_channel_order(void **state)
{
    (void)state;
    check_step_order(0);
}

static void test_step1_reversed_order(void **state)
{
    (void)state;
    check_step_order(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_q_without_flow),
        cmocka_unit_test(test_log_q_one_step),
        cmocka_unit_test(test_log_q_two_steps),
        cmocka_unit_test(test_step0_channel_order),
        cmocka_unit_test(test_step1_reversed_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
