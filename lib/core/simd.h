/* SIMD_CLONES: compile a hot element-wise function for AVX-512, AVX2 and
 * baseline x86-64; the dynamic loader picks the widest the CPU has (an ifunc
 * resolver). The library is built portable (no -march=native), so this is how
 * its kernels reach wide vectors. Such functions must round exactly like the
 * scalar code (no libm calls, no fused multiply-adds: -std=c11 implies
 * -ffp-contract=off), so results are bit-identical on every x86-64 machine.
 *
 * Left out (one plain version) where ifuncs cannot work: with
 * AGAVE_NO_CLONES, off x86-64/ELF, and under ThreadSanitizer, whose runtime
 * is not yet initialised when the loader runs the resolvers (an instrumented
 * resolver crashes the program at load). */
#ifndef AGAVE_SIMD_H
#define AGAVE_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(AGAVE_NO_CLONES) && \
    !defined(__SANITIZE_THREAD__)
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* ---- a vectorisable exp on x <= 0 -------------------------------------------------
 * Only +, -, *, comparisons and bit moves (no libm call, which would stop
 * vectorisation), so it rounds alike in every clone. */
static inline uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* c ? a : b without a branch. A plain ?: whose arms compute something is not
 * vectorised before AVX-512 (masked lanes): with -ftrapping-math, GCC will not
 * evaluate a floating-point operation the source made conditional. */
static inline float select_f(int c, float a, float b)
{
    uint32_t m = 0u - (uint32_t)(c != 0);
    return bits_float((m & float_bits(a)) | (~m & float_bits(b)));
}

/* -|x|, by setting the sign bit. */
static inline float neg_abs(float x) { return bits_float(float_bits(x) | 0x80000000u); }

/* 2^k for -126 <= k <= 127, built from its exponent bits. */
static inline float pow2i(int32_t k) { return bits_float(((uint32_t)k + 127u) << 23); }

/* exp(x) for x <= 0 (NaN stays NaN). Cody-Waite reduction x = n ln2 + r with
 * |r| <= ln2/2, Cephes' degree-6 polynomial for exp(r) (about 1 ulp), then
 * 2^n applied in two halves so that n down to -150 (the subnormal range) needs
 * no special case; below -104 the result rounds to 0 as expf's does.
 * tests/test_ops.c compares it with double-precision exp. The one exp of the
 * element-wise kernels (lib/ops/activation.c) and the cached sampler
 * (lib/model/sample_cached.c), so that the two compute alike. */
static inline float exp_nonpos(float x)
{
    const float magic = 12582912.0f;       /* 1.5 * 2^23: adding it rounds to an integer */
    x = select_f(x < -104.0f, -104.0f, x); /* not ?:, which GCC turns into a branch */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    int32_t ni = (int32_t)(float_bits(t) - float_bits(magic));
    float r = x - n * 0.693359375f; /* ln2 split: the high part times n is exact */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t half = ni >> 1;
    return p * pow2i(half) * pow2i(ni - half);
}

/* sigmoid(v) = 1 / (1 + e^-v) through exp_nonpos, so that it vectorises and
 * never overflows: with e = exp(-|v|) and t = 1 / (1 + e), t for v >= 0 and
 * e t = e^v / (1 + e^v) below. The gated blocks' sigmoid, in training
 * (lib/ops/gate.c) and in the cached sampler alike. */
static inline float sigmoid_nonlibm(float v)
{
    float e = exp_nonpos(neg_abs(v)), t = 1.0f / (1.0f + e);
    return select_f(v >= 0.0f, t, e * t);
}

#endif
