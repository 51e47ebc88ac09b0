/* gemm: the matrix-product sources this library could use, on the shapes its
 * convolutions run, one thread each, in one run: OpenBLAS's cblas_sgemm, the
 * library's own AVX-512 kernels (lib/core/gemm_avx512.c) in fp32 and bf16, and,
 * when built with them, oneDNN (dnnl_sgemm, and its matmul primitive on bf16
 * operands) and libxsmm (its JIT kernels tiled over the columns, fp32 and
 * bf16). docs/performance.md ("Matrix products") explains the choice these
 * figures made.
 *
 * Each figure is the best of R runs of one product, timed by the thread's CPU
 * time (CLOCK_THREAD_CPUTIME_ID), so that other processes on the machine
 * disturb it little. Shapes (row-major C (M,N) = op(A) (M,K) op(B) (K,N)):
 * a conv's forward (NN: M = Cout, N = columns of a block, K = Cin*KH*KW), its
 * input gradient (TN: M = K of the conv, K = Cout) and its weight gradient
 * (NT: M = Cout, N = K of the conv, K = columns); the Winograd
 * convolutions' weight gradients, one product per point (NT, K = a block's
 * 256 columns).
 *
 * usage: gemm [--repeats R]     (make bench builds it with oneDNN and libxsmm
 *                                 when their headers are installed) */
#define _GNU_SOURCE
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "core/gemm_avx512.h"

#ifdef HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef HAVE_XSMM
#include <libxsmm.h>
#endif

typedef struct shape {
    const char *what;
    int M, N, K, ta, tb;
} shape;

static const shape shapes[] = {
    {"fashion conv fwd (F=32, 2x3 on 2F)", 32, 1568, 384, 0, 0},
    {"fashion gated conv2 fwd (-> 2F)", 64, 1568, 384, 0, 0},
    {"fashion conv dx", 384, 1568, 32, 1, 0},
    {"fashion conv dW", 32, 384, 1568, 0, 1},
    {"cifar conv fwd (F=64, 2x3 on 2F)", 64, 1024, 768, 0, 0},
    {"cifar gated conv2 fwd (-> 2F)", 128, 1024, 768, 0, 0},
    {"cifar conv dx", 768, 1024, 64, 1, 0},
    {"cifar conv dW", 64, 768, 1024, 0, 1},
    {"fashion Winograd dW (a point, F=32)", 32, 128, 256, 0, 1},
    {"fashion Winograd dW (gated conv2)", 64, 128, 256, 0, 1},
    {"cifar Winograd dW (a point, F=64)", 64, 256, 256, 0, 1},
    {"cifar Winograd dW (gated conv2)", 128, 256, 256, 0, 1},
    {"cifar 8x8 block fwd", 64, 1024, 768, 0, 0},
    {"cifar nin mixture (10M = 100)", 100, 1024, 64, 0, 0},
    {"square 1024", 1024, 1024, 1024, 0, 0},
};

static int repeats = 15;

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define BEST_GFLOPS(flops, ...)                                                            \
    ({                                                                                     \
        double best_ = 1e30;                                                               \
        for (int r_ = 0; r_ < repeats; r_++) {                                             \
            double t0_ = thread_cpu();                                                     \
            __VA_ARGS__;                                                                   \
            double dt_ = thread_cpu() - t0_;                                               \
            best_ = dt_ < best_ ? dt_ : best_;                                             \
        }                                                                                  \
        (flops) / best_ / 1e9;                                                             \
    })

static float *matrix(size_t n, unsigned seed)
{
    float *m = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        m[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return m;
}

#ifdef HAVE_DNNL
static uint16_t *to_bf16(const float *x, size_t n)
{
    uint16_t *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) {
        float r = bf16_round(x[i]);
        uint32_t u;
        memcpy(&u, &r, sizeof u);
        y[i] = (uint16_t)(u >> 16);
    }
    return y;
}

/* oneDNN's matmul on bf16 operands with an fp32 result; 0 if unavailable. */
static double onednn_bf16(const shape *s, const float *A, const float *B, float *C)
{
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success)
        return 0;
    dnnl_stream_create(&strm, eng, dnnl_stream_default_flags);
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t da = {s->M, s->K}, db = {s->K, s->N}, dc = {s->M, s->N};
    dnnl_memory_desc_init_by_tag(&ad, 2, da, dnnl_bf16, s->ta ? dnnl_ba : dnnl_ab);
    dnnl_memory_desc_init_by_tag(&bd, 2, db, dnnl_bf16, s->tb ? dnnl_ba : dnnl_ab);
    dnnl_memory_desc_init_by_tag(&cd, 2, dc, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd);
    if (dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) != dnnl_success)
        return 0;
    dnnl_primitive_create(&p, pd);
    uint16_t *a16 = to_bf16(A, (size_t)s->M * s->K), *b16 = to_bf16(B, (size_t)s->K * s->N);
    dnnl_memory_t am, bm, cm;
    dnnl_memory_create(&am, &ad, eng, a16);
    dnnl_memory_create(&bm, &bd, eng, b16);
    dnnl_memory_create(&cm, &cd, eng, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    double g = BEST_GFLOPS(2.0 * s->M * s->N * s->K, dnnl_primitive_execute(p, strm, 3, args);
                           dnnl_stream_wait(strm));
    dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(cm);
    dnnl_primitive_destroy(p), dnnl_primitive_desc_destroy(pd);
    dnnl_stream_destroy(strm), dnnl_engine_destroy(eng);
    free(a16), free(b16);
    return g;
}
#endif

