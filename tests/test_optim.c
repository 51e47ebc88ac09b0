/* The optimisers (lib/train/optim.c) against updates computed here by hand,
 * in double, from the formulas of docs/model.md and PixelCNN++ (beta1 0.95,
 * beta2 0.9995, eps 1e-8):
 *   Adamax: m = b1 m + (1-b1) g;  u = max(b2 u, |g|);      p -= lr/(1-b1^t) m/(u+eps)
 *   Adam:   m = b1 m + (1-b1) g;  u = b2 u + (1-b2) g^2;   p -= lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(u)+eps)
 * with g the gradient after global-norm clipping: scaled by c/||g|| when its
 * L2 norm over all parameters exceeds the threshold c, untouched otherwise.
 * After the first step m = (1-b1) g, so the optimiser's state shows the
 * clipped gradient itself. The reported gradient norm is the norm before
 * clipping, summed in double. */
#define AGAVE_EXPERIMENTAL   /* the gradient reducer, to see the step's gradient */
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
#include "train/train.h"

/* The betas as the library holds them: floats. */
#define B1 ((double)0.95f)
#define B2 ((double)0.9995f)

static agave_context *ctx;

static int setup(void **state)
{
    (void)state;
    return agave_context_create(&ctx, 1) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(ctx);
    return 0;
}

/* Two one-element parameters a and b (the norm spans tensors), both 0. */
typedef struct pair {
    agave_tensor *a, *b;
    agave_optimizer *opt;
} pair;

static pair make_pair(agave_optimizer_kind kind, float lr)
{
    pair p;
    int dims[1] = {1};
    assert_int_equal(agave_tensor_create(ctx, 1, dims, &p.a), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 1, dims, &p.b), AGAVE_OK);
    agave_tensor_fill(p.a, 0), agave_tensor_fill(p.b, 0);
    assert_int_equal(agave_tensor_set_requires_grad(p.a, 1), AGAVE_OK);
    assert_int_equal(agave_tensor_set_requires_grad(p.b, 1), AGAVE_OK);
    assert_int_equal(agave_optimizer_create(ctx, kind, lr, &p.opt), AGAVE_OK);
    assert_int_equal(optim_add_tensor(p.opt, p.a), AGAVE_OK);
    assert_int_equal(optim_add_tensor(p.opt, p.b), AGAVE_OK);
    return p;
}

static void free_pair(pair *p)
{
    agave_optimizer_free(p->opt);
    agave_tensor_free(p->a);
    agave_tensor_free(p->b);
}

static void set_grads(pair *p, float ga, float gb)
{
    tensor_grad_buffer(p->a)[0] = ga;
    tensor_grad_buffer(p->b)[0] = gb;
}

static void expect_near(double got, double want, double rel, const char *what)
{
    if (!(fabs(got - want) <= rel * fmax(fabs(want), 1e-30)))
        fail_msg("%s: %.9g, expected %.9g by hand", what, got, want);
}

/* ---- the gradient norm -------------------------------------------------------------- */
/* (3, 4) over two tensors: 5. One large value and a million small ones:
 * 4096^2 = 2^24, and 2^24 + 1 is 2^24 in float, so a float sum would report
 * 4096; the double sum gives sqrt(2^24 + 10^6). Without the square root
 * the first case reports 25. */
static void test_grad_norm_by_hand(void **state)
{
    (void)state;
    pair p = make_pair(AGAVE_OPTIM_ADAMAX, 0.1f);
    set_grads(&p, 3, 4);
    expect_near(optim_grad_norm(p.opt), 5.0, 1e-12, "norm of (3, 4)");
    free_pair(&p);

    agave_tensor *t;
    int dims[1] = {1000001};
    assert_int_equal(agave_tensor_create(ctx, 1, dims, &t), AGAVE_OK);
    assert_int_equal(agave_tensor_set_requires_grad(t, 1), AGAVE_OK);
    float *g = tensor_grad_buffer(t);
    g[0] = 4096;
    for (int i = 1; i < dims[0]; i++)
        g[i] = 1;
    agave_optimizer *opt;
    assert_int_equal(agave_optimizer_create(ctx, AGAVE_OPTIM_ADAMAX, 0.1f, &opt), AGAVE_OK);
    assert_int_equal(optim_add_tensor(opt, t), AGAVE_OK);
    expect_near(optim_grad_norm(opt), sqrt(16777216.0 + 1e6), 1e-12, "norm of (4096, 1 x 10^6)");
    agave_optimizer_free(opt);
    agave_tensor_free(t);
}

