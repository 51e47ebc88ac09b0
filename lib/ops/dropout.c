/* Inverted dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p) from the
 * context's generator; the mask is kept in the arena for backward, one bit
 * per value. The
 * mask's drawing (dropout_apply) is shared with the fused concat_elu_dropout. */
#include <math.h>
#include <string.h>

#include "ops.h"

#define DROPOUT_PARALLEL_MIN 65536

/* bits = keep[0..n) packed, bit i of the mask = keep[i] != 0. */
static void pack_bits(const unsigned char *keep, size_t n, unsigned char *bits)
{
    memset(bits, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        bits[i >> 3] |= (unsigned char)((keep[i] != 0) << (i & 7));
}

agave_status dropout_apply(agave_context *ctx, rng_span span, float p, int record, float *y,
                           size_t numel, int items, dropout_saved *saved)
{
    unsigned char *keep = ctx_scratch(ctx, 0, numel);
    unsigned char *bits = record ? arena_alloc(&ctx->arena, (numel + 7) / 8) : NULL;
    if (!keep || (record && !bits))
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "dropout: cannot allocate a mask of %zu bytes",
                         numel);
    rng_items_bernoulli(&ctx->rng, span, items, numel / (size_t)items, p, keep);
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < numel; i++)
        y[i] = keep[i] ? y[i] * scale : 0.0f;
    if (bits)
        pack_bits(keep, numel, bits);
    saved->keep = bits;
    saved->scale = scale;
    return AGAVE_OK;
}

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
    memcpy(y->data, x->data, x->numel * sizeof *y->data);
    dropout_saved mask = {NULL, 1.0f};   /* p = 0: the identity */
    if (p > 0.0f)
        TRY(dropout_apply(ctx, RNG_WHOLE_BATCH, p, tape_should_record(ctx, &x, 1), y->data,
                          y->numel, tN(y), &mask));
    agave_status st;
    tape_node *node = op_record(ctx, OP_DROPOUT, y, &x, 1, &st);
    TRY(st);
    if (node) {
        dropout_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        *saved = mask;
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
    const dropout_saved *saved = node->saved;
    const unsigned char *keep = saved->keep;
    const float *g = node->out->grad;
    float scale = saved->scale;
    long n = (long)node->out->numel;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > DROPOUT_PARALLEL_MIN) schedule(dynamic, 16384)
    for (long i = 0; i < n; i++)
        gx[i] += !keep ? g[i] : keep_bit(keep, (size_t)i) ? g[i] * scale : 0.0f;
    return AGAVE_OK;
}
