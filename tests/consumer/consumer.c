/* An out-of-tree program using the installed libagave, as a user would: it sees
 * only <agave.h> and links with `pkg-config --libs agave` (tests/consumer.sh
 * builds it shared and static). It exercises the version, a context, tensors,
 * two ops, the gradient tape and a loss, checks every number against values
 * worked out by hand, and prints "consumer: all checks passed" at the end.
 * Exit status: 0 when every check passed, 1 otherwise. */
#include <agave.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok)
        failures++;
}

static int close_to(double a, double b, double tol) { return fabs(a - b) <= tol; }

static int status_ok(agave_status st, const char *call, const agave_context *ctx)
{
    if (st == AGAVE_OK)
        return 1;
    printf("FAIL: %s returned %d (%s): %s\n", call, (int)st, agave_status_string(st),
           ctx ? agave_context_last_error(ctx) : "");
    failures++;
    return 0;
}

/* log P(level of y) under a logistic(mean, s) discretised into `levels` bins on
 * the [-1, 1] scale, in double precision, from the formula in agave.h. */
static double dlogistic_ref(int y, double mean, double log_scale, int levels)
{
    double c = 256.0 / levels, s = exp(log_scale);
    int k = (int)(y * levels / 256);
    double lo = (k * c - 0.5) / 127.5 - 1.0, hi = ((k + 1) * c - 0.5) / 127.5 - 1.0;
    double cdf_hi = k == levels - 1 ? 1.0 : 1.0 / (1.0 + exp(-(hi - mean) / s));
    double cdf_lo = k == 0 ? 0.0 : 1.0 / (1.0 + exp(-(lo - mean) / s));
    return log(cdf_hi - cdf_lo);
}

static void check_ops(void)
{
    agave_context *ctx = NULL;
    agave_tensor *a = NULL, *b = NULL, *bad = NULL;
    if (!status_ok(agave_context_create(&ctx, 42), "agave_context_create", NULL))
        return;

    const int dims[2] = {2, 3};
    const float av[6] = {1, 2, 3, 4, 5, 6};
    const float bv[6] = {0.5f, -1, 2, 0, 1.5f, -3};
    if (status_ok(agave_tensor_create(ctx, 2, dims, &a), "agave_tensor_create", ctx) &&
        status_ok(agave_tensor_create(ctx, 2, dims, &b), "agave_tensor_create", ctx) &&
        status_ok(agave_tensor_copy_in(a, av, 6), "agave_tensor_copy_in", ctx) &&
        status_ok(agave_tensor_copy_in(b, bv, 6), "agave_tensor_copy_in", ctx) &&
        status_ok(agave_tensor_set_requires_grad(a, 1), "agave_tensor_set_requires_grad", ctx) &&
        status_ok(agave_tensor_set_requires_grad(b, 1), "agave_tensor_set_requires_grad", ctx)) {
        check(agave_tensor_ndim(a) == 2 && agave_tensor_dim(a, 0) == 2 &&
                  agave_tensor_dim(a, 1) == 3 && agave_tensor_numel(a) == 6,
              "tensor shape (2,3)");

        /* L = sum(a + b) + sum(a * b): dL/da = 1 + b, dL/db = 1 + a. */
        agave_tensor *s = NULL, *p = NULL, *s1 = NULL, *s2 = NULL, *l = NULL;
        if (status_ok(agave_add(ctx, a, b, &s), "agave_add", ctx) &&
            status_ok(agave_mul(ctx, a, b, &p), "agave_mul", ctx) &&
            status_ok(agave_sum(ctx, s, &s1), "agave_sum", ctx) &&
            status_ok(agave_sum(ctx, p, &s2), "agave_sum", ctx) &&
            status_ok(agave_add(ctx, s1, s2, &l), "agave_add", ctx)) {
            float sv[6], lv = 0;
            agave_tensor_copy_out(s, sv, 6);
            check(sv[0] == 1.5f && sv[2] == 5 && sv[5] == 3, "agave_add values");
            agave_tensor_copy_out(s1, &lv, 1);
            check(close_to(lv, 21.0 + 0.0, 1e-5), "agave_sum of a + b = 21");
            agave_tensor_copy_out(l, &lv, 1);
            /* sum(a*b) = 0.5 - 2 + 6 + 0 + 7.5 - 18 = -6 */
            check(close_to(lv, 15.0, 1e-5), "L = sum(a + b) + sum(a * b) = 15");
            check(agave_tape_size(ctx) == 5, "the tape recorded 5 ops");

            if (status_ok(agave_backward(ctx, l), "agave_backward", ctx)) {
                const float *ga = agave_tensor_grad(a), *gb = agave_tensor_grad(b);
                int ok = ga && gb;
                for (int i = 0; ok && i < 6; i++)
                    ok = close_to(ga[i], 1 + bv[i], 1e-6) && close_to(gb[i], 1 + av[i], 1e-6);
                check(ok, "agave_backward: dL/da = 1 + b, dL/db = 1 + a");
            }
        }
        /* A dense layer goes through cblas_sgemm, so a static link must have
         * pulled OpenBLAS in. x = a (2,3), w (4,3), bias (4): out = x w^T + bias. */
        const int wdims[2] = {4, 3}, bdims[1] = {4};
        const float wv[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, -1, 0.5f};
        const float biasv[4] = {0.25f, 0, 0, -1};
        agave_tensor *w = NULL, *bias = NULL, *y = NULL;
        if (status_ok(agave_tensor_create(ctx, 2, wdims, &w), "agave_tensor_create", ctx) &&
            status_ok(agave_tensor_create(ctx, 1, bdims, &bias), "agave_tensor_create", ctx) &&
            status_ok(agave_tensor_copy_in(w, wv, 12), "agave_tensor_copy_in", ctx) &&
            status_ok(agave_tensor_copy_in(bias, biasv, 4), "agave_tensor_copy_in", ctx) &&
            status_ok(agave_dense(ctx, a, w, bias, &y), "agave_dense", ctx)) {
            /* rows of a: (1,2,3) and (4,5,6) */
            const float want[8] = {1.25f, 2, 3, -0.5f, 4.25f, 5, 6, 1};
            float got[8] = {0};
            int ok = agave_tensor_dim(y, 0) == 2 && agave_tensor_dim(y, 1) == 4 &&
                     agave_tensor_copy_out(y, got, 8) == AGAVE_OK;
            for (int i = 0; ok && i < 8; i++)
                ok = close_to(got[i], want[i], 1e-5);
            check(ok, "agave_dense (2,3) x (4,3)^T + bias");
        }
        agave_tensor_free(bias);
        agave_tensor_free(w);

        status_ok(agave_tape_reset(ctx), "agave_tape_reset", ctx);
        check(agave_tape_size(ctx) == 0, "agave_tape_reset empties the tape");

        /* A shape mismatch is an error with a message, not a crash. */
        const int dims2[2] = {3, 2};
        agave_tensor *out = NULL;
        if (status_ok(agave_tensor_create(ctx, 2, dims2, &bad), "agave_tensor_create", ctx)) {
            agave_status st = agave_add(ctx, a, bad, &out);
            check(st == AGAVE_ERR_SHAPE && out == NULL &&
                      strlen(agave_context_last_error(ctx)) > 0,
                  "agave_add on (2,3) and (3,2) returns AGAVE_ERR_SHAPE with a message");
            printf("      message: %s\n", agave_context_last_error(ctx));
        }
    }
    agave_tensor_free(bad);
    agave_tensor_free(b);
    agave_tensor_free(a);
    agave_context_free(ctx);
    agave_context_free(NULL); /* free functions accept NULL */
    agave_tensor_free(NULL);
}

