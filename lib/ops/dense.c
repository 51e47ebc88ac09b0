/* dense: x is (N,K) (or (N,...) flattened), w is (M,K), y is (N,M).
 *   forward   y = x W^T + bias, one GEMM
 *   backward  dx += dY W; dW += dY^T x; dbias = column sums of dY */
#include "conv_blocks.h"


agave_status agave_dense(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                         agave_tensor *bias, agave_tensor **out)
{
    static const char op[] = "dense";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    char sx[SHAPE_BUF], sw[SHAPE_BUF];
    if (x->ndim < 2)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "dense: x must be (N,K) or (N,...), got %s",
                         shape_str(x, sx, sizeof sx));
    TRY(check_rank(ctx, w, 2, op, "w", "(M,K)"));
    const size_t K = x->numel / (size_t)tN(x);
    if (K != (size_t)tC(w))
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "dense: x %s has %zu features per row but w %s (M,K) expects %d",
                         shape_str(x, sx, sizeof sx), K, shape_str(w, sw, sizeof sw), tC(w));
    TRY(check_bias(ctx, bias, w, 0, op));
    long long dims[4] = {tN(x), tN(w), 1, 1};
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 2, op, &y));
    const int N = tN(x), M = tN(w);
    // (N,K) x (K,M) = x w^T, then the bias on every row
    gemm(ctx, 0, 1, N, M, (int)K, 1.0f, x->data, (int)K, w->data, (int)K, 0.0f, y->data, M);
    if (bias)
        add_bias(ctx, y->data, N, M, 1, bias->data);
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    op_record(ctx, OP_DENSE, y, in, 3, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* dx += dY W; dW += dY^T x; dbias = column sums of dY. */
agave_status dense_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const int N = tN(x), M = tN(w), K = tC(w);
    const float *dy = y->grad;   // (N,M)
    if (gx)   // (N,M) x (M,K)
        gemm(ctx, 0, 0, N, K, M, 1.0f, dy, M, w->data, K, 1.0f, gx, K);
    if (gw)   // (M,N) x (N,K)
        gemm(ctx, 1, 0, M, K, N, 1.0f, dy, M, x->data, K, 1.0f, gw, K);
    if (gb)
        bias_grad(ctx, dy, N, M, 1, gb);
    return AGAVE_OK;
}
