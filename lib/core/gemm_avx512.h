/* The library's own GEMM for x86-64 CPUs with AVX-512 (lib/core/gemm_avx512.c),
 * in float32 and in bfloat16 (operands rounded to bf16, products summed in
 * float32 by vdpbf16ps). Single-threaded: lib/core/blas.c splits large
 * products over the threads and falls back to OpenBLAS where this engine
 * does not apply. docs/performance.md says why it exists. */
#ifndef AGAVE_CORE_GEMM_AVX512_H
#define AGAVE_CORE_GEMM_AVX512_H

#include <stddef.h>

/* k per block of a product: each element of C is summed in blocks of
 * GEMM_KC k (bf16: k pairs) from zero, each block's sum then added to C
 * (tests/test_gemm.c's test_engine_order holds the fp32 engine to it). */
#define GEMM_KC 192

/* Floats of the work buffer gemm_avx512 needs (64-byte aligned). */
size_t gemm_avx512_buffer_floats(void);

/* 1 if this CPU runs the engine: AVX-512F for float32, and AVX-512 BF16 too
 * for bf16. */
int gemm_avx512_available(int bf16);

/* C (M,N) = op(A) op(B) (+ C when accumulate), row-major, op = transpose when
 * trans_a / trans_b: A is (M,K) or, transposed, (K,M) with leading dimension
 * lda, likewise B. With bf16, A and B are rounded to bfloat16 (to nearest,
 * ties to even) and the products summed in float32. Each element of C is
 * summed in the same order whatever M, N and the element's position, so
 * splitting a product into panels does not change its bits. buf holds
 * gemm_avx512_buffer_floats() floats. */
void gemm_avx512(int bf16, int trans_a, int trans_b, int M, int N, int K, const float *A,
                 size_t lda, const float *B, size_t ldb, int accumulate, float *C, size_t ldc,
                 float *buf);

/* x rounded to bfloat16 (to nearest, ties to even; NaN stays NaN), returned
 * as a float: what the bf16 engine multiplies (tests build references on it). */
float bf16_round(float x);

#endif
