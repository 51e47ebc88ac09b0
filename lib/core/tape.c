/* The gradient tape: ops append nodes while they run; agave_backward walks
 * them newest first, each node's backward adding into its inputs' gradients. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

int tape_should_record(agave_context *ctx, agave_tensor *const *in, int n_in)
{
    if (!ctx->recording)
        return 0;
    for (int i = 0; i < n_in; i++)
        if (tensor_needs_grad(in[i]))
            return 1;
    return 0;
}

tape_node *tape_record(agave_context *ctx, const op_def *op, agave_tensor *out,
                       agave_tensor *const *in, int n_in)
{
    if (ctx->n_nodes == ctx->cap_nodes) {
        size_t cap = ctx->cap_nodes ? 2 * ctx->cap_nodes : 256;
        tape_node *nodes = realloc(ctx->nodes, cap * sizeof *nodes);
        if (!nodes) {
            ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot grow the tape to %zu ops", cap);
            return NULL;
        }
        ctx->nodes = nodes;
        ctx->cap_nodes = cap;
    }
    tape_node *node = &ctx->nodes[ctx->n_nodes++];
    memset(node, 0, sizeof *node);
    node->op = op;
    node->out = out;
    for (int i = 0; i < n_in && i < TAPE_MAX_INPUTS; i++)
        node->in[i] = in[i];
    out->flags |= TENSOR_REQUIRES_GRAD;
    return node;
}

void *tape_save(agave_context *ctx, tape_node *node, size_t bytes)
{
    void *p = arena_alloc(&ctx->arena, bytes);
    if (!p) {
        ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate %zu bytes of saved state", bytes);
        return NULL;
    }
    memset(p, 0, bytes);
    node->saved = p;
    return p;
}

agave_status agave_tape_set_recording(agave_context *ctx, int on)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx->recording = on != 0;
    return AGAVE_OK;
}

int agave_tape_recording(const agave_context *ctx) { return ctx ? ctx->recording : 0; }
size_t agave_tape_size(const agave_context *ctx) { return ctx ? ctx->n_nodes : 0; }

agave_status agave_tape_reset(agave_context *ctx)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx->n_nodes = 0;
    arena_reset(&ctx->arena);
    return AGAVE_OK;
}

agave_status agave_backward(agave_context *ctx, agave_tensor *scalar)
{
    return tape_backward(ctx, scalar, 0);
}

agave_status tape_backward(agave_context *ctx, agave_tensor *scalar, int release)
{
    if (!ctx || !scalar)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_backward: NULL context or tensor");
    if (scalar->ctx != ctx)
        return ctx_error(ctx, AGAVE_ERR_CONTEXT, "agave_backward: tensor of another context");
    if (scalar->numel != 1)
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "agave_backward: needs a tensor of one element, got %zu", scalar->numel);
    if (!tensor_needs_grad(scalar))
        return ctx_error(ctx, AGAVE_ERR_STATE,
                         "agave_backward: the tensor depends on nothing that requires a "
                         "gradient (or recording was off)");
    float *g = tensor_grad_buffer(scalar);
    if (!g)
        return AGAVE_ERR_NOMEM;
    g[0] += 1.0f;
    ctx->tape_releasing = release;
    for (size_t i = ctx->n_nodes; i-- > 0;) {
        const tape_node *node = &ctx->nodes[i];
        /* No grad: nothing downstream of this op reached the loss. */
        agave_status st = node->out->grad ? node->op->backward(ctx, node) : AGAVE_OK;
        if (st != AGAVE_OK) {
            ctx->tape_releasing = 0;
            return st;
        }
        /* Every reader of node->out was recorded after it, and ran already. */
        if (release)
            tensor_release_buffers(node->out);
    }
    ctx->tape_releasing = 0;
    return AGAVE_OK;
}
