/* Reductions: logsumexp over one axis, sum and mean of everything. */
#include <math.h>

#include "ops.h"

/* Views x as (outer, len, inner) around `axis`. */
static void axis_split(const agave_tensor *x, int axis, size_t *outer, size_t *len,
                       size_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= (size_t)x->dims[i];
    *len = (size_t)x->dims[axis];
    for (int i = axis + 1; i < AGAVE_MAX_DIMS; i++)
        *inner *= (size_t)x->dims[i];
}

/* ---- logsumexp: y[o,0,i] = log sum_k exp(x[o,k,i]) ---------------------------------- */
typedef struct logsumexp_saved {
    int axis;
} logsumexp_saved;

agave_status agave_logsumexp(agave_context *ctx, agave_tensor *x, int axis, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "logsumexp"));
    TRY(check_tensor(ctx, x, "logsumexp", "x"));
    if (axis < 0 || axis >= x->ndim)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "logsumexp: axis %d is out of range for a %d-D tensor", axis, x->ndim);
    int dims[AGAVE_MAX_DIMS];
    for (int i = 0; i < AGAVE_MAX_DIMS; i++)
        dims[i] = i == axis ? 1 : x->dims[i];
    agave_tensor *y = tensor_new_arena(ctx, x->ndim, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t outer, len, inner;
    axis_split(x, axis, &outer, &len, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            const float *px = x->data + o * len * inner + i;
            float m = -INFINITY;
            for (size_t k = 0; k < len; k++)
                m = fmaxf(m, px[k * inner]);
            double s = 0;
            for (size_t k = 0; k < len && isfinite(m); k++)
                s += exp((double)(px[k * inner] - m));
            y->data[o * inner + i] = isfinite(m) ? m + (float)log(s) : m;
        }
    agave_status st;
    tape_node *node = op_record(ctx, OP_LOGSUMEXP, y, &x, 1, &st);
    TRY(st);
    if (node) {
        logsumexp_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        saved->axis = axis;
    }
    *out = y;
    return AGAVE_OK;
}

/* dy/dx[k] = softmax(x)[k] = exp(x[k] - y). */
agave_status logsumexp_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const agave_tensor *x = node->in[0], *y = node->out;
    size_t outer, len, inner;
    const logsumexp_saved *saved = node->saved;
    axis_split(x, saved->axis, &outer, &len, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            float yv = y->data[o * inner + i], gy = y->grad[o * inner + i];
            if (!isfinite(yv))
                continue;
            for (size_t k = 0; k < len; k++) {
                size_t j = o * len * inner + k * inner + i;
                gx[j] += gy * expf(x->data[j] - yv);
            }
        }
    return AGAVE_OK;
}

/* ---- sum and mean: one element, accumulated in double ------------------------------- */
static agave_status reduce_all(agave_context *ctx, agave_tensor *x, agave_tensor **out, const op_def *op)
{
    const char *name = op->name;
    TRY(check_op_entry(ctx, out, name));
    TRY(check_tensor(ctx, x, name, "x"));
    int one = 1;
    agave_tensor *y = tensor_new_arena(ctx, 1, &one);
    if (!y)
        return AGAVE_ERR_NOMEM;
    double s = 0;
    for (size_t i = 0; i < x->numel; i++)
        s += x->data[i];
    y->data[0] = (float)(op == OP_MEAN ? s / (double)x->numel : s);
    agave_status st;
    op_record(ctx, op, y, &x, 1, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

agave_status agave_sum(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return reduce_all(ctx, x, out, OP_SUM);
}

agave_status agave_mean(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return reduce_all(ctx, x, out, OP_MEAN);
}

static agave_status reduce_all_backward(const tape_node *node, const op_def *op)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    size_t n = node->in[0]->numel;
    float g = node->out->grad[0] / (op == OP_MEAN ? (float)n : 1.0f);
    for (size_t i = 0; gx && i < n; i++)
        gx[i] += g;
    return AGAVE_OK;
}

agave_status sum_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    return reduce_all_backward(node, OP_SUM);
}

agave_status mean_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    return reduce_all_backward(node, OP_MEAN);
}

/* ---- sum_items: x (N,...) -> y (N), y[n] = sum of item n ------------------------------ */
agave_status agave_sum_items(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "sum_items"));
    TRY(check_tensor(ctx, x, "sum_items", "x"));
    int n = tN(x);
    agave_tensor *y = tensor_new_arena(ctx, 1, &n);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t item = x->numel / (size_t)n;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < item; j++)
            s += x->data[(size_t)i * item + j];
        y->data[i] = (float)s;
    }
    agave_status st;
    op_record(ctx, OP_SUM_ITEMS, y, &x, 1, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

agave_status sum_items_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    const agave_tensor *y = node->out;
    size_t item = node->in[0]->numel / (size_t)y->numel;
    for (size_t i = 0; gx && i < y->numel; i++)
        for (size_t j = 0; j < item; j++)
            gx[i * item + j] += y->grad[i];
    return AGAVE_OK;
}
