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

float rng_uniform(agave_rng *r)
{
    /* 24 random bits, shifted by half a step: values in (0, 1) exclusive. */
    return ((float)(rng_next(r) >> 40) + 0.5f) * (1.0f / 16777216.0f);
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

void rng_items_bernoulli(agave_rng *r, rng_span span, int n, size_t per_item, float p,
                         unsigned char *keep)
{
    rng_span_skip_before(r, span, per_item);
    for (size_t i = 0; i < (size_t)n * per_item; i++)
        keep[i] = rng_uniform(r) >= p;
    rng_span_skip_after(r, span, n, per_item);
}

void rng_items_normal(agave_rng *r, rng_span span, int n, size_t per_item, float *out)
{
    rng_span_skip_before(r, span, per_item * RNG_NORMAL_DRAWS);
    for (size_t i = 0; i < (size_t)n * per_item; i++)
        out[i] = rng_normal(r);
    rng_span_skip_after(r, span, n, per_item * RNG_NORMAL_DRAWS);
}