#ifdef HAVE_XSMM
/* libxsmm's JIT kernels (column-major) on untransposed operands, one call per
 * TILE columns of C: C^T (N,M) = B^T A^T seen column-major. NN shapes only. */
#define XSMM_TILE 64
static double xsmm(const shape *s, const float *A, const float *B, float *C, int bf16)
{
    if (s->ta || s->tb)
        return 0;
    const libxsmm_blasint m = XSMM_TILE, n = s->M, k = s->K;
    const libxsmm_blasint lda = s->N, ldb = s->K, ldc = s->N;
    const float alpha = 1, beta = 0;
    if (!bf16) {
        libxsmm_smmfunction f = libxsmm_smmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta,
                                                    NULL, NULL);
        if (!f)
            return 0;
        return BEST_GFLOPS(2.0 * s->M * (s->N / XSMM_TILE * XSMM_TILE) * s->K,
                           for (int j = 0; j + XSMM_TILE <= s->N; j += XSMM_TILE)
                               f(B + j, A, C + j));
    }
    libxsmm_bsmmfunction f = libxsmm_bsmmdispatch(m, n, k, &lda, &ldb, &ldc, &alpha, &beta,
                                                  NULL, NULL);
    if (!f)
        return 0;
    libxsmm_bfloat16 *a16 = malloc((size_t)s->M * s->K * 2), *b16 = malloc((size_t)s->K * s->N * 2);
    libxsmm_rne_convert_fp32_bf16(A, a16, (unsigned)(s->M * s->K));
    libxsmm_rne_convert_fp32_bf16(B, b16, (unsigned)(s->K * s->N));
    double g = BEST_GFLOPS(2.0 * s->M * (s->N / XSMM_TILE * XSMM_TILE) * s->K,
                           for (int j = 0; j + XSMM_TILE <= s->N; j += XSMM_TILE)
                               f(b16 + j, a16, C + j));
    free(a16), free(b16);
    return g;
}
#endif

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--repeats"))
        repeats = atoi(argv[2]);
    else if (argc != 1)
        return fprintf(stderr, "usage: gemm [--repeats R]\n"), 2;
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    const int has32 = gemm_avx512_available(0), has16 = gemm_avx512_available(1);
    float *buf = aligned_alloc(64, gemm_avx512_buffer_floats() * sizeof(float));
#ifdef HAVE_XSMM
    libxsmm_init();
    printf("libxsmm target: %s\n", libxsmm_get_target_arch());
#endif
    printf("OpenBLAS %s (%s); 1 thread; GFLOP/s, best of %d by thread CPU time\n",
           openblas_get_config(), openblas_get_corename(), repeats);
    printf("| shape | M | N | K | op | OpenBLAS | agave fp32 | agave bf16 | oneDNN sgemm | "
           "oneDNN bf16 | libxsmm fp32 | libxsmm bf16 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        const double flops = 2.0 * s->M * s->N * s->K;
        float *A = matrix((size_t)s->M * s->K, 1), *B = matrix((size_t)s->K * s->N, 2);
        float *C = matrix((size_t)s->M * s->N, 3);
        double blas = BEST_GFLOPS(flops, cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                                                     s->tb ? CblasTrans : CblasNoTrans, s->M, s->N,
                                                     s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N));
        double own32 = 0, own16 = 0, dn32 = 0, dn16 = 0, xs32 = 0, xs16 = 0;
        if (has32)
            own32 = BEST_GFLOPS(flops, gemm_avx512(0, s->ta, s->tb, s->M, s->N, s->K, A, lda, B,
                                                   ldb, 0, C, s->N, buf));
        if (has16)
            own16 = BEST_GFLOPS(flops, gemm_avx512(1, s->ta, s->tb, s->M, s->N, s->K, A, lda, B,
                                                   ldb, 0, C, s->N, buf));
#ifdef HAVE_DNNL
        dn32 = BEST_GFLOPS(flops, dnnl_sgemm(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->M, s->N, s->K,
                                             1.0f, A, lda, B, ldb, 0.0f, C, s->N));
        dn16 = onednn_bf16(s, A, B, C);
#endif
#ifdef HAVE_XSMM
        xs32 = xsmm(s, A, B, C, 0);
        xs16 = xsmm(s, A, B, C, 1);
#endif
        printf("| %s | %d | %d | %d | %c%c | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
               s->what, s->M, s->N, s->K, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', blas, own32,
               own16, dn32, dn16, xs32, xs16);
        free(A), free(B), free(C);
    }
    free(buf);
    return 0;
}
