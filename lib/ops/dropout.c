/* Inverted dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p) from the
 * context's generator; the mask is kept in the arena for backward. */
#include <math.h>
#include <string.h>

#include "ops.h"

#define DROPOUT_PARALLEL_MIN 65536

/* x (any shape) -> y of the same shape. One draw of rng_uniform per element,
 * in index order, so the same seed gives the same mask for any thread count;
 * p = 0 copies x and draws nothing, so turning dropout off (evaluation) leaves
 * the generator's stream untouched. */
agave_status agave_dropout(agave_context *ctx, agave_tensor *x, float p, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "dropout"));
    TRY(check_tensor(ctx, x, "dropout", "x"));
    if (!(p >= 0.0f && p < 1.0f))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "dropout: p = %g must be in [0, 1) (the probability of zeroing)",
                         (double)p);
    agave_tensor *y = tensor_new_like(ctx, x);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t n = x->numel;
    unsigned char *keep = NULL; /* 1 where x passes; only made when recording */
    if (p > 0.0f && tape_should_record(ctx, &x, 1)) {
        keep = arena_alloc(&ctx->arena, n);
        if (!keep)
            return ctx_error(ctx, AGAVE_ERR_NOMEM, "dropout: cannot allocate a mask of %zu bytes",
                             n);
    }
    float scale = 1.0f / (1.0f - p);
    if (p == 0.0f) {
        memcpy(y->data, x->data, n * sizeof *y->data);
    } else {
        /* Under a batch slice, the draws of the other processes' items are
         * skipped, so that each item gets the mask it gets in one process. */
        size_t per_item = n / (size_t)tN(x);
        slice_skip_before(ctx, per_item, 1);
        for (size_t i = 0; i < n; i++) {
            int k = rng_uniform(&ctx->rng) >= p; /* P(u >= p) = 1 - p */
            y->data[i] = k ? x->data[i] * scale : 0.0f;
            if (keep)
                keep[i] = (unsigned char)k;
        }
        slice_skip_after(ctx, tN(x), per_item, 1);
    }
    agave_status st;
    tape_node *node = op_record(ctx, OP_DROPOUT, y, &x, 1, &st);
    TRY(st);
    if (node) {
        node->saved = keep; /* NULL for p = 0: the identity */
        node->farg[0] = scale;
    }
    *out = y;
    return AGAVE_OK;
}

/* gx += g * m / (1 - p), the same mask as forward. */
agave_status dropout_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const unsigned char *keep = node->saved;
    const float *g = node->out->grad;
    float scale = node->farg[0];
    long n = (long)node->out->numel;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > DROPOUT_PARALLEL_MIN) schedule(dynamic, 16384)
    for (long i = 0; i < n; i++)
        gx[i] += !keep ? g[i] : keep[i] ? g[i] * scale : 0.0f;
    return AGAVE_OK;
}
