/* Blocking machinery of the convolution family: see conv_blocks.h. */
#include <limits.h>
#include <string.h>

#include "conv_blocks.h"

/* Beyond PANEL_COLS columns, a block's column matrix is kept to about the
 * size of a core's L2 cache, so that the GEMM reads back from cache what
 * im2col just wrote (docs/performance.md, "Blocks of images"). */
#define CACHE_FLOATS ((size_t)256 << 10)
/* Tensors hold at most 2^40 elements (core/tensor.c). */
#define MAX_NUMEL ((long long)1 << 40)
#define CHUNKS_PER_THREAD 4

int images_per_block(int N, size_t cols_per_image, size_t rows)
{
    size_t wide_enough = (PANEL_COLS + cols_per_image - 1) / cols_per_image;
    size_t in_cache = CACHE_FLOATS / (rows * cols_per_image);
    size_t nb = in_cache > wide_enough ? in_cache : wide_enough;
    return nb > (size_t)N ? N : (int)nb;
}

block_plan plan_blocks(const agave_context *ctx, int N, int nb)
{
    const int T = ctx_region_threads(ctx);
    block_plan p = {nb, 0, 1, 1};
    if (T > 1) {   // equal blocks of at most nb images, a multiple of T of them
        long rounds = ((long)N + (long)T * nb - 1) / ((long)T * nb);
        p.nb = (int)(((long)N + T * rounds - 1) / (T * rounds));
    }
    p.nblocks = (N + p.nb - 1) / p.nb;
    if (T > 1 && p.nblocks >= T) {
        p.threads = T;
        p.chunks = p.nblocks < CHUNKS_PER_THREAD * T ? p.nblocks : CHUNKS_PER_THREAD * T;
    } else {
        p.nb = nb;   // kernels split over the threads: the widest blocks
        p.nblocks = (N + nb - 1) / nb;
    }
    return p;
}

int chunk_first(const block_plan *p, int c)
{
    return (int)((long)c * p->nblocks / p->chunks);
}

int block_images(const block_plan *p, int N, int b, int *n0)
{
    *n0 = b * p->nb;
    return p->nb < N - *n0 ? p->nb : N - *n0;
}

/* ---- weight-gradient sums per chunk ---------------------------------------------- */

agave_status chunk_parts(agave_context *ctx, const block_plan *p, const float *gw, size_t size,
                         const char *op, float **part)
{
    *part = NULL;
    if (!gw || p->chunks == 1)
        return AGAVE_OK;
    *part = ctx_scratch(ctx, SCRATCH_CHUNKS, size * p->chunks * sizeof(float));
    if (!*part)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: cannot allocate %zu floats of scratch", op,
                         size * p->chunks);
    return AGAVE_OK;
}

float *chunk_sum(const block_plan *p, int c, float *gw, float *part, size_t size)
{
    if (p->chunks == 1)
        return gw;
    float *d = part + (size_t)c * size;
    memset(d, 0, size * sizeof *d);
    return d;
}

void add_chunk_sums(agave_context *ctx, const block_plan *p, const float *part, size_t size,
                    float *gw)
{
    if (p->chunks == 1)
        return;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (size > 65536) \
    schedule(static)
    for (size_t i = 0; i < size; i++) {
        float acc = gw[i];
        for (int c = 0; c < p->chunks; c++)
            acc += part[(size_t)c * size + i];
        gw[i] = acc;
    }
}

/* ---- GEMMs over a block's images -------------------------------------------------- */

static float *image_at(image_cols c, int n, size_t P)
{
    return c.wide ? c.data + (size_t)n * P : c.data + (size_t)n * c.rows * P;
}
static int image_ld(image_cols c, int m, size_t P) { return (int)(c.wide ? (size_t)m * P : P); }

