#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_state = 88172645463325252ull;

void test_rng_seed(unsigned long long seed) { rng_state = seed * 2654435761ull + 1; }

double test_uniform(double lo, double hi)
{
    /* xorshift64*: independent of the library's generator on purpose. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    unsigned long long r = rng_state * 2685821657736338717ull;
    return lo + (hi - lo) * ((double)(r >> 11) / 9007199254740992.0);
}

#define GC_SEED 0x5eed

/* L = sum(out * R) in double, from a forward pass without recording. */
static double loss_value(agave_context *ctx, const gc_case *c, agave_tensor **in,
                         const float *R, size_t n_out)
{
    agave_tensor *out = NULL;
    agave_tape_reset(ctx);
    if (c->random)
        agave_context_seed(ctx, GC_SEED);
    if (c->run(ctx, in, &out) != AGAVE_OK || agave_tensor_numel(out) != n_out)
        return NAN;
    const float *o = agave_tensor_data(out);
    double s = 0;
    for (size_t i = 0; i < n_out; i++)
        s += (double)o[i] * R[i];
    return s;
}

agave_status gc_run_case(const gc_case *c, unsigned seed, gc_result *res)
{
    memset(res, 0, sizeof *res);
    double eps = c->eps > 0 ? c->eps : 1e-2;
    double rtol = c->rtol > 0 ? c->rtol : 1e-2;
    double atol = c->atol > 0 ? c->atol : 2e-3;
    agave_context *ctx = NULL;
    agave_status st = agave_context_create(&ctx, 1);
    if (st != AGAVE_OK)
        return st;
    test_rng_seed(seed);
    agave_tensor *in[GC_MAX_INPUTS] = {0};
    for (int i = 0; i < c->n_inputs; i++) {
        st = agave_tensor_create(ctx, c->in[i].ndim, c->in[i].dims, &in[i]);
        if (st != AGAVE_OK)
            goto done;
        float *d = agave_tensor_data(in[i]);
        for (size_t j = 0; j < agave_tensor_numel(in[i]); j++)
            d[j] = (float)test_uniform(c->in[i].lo, c->in[i].hi);
    }
    if (c->prepare)
        c->prepare(in);
    for (int i = 0; i < c->n_inputs; i++)
        if (!c->in[i].constant)
            agave_tensor_set_requires_grad(in[i], 1);

    /* Analytic gradients: backward of L = sum(out * R). */
    agave_tensor *out = NULL, *Rt = NULL, *prod = NULL, *L = NULL;
    if (c->random)
        agave_context_seed(ctx, GC_SEED);
    st = c->run(ctx, in, &out);
    if (st != AGAVE_OK)
        goto done;
    size_t n_out = agave_tensor_numel(out);
    int dims[4];
    for (int i = 0; i < agave_tensor_ndim(out); i++)
        dims[i] = agave_tensor_dim(out, i);
    st = agave_tensor_create(ctx, agave_tensor_ndim(out), dims, &Rt);
    if (st != AGAVE_OK)
        goto done;
    float *R = agave_tensor_data(Rt);
    for (size_t j = 0; j < n_out; j++)
        R[j] = (float)test_uniform(-1, 1);
    if ((st = agave_mul(ctx, out, Rt, &prod)) != AGAVE_OK ||
        (st = agave_sum(ctx, prod, &L)) != AGAVE_OK || (st = agave_backward(ctx, L)) != AGAVE_OK)
        goto done;

    /* Numeric gradients, with the analytic ones copied first (the tape resets). */
    agave_tape_set_recording(ctx, 0);
    for (int i = 0; i < c->n_inputs; i++) {
        if (c->in[i].constant)
            continue;
        size_t n = agave_tensor_numel(in[i]);
        float *x = agave_tensor_data(in[i]);
        float *ana = malloc(n * sizeof *ana);
        memcpy(ana, agave_tensor_grad(in[i]), n * sizeof *ana);
        size_t step = n > 256 ? n / 256 : 1;
        for (size_t j = (size_t)(test_uniform(0, (double)step)) % step; j < n; j += step) {
            float keep = x[j];
            x[j] = keep + (float)eps;
            double lp = loss_value(ctx, c, in, R, n_out);
            x[j] = keep - (float)eps;
            double lm = loss_value(ctx, c, in, R, n_out);
            x[j] = keep;
            double num = (lp - lm) / (2 * eps);
            double a = ana[j];
            double excess = fabs(num - a) - (atol + rtol * fmax(fabs(num), fabs(a)));
            res->checked++;
            if (!(excess <= 0)) {
                if (!res->failed)
                    snprintf(res->first_failure, sizeof res->first_failure,
                             "%s [%s]: input %d element %zu: numeric %.6g analytic %.6g", c->op,
                             c->label, i, j, num, a);
                res->failed++;
            }
            if (excess > res->worst_excess || isnan(excess))
                res->worst_excess = isnan(excess) ? INFINITY : excess;
        }
        free(ana);
    }
done:
    for (int i = 0; i < c->n_inputs; i++)
        agave_tensor_free(in[i]);
    agave_tensor_free(Rt);
    agave_context_free(ctx);
    return st;
}
