/* The context's random generator: xoshiro256** (Blackman & Vigna), seeded
 * through splitmix64 so that any 64-bit seed gives a well-mixed state. */
#include <math.h>
#include <string.h>

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

/* ---- jumping ahead --------------------------------------------------------------
 * The state update is linear over GF(2): s' = T s, and T's characteristic
 * polynomial P (degree 256) annihilates it, so T^n = (x^n mod P)(T): with
 * x^n mod P = sum_i c_i x^i, the state n draws on is sum_i c_i T^i s, the XOR
 * of the states 0..255 draws on whose c_i is 1 (xoshiro's own jump() does
 * this for fixed n = 2^128). scripts/xoshiro-charpoly.py derives P
 * (Berlekamp-Massey on a state bit's sequence); tests/test_rng.c checks the
 * jump against stepping. A replica skipping the other slices' draws costs
 * 256 draws and a few dozen polynomial products instead of one draw each. */

/* P without its x^256 term: bit i is the coefficient of x^i, word w bits 64w.. */
static const uint64_t charpoly[4] = {0x9d116f2bb0f0f001ull, 0x0280002bcefd1a5eull,
                                     0x04b4edcf26259f85ull, 0x0003c03c3f3ecb19ull};

typedef struct poly256 {
    uint64_t w[4];   /* a polynomial of degree < 256 over GF(2) */
} poly256;

/* a x mod P. */
static poly256 times_x(poly256 a)
{
    const uint64_t carry = a.w[3] >> 63;
    for (int i = 3; i > 0; i--)
        a.w[i] = a.w[i] << 1 | a.w[i - 1] >> 63;
    a.w[0] <<= 1;
    for (int i = 0; carry && i < 4; i++)
        a.w[i] ^= charpoly[i];
    return a;
}

/* a b mod P, by Horner over b's coefficients from the top. */
static poly256 times(poly256 a, poly256 b)
{
    poly256 r = {{0, 0, 0, 0}};
    for (int i = 255; i >= 0; i--) {
        r = times_x(r);
        if (b.w[i / 64] >> (i % 64) & 1)
            for (int j = 0; j < 4; j++)
                r.w[j] ^= a.w[j];
    }
    return r;
}

/* x^n mod P, by squaring from n's top bit. */
static poly256 x_to_the(uint64_t n)
{
    poly256 r = {{1, 0, 0, 0}};
    for (int bit = n ? 63 - __builtin_clzll(n) : -1; bit >= 0; bit--) {
        r = times(r, r);
        if (n >> bit & 1)
            r = times_x(r);
    }
    return r;
}

/* Below this many draws stepping is cheaper: a jump costs about as much as
 * stepping 2^16 draws (docs/performance.md). */
#define JUMP_MIN 65536

void rng_skip(agave_rng *r, uint64_t n)
{
    if (n < JUMP_MIN) {
        while (n--)
            (void)rng_next(r);
        return;
    }
    const poly256 c = x_to_the(n);
    uint64_t sum[4] = {0, 0, 0, 0};
    for (int i = 0; i < 256; i++) {   // sum of c_i T^i s
        if (c.w[i / 64] >> (i % 64) & 1)
            for (int j = 0; j < 4; j++)
                sum[j] ^= r->s[j];
        (void)rng_next(r);
    }
    memcpy(r->s, sum, sizeof sum);
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
