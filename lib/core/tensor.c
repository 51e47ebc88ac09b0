/* Tensors: persistent ones (caller-owned, heap) and op outputs (step arena). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

const char *shape_str(const agave_tensor *t, char *buf, size_t len)
{
    if (!t) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    int n = snprintf(buf, len, "(");
    for (int i = 0; i < t->ndim && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, i ? ",%d" : "%d", t->dims[i]);
    if (n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, ")");
    return buf;
}

/* Validates ndim/dims and writes the padded shape; numel 0 on error. */
static size_t shape_numel(int ndim, const int *dims, int padded[AGAVE_MAX_DIMS])
{
    if (ndim < 1 || ndim > AGAVE_MAX_DIMS || !dims)
        return 0;
    size_t numel = 1;
    for (int i = 0; i < AGAVE_MAX_DIMS; i++) {
        int d = i < ndim ? dims[i] : 1;
        if (d < 1 || numel > ((size_t)1 << 40) / (size_t)d)
            return 0;
        padded[i] = d;
        numel *= (size_t)d;
    }
    return numel;
}

static agave_status shape_error(agave_context *ctx, int ndim, const int *dims)
{
    if (ndim < 1 || ndim > AGAVE_MAX_DIMS)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "tensor rank %d is out of range (1..4)", ndim);
    if (!dims)
        return ctx_error(ctx, AGAVE_ERR_NULL, "tensor dims pointer is NULL");
    return ctx_error(ctx, AGAVE_ERR_SHAPE,
                     "tensor dims must be >= 1 and hold at most 2^40 elements");
}

agave_status agave_tensor_create(agave_context *ctx, int ndim, const int *dims,
                                 agave_tensor **out)
{
    if (!ctx || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_tensor_create: NULL context or out");
    *out = NULL;
    int padded[AGAVE_MAX_DIMS];
    size_t numel = shape_numel(ndim, dims, padded);
    if (!numel)
        return shape_error(ctx, ndim, dims);
    agave_tensor *t = calloc(1, sizeof *t);
    float *data = calloc(numel, sizeof(float));
    if (!t || !data) {
        free(t);
        free(data);
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate a tensor of %zu floats", numel);
    }
    t->ctx = ctx;
    t->ndim = ndim;
    memcpy(t->dims, padded, sizeof padded);
    t->numel = numel;
    t->data = data;
    t->flags = TENSOR_OWNS_DATA;
    *out = t;
    return AGAVE_OK;
}

agave_status tensor_new_param(agave_context *ctx, int ndim, const int *dims, agave_tensor **out)
{
    param_pool *pool = &ctx->pool;
    int padded[AGAVE_MAX_DIMS];
    size_t numel = shape_numel(ndim, dims, padded);
    if (!numel || pool->n - pool->used < numel) {
        TRY(agave_tensor_create(ctx, ndim, dims, out));
        return agave_tensor_set_requires_grad(*out, 1);
    }
    agave_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate a tensor");
    t->ctx = ctx;
    t->ndim = ndim;
    memcpy(t->dims, padded, sizeof padded);
    t->numel = numel;
    t->data = pool->data + pool->used;
    t->grad = pool->grad + pool->used;
    t->flags = TENSOR_VIEW | TENSOR_REQUIRES_GRAD;
    pool->used += numel;
    *out = t;
    return AGAVE_OK;
}

agave_tensor *tensor_new_arena(agave_context *ctx, int ndim, const int *dims)
{
    int padded[AGAVE_MAX_DIMS];
    size_t numel = shape_numel(ndim, dims, padded);
    if (!numel) {
        shape_error(ctx, ndim, dims);
        return NULL;
    }
    agave_tensor *t = arena_alloc(&ctx->arena, sizeof *t);
    float *data = arena_alloc(&ctx->arena, numel * sizeof(float));
    if (!t || !data) {
        ctx_error(ctx, AGAVE_ERR_NOMEM, "step arena: cannot allocate %zu floats", numel);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->ndim = ndim;
    memcpy(t->dims, padded, sizeof padded);
    t->numel = numel;
    t->data = data;
    t->flags = TENSOR_IN_ARENA;
    return t;
}

agave_tensor *tensor_new_like(agave_context *ctx, const agave_tensor *t)
{
    return tensor_new_arena(ctx, t->ndim, t->dims);
}

void agave_tensor_free(agave_tensor *t)
{
    if (!t || (t->flags & TENSOR_IN_ARENA))
        return;
    if (t->flags & TENSOR_OWNS_DATA) {
        free(t->data);
        free(t->grad);
    }
    free(t);
}

int agave_tensor_ndim(const agave_tensor *t) { return t ? t->ndim : 0; }

int agave_tensor_dim(const agave_tensor *t, int axis)
{
    if (!t || axis < 0 || axis >= t->ndim)
        return 0;
    return t->dims[axis];
}

size_t agave_tensor_numel(const agave_tensor *t) { return t ? t->numel : 0; }
agave_context *agave_tensor_context(const agave_tensor *t) { return t ? t->ctx : NULL; }
float *agave_tensor_data(agave_tensor *t) { return t ? t->data : NULL; }
float *agave_tensor_grad(agave_tensor *t) { return t ? t->grad : NULL; }
int agave_tensor_requires_grad(const agave_tensor *t) { return tensor_needs_grad(t); }

static agave_status check_count(const agave_tensor *t, size_t n, const void *buf,
                                const char *fn)
{
    if (!t)
        return AGAVE_ERR_NULL;
    if (!buf)
        return ctx_error(t->ctx, AGAVE_ERR_NULL, "%s: buffer is NULL", fn);
    if (n != t->numel) {
        char s[SHAPE_BUF];
        return ctx_error(t->ctx, AGAVE_ERR_SHAPE,
                         "%s: buffer holds %zu floats but the tensor %s has %zu", fn, n,
                         shape_str(t, s, sizeof s), t->numel);
    }
    return AGAVE_OK;
}

agave_status agave_tensor_copy_in(agave_tensor *t, const float *src, size_t n)
{
    agave_status st = check_count(t, n, src, "agave_tensor_copy_in");
    if (st == AGAVE_OK)
        memcpy(t->data, src, n * sizeof(float));
    return st;
}

agave_status agave_tensor_copy_out(const agave_tensor *t, float *dst, size_t n)
{
    agave_status st = check_count(t, n, dst, "agave_tensor_copy_out");
    if (st == AGAVE_OK)
        memcpy(dst, t->data, n * sizeof(float));
    return st;
}

agave_status agave_tensor_fill(agave_tensor *t, float value)
{
    if (!t)
        return AGAVE_ERR_NULL;
    for (size_t i = 0; i < t->numel; i++)
        t->data[i] = value;
    return AGAVE_OK;
}

agave_status agave_tensor_fill_normal(agave_tensor *t, float mean, float std)
{
    if (!t)
        return AGAVE_ERR_NULL;
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return ctx_error(t->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_tensor_fill_normal: mean %g and std %g must be finite, std >= 0",
                         (double)mean, (double)std);
    for (size_t i = 0; i < t->numel; i++)
        t->data[i] = mean + std * rng_normal(&t->ctx->rng);
    return AGAVE_OK;
}

/* Gradients are zeroed on the threads: the zeroing of a step's fresh
 * gradient buffers (first touches of recycled arena memory) is long enough
 * that doing it serially keeps the other threads idle (docs/performance.md). */
void floats_zero(const agave_context *ctx, float *p, size_t n)
{
    const size_t block = 16384;
    const long blocks = (long)((n + block - 1) / block);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > 4 * block) schedule(static)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * block;
        memset(p + i0, 0, (n - i0 < block ? n - i0 : block) * sizeof *p);
    }
}

