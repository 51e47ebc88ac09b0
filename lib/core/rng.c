/* The context's random generator: xoshiro256** (Blackman & Vigna), seeded
 * through splitmix64 so that any 64-bit seed gives a well-mixed state. */
#include <math.h>

#include "core.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rng_seed(agave_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(agave_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void rng_skip(agave_rng *r, uint64_t n)
{
    while (n--)
        (void)rng_next(r);
}

/* The uniform of a draw whose top 24 bits are k: shifted by half a step, in
 * (0, 1] (from 2^23 on the + 0.5f rounds to even, so the top k gives 1).
 * Never decreases with k. */
static float uniform_of_bits(uint32_t k) { return ((float)k + 0.5f) * (1.0f / 16777216.0f); }

uint32_t rng_bernoulli_threshold(float p)
{
    // uniform_of_bits never decreases: {k : u(k) >= p} = [K, 2^24); K is in [lo, hi]
    uint32_t lo = 0, hi = 1u << 24;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (uniform_of_bits(mid) >= p)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

double rng_uniform_double(agave_rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

float rng_normal(agave_rng *r)
{
    /* Box-Muller; one draw per call keeps the stream simple to reproduce.
     * Two rng_next calls: RNG_NORMAL_DRAWS in core.h must stay equal. */
    double u1 = rng_uniform_double(r), u2 = rng_uniform_double(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void rng_span_skip_before(agave_rng *r, rng_span span, uint64_t draws_per_item)
{
    if (span.total > 0)
        rng_skip(r, (uint64_t)span.first * draws_per_item);
}

void rng_span_skip_after(agave_rng *r, rng_span span, int n, uint64_t draws_per_item)
{
    if (span.total > 0)
        rng_skip(r, (uint64_t)(span.total - span.first - n) * draws_per_item);
}

/* Bits [0, count) of word as bytes: bit b to bit b % 8 of byte b / 8. */
static void store_bits(unsigned char *dst, uint64_t word, size_t count)
{
    for (size_t j = 0; j < (count + 7) / 8; j++)
        dst[j] = (unsigned char)(word >> (8 * j));
}

/* The next count <= 64 draws' (u >= p) as bits 0.., by rng_bernoulli_threshold's
 * integer test: the same bits as comparing the uniform, without floats. */
static uint64_t draw_bits(agave_rng *r, uint64_t threshold, size_t count)
{
    uint64_t word = 0;
    for (size_t b = 0; b < count; b++)
        word |= (uint64_t)((rng_next(r) >> 40) >= threshold) << b;
    return word;
}

void rng_items_bernoulli(agave_rng *r, rng_span span, int n, size_t per_item, float p,
                         unsigned char *bits)
{
    // bits: (n * per_item + 7) / 8 bytes, bit i % 8 of byte i / 8 for value i
    rng_span_skip_before(r, span, per_item);
    const uint64_t threshold = rng_bernoulli_threshold(p);
    const size_t total = (size_t)n * per_item;
    for (size_t i = 0; i < total; i += 64) {
        size_t count = total - i < 64 ? total - i : 64;
        store_bits(bits + i / 8, draw_bits(r, threshold, count), count);
    }
    rng_span_skip_after(r, span, n, per_item);
}

void rng_items_normal(agave_rng *r, rng_span span, int n, size_t per_item, float *out)
{
    rng_span_skip_before(r, span, per_item * RNG_NORMAL_DRAWS);
    for (size_t i = 0; i < (size_t)n * per_item; i++)
        out[i] = rng_normal(r);
    rng_span_skip_after(r, span, n, per_item * RNG_NORMAL_DRAWS);
}
