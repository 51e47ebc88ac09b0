/* Step arena: a bump allocator for activations and gradients of one training
 * step. arena_reset() keeps the memory, coalescing into one chunk as large as
 * the step needed, so from the second step on a loop allocates nothing.
 * Blocks that die before the reset (a training step's activations and
 * gradients once backward has passed them, core/tape.c) can be given back with
 * arena_recycle and are handed out again, so that backward's gradients reuse
 * the forward's memory instead of doubling the step's footprint. */
#include <sys/mman.h>

#include "core.h"

#define ARENA_ALIGN 64
#define ARENA_MIN_CHUNK (1u << 20)
#define ARENA_HUGE_MIN ((size_t)4 << 20)

/* A recycled block; its first bytes hold the free list's link. */
struct arena_block {
    arena_block *next;
    size_t size;
};

/* A recycled block larger than a request by at least this much is split,
 * its tail going back on the free list: the gradients of backward, smaller
 * or larger than the activations given back before them, then fill them
 * instead of growing the arena. */
#define ARENA_SPLIT_MIN 4096

struct arena_chunk {
    arena_chunk *prev;
    size_t mapped; /* bytes of the mapping, header included */
    size_t size;   /* usable bytes in data */
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

static arena_chunk *chunk_new(size_t size, arena_chunk *prev)
{
    arena_chunk *c = NULL;
    if (size > SIZE_MAX - sizeof(*c) - ARENA_ALIGN)
        return NULL;
    size_t total = (sizeof(*c) + size + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    /* Mapped, not malloc'ed: a freed chunk always goes back to the system.
     * From malloc, chunks below glibc's adaptive mmap threshold (raised by any
     * earlier free of a large block, up to 32 MiB) came from the heap and
     * stayed resident after arena_reset coalesced them: 120 MiB of
     * cifar-small's peak RSS. Pages are aligned far beyond ARENA_ALIGN. */
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Each new chunk is faulted in as it is first written; in 4 KiB pages
     * that was a fifth of the codec's time over its first batches, whose
     * sizes ramp up and map a larger chunk at each reset. Huge pages (where
     * the system grants them; advice only) make those faults 512 times
     * fewer. */
    if (total >= ARENA_HUGE_MIN)
        madvise(p, total, MADV_HUGEPAGE);
    c = p;
    c->mapped = total;
    c->prev = prev;
    c->size = size;
    c->used = 0;
    return c;
}

static size_t rounded(size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    return need ? need : ARENA_ALIGN;
}

/* The smallest recycled block of at least need bytes, unlinked, its tail
 * beyond need recycled when that is large; or NULL. */
static void *take_recycled(agave_arena *a, size_t need)
{
    arena_block **best = NULL;
    for (arena_block **b = &a->free; *b; b = &(*b)->next)
        if ((*b)->size >= need && (!best || (*b)->size < (*best)->size))
            best = b;
    if (!best)
        return NULL;
    arena_block *blk = *best;
    *best = blk->next;
    if (blk->size - need >= ARENA_SPLIT_MIN)
        arena_recycle(a, (unsigned char *)blk + need, blk->size - need);
    return blk;
}

/* Unlinks and returns the free block that starts at p, or NULL. */
static arena_block *unlink_at(agave_arena *a, const unsigned char *p)
{
    for (arena_block **b = &a->free; *b; b = &(*b)->next)
        if ((const unsigned char *)*b == p) {
            arena_block *blk = *b;
            *b = blk->next;
            return blk;
        }
    return NULL;
}

/* Gives a block back, merged with the free blocks right after and right
 * before it, so that neighbours given back one by one can serve a larger
 * request. */
void arena_recycle(agave_arena *a, void *p, size_t bytes)
{
    if (!p)
        return;
    arena_block *blk = p;
    blk->size = rounded(bytes);
    arena_block *after = unlink_at(a, (unsigned char *)blk + blk->size);
    if (after)
        blk->size += after->size;
    for (arena_block *b = a->free; b; b = b->next)
        if ((unsigned char *)b + b->size == (unsigned char *)blk) {
            b->size += blk->size;
            return;
        }
    blk->next = a->free;
    a->free = blk;
}

void *arena_alloc(agave_arena *a, size_t bytes)
{
    if (bytes > SIZE_MAX / 2)
        return NULL;
    size_t need = rounded(bytes);
    if (a->free) {
        void *p = take_recycled(a, need);
        if (p)
            return p;
    }
    arena_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = need > ARENA_MIN_CHUNK ? need : ARENA_MIN_CHUNK;
        if (c && size < c->size)
            size = c->size;   /* grow geometrically-ish: never smaller than the last */
        c = chunk_new(size, a->head);
        if (!c)
            return NULL;
        a->head = c;
        a->reserved += size;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used += need;
    if (a->used > a->peak)
        a->peak = a->used;
    if (a->used > a->touched)
        a->touched = a->used;
    return p;
}

static void free_chunks(arena_chunk *c)
{
    while (c) {
        arena_chunk *prev = c->prev;
        munmap(c, c->mapped);
        c = prev;
    }
}

void arena_reset(agave_arena *a)
{
    a->free = NULL;
    if (a->head && a->head->prev) {
        /* More than one chunk: replace them with one that fits the largest step
         * seen, plus an eighth of headroom (the chunks' sum over-reserves, as
         * each new chunk was at least as large as the last). */
        size_t want = a->peak + a->peak / 8;
        free_chunks(a->head);
        a->head = chunk_new(want, NULL);
        a->reserved = a->head ? want : 0;
        a->touched = 0;
    }
    if (a->head)
        a->head->used = 0;
    a->used = 0;
}

void arena_trim(agave_arena *a)
{
    if (!a->touched)
        return;   // nothing written since the last trim
    const uintptr_t page = 4096;
    for (arena_chunk *c = a->head; c; c = c->prev) {
        uintptr_t lo = ((uintptr_t)c->data + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)c->data + c->size) & ~(page - 1);
        if (hi > lo)
            madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
    a->touched = 0;
}

void arena_reserve(agave_arena *a, size_t bytes)
{
    if (a->head || bytes == 0)
        return;
    a->head = chunk_new(rounded(bytes), NULL);
    a->reserved = a->head ? rounded(bytes) : 0;
}

void arena_release(agave_arena *a)
{
    free_chunks(a->head);
    a->head = NULL;
    a->free = NULL;
    a->used = a->reserved = a->touched = 0;
}
