/* The one door to matrix products. Threads come from OpenMP only: a large
 * product is split into column (or row) panels handed out to the threads
 * dynamically, and each panel is a single-threaded product: the library's
 * AVX-512 kernel (gemm_avx512.c; fp32 and bf16) where the CPU has AVX-512F,
 * else OpenBLAS kept at one thread, so that no second thread pool competes
 * with OpenMP's (docs/performance.md, "Two thread pools fight"); OpenBLAS's
 * thread count is process-wide: the library sets it to 1. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "core.h"
#include "gemm_avx512.h"

/* Below this many multiply-adds a split costs more than it gains. */
#define GEMM_SPLIT_MIN (1u << 21)
/* Panels start at multiples of these: whole cache lines for OpenBLAS (16
 * floats), whole tiles of the AVX-512 kernels (48 columns). */
#define GEMM_PANEL_ALIGN 16
#define GEMM_OWN_COL_ALIGN 48
/* Panels per thread, when the product is wide enough: on a machine shared
 * with other work a thread can lose its core for a scheduler tick; with one
 * static panel per thread every product would then wait for it. With a few
 * panels each, handed out dynamically, the thread that keeps its core takes
 * the descheduled one's share. Each panel repacks the other operand, so
 * panels stay at least GEMM_PANEL_MIN wide. */
#define GEMM_PANELS_PER_THREAD 4
#define GEMM_PANEL_MIN 256

/* ---- precision and work buffers --------------------------------------------- */

int agave_precision_available(agave_precision p)
{
    return p == AGAVE_PRECISION_FP32 || (p == AGAVE_PRECISION_BF16 && gemm_avx512_available(1));
}

agave_status agave_context_set_precision(agave_context *ctx, agave_precision p)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    if (p != AGAVE_PRECISION_FP32 && p != AGAVE_PRECISION_BF16)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "precision %d is neither FP32 (0) nor BF16 (1)",
                         (int)p);
    if (!agave_precision_available(p))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "precision bf16 needs a CPU with AVX-512 BF16 instructions, which this "
                         "one does not have");
    ctx->precision = p;
    return AGAVE_OK;
}

agave_precision agave_context_precision(const agave_context *ctx)
{
    return ctx ? ctx->precision : AGAVE_PRECISION_FP32;
}

agave_precision ctx_gemm_precision(const agave_context *ctx) { return ctx->precision; }

agave_status gemm_buffers_reserve(agave_context *ctx, int n)
{
    if (n <= ctx->gemm_buf_count && n > 0)
        return AGAVE_OK;
    if (n == 0) {
        for (int i = 0; i < ctx->gemm_buf_count; i++)
            free(ctx->gemm_buf[i]);
        free(ctx->gemm_buf);
        ctx->gemm_buf = NULL;
        ctx->gemm_buf_count = 0;
        return AGAVE_OK;
    }
    float **b = realloc(ctx->gemm_buf, (size_t)n * sizeof *b);
    if (!b)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate the GEMM buffers of %d threads", n);
    for (int i = ctx->gemm_buf_count; i < n; i++)
        b[i] = NULL;
    ctx->gemm_buf = b;
    ctx->gemm_buf_count = n;
    return AGAVE_OK;
}

/* The calling thread's work buffer for the AVX-512 kernels, made on first
 * use; NULL (OpenBLAS then does the product) if it cannot be made. Threads of
 * one team have distinct numbers, and kernels never nest regions
 * (ctx_region_threads), so no two threads share a buffer. */
static float *thread_buffer(agave_context *ctx)
{
    int t = ctx_thread_slot(ctx);
    if (t >= ctx->gemm_buf_count)
        return NULL;
    if (!ctx->gemm_buf[t])
        ctx->gemm_buf[t] = aligned_alloc(64, gemm_avx512_buffer_floats() * sizeof(float));
    return ctx->gemm_buf[t];
}

/* ---- one single-threaded product ------------------------------------------------ */

typedef struct gemm_args {
    int trans_a, trans_b, M, N, K;
    float alpha;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
} gemm_args;

static void openblas_gemm(const gemm_args *g)
{
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, g->M, g->N, g->K, g->alpha, g->A, g->lda,
                g->B, g->ldb, g->beta, g->C, g->ldc);
}

/* 1 when ctx's products run on the AVX-512 kernels: unless GEMM_OPENBLAS,
 * whenever the CPU runs the kernel of ctx's precision (for bf16,
 * agave_context_set_precision checked that it does). */
