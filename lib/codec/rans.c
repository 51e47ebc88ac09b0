/* rANS on a stack of 32-bit words (lib/codec/rans.h).
 *
 * Push (encode) of [start, start + freq) of a 2^prec table:
 *   if x >= x_max(freq): move x's low 32 bits to the stack, x >>= 32;
 *   x = (x / freq) << prec | start + x % freq.
 * x_max = ((RANS_L >> prec) << 32) * freq keeps the result below 2^63, and one
 * word always suffices: x < 2^63 gives x >> 32 < 2^31 <= x_max.
 * Pop (decode) is the exact inverse:
 *   x = freq * (x >> prec) + (x mod 2^prec) - start;
 *   if x < RANS_L: x = x << 32 | the top word.
 * One word always suffices there too: x >> prec >= RANS_L >> prec >= 1. */
#include <stdlib.h>
#include <string.h>

#include "rans.h"

/* splitmix64's output function: a bijection of 64-bit words that mixes well. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t rans_initial_state(uint64_t seed)
{
    /* in [2^62, 2^63): inside the state's range, with 62 random bits */
    return (1ull << 62) | (mix64(seed ^ 0x5851f42d4c957f2dull) >> 2);
}

uint32_t rans_virtual_word(uint64_t seed, uint64_t k)
{
    return (uint32_t)(mix64(seed + (k + 1) * 0x9e3779b97f4a7c15ull) >> 32);
}

void rans_init(rans_stack *r, uint64_t seed, size_t max_words)
{
    memset(r, 0, sizeof *r);
    r->state = rans_initial_state(seed);
    r->seed = seed;
    r->max_words = max_words;
    r->allow_virtual = 1;
}

static int grow(rans_stack *r, size_t need)
{
    if (need <= r->cap)
        return 1;
    if (need > r->max_words) {
        if (!r->error)
            r->error = RANS_ERR_LIMIT;
        return 0;
    }
    size_t cap = r->cap ? r->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > r->max_words)
        cap = r->max_words;
    uint32_t *w = realloc(r->words, cap * sizeof *w);
    if (!w) {
        if (!r->error)
            r->error = RANS_ERR_NOMEM;
        return 0;
    }
    r->words = w, r->cap = cap;
    return 1;
}

int rans_load(rans_stack *r, uint64_t state, const uint32_t *words, size_t n, uint64_t seed,
              size_t max_words)
{
    memset(r, 0, sizeof *r);
    r->seed = seed;
    r->max_words = max_words;
    if (state < RANS_L || state >> 63 || n > max_words || !grow(r, n ? n : 1)) {
        rans_free(r);
        return 0;
    }
    if (n)
        memcpy(r->words, words, n * sizeof *words);
    r->len = n;
    r->state = state;
    return 1;
}

void rans_free(rans_stack *r)
{
    free(r->words);
    r->words = NULL;
    r->len = r->cap = 0;
}

void rans_push(rans_stack *r, uint32_t start, uint32_t freq, int prec)
{
    uint64_t x = r->state;
    uint64_t x_max = ((RANS_L >> prec) << 32) * freq;
    if (x >= x_max) {
        if (grow(r, r->len + 1))
            r->words[r->len++] = (uint32_t)x;
        x >>= 32;
    }
    r->state = ((x / freq) << prec) + x % freq + start;
}

/* The word under the state: the stack's top, or the next virtual word. */
static uint32_t take_word(rans_stack *r)
{
    if (r->len)
        return r->words[--r->len];
    if (r->allow_virtual)
        return rans_virtual_word(r->seed, r->virtual_used++);
    if (!r->error)
        r->error = RANS_ERR_EMPTY;
    return 0;
}

void rans_pop(rans_stack *r, uint32_t start, uint32_t freq, int prec)
{
    uint64_t x = r->state;
    uint64_t slot = x & ((1ull << prec) - 1);
    x = freq * (x >> prec) + slot - start;
    if (x < RANS_L)
        x = (x << 32) | take_word(r);
    r->state = x;
}

int rans_is_initial(const rans_stack *r)
{
    if (r->error || r->state != rans_initial_state(r->seed))
        return 0;
    /* bottom first: [v_{len-1}, ..., v_1, v_0], v_0 on top */
    for (size_t i = 0; i < r->len; i++)
        if (r->words[i] != rans_virtual_word(r->seed, r->len - 1 - i))
            return 0;
    return 1;
}