void gemm_images(agave_context *ctx, int trans_a, int M, int K, const float *A, int lda,
                 image_cols B, float beta, image_cols C, int m, size_t P)
{
    if (B.wide && C.wide) {
        int cols = m * (int)P;
        gemm(ctx, trans_a, 0, M, cols, K, 1.0f, A, lda, B.data, cols, beta, C.data, cols);
        return;
    }
    for (int n = 0; n < m; n++)
        gemm(ctx, trans_a, 0, M, (int)P, K, 1.0f, A, lda, image_at(B, n, P), image_ld(B, m, P),
             beta, image_at(C, n, P), image_ld(C, m, P));
}

void gemm_sum_images(agave_context *ctx, int M, int N, image_cols A, image_cols B, float *D,
                     int ldd, int m, size_t P)
{
    if (A.wide && B.wide) {
        int cols = m * (int)P;
        gemm(ctx, 0, 1, M, N, cols, 1.0f, A.data, cols, B.data, cols, 1.0f, D, ldd);
        return;
    }
    for (int n = 0; n < m; n++)
        gemm(ctx, 0, 1, M, N, (int)P, 1.0f, image_at(A, n, P), image_ld(A, m, P),
             image_at(B, n, P), image_ld(B, m, P), 1.0f, D, ldd);
}

image_cols as_operand(agave_context *ctx, const float *src, int m, int C, size_t P, int fold,
                      float *buf)
{
    if (!fold)
        return nchw_cols(src, (size_t)C);
    nchw_to_cn(ctx, src, m, C, P, buf);
    return wide_cols(buf, (size_t)C);
}

float *thread_scratch(agave_context *ctx, int slot, size_t floats, const block_plan *p,
                      const char *op)
{
    size_t total = per_thread(floats) * (size_t)p->threads;
    float *s = ctx_scratch(ctx, slot, total * sizeof(float));
    if (!s)
        ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: cannot allocate %zu floats of scratch", op, total);
    return s;
}

/* ---- argument checks ------------------------------------------------------------- */

agave_status check_rank(agave_context *ctx, const agave_tensor *t, int ndim, const char *op,
                        const char *name, const char *layout)
{
    if (t->ndim == ndim)
        return AGAVE_OK;
    char s[SHAPE_BUF];
    return ctx_error(ctx, AGAVE_ERR_SHAPE, "%s: %s must be %d-D %s, got %s", op, name, ndim,
                     layout, shape_str(t, s, sizeof s));
}

agave_status check_bias(agave_context *ctx, const agave_tensor *bias, const agave_tensor *w,
                        int axis, const char *op)
{
    if (!bias || (bias->ndim == 1 && tN(bias) == w->dims[axis]))
        return AGAVE_OK;
    char sb[SHAPE_BUF], sw[SHAPE_BUF];
    return ctx_error(ctx, AGAVE_ERR_SHAPE,
                     "%s: bias %s must be (%d), one value per output channel of w %s", op,
                     shape_str(bias, sb, sizeof sb), w->dims[axis], shape_str(w, sw, sizeof sw));
}

agave_status check_stride(agave_context *ctx, int stride, const char *op)
{
    if (stride >= 1)
        return AGAVE_OK;
    return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: stride %d must be >= 1", op, stride);
}

agave_status check_gemm_dims(agave_context *ctx, size_t rows, size_t cols, const char *op)
{
    if (rows <= INT_MAX / 2 && cols <= INT_MAX / 2)
        return AGAVE_OK;
    return ctx_error(ctx, AGAVE_ERR_LIMIT,
                     "%s: a GEMM of %zu rows by %zu columns per image exceeds the BLAS int range",
                     op, rows, cols);
}

agave_status new_output(agave_context *ctx, const long long dims[4], int ndim, const char *op,
                        agave_tensor **y)
{
    long long numel = 1;
    int d[4];
    for (int i = 0; i < ndim; i++) {
        if (dims[i] > INT_MAX || numel > MAX_NUMEL / dims[i])
            return ctx_error(ctx, AGAVE_ERR_LIMIT,
                             "%s: the output would exceed 2^40 elements (dimension %d is %lld)",
                             op, i, dims[i]);
        numel *= dims[i];
        d[i] = (int)dims[i];
    }
    *y = tensor_new_arena(ctx, ndim, d);
    return *y ? AGAVE_OK : AGAVE_ERR_NOMEM;
}
