/* The one door to BLAS. Threads come from OpenMP only: OpenBLAS runs
 * single-threaded and a large product is split into column (or row) panels,
 * each a cblas_sgemm call, handed out to the threads dynamically. Two thread pools spinning against
 * each other on a 2-core machine made a step 4x slower than one thread; with
 * one pool the library's thread count is the only one that matters.
 * (OpenBLAS's thread count is process-wide: the library sets it to 1.) */
#include <cblas.h>

#include "core.h"

/* Below this many multiply-adds a split costs more than it gains. */
#define GEMM_SPLIT_MIN (1u << 21)
#define GEMM_PANEL_ALIGN 16   /* panel widths in multiples of 16 floats (64 bytes) */
/* Panels per thread, when the product is wide enough: on a machine shared
 * with other work a thread can lose its core for a scheduler tick (4 ms);
 * with one static panel per thread every GEMM then waited for it, and 2
 * threads ran several times slower than 1. With a few panels each, handed
 * out dynamically, the thread that keeps its core takes the descheduled
 * one's share. Each panel repacks the other operand, so panels stay at least
 * GEMM_PANEL_MIN wide, where that costs under 1%. */
#define GEMM_PANELS_PER_THREAD 4
#define GEMM_PANEL_MIN 256

static void sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

/* Columns [n0, n0 + n) of C = op(A) op(B): B's columns start at n0
 * (row-major B is K x N untransposed, N x K transposed). */
static void column_panel(int trans_a, int trans_b, int M, int n0, int n, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc)
{
    const float *Bp = trans_b ? B + (size_t)n0 * ldb : B + n0;
    sgemm(trans_a, trans_b, M, n, K, alpha, A, lda, Bp, ldb, beta, C + n0, ldc);
}

/* Rows [m0, m0 + m) of C: A's rows start at m0 (row-major A is M x K
 * untransposed, K x M transposed). */
static void row_panel(int trans_a, int trans_b, int m0, int m, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc)
{
    const float *Ap = trans_a ? A + m0 : A + (size_t)m0 * lda;
    sgemm(trans_a, trans_b, m, N, K, alpha, Ap, lda, B, ldb, beta, C + (size_t)m0 * ldc, ldc);
}

/* How many panels to cut `total` rows or columns into for `threads`: one per
 * thread at least, up to GEMM_PANELS_PER_THREAD while panels stay
 * GEMM_PANEL_MIN wide. It depends on the sizes and the thread count only, never
 * on which thread runs what, so the results are the same on every run. */
static int panel_count(int total, int threads)
{
    int parts = total / GEMM_PANEL_MIN;
    if (parts > threads * GEMM_PANELS_PER_THREAD)
        parts = threads * GEMM_PANELS_PER_THREAD;
    return parts > threads ? parts : threads;
}

/* Splits [0, total) into `parts` aligned pieces; returns piece p's start and length. */
static void split_range(int total, int parts, int p, int *start, int *len)
{
    int step = (total + parts - 1) / parts;
    step = (step + GEMM_PANEL_ALIGN - 1) / GEMM_PANEL_ALIGN * GEMM_PANEL_ALIGN;
    int s = p * step;
    *start = s < total ? s : total;
    *len = s + step < total ? step : total - *start;
}

void gemm(agave_context *ctx, int trans_a, int trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    const uint64_t flops = 2ull * (uint64_t)M * (uint64_t)N * (uint64_t)K;
#pragma omp atomic   // (the conv family calls gemm from several threads at once)
    ctx->gemm_flops += flops;
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    int threads = ctx_region_threads(ctx);
    if (threads < 2 || (uint64_t)M * N * K < GEMM_SPLIT_MIN ||
        (N < 2 * GEMM_PANEL_ALIGN && M < 2 * GEMM_PANEL_ALIGN)) {
        sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_columns = N >= M;
    int parts = panel_count(by_columns ? N : M, threads);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int p = 0; p < parts; p++) {
        int start, len;
        split_range(by_columns ? N : M, parts, p, &start, &len);
        if (len <= 0)
            continue;
        if (by_columns)
            column_panel(trans_a, trans_b, M, start, len, K, alpha, A, lda, B, ldb, beta, C, ldc);
        else
            row_panel(trans_a, trans_b, start, len, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}
