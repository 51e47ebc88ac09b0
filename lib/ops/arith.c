/* Element-wise arithmetic: bias_add, add, sub, mul, scale. Forward and
 * backward of each side by side. */
#include <stdio.h>

#include "ops.h"

agave_status check_op_entry(agave_context *ctx, agave_tensor **out, const char *op)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "%s: out is NULL", op);
    *out = NULL;
    return AGAVE_OK;
}

agave_status check_same_shape(agave_context *ctx, const agave_tensor *a, const agave_tensor *b,
                              const char *op)
{
    int same = a->ndim == b->ndim;
    for (int i = 0; same && i < AGAVE_MAX_DIMS; i++)
        same = a->dims[i] == b->dims[i];
    if (same)
        return AGAVE_OK;
    char sa[SHAPE_BUF], sb[SHAPE_BUF];
    return ctx_error(ctx, AGAVE_ERR_SHAPE, "%s: shapes %s and %s differ", op,
                     shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
}

float *input_grad(const tape_node *node, int i, agave_status *st)
{
    agave_tensor *t = node->in[i];
    if (!tensor_needs_grad(t))
        return NULL;
    float *g = tensor_grad_buffer(t);
    if (!g)
        *st = AGAVE_ERR_NOMEM;
    return g;
}

float *input_grad_fresh(const tape_node *node, int i, int *fresh, agave_status *st)
{
    agave_tensor *t = node->in[i];
    *fresh = 0;
    if (!tensor_needs_grad(t))
        return NULL;
    float *g = tensor_grad_buffer_fresh(t, fresh);
    if (!g)
        *st = AGAVE_ERR_NOMEM;
    return g;
}

float *input_grad_or_take(const tape_node *node, int i, agave_status *st)
{
    agave_tensor *t = node->in[i], *y = node->out;
    int takes = tensor_needs_grad(t) && t->ctx->tape_releasing && !t->grad && y->grad &&
                tensor_owns_arena_buffers(t) && tensor_owns_arena_buffers(y) &&
                t->numel == y->numel;
    for (int j = 0; takes && j < TAPE_MAX_INPUTS; j++)
        takes = j == i || node->in[j] != t;
    if (!takes)
        return input_grad(node, i, st);
    t->grad = y->grad;   // y's gradient is dead after this node: tape_backward releases y
    y->grad = NULL;
    return NULL;
}

/* ---- binary element-wise: a, b, out all of one shape ------------------------- */
static agave_status binary_op(agave_context *ctx, agave_tensor *a, agave_tensor *b,
                              agave_tensor **out, const op_def *op)
{
    const char *name = op->name;
    TRY(check_op_entry(ctx, out, name));
    TRY(check_tensor(ctx, a, name, "a"));
    TRY(check_tensor(ctx, b, name, "b"));
    TRY(check_same_shape(ctx, a, b, name));
    agave_tensor *y = tensor_new_like(ctx, a);
    if (!y)
        return AGAVE_ERR_NOMEM;
    const float *pa = a->data, *pb = b->data;
    float *py = y->data;
    long n = (long)a->numel;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > 65536) schedule(dynamic, 16384)
    for (long i = 0; i < n; i++)
        py[i] = op == OP_ADD ? pa[i] + pb[i] : op == OP_SUB ? pa[i] - pb[i] : pa[i] * pb[i];
    agave_status st;
    agave_tensor *in[2] = {a, b};
    op_record(ctx, op, y, in, 2, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

agave_status agave_add(agave_context *ctx, agave_tensor *a, agave_tensor *b, agave_tensor **out)
{
    return binary_op(ctx, a, b, out, OP_ADD);
}

agave_status agave_sub(agave_context *ctx, agave_tensor *a, agave_tensor *b, agave_tensor **out)
{
    return binary_op(ctx, a, b, out, OP_SUB);
}

agave_status agave_mul(agave_context *ctx, agave_tensor *a, agave_tensor *b, agave_tensor **out)
{
    return binary_op(ctx, a, b, out, OP_MUL);
}

/* d(a+b) = (g, g); d(a-b) = (g, -g); d(a*b) = (g*b, g*a). */
static agave_status binary_backward(const tape_node *node, const op_def *op)
{
    agave_status st = AGAVE_OK;
    const float *g = node->out->grad;
    const float *pa = node->in[0]->data, *pb = node->in[1]->data;
    float *ga = input_grad(node, 0, &st), *gb = input_grad(node, 1, &st);
    TRY(st);
    size_t n = node->out->numel;
    for (size_t i = 0; i < n; i++) {
        float da = op == OP_MUL ? g[i] * pb[i] : g[i];
        float db = op == OP_MUL ? g[i] * pa[i] : op == OP_SUB ? -g[i] : g[i];
        if (ga)
            ga[i] += da;
        if (gb)
            gb[i] += db;
    }
    return AGAVE_OK;
}

agave_status add_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    return binary_backward(node, OP_ADD);
}

agave_status sub_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    return binary_backward(node, OP_SUB);
}

