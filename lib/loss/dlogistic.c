/* The auxiliary image's discretized logistic with b levels (docs/model.md,
 * "The auxiliary image y", the paper's Eq. 8): the plain-buffer log-probability
 * and the per-image NLL op on the tape.
 *
 * Level k of b covers [k*c - 0.5, (k+1)*c - 0.5) on the 0..255 scale,
 * c = 256/b, edges mapped by e/127.5 - 1; level 0 starts at -inf and level b-1
 * ends at +inf, so the b masses sum to 1. log p is the exact log bin mass
 * (logistic.h), with no clamp and no underflow fallback. */
#include <math.h>
#include <stdlib.h>

#include "../ops/ops.h"
#include "loss_ops.h"
#include "logistic.h"
#include "loss.h"

/* Below this, exp(-log_scale) overflows double; the bin mass of such a point
 * mass rounds to 0, log(1/2) or 1 in any case, so clamping changes nothing but
 * keeps (edge - mean) * inv_s from becoming 0 * inf = NaN. */
#define DLOGISTIC_MIN_LOG_SCALE (-700.0)

/* The scale terms of one log-scale, for the bins of `levels` levels (the
 * interior ones all have width 256/levels on the 0..255 scale). */
static logistic_width level_width(double log_scale, int levels)
{
    double ls = log_scale < DLOGISTIC_MIN_LOG_SCALE ? DLOGISTIC_MIN_LOG_SCALE : log_scale;
    return logistic_width_make(ls, (256 / levels) / 127.5);
}

static inline bin_logprob level_logprob(int level, int levels, double mean,
                                        const logistic_width *w, int want_grad)
{
    int width = 256 / levels;
    double lo = loss_pixel_to_net(level * width) - 0.5 / 127.5;
    double hi = loss_pixel_to_net((level + 1) * width) - 0.5 / 127.5;
    double a = (hi - mean) * w->inv_s, b = (lo - mean) * w->inv_s;
    if (level == 0)
        return logistic_lower_logprob(a, w->inv_s, want_grad);
    if (level == levels - 1)
        return logistic_upper_logprob(b, w->inv_s, want_grad);
    return logistic_interior_logprob(a, b, w, want_grad);
}

double dlogistic_level_logprob(int level, int levels, double mean, double log_scale,
                               double *d_mean, double *d_log_scale)
{
    logistic_width w = level_width(log_scale, levels);
    bin_logprob r = level_logprob(level, levels, mean, &w, d_mean || d_log_scale);
    if (d_mean)
        *d_mean = r.d_mean;
    if (d_log_scale)
        *d_log_scale = r.d_log_scale;
    return r.logp;
}

/* Level of a 0..255 value: floor(v * levels / 256). */
static inline int value_level(uint8_t v, int levels) { return (v * levels) >> 8; }

agave_status agave_dlogistic_logprob(const uint8_t *y, const float *mean, const float *log_scale,
                                     size_t n, int levels, float *logp)
{
    if (!y || !mean || !log_scale || !logp)
        return AGAVE_ERR_NULL;
    if (!loss_levels_valid(levels))
        return AGAVE_ERR_INVALID_ARG;
    if (n > SIZE_MAX / sizeof(float))
        return AGAVE_ERR_LIMIT;
    for (size_t i = 0; i < n; i++)
        logp[i] = loss_to_float(dlogistic_level_logprob(value_level(y[i], levels), levels,
                                                        mean[i], log_scale[i], NULL, NULL));
    return AGAVE_OK;
}

/* ---- the tape op: out[n] = -sum_{c,h,w} log p(y | mean, log_scale[c]) -------- */

/* What backward needs, computed in the forward pass. */
typedef struct dlogistic_saved {
    float *d_mean;       /* d log p / d mean, one per element of mean */
    double *d_log_scale; /* d (sum of log p over a (n,c) plane) / d log_scale[c] */
} dlogistic_saved;

static agave_status dlogistic_check(agave_context *ctx, const uint8_t *y, agave_tensor *mean,
                                    agave_tensor *log_scale, int levels)
{
    if (!y)
        return ctx_error(ctx, AGAVE_ERR_NULL, "dlogistic_nll: y is NULL");
    TRY(check_tensor(ctx, mean, "dlogistic_nll", "mean"));
    TRY(check_tensor(ctx, log_scale, "dlogistic_nll", "log_scale"));
    if (!loss_levels_valid(levels))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "dlogistic_nll: levels %d is not a power of two in 2..256", levels);
    char sm[SHAPE_BUF], sl[SHAPE_BUF];
    if (mean->ndim < 2 || log_scale->ndim != 1 || log_scale->dims[0] != tC(mean))
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "dlogistic_nll: mean %s must be (N,C,H,W) and log_scale %s must be (C)",
                         shape_str(mean, sm, sizeof sm), shape_str(log_scale, sl, sizeof sl));
    return AGAVE_OK;
}

