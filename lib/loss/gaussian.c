/* Diagonal Gaussian terms of the VAE (docs/model.md, "The VAE"): the reparameterised
 * sample, the log-density and the analytic KL to N(0, I), each an op on the
 * tape. mean and log_std have one shape (N,...); the densities are summed per
 * image (over the numel/N elements of each), in double, into out (N). */
#include <math.h>

#include "../ops/ops.h"
#include "loss_ops.h"
#include "loss.h"

#define HALF_LOG_2PI 0.91893853320467274178

static agave_status gaussian_check(agave_context *ctx, const char *op, agave_tensor *mean,
                                   agave_tensor *log_std)
{
    TRY(check_tensor(ctx, mean, op, "mean"));
    TRY(check_tensor(ctx, log_std, op, "log_std"));
    return check_same_shape(ctx, mean, log_std, op);
}

/* ---- sample: z = mean + exp(log_std) * eps, eps ~ N(0, 1) ------------------------ */
agave_status agave_gaussian_sample(agave_context *ctx, agave_tensor *mean, agave_tensor *log_std,
                                   agave_tensor **z)
{
    return gaussian_sample_span(ctx, mean, log_std, RNG_WHOLE_BATCH, z);
}

agave_status gaussian_sample_span(agave_context *ctx, agave_tensor *mean, agave_tensor *log_std,
                                  rng_span span, agave_tensor **z)
{
    TRY(check_op_entry(ctx, z, "gaussian_sample"));
    TRY(gaussian_check(ctx, "gaussian_sample", mean, log_std));
    agave_tensor *out = tensor_new_like(ctx, mean);
    float *eps = arena_alloc(&ctx->arena, mean->numel * sizeof(float));
    if (!out || !eps)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "gaussian_sample: step arena is out of memory");
    /* Drawn in element order from the context's generator: reproducible. */
    rng_items_normal(&ctx->rng, span, tN(mean), mean->numel / (size_t)tN(mean), eps);
    for (size_t i = 0; i < mean->numel; i++)
        out->data[i] = mean->data[i] + expf(log_std->data[i]) * eps[i];
    agave_status st;
    agave_tensor *in[2] = {mean, log_std};
    tape_node *node = op_record(ctx, OP_GAUSSIAN_SAMPLE, out, in, 2, &st);
    TRY(st);
    if (node)
        node->saved = eps;
    *z = out;
    return AGAVE_OK;
}

/* dz/dmean = 1, dz/dlog_std = exp(log_std) * eps. */
agave_status gaussian_sample_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *g_mean = input_grad(node, 0, &st), *g_ls = input_grad(node, 1, &st);
    TRY(st);
    const float *g = node->out->grad, *eps = node->saved, *ls = node->in[1]->data;
    for (size_t i = 0; i < node->out->numel; i++) {
        if (g_mean)
            g_mean[i] += g[i];
        if (g_ls)
            g_ls[i] += g[i] * expf(ls[i]) * eps[i];
    }
    return AGAVE_OK;
}

/* ---- log-density: out[n] = sum_i -0.5 log(2 pi) - log_std - 0.5 u^2 ------------------ */
/* u = (z - mean) * exp(-log_std) */
agave_status agave_gaussian_logprob(agave_context *ctx, agave_tensor *z, agave_tensor *mean,
                                    agave_tensor *log_std, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "gaussian_logprob"));
    TRY(check_tensor(ctx, z, "gaussian_logprob", "z"));
    TRY(gaussian_check(ctx, "gaussian_logprob", mean, log_std));
    TRY(check_same_shape(ctx, z, mean, "gaussian_logprob"));
    int N = tN(mean);
    agave_tensor *y = tensor_new_arena(ctx, 1, &N);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t per_image = mean->numel / (size_t)N;
    for (int n = 0; n < N; n++) {
        double sum = 0;
        for (size_t i = (size_t)n * per_image; i < (size_t)(n + 1) * per_image; i++) {
            double u = ((double)z->data[i] - mean->data[i]) * exp(-(double)log_std->data[i]);
            sum += -HALF_LOG_2PI - log_std->data[i] - 0.5 * u * u;
        }
        y->data[n] = loss_to_float(sum);
    }
    agave_status st;
    agave_tensor *in[3] = {z, mean, log_std};
    op_record(ctx, OP_GAUSSIAN_LOGPROB, y, in, 3, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* d/dz = -u/s, d/dmean = u/s, d/dlog_std = u^2 - 1, with s = exp(log_std). */
agave_status gaussian_logprob_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *g_z = input_grad(node, 0, &st), *g_mean = input_grad(node, 1, &st);
    float *g_ls = input_grad(node, 2, &st);
    TRY(st);
    const float *z = node->in[0]->data, *mean = node->in[1]->data, *ls = node->in[2]->data;
    const float *g = node->out->grad;
    size_t numel = node->in[1]->numel, per_image = numel / (size_t)node->out->numel;
    for (size_t i = 0; i < numel; i++) {
        double inv_s = exp(-(double)ls[i]), u = ((double)z[i] - mean[i]) * inv_s;
        double gn = g[i / per_image];
        if (g_z)
            g_z[i] -= (float)(gn * u * inv_s);
        if (g_mean)
            g_mean[i] += (float)(gn * u * inv_s);
        if (g_ls)
            g_ls[i] += (float)(gn * (u * u - 1));
    }
    return AGAVE_OK;
}

/* ---- KL(N(mean, s^2) || N(0, 1)) = sum 0.5 (mean^2 + s^2 - 1) - log_std ----------------- */
/* s^2 - 1 = expm1(2 log_std): exact near log_std = 0, where the KL is small. */
agave_status agave_gaussian_kl(agave_context *ctx, agave_tensor *mean, agave_tensor *log_std,
                               agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "gaussian_kl"));
    TRY(gaussian_check(ctx, "gaussian_kl", mean, log_std));
    int N = tN(mean);
    agave_tensor *y = tensor_new_arena(ctx, 1, &N);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t per_image = mean->numel / (size_t)N;
    for (int n = 0; n < N; n++) {
        double sum = 0;
        for (size_t i = (size_t)n * per_image; i < (size_t)(n + 1) * per_image; i++) {
            double m = mean->data[i], ls = log_std->data[i];
            sum += 0.5 * (m * m + expm1(2 * ls)) - ls;
        }
        y->data[n] = loss_to_float(sum);
    }
    agave_status st;
    agave_tensor *in[2] = {mean, log_std};
    op_record(ctx, OP_GAUSSIAN_KL, y, in, 2, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* d/dmean = mean, d/dlog_std = s^2 - 1. */
agave_status gaussian_kl_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *g_mean = input_grad(node, 0, &st), *g_ls = input_grad(node, 1, &st);
    TRY(st);
    const float *mean = node->in[0]->data, *ls = node->in[1]->data, *g = node->out->grad;
    size_t numel = node->in[0]->numel, per_image = numel / (size_t)node->out->numel;
    for (size_t i = 0; i < numel; i++) {
        float gn = g[i / per_image];
        if (g_mean)
            g_mean[i] += gn * mean[i];
        if (g_ls)
            g_ls[i] += (float)(gn * expm1(2.0 * ls[i]));
    }
    return AGAVE_OK;
}