float *tensor_grad_buffer(agave_tensor *t)
{
    int fresh;
    float *g = tensor_grad_buffer_fresh(t, &fresh);
    if (g && fresh)
        floats_zero(t->ctx, g, t->numel);
    return g;
}

float *tensor_grad_buffer_fresh(agave_tensor *t, int *fresh)
{
    *fresh = !t->grad;
    if (t->grad)
        return t->grad;
    size_t bytes = t->numel * sizeof(float);
    if (t->flags & TENSOR_IN_ARENA)
        t->grad = arena_alloc(&t->ctx->arena, bytes);
    else if (t->flags & TENSOR_OWNS_DATA)
        t->grad = malloc(bytes);
    if (!t->grad) {
        ctx_error(t->ctx, AGAVE_ERR_NOMEM, "cannot allocate a gradient of %zu floats", t->numel);
        return NULL;
    }
    return t->grad;
}

int tensor_owns_arena_buffers(const agave_tensor *t)
{
    return (t->flags & TENSOR_IN_ARENA) && !(t->flags & TENSOR_VIEW);
}

void tensor_release_buffers(agave_tensor *t)
{
    if (!tensor_owns_arena_buffers(t))
        return;
    size_t bytes = t->numel * sizeof(float);
    arena_recycle(&t->ctx->arena, t->data, bytes);
    arena_recycle(&t->ctx->arena, t->grad, bytes);
    t->data = t->grad = NULL;
}

void tensor_release_data(agave_tensor *t)
{
    if (!tensor_owns_arena_buffers(t))
        return;
    arena_recycle(&t->ctx->arena, t->data, t->numel * sizeof(float));
    t->data = NULL;
}

agave_status agave_tensor_set_requires_grad(agave_tensor *t, int requires_grad)
{
    if (!t)
        return AGAVE_ERR_NULL;
    if (t->flags & TENSOR_IN_ARENA)
        return ctx_error(t->ctx, AGAVE_ERR_STATE,
                         "op outputs get gradients through the tape; only tensors made by "
                         "agave_tensor_create can be marked");
    if (requires_grad) {
        if (!tensor_grad_buffer(t))
            return AGAVE_ERR_NOMEM;
        t->flags |= TENSOR_REQUIRES_GRAD;
    } else {
        t->flags &= ~(unsigned)TENSOR_REQUIRES_GRAD;
    }
    return AGAVE_OK;
}

agave_status agave_tensor_zero_grad(agave_tensor *t)
{
    if (!t)
        return AGAVE_ERR_NULL;
    if (t->grad)
        floats_zero(t->ctx, t->grad, t->numel);
    return AGAVE_OK;
}

agave_status check_tensor_opt(agave_context *ctx, const agave_tensor *t, const char *op,
                              const char *name)
{
    if (t && t->ctx != ctx)
        return ctx_error(ctx, AGAVE_ERR_CONTEXT, "%s: %s belongs to another context", op, name);
    return AGAVE_OK;
}

agave_status check_tensor(agave_context *ctx, const agave_tensor *t, const char *op,
                          const char *name)
{
    if (!t)
        return ctx_error(ctx, AGAVE_ERR_NULL, "%s: %s is NULL", op, name);
    return check_tensor_opt(ctx, t, op, name);
}
