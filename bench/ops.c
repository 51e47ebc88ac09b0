/* Convolution kernels against the BLAS they are built on.
 *
 * usage: ops [threads [filter]]    threads default 2; filter: run only the
 *        cases whose name contains it (the two sgemm baselines always run)
 *
 * For each case: median over RUNS timed runs (after WARMUP untimed ones) of the
 * op's forward and of its backward (dx, dW and dbias all requested), as
 * GFLOP/s with forward = 2 * MACs and backward = 2 * forward, next to
 * cblas_sgemm timed in the same run on a GEMM of the forward's size
 * (conv: M = Cout, N = batch*Ho*Wo, K = Cin*KH*KW). The ratio conv/sgemm says how
 * much im2col, permutes, bias and the library's GEMM threading cost on top of
 * OpenBLAS's own. Times are wall clock (CLOCK_MONOTONIC).
 *
 * Threads: the reference sgemms run on OpenBLAS's own pool with `threads`
 * threads; the ops run on the context with `threads` threads (the library
 * splits its GEMMs over OpenMP and keeps OpenBLAS single-threaded,
 * core/blas.c). All reference sgemms are timed first, then OpenBLAS is set
 * back to 1 thread and left idle for a moment, so that its pool's spinning
 * workers never compete with the ops' threads.
 *
 * Convolutions run twice: as the library runs them, then by im2col
 * ("[im2col]", ctx->conv_plain), the A/B where the first is by Winograd.
 * Throughput counts the direct convolution's multiply-adds either way.
 *
 * The backward is timed by calling the op's backward on its tape node
 * directly (internal headers), so that no other op's cost is included. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <agave.h>

#include "core/core.h"

#define WARMUP 3
#define RUNS 15

enum kind { CONV, DECONV, NIN };

typedef struct bench_case {
    const char *name;
    enum kind kind;
    int N, Cin, Cout, H, W, KH, KW, stride;
    int pad_top, pad_bottom, pad_left, pad_right;   /* deconv: crop_top, -, crop_left, - */
} bench_case;

static const bench_case cases[] = {
    {"conv2d 3x3 pad 1, 16x64x32x32 -> 128", CONV, 16, 64, 128, 32, 32, 3, 3, 1, 1, 1, 1, 1},
    {"down-shifted 2x3, 16x64x32x32 -> 64", CONV, 16, 64, 64, 32, 32, 2, 3, 1, 1, 0, 1, 1},
    // the shifted and 3x3 convolutions of fashion (F = 32) and cifar-small (F = 64)
    {"fashion 2x3, 16x64x28x28 -> 32", CONV, 16, 64, 32, 28, 28, 2, 3, 1, 1, 0, 1, 1},
    {"fashion 2x3, 16x64x28x28 -> 64", CONV, 16, 64, 64, 28, 28, 2, 3, 1, 1, 0, 1, 1},
    {"fashion 2x3, 16x64x14x14 -> 64", CONV, 16, 64, 64, 14, 14, 2, 3, 1, 1, 0, 1, 1},
    {"fashion 2x3, 16x64x7x7 -> 64", CONV, 16, 64, 64, 7, 7, 2, 3, 1, 1, 0, 1, 1},
    {"fashion 3x3, 16x32x28x28 -> 32", CONV, 16, 32, 32, 28, 28, 3, 3, 1, 1, 1, 1, 1},
    {"fashion 3x3, 16x32x14x14 -> 32", CONV, 16, 32, 32, 14, 14, 3, 3, 1, 1, 1, 1, 1},
    {"cifar-small 2x3, 16x128x32x32 -> 64", CONV, 16, 128, 64, 32, 32, 2, 3, 1, 1, 0, 1, 1},
    {"cifar-small 2x3, 16x128x32x32 -> 128", CONV, 16, 128, 128, 32, 32, 2, 3, 1, 1, 0, 1, 1},
    {"cifar-small 2x3, 16x128x16x16 -> 128", CONV, 16, 128, 128, 16, 16, 2, 3, 1, 1, 0, 1, 1},
    {"cifar-small 3x3, 16x64x32x32 -> 64", CONV, 16, 64, 64, 32, 32, 3, 3, 1, 1, 1, 1, 1},
    {"fashion 2x2, 16x64x28x28 -> 64", CONV, 16, 64, 64, 28, 28, 2, 2, 1, 1, 0, 1, 0},
    {"down-shifted 2x3, 16x64x8x8 -> 64", CONV, 16, 64, 64, 8, 8, 2, 3, 1, 1, 0, 1, 1},
    {"down-shifted 2x3 s2, 16x64x32x32 -> 64", CONV, 16, 64, 64, 32, 32, 2, 3, 2, 1, 0, 1, 1},
    {"deconv 2x3 s2 crop (0,1), 16x64x16x16 -> 64", DECONV, 16, 64, 64, 16, 16, 2, 3, 2, 0, 0,
     1, 0},
    {"nin, 16x128x32x32 -> 64", NIN, 16, 128, 64, 32, 32, 1, 1, 1, 0, 0, 0, 0},
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static agave_tensor *make(agave_context *ctx, int ndim, int d0, int d1, int d2, int d3)
{
    int dims[4] = {d0, d1, d2, d3};
    agave_tensor *t = NULL;
    if (agave_tensor_create(ctx, ndim, dims, &t) != AGAVE_OK ||
        agave_tensor_fill_normal(t, 0.0f, 0.1f) != AGAVE_OK ||
        agave_tensor_set_requires_grad(t, 1) != AGAVE_OK) {
        fprintf(stderr, "cannot create a tensor: %s\n", agave_context_last_error(ctx));
        exit(1);
    }
    return t;
}

/* Median seconds of one cblas_sgemm of (M,K) x (K,N), threads as set by the caller. */
static double time_sgemm(int M, int N, int K)
{
    float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)K * N * sizeof *B);
    float *C = malloc((size_t)M * N * sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        A[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        B[i] = (float)(i % 5) * 0.1f;
    double t[RUNS];
    for (int r = -WARMUP; r < RUNS; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f,
                    C, N);
        if (r >= 0)
            t[r] = now() - t0;
    }
    free(A);
    free(B);
    free(C);
    return median(t, RUNS);
}

