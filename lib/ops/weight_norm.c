/* Weight normalisation (Salimans & Kingma 2016): w = g * v / ||v|| per output
 * channel, and its data-dependent initialisation. */
#include <math.h>

#include "ops.h"

#define WN_PARALLEL_MIN 32768
/* ||v||^2 is clamped below at 1e-12 (as TensorFlow's l2_normalize does), so an
 * all-zero row gives w = 0 instead of 0/0; above it the formula is exact. */
#define WN_MIN_SUMSQ 1e-12

/* Sum of squares of one row, in double. Forward and backward both call it,
 * so they agree on the norm to the last bit without saving it. */
static double row_sumsq(const float *v, size_t len)
{
    double s = 0;
    for (size_t k = 0; k < len; k++)
        s += (double)v[k] * v[k];
    return s;
}

static double clamped_norm(double sumsq)
{
    return sqrt(sumsq > WN_MIN_SUMSQ ? sumsq : WN_MIN_SUMSQ);
}

/* ---- weight_norm: v (Cout, ...), g (Cout) -> w like v ------------------------------------- */
agave_status agave_weight_norm(agave_context *ctx, agave_tensor *v, agave_tensor *g,
                               agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "weight_norm"));
    TRY(check_tensor(ctx, v, "weight_norm", "v"));
    TRY(check_tensor(ctx, g, "weight_norm", "g"));
    if (g->ndim != 1 || g->dims[0] != v->dims[0]) {
        char sv[SHAPE_BUF], sg[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "weight_norm: g %s must be (%d), one value per row of v %s",
                         shape_str(g, sg, sizeof sg), v->dims[0], shape_str(v, sv, sizeof sv));
    }
    agave_tensor *w = tensor_new_like(ctx, v);
    if (!w)
        return AGAVE_ERR_NOMEM;
    long rows = v->dims[0];
    size_t len = v->numel / (size_t)rows;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (v->numel > WN_PARALLEL_MIN) schedule(static)
    for (long o = 0; o < rows; o++) {
        const float *vo = v->data + (size_t)o * len;
        float *wo = w->data + (size_t)o * len;
        float k = (float)(g->data[o] / clamped_norm(row_sumsq(vo, len)));
        for (size_t i = 0; i < len; i++)
            wo[i] = k * vo[i];
    }
    agave_status st;
    agave_tensor *in[2] = {v, g};
    op_record(ctx, OP_WEIGHT_NORM, w, in, 2, &st);
    TRY(st);
    *out = w;
    return AGAVE_OK;
}

/* Per row, with n = ||v||, gw = dL/dw and d = gw . v:
 *   dL/dg = d / n,   dL/dv = (g / n) (gw - (d / n^2) v).
 * Where the norm is clamped it is a constant and the second term vanishes. */
agave_status weight_norm_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gv = input_grad(node, 0, &st), *gg = input_grad(node, 1, &st);
    TRY(st);
    const agave_tensor *v = node->in[0], *g = node->in[1], *w = node->out;
    long rows = v->dims[0];
    size_t len = v->numel / (size_t)rows;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (v->numel > WN_PARALLEL_MIN) schedule(static)
    for (long o = 0; o < rows; o++) {
        const float *vo = v->data + (size_t)o * len, *gwo = w->grad + (size_t)o * len;
        double sumsq = row_sumsq(vo, len), n = clamped_norm(sumsq), d = 0;
        for (size_t i = 0; i < len; i++)
            d += (double)gwo[i] * vo[i];
        if (gg)
            gg[o] += (float)(d / n);
        if (!gv)
            continue;
        float a = (float)(g->data[o] / n);
        float b = sumsq > WN_MIN_SUMSQ ? (float)(g->data[o] * d / (n * n * n)) : 0.0f;
        float *gvo = gv + (size_t)o * len;
        for (size_t i = 0; i < len; i++)
            gvo[i] += a * gwo[i] - b * vo[i];
    }
    return AGAVE_OK;
}

/* ---- weight_norm_init: t (N,C,...) -> g, bias (C), t rescaled in place ---------------------- */
static agave_status check_init_args(agave_context *ctx, agave_tensor *t, float init_scale,
                                    agave_tensor *g, agave_tensor *bias)
{
    const char *op = "weight_norm_init";
    TRY(check_tensor(ctx, t, op, "t"));
    TRY(check_tensor(ctx, g, op, "g"));
    TRY(check_tensor(ctx, bias, op, "bias"));
    char st[SHAPE_BUF], sg[SHAPE_BUF], sb[SHAPE_BUF];
    if (t->ndim < 2)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "%s: t %s has no channel axis (N,C,...)", op,
                         shape_str(t, st, sizeof st));
    if (g->ndim != 1 || g->dims[0] != tC(t) || bias->ndim != 1 || bias->dims[0] != tC(t))
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "%s: g %s and bias %s must both be (%d), one value per channel of t %s",
                         op, shape_str(g, sg, sizeof sg), shape_str(bias, sb, sizeof sb), tC(t),
                         shape_str(t, st, sizeof st));
    if ((g->flags | bias->flags) & TENSOR_IN_ARENA)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: g and bias must be parameters made by agave_tensor_create, not op "
                         "outputs (those vanish at the next tape reset)",
                         op);
    if (!(init_scale > 0.0f) || !isfinite(init_scale))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: init_scale = %g must be finite and > 0",
                         op, (double)init_scale);
    return AGAVE_OK;
}

/* Per channel c over every axis but 1: m = mean, s2 = variance (1/count, two
 * passes in double); g = init_scale / sqrt(s2 + 1e-10), bias = -m g, and
 * t <- g t + bias, which then has mean 0 and standard deviation init_scale.
 * A channel with s2 <= 1e-12 (constant on the batch) gets g = 1. */
agave_status agave_weight_norm_init(agave_context *ctx, agave_tensor *t, float init_scale,
                                    agave_tensor *g, agave_tensor *bias)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    TRY(check_init_args(ctx, t, init_scale, g, bias));
    long C = tC(t);
    size_t N = (size_t)tN(t), plane = t->numel / (N * (size_t)C);
    double count = (double)N * (double)plane;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (t->numel > WN_PARALLEL_MIN) schedule(static)
    for (long c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (size_t n = 0; n < N; n++) {
            const float *p = t->data + (n * (size_t)C + (size_t)c) * plane;
            for (size_t i = 0; i < plane; i++)
                sum += p[i];
        }
        double m = sum / count;
        for (size_t n = 0; n < N; n++) {
            const float *p = t->data + (n * (size_t)C + (size_t)c) * plane;
            for (size_t i = 0; i < plane; i++)
                sq += ((double)p[i] - m) * ((double)p[i] - m);
        }
        /* A channel that is constant on the batch (a fully masked row of an IAF
         * conv, a dead unit) keeps g = 1: dividing by its zero spread would set
         * g ~ 1e5 * init_scale and make the layer hypersensitive later. */
        double s2 = sq / count;
        double scale = s2 > 1e-12 ? init_scale / sqrt(s2 + 1e-10) : 1.0, shift = -m * scale;
        g->data[c] = (float)scale;
        bias->data[c] = (float)shift;
        for (size_t n = 0; n < N; n++) {
            float *p = t->data + (n * (size_t)C + (size_t)c) * plane;
            for (size_t i = 0; i < plane; i++)
                p[i] = (float)(scale * p[i] + shift);
        }
    }
    return AGAVE_OK;
}
