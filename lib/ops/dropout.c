/* Inverted dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p) from the
 * context's generator; the mask is drawn as bits and kept in the arena for
 * backward, one bit per value. The
 * mask's drawing (dropout_apply) is shared with the fused concat_elu_dropout. */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "../core/simd.h"

/* y[i] = bit (first + i) ? y[i] * scale : 0 for i in [0, n). */
SIMD_CLONES static void mask_scale(float *restrict y, const unsigned char *restrict bits,
                                   size_t first, float scale, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        unsigned m = keep_bits16(bits, first + i);
#pragma omp simd
        for (size_t j = 0; j < 16; j++)
            y[i + j] = (m >> j) & 1u ? y[i + j] * scale : 0.0f;
    }
    for (; i < n; i++)
        y[i] = keep_bit(bits, first + i) ? y[i] * scale : 0.0f;
}

/* gx[i] += bit (first + i) ? g[i] * scale : 0 for i in [0, n). */
SIMD_CLONES static void mask_scale_add(float *restrict gx, const float *restrict g,
                                       const unsigned char *restrict bits, size_t first,
                                       float scale, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        unsigned m = keep_bits16(bits, first + i);
#pragma omp simd
        for (size_t j = 0; j < 16; j++)
            gx[i + j] += (m >> j) & 1u ? g[i + j] * scale : 0.0f;
    }
    for (; i < n; i++)
        gx[i] += keep_bit(bits, first + i) ? g[i] * scale : 0.0f;
}

agave_status dropout_apply(agave_context *ctx, rng_span span, float p, int record, float *y,
                           size_t numel, int items, dropout_saved *saved)
{
    // the draws are one stream, so one thread; scaling by the mask runs on all
    size_t bytes = (numel + 7) / 8;
    unsigned char *bits = record ? arena_alloc(&ctx->arena, bytes) : ctx_scratch(ctx, 0, bytes);
    if (!bits)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "dropout: cannot allocate a mask of %zu bytes",
                         bytes);
    rng_items_bernoulli(&ctx->rng, span, items, numel / (size_t)items, p, bits);
    const float scale = 1.0f / (1.0f - p);
    const long blocks = (long)((numel + EW_BLOCK - 1) / EW_BLOCK);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (numel > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * EW_BLOCK;
        mask_scale(y + i0, bits, i0, scale, ew_block_len(numel, i0));
    }
    saved->keep = record ? bits : NULL;
    saved->scale = scale;
    return AGAVE_OK;
}

/* x (any shape) -> y of the same shape. One draw of the generator per element,
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
    const size_t n = node->out->numel;
    if (!keep) {   // p = 0: the identity
        for (size_t i = 0; i < n; i++)
            gx[i] += g[i];
        return AGAVE_OK;
    }
    const long blocks = (long)((n + EW_BLOCK - 1) / EW_BLOCK);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * EW_BLOCK;
        mask_scale_add(gx + i0, g + i0, keep, i0, scale, ew_block_len(n, i0));
    }
    return AGAVE_OK;
}
