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

#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(AGAVE_NO_CLONES) && \
    !defined(__SANITIZE_THREAD__)
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

#endif