agave_status mul_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    return binary_backward(node, OP_MUL);
}

/* ---- scale: out = s * x -------------------------------------------------------- */
typedef struct scale_saved {
    float s;
} scale_saved;

agave_status agave_scale(agave_context *ctx, agave_tensor *x, float s, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "scale"));
    TRY(check_tensor(ctx, x, "scale", "x"));
    agave_tensor *y = tensor_new_like(ctx, x);
    if (!y)
        return AGAVE_ERR_NOMEM;
    for (size_t i = 0; i < x->numel; i++)
        y->data[i] = s * x->data[i];
    agave_status st;
    tape_node *node = op_record(ctx, OP_SCALE, y, &x, 1, &st);
    TRY(st);
    if (node) {
        scale_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        saved->s = s;
    }
    *out = y;
    return AGAVE_OK;
}

agave_status scale_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    const scale_saved *saved = node->saved;
    const float *g = node->out->grad;
    for (size_t i = 0; gx && i < node->out->numel; i++)
        gx[i] += saved->s * g[i];
    return AGAVE_OK;
}

/* ---- bias_add: x is (N,C,...), bias is (C) --------------------------------------- */
agave_status agave_bias_add(agave_context *ctx, agave_tensor *x, agave_tensor *bias,
                            agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "bias_add"));
    TRY(check_tensor(ctx, x, "bias_add", "x"));
    TRY(check_tensor(ctx, bias, "bias_add", "bias"));
    if (x->ndim < 2 || bias->numel != (size_t)tC(x)) {
        char sx[SHAPE_BUF], sb[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "bias_add: bias %s must have one value per channel of x %s",
                         shape_str(bias, sb, sizeof sb), shape_str(x, sx, sizeof sx));
    }
    agave_tensor *y = tensor_new_like(ctx, x);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t C = (size_t)tC(x), plane = x->numel / ((size_t)tN(x) * C);
    for (size_t nc = 0; nc < (size_t)tN(x) * C; nc++)
        for (size_t i = 0; i < plane; i++)
            y->data[nc * plane + i] = x->data[nc * plane + i] + bias->data[nc % C];
    agave_status st;
    agave_tensor *in[2] = {x, bias};
    op_record(ctx, OP_BIAS_ADD, y, in, 2, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

agave_status bias_add_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gb = input_grad(node, 1, &st);
    TRY(st);
    const agave_tensor *y = node->out;
    const float *g = y->grad;
    size_t C = (size_t)tC(y), plane = y->numel / ((size_t)tN(y) * C);
    for (size_t nc = 0; nc < (size_t)tN(y) * C; nc++) {
        double acc = 0;
        for (size_t i = 0; i < plane; i++) {
            acc += g[nc * plane + i];
            if (gx)
                gx[nc * plane + i] += g[nc * plane + i];
        }
        if (gb)
            gb[nc % C] += (float)acc;
    }
    return AGAVE_OK;
}
