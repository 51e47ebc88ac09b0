/* The one door to BLAS. OpenBLAS keeps a process-wide thread count; it is set
 * to the context's count here, right before use, and never while one of our
 * OpenMP regions runs, so the two pools never oversubscribe the cores. */
#include <cblas.h>

#include "core.h"

void gemm(agave_context *ctx, int trans_a, int trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    ctx->gemm_flops += 2ull * (uint64_t)M * (uint64_t)N * (uint64_t)K;
    if (openblas_get_num_threads() != ctx->threads)
        openblas_set_num_threads(ctx->threads);
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}
