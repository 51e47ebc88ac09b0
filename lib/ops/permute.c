/* Axis permutation: transpose01 swaps the first two axes, (A,B,R) -> (B,A,R)
 * where R is the product of the remaining dims. Used to turn a weight stored
 * per output channel into the transposed-convolution layout. */
#include "ops.h"

static void swap01(const float *src, float *dst, int A, int B, size_t R, int accumulate)
{
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++) {
            const float *s = src + ((size_t)a * B + b) * R;
            float *d = dst + ((size_t)b * A + a) * R;
            for (size_t r = 0; r < R; r++)
                d[r] = accumulate ? d[r] + s[r] : s[r];
        }
}

agave_status agave_transpose01(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "transpose01"));
    TRY(check_tensor(ctx, x, "transpose01", "x"));
    if (x->ndim < 2)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "transpose01: x needs at least 2 dims, has %d",
                         x->ndim);
    int dims[AGAVE_MAX_DIMS] = {x->dims[1], x->dims[0], x->dims[2], x->dims[3]};
    agave_tensor *y = tensor_new_arena(ctx, x->ndim, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t R = x->numel / ((size_t)tN(x) * tC(x));
    swap01(x->data, y->data, tN(x), tC(x), R, 0);
    agave_status st;
    op_record(ctx, OP_TRANSPOSE01, y, &x, 1, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* The gradient flows back through the inverse permutation, the same swap. */
agave_status transpose01_backward(agave_context *ctx, const tape_node *node)
{
    (void)ctx;
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    const agave_tensor *y = node->out;
    if (gx)
        swap01(y->grad, gx, tN(y), tC(y), y->numel / ((size_t)tN(y) * tC(y)), 1);
    return AGAVE_OK;
}
