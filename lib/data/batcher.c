/* Shuffled minibatches. The order of epoch e is a Fisher-Yates shuffle of
 * the subset drawn from a private generator seeded by hash(seed, e), so a
 * position (epoch, index, seed) is all it takes to resume: no earlier epoch
 * has to be replayed and the context's generator is never touched. */
#include <stdlib.h>
#include <string.h>

#include "data.h"

typedef unsigned long long ull;

struct agave_batcher {
    agave_context *ctx;
    const agave_dataset *ds;
    int batch_size;
    agave_subset_mode mode;
    uint64_t seed;
    uint64_t epoch;
    size_t index;        /* next position in order, 0 <= index < size */
    size_t size;         /* images per epoch */
    size_t *subset;      /* (size) data set indices of the images used */
    size_t *order;       /* (size) this epoch's order: data set indices */
};

/* splitmix64's finaliser: decorrelates nearby seeds and epochs. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Stream keys: epochs use 0..2^64-2, the random subset uses the last key. */
#define SUBSET_STREAM UINT64_MAX

static void stream_seed(agave_rng *rng, uint64_t seed, uint64_t stream)
{
    rng_seed(rng, mix64(seed ^ 0x6167617665646174ull) ^ mix64(stream + 0x9E3779B97F4A7C15ull));
}

/* Uniform in [0, bound) without modulo bias (rejects the short top range). */
static uint64_t rng_below(agave_rng *rng, uint64_t bound)
{
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = rng_next(rng);
        if (r >= threshold)
            return r % bound;
    }
}

static void swap_sizes(size_t *a, size_t *b)
{
    size_t t = *a;
    *a = *b;
    *b = t;
}

/* subset is (size): the first `size` images, or `size` distinct images drawn
 * by a partial Fisher-Yates over all of them. */
static agave_status draw_subset(agave_batcher *b)
{
    size_t count = b->ds->count;
    if (b->mode == AGAVE_SUBSET_FIRST || b->size == count) {
        for (size_t i = 0; i < b->size; i++)
            b->subset[i] = i;
        return AGAVE_OK;
    }
    size_t *all = malloc(count * sizeof *all);
    if (!all)
        return ctx_error(b->ctx, AGAVE_ERR_NOMEM, "batcher: out of memory drawing a subset");
    for (size_t i = 0; i < count; i++)
        all[i] = i;
    agave_rng rng;
    stream_seed(&rng, b->seed, SUBSET_STREAM);
    for (size_t i = 0; i < b->size; i++)
        swap_sizes(&all[i], &all[i + rng_below(&rng, count - i)]);
    memcpy(b->subset, all, b->size * sizeof *all);
    free(all);
    return AGAVE_OK;
}

/* order = the subset shuffled for b->epoch. */
static void shuffle_epoch(agave_batcher *b)
{
    memcpy(b->order, b->subset, b->size * sizeof *b->order);
    agave_rng rng;
    stream_seed(&rng, b->seed, b->epoch);
    for (size_t i = b->size - 1; i > 0; i--)
        swap_sizes(&b->order[i], &b->order[rng_below(&rng, i + 1)]);
}

agave_status agave_batcher_create(agave_context *ctx, const agave_dataset *ds, int batch_size,
                                  uint64_t seed, size_t subset_size,
                                  agave_subset_mode subset_mode, agave_batcher **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !ds || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_batcher_create: NULL argument");
    if (batch_size < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_batcher_create: batch size %d, expected at least 1", batch_size);
    if (subset_mode != AGAVE_SUBSET_FIRST && subset_mode != AGAVE_SUBSET_RANDOM)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_batcher_create: unknown subset mode %d", (int)subset_mode);
    if (subset_size > ds->count)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_batcher_create: subset of %llu images, but the data set has "
                         "only %llu",
                         (ull)subset_size, (ull)ds->count);
    agave_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "agave_batcher_create: out of memory");
    b->ctx = ctx;
    b->ds = ds;
    b->batch_size = batch_size;
    b->mode = subset_mode;
    b->seed = seed;
    b->size = subset_size ? subset_size : ds->count;
    b->subset = malloc(b->size * sizeof *b->subset);
    b->order = malloc(b->size * sizeof *b->order);
    agave_status st = b->subset && b->order
                          ? draw_subset(b)
                          : ctx_error(ctx, AGAVE_ERR_NOMEM, "agave_batcher_create: out of memory");
    if (st != AGAVE_OK) {
        agave_batcher_free(b);
        return st;
    }
    shuffle_epoch(b);
    *out = b;
    return AGAVE_OK;
}

void agave_batcher_free(agave_batcher *b)
{
    if (!b)
        return;
    free(b->subset);
    free(b->order);
    free(b);
}

agave_status agave_batcher_next(agave_batcher *b, uint8_t *images, size_t *indices)
{
    if (!b || !images)
        return ctx_error(b ? b->ctx : NULL, AGAVE_ERR_NULL, "agave_batcher_next: NULL argument");
    size_t bytes = b->ds->image_bytes;
    for (int k = 0; k < b->batch_size; k++) {
        size_t image = b->order[b->index];
        memcpy(images + (size_t)k * bytes, b->ds->pixels + image * bytes, bytes);
        if (indices)
            indices[k] = image;
        /* Moving on eagerly keeps index < size, the form a position is saved in. */
        if (++b->index == b->size) {
            b->index = 0;
            b->epoch++;
            shuffle_epoch(b);
        }
    }
    return AGAVE_OK;
}

size_t agave_batcher_epoch_size(const agave_batcher *b) { return b ? b->size : 0; }

agave_status agave_batcher_position(const agave_batcher *b, uint64_t *epoch, uint64_t *index,
                                    uint64_t *seed)
{
    if (!b)
        return AGAVE_ERR_NULL;
    if (epoch)
        *epoch = b->epoch;
    if (index)
        *index = b->index;
    if (seed)
        *seed = b->seed;
    return AGAVE_OK;
}

agave_status agave_batcher_set_position(agave_batcher *b, uint64_t epoch, uint64_t index,
                                        uint64_t seed)
{
    if (!b)
        return AGAVE_ERR_NULL;
    if (index >= b->size)
        return ctx_error(b->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_batcher_set_position: index %llu, expected 0..%llu (images per "
                         "epoch - 1)",
                         (ull)index, (ull)(b->size - 1));
    if (epoch == UINT64_MAX)
        return ctx_error(b->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_batcher_set_position: epoch %llu is out of range", (ull)epoch);
    if (seed != b->seed) {
        uint64_t old_seed = b->seed;
        b->seed = seed;
        agave_status st = draw_subset(b);   /* leaves the subset as it was on failure */
        if (st != AGAVE_OK) {
            b->seed = old_seed;
            return st;
        }
    }
    b->epoch = epoch;
    b->index = (size_t)index;
    shuffle_epoch(b);
    return AGAVE_OK;
}