/* ---- clipping -------------------------------------------------------------------- */
/* One Adamax step (lr 0.1) from 0 with gradient g and threshold c: the
 * clipped gradient read back from m = (1-b1) g' and u = |g'|, and the
 * parameters, which move by -lr sign(g') whatever the scale. */
static void check_clip(float ga, float gb, float c, double want_a, double want_b)
{
    pair p = make_pair(AGAVE_OPTIM_ADAMAX, 0.1f);
    set_grads(&p, ga, gb);
    assert_int_equal(agave_optimizer_step(p.opt, c), AGAVE_OK);
    char what[96];
    snprintf(what, sizeof what, "clipped gradient of (%g, %g) at %g, a", ga, gb, c);
    expect_near(p.opt->m[0] / (1 - B1), want_a, 1e-6, what);
    expect_near(p.opt->u[0], fabs(want_a), 1e-6, what);
    snprintf(what, sizeof what, "clipped gradient of (%g, %g) at %g, b", ga, gb, c);
    expect_near(p.opt->m[1] / (1 - B1), want_b, 1e-6, what);
    expect_near(p.opt->u[1], fabs(want_b), 1e-6, what);
    expect_near(agave_tensor_data(p.a)[0], ga > 0 ? -0.1 : 0.1, 1e-6, "a after the step");
    expect_near(agave_tensor_data(p.b)[0], gb > 0 ? -0.1 : 0.1, 1e-6, "b after the step");
    free_pair(&p);
}

static void test_clipping_by_hand(void **state)
{
    (void)state;
    /* norm 5 over c = 1: scaled by 1/5, so the norm is 1 and the direction kept */
    check_clip(3, 4, 1, 0.6, 0.8);
    check_clip(-3, 4, 2.5, -1.5, 2.0);
    /* at or below the threshold, or with clipping off (0): untouched */
    check_clip(3, 4, 5, 3, 4);
    check_clip(3, 4, 10, 3, 4);
    check_clip(300, -400, 0, 300, -400);
}

/* Inside a model (the tiny configuration, grad_clip 0.01): the step's
 * figures report the norm of the very gradient the reducer sees (an identity
 * reducer copies it out), summed in double, and the update uses that
 * gradient scaled to norm 0.01, direction kept (the first moment after the
 * first update is (1-b1) times it). */
typedef struct seen {
    agave_model *m;
    float *grad;
} seen;

static agave_status copy_gradient(float *buf, size_t n, void *user)
{
    seen *s = user;
    size_t P = agave_model_param_numel(s->m);
    assert_true(n > P);
    memcpy(s->grad, buf, P * sizeof(float));
    return AGAVE_OK;
}

static void test_model_reports_and_clips_its_gradient(void **state)
{
    (void)state;
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.grad_clip = 0.01f;
    uint8_t x[4 * 64];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)(i * 37 % 251);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 4), AGAVE_OK);
    size_t P = agave_model_param_numel(m);
    seen s = {m, malloc(P * sizeof(float))};
    assert_int_equal(agave_model_set_grad_reducer(m, copy_gradient, &s), AGAVE_OK);
    agave_step_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    assert_int_equal(agave_model_train_step(m, x, 4, &st), AGAVE_OK);
    double norm = 0;
    for (size_t i = 0; i < P; i++)
        norm += (double)s.grad[i] * s.grad[i];
    norm = sqrt(norm);
    expect_near(st.grad_norm, norm, 1e-12, "reported gradient norm");
    assert_true(norm > 10 * cfg.grad_clip);   /* so that clipping matters */
    double clipped = 0, worst = 0, scale = cfg.grad_clip / norm;
    for (size_t i = 0; i < P; i++) {
        double g = m->opt->m[i] / (1 - B1);
        clipped += g * g;
        worst = fmax(worst, fabs(g - s.grad[i] * scale));
    }
    expect_near(sqrt(clipped), cfg.grad_clip, 1e-5, "norm of the clipped gradient");
    if (!(worst <= 1e-6 * cfg.grad_clip))
        fail_msg("the clipped gradient is off the original's direction by %.3g", worst);
    free(s.grad);
    agave_model_free(m);
}