static void check_loss(void)
{
    /* levels 2: y = 200 is the top bin [0, +inf) on the [-1,1] scale, so with
     * mean 0, scale 1: log(1 - sigmoid(0)) = log 0.5. y = 10 is the bottom bin
     * (-inf, 0): with mean 1, log sigmoid(-1) = -1.3132616875. The others are a
     * middle bin of 256 and 8 levels against the reference formula. */
    const uint8_t y[4] = {200, 10, 128, 77};
    const float mean[4] = {0.0f, 1.0f, 0.01f, -0.3f};
    const float log_scale[4] = {0.0f, 0.0f, -4.0f, -2.0f};
    const int levels[4] = {2, 2, 256, 8};
    const double want_fixed[2] = {-0.69314718056, -1.31326168752};
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        float lp = 0;
        agave_status st = agave_dlogistic_logprob(&y[i], &mean[i], &log_scale[i], 1, levels[i], &lp);
        double want = i < 2 ? want_fixed[i] : dlogistic_ref(y[i], mean[i], log_scale[i], levels[i]);
        if (st != AGAVE_OK || !close_to(lp, want, 1e-5 + 1e-5 * fabs(want))) {
            printf("      y=%d levels=%d: got %.8f (status %d), want %.8f\n", y[i], levels[i],
                   lp, (int)st, want);
            ok = 0;
        }
    }
    check(ok, "agave_dlogistic_logprob matches hand-computed values");
    float lp;
    check(agave_dlogistic_logprob(y, mean, log_scale, 1, 3, &lp) != AGAVE_OK,
          "agave_dlogistic_logprob refuses 3 levels");
}

int main(void)
{
    printf("libagave %s (compiled against %s)\n", agave_version_string(), AGAVE_VERSION_STRING);
    check(strcmp(agave_version_string(), AGAVE_VERSION_STRING) == 0 &&
              agave_version_number() == AGAVE_VERSION_NUMBER,
          "the linked library's version is the header's");
    check(strcmp(agave_status_string(AGAVE_OK), "") != 0, "agave_status_string(AGAVE_OK)");
    check_ops();
    check_loss();
    if (failures) {
        printf("consumer: %d checks failed\n", failures);
        return 1;
    }
    printf("consumer: all checks passed\n");
    return 0;
}
