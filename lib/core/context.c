/* The context: thread count, random generator, step arena and tape. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

agave_status agave_context_create(agave_context **out, uint64_t seed)
{
    if (!out)
        return AGAVE_ERR_NULL;
    *out = NULL;
    agave_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return AGAVE_ERR_NOMEM;
    ctx->threads = 1;
    ctx->recording = 1;
    rng_seed(&ctx->rng, seed);
    if (blas_reserve(ctx, 1) != AGAVE_OK || gemm_buffers_reserve(ctx, 1) != AGAVE_OK) {
        free(ctx->gemm_buf);
        free(ctx);
        return AGAVE_ERR_NOMEM;
    }
    *out = ctx;
    return AGAVE_OK;
}

void agave_context_free(agave_context *ctx)
{
    if (!ctx)
        return;
    arena_release(&ctx->arena);
    gemm_buffers_reserve(ctx, 0);
    for (int i = 0; i < SCRATCH_SLOTS; i++)
        free(ctx->scratch[i].p);
    free(ctx->nodes);
    free(ctx);
}

agave_status agave_context_set_threads(agave_context *ctx, int n)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    if (n < 1 || n > 1024)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "thread count %d is out of range (1..1024)", n);
    agave_status st = blas_reserve(ctx, n);
    if (st == AGAVE_OK)
        st = gemm_buffers_reserve(ctx, n);
    if (st != AGAVE_OK)
        return st;
    ctx->threads = n;
    return AGAVE_OK;
}

int agave_context_threads(const agave_context *ctx) { return ctx ? ctx->threads : 0; }

agave_status agave_context_set_memory_limit(agave_context *ctx, size_t bytes)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx->memory_limit = bytes;
    return AGAVE_OK;
}

size_t agave_context_memory_limit(const agave_context *ctx) { return ctx ? ctx->memory_limit : 0; }

agave_status agave_context_seed(agave_context *ctx, uint64_t seed)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    rng_seed(&ctx->rng, seed);
    return AGAVE_OK;
}

size_t agave_context_arena_bytes(const agave_context *ctx)
{
    return ctx ? ctx->arena.reserved : 0;
}

size_t agave_context_arena_peak(const agave_context *ctx) { return ctx ? ctx->arena.peak : 0; }

void *ctx_scratch(agave_context *ctx, int slot, size_t bytes)
{
    scratch_slot *s = &ctx->scratch[slot];
    if (bytes <= s->bytes)
        return s->p;
    size_t want = bytes + bytes / 4;   /* some headroom: sizes vary between layers */
    want = (want + 63) / 64 * 64;
    void *p = aligned_alloc(64, want);
    if (!p) {
        ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate %zu bytes of scratch", want);
        return NULL;
    }
    free(s->p);
    s->p = p;
    s->bytes = want;
    return p;
}

int ctx_region_threads(const agave_context *ctx)
{
    return omp_in_parallel() ? 1 : ctx->threads;
}

int ctx_thread_slot(const agave_context *ctx)
{
    return omp_get_level() > ctx->team_level ? omp_get_thread_num() : 0;
}