static int own_kernels(const agave_context *ctx)
{
    if (ctx->gemm_engine == GEMM_OPENBLAS)
        return 0;
    return gemm_avx512_available(ctx->precision == AGAVE_PRECISION_BF16);
}

const char *gemm_fp32_engine_name(void)
{
    return gemm_avx512_available(0) ? "agave-avx512" : "openblas";
}

/* The AVX-512 kernels take alpha = 1 and beta = 0 or 1, which is every
 * product of the library's ops; anything else goes to OpenBLAS (fp32). */
static int engine_takes(const agave_context *ctx, const gemm_args *g)
{
    return own_kernels(ctx) && g->alpha == 1.0f && (g->beta == 0.0f || g->beta == 1.0f);
}

static void gemm_one(agave_context *ctx, const gemm_args *g)
{
    float *buf = engine_takes(ctx, g) ? thread_buffer(ctx) : NULL;
    if (!buf) {
        if (openblas_get_num_threads() != 1)
            openblas_set_num_threads(1);
        openblas_gemm(g);
        return;
    }
    const int bf16 = ctx->precision == AGAVE_PRECISION_BF16;
    gemm_avx512(bf16, g->trans_a, g->trans_b, g->M, g->N, g->K, g->A, (size_t)g->lda, g->B,
                (size_t)g->ldb, g->beta != 0.0f, g->C, (size_t)g->ldc, buf);
}

/* ---- panels over the threads ---------------------------------------------------- */

/* How many panels to cut `total` rows or columns into for `threads`: one per
 * thread at least, up to GEMM_PANELS_PER_THREAD while panels stay
 * GEMM_PANEL_MIN wide. It depends on the sizes and the thread count only,
 * never on which thread runs what. */
static int panel_count(int total, int threads)
{
    int parts = total / GEMM_PANEL_MIN;
    if (parts > threads * GEMM_PANELS_PER_THREAD)
        parts = threads * GEMM_PANELS_PER_THREAD;
    return parts > threads ? parts : threads;
}

/* Splits [0, total) into `parts` pieces starting at multiples of align;
 * returns piece p's start and length. */
static void split_range(int total, int parts, int align, int p, int *start, int *len)
{
    int step = (total + parts - 1) / parts;
    step = (step + align - 1) / align * align;
    int s = p * step;
    *start = s < total ? s : total;
    *len = s + step < total ? step : total - *start;
}

/* Panel [start, start+len) of g's columns (by_columns) or rows. op(B)'s
 * columns start at start (row-major B is K x N untransposed, N x K
 * transposed), likewise op(A)'s rows. */
static gemm_args panel(const gemm_args *g, int by_columns, int start, int len)
{
    gemm_args p = *g;
    if (by_columns) {
        p.B = g->trans_b ? g->B + (size_t)start * g->ldb : g->B + start;
        p.C = g->C + start;
        p.N = len;
    } else {
        p.A = g->trans_a ? g->A + start : g->A + (size_t)start * g->lda;
        p.C = g->C + (size_t)start * g->ldc;
        p.M = len;
    }
    return p;
}

void gemm(agave_context *ctx, int trans_a, int trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    const uint64_t flops = 2ull * (uint64_t)M * (uint64_t)N * (uint64_t)K;
#pragma omp atomic   // (the conv family calls gemm from several threads at once)
    ctx->gemm_flops += flops;
    const gemm_args g = {trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    const int col_align = own_kernels(ctx) ? GEMM_OWN_COL_ALIGN : GEMM_PANEL_ALIGN;
    int threads = ctx_region_threads(ctx);
    if (threads < 2 || (uint64_t)M * N * K < GEMM_SPLIT_MIN ||
        (N < 2 * col_align && M < 2 * GEMM_PANEL_ALIGN)) {
        gemm_one(ctx, &g);
        return;
    }
    const int by_columns = N >= M;
    const int total = by_columns ? N : M, align = by_columns ? col_align : GEMM_PANEL_ALIGN;
    const int parts = panel_count(total, threads);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int p = 0; p < parts; p++) {
        int start, len;
        split_range(total, parts, align, p, &start, &len);
        if (len > 0) {
            gemm_args piece = panel(&g, by_columns, start, len);
            gemm_one(ctx, &piece);
        }
    }
}