/* Sums log p over each (n,c) plane; with saved, also the gradients. */
static void dlogistic_forward(agave_context *ctx, const uint8_t *y, const agave_tensor *mean,
                              const float *log_scale, int levels, double *plane_logp,
                              dlogistic_saved *saved)
{
    int C = tC(mean);
    long planes = (long)tN(mean) * C;
    size_t plane = mean->numel / (size_t)planes;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static)
    for (long p = 0; p < planes; p++) {
        logistic_width w = level_width(log_scale[p % C], levels);   /* one per channel */
        double sum = 0, d_ls_sum = 0;
        for (size_t i = (size_t)p * plane; i < (size_t)(p + 1) * plane; i++) {
            bin_logprob r = level_logprob(value_level(y[i], levels), levels, mean->data[i], &w,
                                          saved != NULL);
            sum += r.logp;
            if (saved) {
                saved->d_mean[i] = (float)r.d_mean;
                d_ls_sum += r.d_log_scale;
            }
        }
        plane_logp[p] = sum;
        if (saved)
            saved->d_log_scale[p] = d_ls_sum;
    }
}

agave_status agave_dlogistic_nll(agave_context *ctx, const uint8_t *y, agave_tensor *mean,
                                 agave_tensor *log_scale, int levels, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "dlogistic_nll"));
    TRY(dlogistic_check(ctx, y, mean, log_scale, levels));
    int N = tN(mean), C = tC(mean);
    agave_tensor *in[2] = {mean, log_scale};
    int record = tape_should_record(ctx, in, 2);
    agave_tensor *nll = tensor_new_arena(ctx, 1, &N);
    double *plane_logp = arena_alloc(&ctx->arena, (size_t)N * C * sizeof(double));
    dlogistic_saved *saved = record ? arena_alloc(&ctx->arena, sizeof *saved) : NULL;
    if (saved) {
        saved->d_mean = arena_alloc(&ctx->arena, mean->numel * sizeof(float));
        saved->d_log_scale = arena_alloc(&ctx->arena, (size_t)N * C * sizeof(double));
    }
    if (!nll || !plane_logp || (record && (!saved || !saved->d_mean || !saved->d_log_scale)))
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "dlogistic_nll: step arena is out of memory");
    dlogistic_forward(ctx, y, mean, log_scale->data, levels, plane_logp, saved);
    for (int n = 0; n < N; n++) {
        double sum = 0;
        for (int c = 0; c < C; c++)
            sum += plane_logp[(size_t)n * C + c];
        nll->data[n] = loss_to_float(-sum);
    }
    agave_status st;
    tape_node *node = op_record(ctx, OP_DLOGISTIC_NLL, nll, in, 2, &st);
    TRY(st);
    if (node)
        node->saved = saved;
    *out = nll;
    return AGAVE_OK;
}

/* out[n] = -sum log p: d out[n] / d mean[i] = -d_mean[i];
 * d out[n] / d log_scale[c] = -d_log_scale[n,c]. */
agave_status dlogistic_nll_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *g_mean = input_grad(node, 0, &st), *g_ls = input_grad(node, 1, &st);
    TRY(st);
    const dlogistic_saved *saved = node->saved;
    const agave_tensor *mean = node->in[0];
    const float *g = node->out->grad;
    int N = tN(mean), C = tC(mean);
    size_t per_image = mean->numel / (size_t)N;
    if (g_mean) {
        long n_el = (long)mean->numel;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static) if (n_el > 65536)
        for (long i = 0; i < n_el; i++)
            g_mean[i] -= g[(size_t)i / per_image] * saved->d_mean[i];
    }
    for (int c = 0; g_ls && c < C; c++) {
        double acc = 0;
        for (int n = 0; n < N; n++)
            acc += (double)g[n] * saved->d_log_scale[(size_t)n * C + c];
        g_ls[c] -= (float)acc;
    }
    return AGAVE_OK;
}
