/* Products with row-independent bits (gemm_rows.h).
 *
 * Every element of C is one chain of fused multiply-adds over k in order,
 * from zero, then plus its bias: no k blocking, no split sums, no
 * reassociation. Tiles only decide which chains run side by side (MR rows x
 * NV vectors of 16 columns in registers), never what a chain computes, so
 * an element's bits do not depend on the number of rows, its position or
 * the tile that holds it. The weights are packed once (k-major, N padded to
 * 16) so a tile reads a row of them per k; A is read in place, as runs of
 * columns that may each live elsewhere (gemm_rows_runs). */
#include "gemm_rows.h"

#include <string.h>

static size_t padded(int N) { return ((size_t)N + 15) / 16 * 16; }

size_t gemm_rows_packed_floats(int N, int K) { return padded(N) * (size_t)K; }

void gemm_rows_pack(int N, int K, const float *W, float *packed)
{
    const size_t n16 = padded(N);
    memset(packed, 0, n16 * (size_t)K * sizeof *packed);
    for (int o = 0; o < N; o++)
        for (int k = 0; k < K; k++)
            packed[(size_t)k * n16 + o] = W[(size_t)o * K + k];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))
#define INLINE TARGET __attribute__((always_inline)) static inline

/* The tile C[0..MR)[16*v ..] for v < NV (columns past n unstored) of rows
 * [r0, r0 + MR): MR and NV are constants at every call, so acc lives in
 * registers. The runs are walked in order, k in order inside each. */
INLINE void tile(const int MR, const int NV, size_t r0, const gemm_run *runs, int n_runs,
                 const float *bp, size_t n16, const float *bias, float *C, size_t ldc, int n)
{
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int q = 0; q < n_runs; q++) {
        const float *a[12];
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++)
            a[r] = runs[q].base + (r0 + (size_t)r) * runs[q].stride;
        for (int k = 0; k < runs[q].len; k++, bp += n16) {
            __m512 b[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                b[v] = _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++) {
                __m512 av = _mm512_set1_ps(a[r][k]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[r][v] = _mm512_fmadd_ps(av, b[v], acc[r][v]);
            }
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        int left = n - 16 * v;
        __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 bv = _mm512_maskz_loadu_ps(m, bias + 16 * v);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++)
            _mm512_mask_storeu_ps(C + (r0 + (size_t)r) * ldc + 16 * v, m,
                                  _mm512_add_ps(acc[r][v], bv));
    }
}

/* Rows [0, rows) of columns [0, n) (at most 64), NV = ceil(n / 16) vectors:
 * tiles of MR rows (24 accumulators at most), then single rows. */
INLINE void columns(const int NV, int rows, const gemm_run *runs, int n_runs, const float *bp,
                    size_t n16, const float *bias, float *C, size_t ldc, int n)
{
    const int MR = NV == 4 ? 6 : 8;
    int r = 0;
    for (; r + MR <= rows; r += MR)
        tile(MR, NV, (size_t)r, runs, n_runs, bp, n16, bias, C, ldc, n);
    for (; r < rows; r++)
        tile(1, NV, (size_t)r, runs, n_runs, bp, n16, bias, C, ldc, n);
}

TARGET void gemm_rows_runs(int rows, int N, const gemm_run *runs, int n_runs,
                           const float *packed, const float *bias, float *C, size_t ldc)
{
    const size_t n16 = padded(N);
    for (int c = 0; c < N; c += 64) {
        const int n = N - c < 64 ? N - c : 64, nv = (n + 15) / 16;
        const float *bp = packed + c, *bc = bias + c;
        float *Cc = C + c;
        switch (nv) {
        case 1: columns(1, rows, runs, n_runs, bp, n16, bc, Cc, ldc, n); break;
        case 2: columns(2, rows, runs, n_runs, bp, n16, bc, Cc, ldc, n); break;
        case 3: columns(3, rows, runs, n_runs, bp, n16, bc, Cc, ldc, n); break;
        default: columns(4, rows, runs, n_runs, bp, n16, bc, Cc, ldc, n); break;
        }
    }
}

void gemm_rows(int rows, int N, int K, const float *A, size_t lda, const float *packed,
               const float *bias, float *C, size_t ldc)
{
    const gemm_run whole = {A, lda, K};
    gemm_rows_runs(rows, N, &whole, 1, packed, bias, C, ldc);
}

#else /* not x86-64: never called (gemm_avx512_available is 0) */

void gemm_rows_runs(int rows, int N, const gemm_run *runs, int n_runs, const float *packed,
                    const float *bias, float *C, size_t ldc)
{
    (void)rows, (void)N, (void)runs, (void)n_runs, (void)packed, (void)bias, (void)C, (void)ldc;
}

void gemm_rows(int rows, int N, int K, const float *A, size_t lda, const float *packed,
               const float *bias, float *C, size_t ldc)
{
    (void)rows, (void)N, (void)K, (void)A, (void)lda, (void)packed, (void)bias, (void)C, (void)ldc;
}

#endif
