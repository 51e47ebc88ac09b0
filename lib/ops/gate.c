/* The gated residual output of PixelCNN++'s block, fused:
 *   x is (N,F,H,W), c is (N,2F,H,W):  out = x + c[:, :F] * sigmoid(c[:, F:])
 * One pass instead of split, split, sigmoid, mul and add: five arena tensors
 * (and their gradients) fewer per gated block, the hottest path of a step. */
#include "../core/simd.h"
#include "ops.h"

/* y = x + a * sigmoid(b) over n values. */
SIMD_CLONES static void gate_fwd(const float *restrict x, const float *restrict a,
                                 const float *restrict b, float *restrict y, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] + a[i] * sigmoid_nonlibm(b[i]);
}

/* da += g s, db += g a s (1 - s), s = sigmoid(b), over n values; = instead
 * of += when fresh (the buffers hold no gradient yet). */
SIMD_CLONES static void gate_bwd(const float *restrict g, const float *restrict a,
                                 const float *restrict b, float *restrict da,
                                 float *restrict db, size_t n, int fresh)
{
    if (fresh) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float s = sigmoid_nonlibm(b[i]);
            da[i] = g[i] * s;
            db[i] = g[i] * a[i] * s * (1.0f - s);
        }
        return;
    }
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float s = sigmoid_nonlibm(b[i]);
        da[i] += g[i] * s;
        db[i] += g[i] * a[i] * s * (1.0f - s);
    }
}

/* gx += g over n values. */
SIMD_CLONES static void add_into(const float *restrict g, float *restrict gx, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        gx[i] += g[i];
}

agave_status agave_gate(agave_context *ctx, agave_tensor *x, agave_tensor *c, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "gate"));
    TRY(check_tensor(ctx, x, "gate", "x"));
    TRY(check_tensor(ctx, c, "gate", "c"));
    if (x->ndim != 4 || c->ndim != 4 || tN(c) != tN(x) || tC(c) != 2 * tC(x) ||
        tH(c) != tH(x) || tW(c) != tW(x)) {
        char sx[SHAPE_BUF], sc[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "gate: c %s must be (N,2F,H,W) for x %s (N,F,H,W)",
                         shape_str(c, sc, sizeof sc), shape_str(x, sx, sizeof sx));
    }
    agave_tensor *y = tensor_new_like(ctx, x);
    if (!y)
        return AGAVE_ERR_NOMEM;
    const long N = tN(x);
    const size_t block = x->numel / (size_t)N;   /* F*H*W */
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > 65536) schedule(dynamic, 1)
    for (long n = 0; n < N; n++) {
        const float *a = c->data + 2 * n * block;
        gate_fwd(x->data + n * block, a, a + block, y->data + n * block, block);
    }
    agave_status st;
    agave_tensor *in[2] = {x, c};
    op_record(ctx, OP_GATE, y, in, 2, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* dx = g; da = g * s; db = g * a * s * (1 - s), s = sigmoid(b). */
agave_status gate_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    int fresh;
    const float *gy = node->out->grad;   // (input_grad_or_take may move it to x)
    float *gx = input_grad_or_take(node, 0, &st), *gc = input_grad_fresh(node, 1, &fresh, &st);
    TRY(st);
    const agave_tensor *c = node->in[1];
    const long N = tN(c);
    const size_t block = c->numel / (2 * (size_t)N);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (c->numel > 131072) schedule(dynamic, 1)
    for (long n = 0; n < N; n++) {
        const float *g = gy + n * block, *a = c->data + 2 * n * block;
        if (gx)
            add_into(g, gx + n * block, block);
        if (gc)
            gate_bwd(g, a, a + block, gc + 2 * n * block, gc + 2 * n * block + block, block,
                     fresh);
    }
    return AGAVE_OK;
}