/* ---- the second moment -------------------------------------------------------------- */
/* Two steps, the second with a zero gradient: Adamax's u decays to b2 |g1|
 * (u = max(b2 u, 0)), Adam's to b2 (1-b2) g1^2; m to b1 (1-b1) g1; and the
 * second update follows from them with t = 2 in the bias corrections. */
static void check_two_steps(agave_optimizer_kind kind)
{
    const double lr = 0.01, g1[2] = {0.5, -2.0};
    pair p = make_pair(kind, (float)lr);
    set_grads(&p, (float)g1[0], (float)g1[1]);
    assert_int_equal(agave_optimizer_step(p.opt, 0), AGAVE_OK);
    double want[2] = {0, 0}, m[2], u[2];
    for (int i = 0; i < 2; i++) {
        m[i] = (1 - B1) * g1[i];
        u[i] = kind == AGAVE_OPTIM_ADAMAX ? fabs(g1[i]) : (1 - B2) * g1[i] * g1[i];
        want[i] -= kind == AGAVE_OPTIM_ADAMAX
                       ? lr / (1 - B1) * m[i] / (u[i] + 1e-8)
                       : lr * sqrt(1 - B2) / (1 - B1) * m[i] / (sqrt(u[i]) + 1e-8);
    }
    expect_near(agave_tensor_data(p.a)[0], want[0], 1e-5, "a after step 1");
    expect_near(agave_tensor_data(p.b)[0], want[1], 1e-5, "b after step 1");
    set_grads(&p, 0, 0);
    assert_int_equal(agave_optimizer_step(p.opt, 0), AGAVE_OK);
    const char *name = kind == AGAVE_OPTIM_ADAMAX ? "Adamax" : "Adam";
    for (int i = 0; i < 2; i++) {
        m[i] *= B1;
        u[i] *= B2;
        want[i] -= kind == AGAVE_OPTIM_ADAMAX
                       ? lr / (1 - B1 * B1) * m[i] / (u[i] + 1e-8)
                       : lr * sqrt(1 - B2 * B2) / (1 - B1 * B1) * m[i] / (sqrt(u[i]) + 1e-8);
        char what[64];
        snprintf(what, sizeof what, "%s: second moment after a zero gradient (%d)", name, i);
        /* 1e-6: the decay itself moves u by 5e-4 relative */
        expect_near(p.opt->u[i], u[i], 1e-6, what);
        snprintf(what, sizeof what, "%s: first moment after a zero gradient (%d)", name, i);
        expect_near(p.opt->m[i], m[i], 1e-6, what);
    }
    expect_near(agave_tensor_data(p.a)[0], want[0], 1e-5, "a after step 2");
    expect_near(agave_tensor_data(p.b)[0], want[1], 1e-5, "b after step 2");
    assert_int_equal(p.opt->t, 2);
    free_pair(&p);
}

static void test_adamax_two_steps_by_hand(void **state)
{
    (void)state;
    check_two_steps(AGAVE_OPTIM_ADAMAX);
}

static void test_adam_two_steps_by_hand(void **state)
{
    (void)state;
    check_two_steps(AGAVE_OPTIM_ADAM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_norm_by_hand),
        cmocka_unit_test(test_clipping_by_hand),
        cmocka_unit_test(test_model_reports_and_clips_its_gradient),
        cmocka_unit_test(test_adamax_two_steps_by_hand),
        cmocka_unit_test(test_adam_two_steps_by_hand),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