/* Median seconds of the library's own gemm() (core/blas.c) on (M,K) x (K,N). */
static double time_library_gemm(agave_context *ctx, int M, int N, int K)
{
    float *A = calloc((size_t)M * K, sizeof *A), *B = calloc((size_t)K * N, sizeof *B);
    float *C = calloc((size_t)M * N, sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    double t[RUNS];
    for (int r = -WARMUP; r < RUNS; r++) {
        double t0 = now();
        gemm(ctx, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        if (r >= 0)
            t[r] = now() - t0;
    }
    free(A);
    free(B);
    free(C);
    return median(t, RUNS);
}

static agave_status run_op(agave_context *ctx, const bench_case *c, agave_tensor *x,
                           agave_tensor *w, agave_tensor *b, agave_tensor **y)
{
    switch (c->kind) {
    case CONV:
        return agave_conv2d(ctx, x, w, b, c->stride, c->pad_top, c->pad_bottom, c->pad_left,
                            c->pad_right, y);
    case DECONV:
        return agave_conv2d_transpose(ctx, x, w, b, c->stride, c->pad_top, c->pad_left,
                                      c->H * c->stride, c->W * c->stride, y);
    default:
        return agave_nin(ctx, x, w, b, y);
    }
}

/* The forward's GEMM size: M x K times K x N. */
static void gemm_size(const bench_case *c, long long *m, long long *n, long long *k)
{
    long long Ho = c->kind == CONV ? (c->H + c->pad_top + c->pad_bottom - c->KH) / c->stride + 1
                                   : c->H;
    long long Wo = c->kind == CONV ? (c->W + c->pad_left + c->pad_right - c->KW) / c->stride + 1
                                   : c->W;
    *m = c->kind == DECONV ? (long long)c->Cout * c->KH * c->KW : c->Cout;
    *n = c->N * Ho * Wo;
    *k = c->kind == DECONV ? c->Cin : (long long)c->Cin * c->KH * c->KW;
}

/* ref_gflops: cblas_sgemm on the forward's GEMM size, measured beforehand. */
static void bench(agave_context *ctx, const bench_case *c, double ref_gflops)
{
    agave_tensor *x = make(ctx, 4, c->N, c->Cin, c->H, c->W);
    agave_tensor *w = c->kind == NIN      ? make(ctx, 2, c->Cout, c->Cin, 1, 1)
                      : c->kind == DECONV ? make(ctx, 4, c->Cin, c->Cout, c->KH, c->KW)
                                          : make(ctx, 4, c->Cout, c->Cin, c->KH, c->KW);
    agave_tensor *b = make(ctx, 1, c->Cout, 1, 1, 1);
    double tf[RUNS], tb[RUNS];
    long long gm, gn, gk;
    gemm_size(c, &gm, &gn, &gk);
    for (int r = -WARMUP; r < RUNS; r++) {
        agave_tape_reset(ctx);
        agave_tensor *y = NULL;
        double t0 = now();
        if (run_op(ctx, c, x, w, b, &y) != AGAVE_OK) {
            fprintf(stderr, "%s: %s\n", c->name, agave_context_last_error(ctx));
            exit(1);
        }
        double t1 = now();
        float *g = tensor_grad_buffer(y);   // dY, as if from the ops downstream
        for (size_t i = 0; g && i < y->numel; i++)
            g[i] = (float)(i % 13) * 0.01f - 0.06f;
        const tape_node *node = &ctx->nodes[ctx->n_nodes - 1];
        double t2 = now();
        if (!g || node->op->backward(ctx, node) != AGAVE_OK) {
            fprintf(stderr, "%s backward: %s\n", c->name, agave_context_last_error(ctx));
            exit(1);
        }
        double t3 = now();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t3 - t2;
        }
    }
    double fwd = median(tf, RUNS), bwd = median(tb, RUNS);
    double flops = 2.0 * (double)gm * (double)gn * (double)gk;   // 2 * MACs of the forward
    double ref = ref_gflops;
    double lib = flops / time_library_gemm(ctx, (int)gm, (int)gn, (int)gk) * 1e-9;
    double gf = flops / fwd * 1e-9, gb = 2 * flops / bwd * 1e-9, gfb = 3 * flops / (fwd + bwd) * 1e-9;
    printf("%-44s sgemm(M=%lld,N=%lld,K=%lld) %6.1f GFLOP/s, library gemm() %6.1f%s\n",
           c->name, gm, gn, gk, ref, lib, ctx->conv_plain ? " [im2col]" : "");
    printf("    forward  %7.2f ms %6.1f GFLOP/s (%.2f of sgemm)\n", fwd * 1e3, gf, gf / ref);
    printf("    backward %7.2f ms %6.1f GFLOP/s (%.2f of sgemm)\n", bwd * 1e3, gb, gb / ref);
    printf("    fwd+bwd  %7.2f ms %6.1f GFLOP/s (%.2f of sgemm)\n", (fwd + bwd) * 1e3, gfb,
           gfb / ref);
    agave_tape_reset(ctx);
    agave_tensor_free(x);
    agave_tensor_free(w);
    agave_tensor_free(b);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    agave_context *ctx = NULL;
    if (agave_context_create(&ctx, 1) != AGAVE_OK ||
        agave_context_set_threads(ctx, threads) != AGAVE_OK) {
        fprintf(stderr, "usage: %s [threads >= 1 [case filter]]\n", argv[0]);
        return 2;
    }
    const size_t n_cases = sizeof cases / sizeof cases[0];
    double ref[sizeof cases / sizeof cases[0]] = {0};
    openblas_set_num_threads(threads);
    printf("libagave %s, bench/ops: context threads %d; reference sgemm on OpenBLAS threads %d "
           "(%s)\n",
           agave_version_string(), agave_context_threads(ctx), openblas_get_num_threads(),
           openblas_get_config());
    printf("median of %d runs after %d warm-up runs; forward = 2*MACs, backward = 2*forward\n\n",
           RUNS, WARMUP);
    double big = 2.0 * 1024 * 1024 * 1024 / time_sgemm(1024, 1024, 1024) * 1e-9;
    for (size_t i = 0; i < n_cases; i++)
        if (argc < 3 || strstr(cases[i].name, argv[2])) {
            long long m, n, k;
            gemm_size(&cases[i], &m, &n, &k);
            ref[i] = 2.0 * (double)(m * n * k) / time_sgemm((int)m, (int)n, (int)k) * 1e-9;
        }
    openblas_set_num_threads(1);
    struct timespec pause = {0, 300000000};   // OpenBLAS's workers stop spinning
    nanosleep(&pause, NULL);
    printf("%-44s %6.1f GFLOP/s\n\n", "sgemm 1024^3", big);
    // conv cases twice: as the library runs them, then all by im2col (ctx->conv_plain):
    // where a conv runs by Winograd (lib/ops/conv2d_winograd.c), this is the A/B
    for (size_t i = 0; i < n_cases; i++)
        if (argc < 3 || strstr(cases[i].name, argv[2]))
            for (int plain = 0; plain < (cases[i].kind == CONV ? 2 : 1); plain++) {
                ctx->conv_plain = plain;
                bench(ctx, &cases[i], ref[i]);
            }
    agave_context_free(ctx);
    return 0;
}
