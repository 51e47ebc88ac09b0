/* Convolution family: conv2d, conv2d_transpose, nin (1x1 conv) and dense.
 *
 * Every op is cblas_sgemm (through gemm() in core/blas.c) around cheap OpenMP
 * data movement; with K = Cin*KH*KW and one column per output pixel:
 *   conv2d           y = W * im2col(x)                 (Cout,K) x (K,cols)
 *   conv2d backward  dW += dY * im2col(x)^T,  dx += col2im(W^T * dY)
 *   conv2d_transpose y = col2im(W^T * x): conv2d's dx path, so its backward
 *                    is a conv2d: dx += W * im2col(dY), dW += x * im2col(dY)^T
 *   nin              y = W * x per image, no im2col (x already is (Cin,H*W))
 *
 * Blocks of images. The images of a block share one column matrix, their
 * columns side by side ("wide", (rows, nb*P)), filled by one OpenMP region.
 * Then:
 *  - planes of >= PANEL_COLS pixels (32x32 and up): one GEMM per image reads
 *    its slice of the column matrix and reads or writes NCHW tensors in place;
 *  - smaller planes (8x8, 16x16: 64..256 columns, too narrow for OpenBLAS to
 *    reach its peak): the NCHW operands are permuted to the wide layout too,
 *    and one GEMM covers the whole block.
 * Either way a block costs one or two data-movement loops and a run of GEMMs
 * back to back.
 *
 * Threads. With T >= 2 threads and at least T blocks, the blocks run on the
 * threads at once, each block on one thread with single-threaded kernels and
 * its own scratch: a layer is one parallel region instead of three or four
 * per block, no thread waits at a barrier between im2col, GEMM and permute,
 * and what im2col writes is read back by the same core's GEMM. Blocks are
 * then cut equal and a multiple of T in number (16 images of 14x14 on 2
 * threads: 4 blocks of 4, not 6 + 6 + 4, which left one thread idle for a
 * third of the layer). Weight gradients
 * are summed per chunk of consecutive blocks (at most 4T chunks, handed out
 * dynamically) and the chunks' sums added in chunk order, so a given thread
 * count gives the same numbers on every run. With one thread, or fewer
 * blocks than threads (a batch of 1 when sampling), each kernel and GEMM is
 * split over the threads instead.
 *
 * Memory: the column matrix is scratch from the step arena, one block's worth
 * per call (about 1 MB, or rows x 2048 floats for folded small planes), and is
 * not saved for backward: backward recomputes im2col (one pass over cached
 * memory, against K flops per element in the GEMM), so a step's memory stays
 * close to the size of its activations.
 */
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "conv.h"
#include "fused.h"
#include "ops.h"

/* A GEMM with this many columns runs near peak in OpenBLAS (its panels are a
 * few hundred wide): a block has at least this many columns. */
#define PANEL_COLS 1024
/* Beyond that, a block's column matrix is kept to about the size of a core's
 * L2 cache, so that the GEMM reads back what im2col just wrote from cache
 * rather than from memory. Measured on 2 cores (docs/performance.md), blocks
 * of 1 MB ran the 32x32 convs 10-20% faster than blocks of 16 MB. */
#define CACHE_FLOATS ((size_t)256 << 10)
/* Tensors hold at most 2^40 elements (core/tensor.c). */
#define MAX_NUMEL ((long long)1 << 40)

/* ---- shared helpers ------------------------------------------------------------ */

/* Images per block: enough for PANEL_COLS columns, more while the column
 * matrix (rows, nb*P) stays within CACHE_FLOATS. */
static int images_per_block(int N, size_t cols_per_image, size_t rows)
{
    size_t wide_enough = (PANEL_COLS + cols_per_image - 1) / cols_per_image;
    size_t in_cache = CACHE_FLOATS / (rows * cols_per_image);
    size_t nb = in_cache > wide_enough ? in_cache : wide_enough;
    return nb > (size_t)N ? N : (int)nb;
}

/* How a layer's N images are cut into blocks and the blocks onto threads. */
typedef struct block_plan {
    int nb;        /* images per block (the last block may have fewer) */
    int nblocks;
    int threads;   /* > 1: blocks run on the threads at once; 1: kernels split instead */
    int chunks;    /* runs of consecutive blocks, one weight-gradient sum each */
} block_plan;

#define CHUNKS_PER_THREAD 4

static block_plan plan_blocks(const agave_context *ctx, int N, int nb)
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

/* Chunk c covers blocks [chunk_first(c), chunk_first(c + 1)). */
static int chunk_first(const block_plan *p, int c)
{
    return (int)((long)c * p->nblocks / p->chunks);
}

/* Images of block b: [*n0, *n0 + return). */
static int block_images(const block_plan *p, int N, int b, int *n0)
{
    *n0 = b * p->nb;
    return p->nb < N - *n0 ? p->nb : N - *n0;
}

/* Where chunk c sums its weight gradient: gw itself when there is one chunk,
 * else its own zeroed slice of part (chunks x size floats). */
static float *chunk_sum(const block_plan *p, int c, float *gw, float *part, size_t size)
{
    if (p->chunks == 1)
        return gw;
    float *d = part + (size_t)c * size;
    memset(d, 0, size * sizeof *d);
    return d;
}

/* gw += the chunks' sums, in chunk order (the same numbers on every run). */
static void add_chunk_sums(agave_context *ctx, const block_plan *p, const float *part,
                           size_t size, float *gw)
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

/* m images of a (rows, P) matrix each, either side by side in one (rows, m*P)
 * matrix (wide) or one after another as in an NCHW tensor. */
typedef struct image_cols {
    float *data;
    size_t rows;
    int wide;
} image_cols;

static image_cols wide_cols(float *data, size_t rows) { return (image_cols){data, rows, 1}; }
static image_cols nchw_cols(const float *data, size_t rows)
{
    // const dropped: only GEMM outputs are written through, and those are never const
    return (image_cols){(float *)data, rows, 0};
}
static float *image_at(image_cols c, int n, size_t P)
{
    return c.wide ? c.data + (size_t)n * P : c.data + (size_t)n * c.rows * P;
}
static int image_ld(image_cols c, int m, size_t P) { return (int)(c.wide ? (size_t)m * P : P); }

/* C (M, cols) = op(A) (M,K) x B (K, cols) + beta C over the m images' columns:
 * one GEMM when B and C are both wide, else one per image. */
static void gemm_images(agave_context *ctx, int trans_a, int M, int K, const float *A, int lda,
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

/* D (M,N) += A (M, cols) x B (N, cols)^T, summed over the m images' columns. */
static void gemm_sum_images(agave_context *ctx, int M, int N, image_cols A, image_cols B,
                            float *D, int ldd, int m, size_t P)
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

/* The NCHW block src (m,C,P) as GEMM operand: in place for wide planes, else
 * permuted into the wide scratch buf (C, m*P). */
static image_cols as_operand(agave_context *ctx, const float *src, int m, int C, size_t P,
                             int fold, float *buf)
{
    if (!fold)
        return nchw_cols(src, (size_t)C);
    nchw_to_cn(ctx, src, m, C, P, buf);
    return wide_cols(buf, (size_t)C);
}

/* Column matrices and permuted operands live only during one call: they come
 * from the context's reusable scratch slots (0 and 1), not the step arena, so
 * a step's memory is its activations, not its activations plus every im2col. */
static float *scratch(agave_context *ctx, int slot, size_t floats, const char *op)
{
    float *p = ctx_scratch(ctx, slot, floats * sizeof(float));
    if (!p)
        ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: cannot allocate %zu floats of scratch", op, floats);
    return p;
}

/* The chunks' weight-gradient sums (chunks x size floats, scratch slot 3):
 * NULL in *part when there is one chunk or no weight gradient. */
static agave_status chunk_parts(agave_context *ctx, const block_plan *p, const float *gw,
                                size_t size, const char *op, float **part)
{
    *part = NULL;
    if (!gw || p->chunks == 1)
        return AGAVE_OK;
    *part = scratch(ctx, 3, size * p->chunks, op);
    return *part ? AGAVE_OK : AGAVE_ERR_NOMEM;
}

/* Slot `slot` cut into one piece of `floats` per thread (pieces 64-byte
 * aligned); piece t is at the result + t * per_thread(floats). */
static size_t per_thread(size_t floats) { return (floats + 15) & ~(size_t)15; }
static float *thread_scratch(agave_context *ctx, int slot, size_t floats, const block_plan *p,
                             const char *op)
{
    return scratch(ctx, slot, per_thread(floats) * (size_t)p->threads, op);
}
#define PIECE(base, floats) ((base) ? (base) + (size_t)omp_get_thread_num() * per_thread(floats) : NULL)

static agave_status check_rank(agave_context *ctx, const agave_tensor *t, int ndim,
                               const char *op, const char *name, const char *layout)
{
    if (t->ndim == ndim)
        return AGAVE_OK;
    char s[SHAPE_BUF];
    return ctx_error(ctx, AGAVE_ERR_SHAPE, "%s: %s must be %d-D %s, got %s", op, name, ndim,
                     layout, shape_str(t, s, sizeof s));
}

/* bias is NULL or (C), C taken from dimension `axis` of w. */
static agave_status check_bias(agave_context *ctx, const agave_tensor *bias,
                               const agave_tensor *w, int axis, const char *op)
{
    if (!bias || (bias->ndim == 1 && tN(bias) == w->dims[axis]))
        return AGAVE_OK;
    char sb[SHAPE_BUF], sw[SHAPE_BUF];
    return ctx_error(ctx, AGAVE_ERR_SHAPE,
                     "%s: bias %s must be (%d), one value per output channel of w %s", op,
                     shape_str(bias, sb, sizeof sb), w->dims[axis], shape_str(w, sw, sizeof sw));
}

static agave_status check_stride(agave_context *ctx, int stride, const char *op)
{
    if (stride >= 1)
        return AGAVE_OK;
    return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: stride %d must be >= 1", op, stride);
}

/* GEMM sizes are ints: the column matrix's rows and one image's columns must fit. */
static agave_status check_gemm_dims(agave_context *ctx, size_t rows, size_t cols, const char *op)
{
    if (rows <= INT_MAX / 2 && cols <= INT_MAX / 2)
        return AGAVE_OK;
    return ctx_error(ctx, AGAVE_ERR_LIMIT,
                     "%s: a GEMM of %zu rows by %zu columns per image exceeds the BLAS int range",
                     op, rows, cols);
}

/* A new arena output of 4 dims computed in long long; LIMIT if too large. */
static agave_status new_output(agave_context *ctx, const long long dims[4], int ndim,
                               const char *op, agave_tensor **y)
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

/* ---- conv2d: x is (N,Cin,H,W), w is (Cout,Cin,KH,KW), y is (N,Cout,Ho,Wo) -------- */

/* The image side is x, or concat_elu(x) (2C channels) with ce. */
static conv_geom conv2d_geom(const agave_tensor *x, const agave_tensor *w, int stride,
                             int pad_top, int pad_left, int out_h, int out_w, int ce)
{
    return (conv_geom){ce ? 2 * tC(x) : tC(x), tH(x), tW(x), tH(w), tW(w), stride, pad_top,
                       pad_left, out_h, out_w};
}

/* Images [n0, n0+m) of the conv's input: x in place, or under ce concat_elu(x)
 * computed into buf (m, 2C, H, W), so that it is never stored. */
static const float *conv2d_images(agave_context *ctx, const agave_tensor *x, int n0, int m,
                                  int ce, float *buf)
{
    const size_t plane = (size_t)tH(x) * tW(x), x_img = (size_t)tC(x) * plane;
    const float *xb = x->data + (size_t)n0 * x_img;
    if (!ce)
        return xb;
    concat_elu_into(ctx, xb, m, tC(x), plane, buf, plane, 2 * x_img);
    return buf;
}

static agave_status conv2d_forward(agave_context *ctx, const conv_geom *g,
                                   const agave_tensor *x, const agave_tensor *w,
                                   const agave_tensor *bias, int ce, agave_tensor *y)
{
    const int N = tN(x), Cout = tN(w);
    const size_t K = geom_rows(g), P = geom_cols(g), img = (size_t)g->channels * geom_plane(g);
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, K));
    const int fold = P < PANEL_COLS;
    const size_t col_n = K * bp.nb * P, ycn_n = (size_t)Cout * bp.nb * P, ce_n = img * bp.nb;
    float *col_all = thread_scratch(ctx, 0, col_n, &bp, "conv2d");
    float *ycn_all = fold ? thread_scratch(ctx, 1, ycn_n, &bp, "conv2d") : NULL;
    float *ce_all = ce ? thread_scratch(ctx, 2, ce_n, &bp, "conv2d") : NULL;
    if (!col_all || (fold && !ycn_all) || (ce && !ce_all))
        return AGAVE_ERR_NOMEM;
    const float *b = bias ? bias->data : NULL;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *col = PIECE(col_all, col_n), *ycn = PIECE(ycn_all, ycn_n);
        float *cebuf = PIECE(ce_all, ce_n);
        int n0;
        const int m = block_images(&bp, N, blk, &n0);
        float *yb = y->data + (size_t)n0 * Cout * P;   // (m,Cout,P)
        im2col(ctx, g, conv2d_images(ctx, x, n0, m, ce, cebuf), m, col);
        // (Cout,K) x (K, m*P), into y directly or into (Cout, m*P) then permuted
        image_cols out = fold ? wide_cols(ycn, (size_t)Cout) : nchw_cols(yb, (size_t)Cout);
        gemm_images(ctx, 0, Cout, (int)K, w->data, (int)K, wide_cols(col, K), 0.0f, out, m, P);
        if (fold)
            cn_to_nchw(ctx, ycn, m, Cout, P, b, 0, yb);
        else if (b)
            add_bias(ctx, yb, m, Cout, P, b);
    }
    return AGAVE_OK;
}

static agave_status conv2d_op(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                              agave_tensor *bias, int stride, int pad_top, int pad_bottom,
                              int pad_left, int pad_right, int ce, agave_tensor **out)
{
    const char *op = ce ? "conv2d_ce" : "conv2d";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    TRY(check_rank(ctx, x, 4, op, "x", "(N,Cin,H,W)"));
    TRY(check_rank(ctx, w, 4, op, "w", "(Cout,Cin,KH,KW)"));
    char sx[SHAPE_BUF], sw[SHAPE_BUF];
    if ((long long)tC(x) * (ce ? 2 : 1) != w->dims[1])
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "%s: x %s has %d channels%s but w %s (Cout,Cin,KH,KW) expects %d", op,
                         shape_str(x, sx, sizeof sx), tC(x), ce ? " (doubled by concat_elu)" : "",
                         shape_str(w, sw, sizeof sw), w->dims[1]);
    TRY(check_bias(ctx, bias, w, 0, op));
    TRY(check_stride(ctx, stride, op));
    if (pad_top < 0 || pad_bottom < 0 || pad_left < 0 || pad_right < 0)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "conv2d: paddings must be >= 0, got top %d bottom %d left %d right %d",
                         pad_top, pad_bottom, pad_left, pad_right);
    long long span_h = (long long)tH(x) + pad_top + pad_bottom - tH(w);
    long long span_w = (long long)tW(x) + pad_left + pad_right - tW(w);
    if (span_h < 0 || span_w < 0)
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "conv2d: x %s padded to %lldx%lld is smaller than the %dx%d kernel of "
                         "w %s: the output would be empty",
                         shape_str(x, sx, sizeof sx), span_h + tH(w), span_w + tW(w), tH(w),
                         tW(w), shape_str(w, sw, sizeof sw));
    long long dims[4] = {tN(x), tN(w), span_h / stride + 1, span_w / stride + 1};
    TRY(check_gemm_dims(ctx, (size_t)w->dims[1] * tH(w) * tW(w), (size_t)(dims[2] * dims[3]), op));
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    conv_geom g = conv2d_geom(x, w, stride, pad_top, pad_left, tH(y), tW(y), ce);
    TRY(conv2d_forward(ctx, &g, x, w, bias, ce, y));
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    tape_node *node = op_record(ctx, ce ? OP_CONV2D_CE : OP_CONV2D, y, in, 3, &st);
    TRY(st);
    if (node) {
        node->iarg[0] = stride;
        node->iarg[1] = pad_top;
        node->iarg[2] = pad_left;
        node->iarg[3] = ce;
    }
    *out = y;
    return AGAVE_OK;
}

agave_status agave_conv2d(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                          agave_tensor *bias, int stride, int pad_top, int pad_bottom,
                          int pad_left, int pad_right, agave_tensor **out)
{
    return conv2d_op(ctx, x, w, bias, stride, pad_top, pad_bottom, pad_left, pad_right, 0, out);
}

agave_status conv2d_ce(agave_context *ctx, agave_tensor *x, agave_tensor *w, agave_tensor *bias,
                       int stride, int pad_top, int pad_bottom, int pad_left, int pad_right,
                       agave_tensor **out)
{
    return conv2d_op(ctx, x, w, bias, stride, pad_top, pad_bottom, pad_left, pad_right, 1, out);
}

/* dbias = sum dY; dW += dY im2col(x)^T; dx += col2im(W^T dY); per block of nb images.
 * Under ce, im2col reads concat_elu(x) recomputed into scratch, and col2im
 * scatters into a zeroed scratch block that concat_elu's gradient then adds
 * into dx: the same numbers as conv2d after concat_elu, nothing stored. */
agave_status conv2d_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const int ce = node->iarg[3];
    conv_geom g = conv2d_geom(x, w, node->iarg[0], node->iarg[1], node->iarg[2], tH(y), tW(y),
                              ce);
    const int N = tN(x), Cout = tN(w);
    const size_t K = geom_rows(&g), P = geom_cols(&g), x_img = (size_t)tC(x) * geom_plane(&g);
    const size_t img = (size_t)g.channels * geom_plane(&g);
    if (gb)
        bias_grad(ctx, y->grad, N, Cout, P, gb);
    if (!gx && !gw)
        return AGAVE_OK;
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, K));
    const int fold = P < PANEL_COLS;
    const size_t col_n = K * bp.nb * P, dy_n = (size_t)Cout * bp.nb * P, ce_n = img * bp.nb;
    const size_t w_n = (size_t)Cout * K;
    float *col_all = thread_scratch(ctx, 0, col_n, &bp, "conv2d backward");   // im2col, then dcol
    float *dy_all = fold ? thread_scratch(ctx, 1, dy_n, &bp, "conv2d backward") : NULL;
    float *ce_all = ce ? thread_scratch(ctx, 2, ce_n, &bp, "conv2d backward") : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, "conv2d backward", &part));
    if (!col_all || (fold && !dy_all) || (ce && !ce_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *col = PIECE(col_all, col_n), *dycn = PIECE(dy_all, dy_n);
        float *cebuf = PIECE(ce_all, ce_n);
        float *gw_sum = gw ? chunk_sum(&bp, c, gw, part, w_n) : NULL;
        for (int blk = chunk_first(&bp, c); blk < chunk_first(&bp, c + 1); blk++) {
            int n0;
            const int m = block_images(&bp, N, blk, &n0);
            image_cols dy =
                as_operand(ctx, y->grad + (size_t)n0 * Cout * P, m, Cout, P, fold, dycn);
            if (gw) {   // dW (Cout,K) += dY (Cout, m*P) x im2col(x)^T
                im2col(ctx, &g, conv2d_images(ctx, x, n0, m, ce, cebuf), m, col);
                gemm_sum_images(ctx, Cout, (int)K, dy, wide_cols(col, K), gw_sum, (int)K, m, P);
            }
            if (!gx)
                continue;
            // dcol (K, m*P) = W^T dY, scattered back into dx
            gemm_images(ctx, 1, (int)K, Cout, w->data, (int)K, dy, 0.0f, wide_cols(col, K), m,
                        P);
            if (!ce) {
                col2im_add(ctx, &g, col, m, gx + (size_t)n0 * x_img);
                continue;
            }
            memset(cebuf, 0, img * (size_t)m * sizeof *cebuf);
            col2im_add(ctx, &g, col, m, cebuf);
            concat_elu_grad_into(ctx, x->data + (size_t)n0 * x_img, m, tC(x), geom_plane(&g),
                                 cebuf, geom_plane(&g), img, gx + (size_t)n0 * x_img);
        }
    }
    if (gw)
        add_chunk_sums(ctx, &bp, part, w_n, gw);
    return AGAVE_OK;
}

agave_status conv2d_ce_backward(agave_context *ctx, const tape_node *node)
{
    return conv2d_backward(ctx, node);
}

/* ---- conv2d_transpose: x is (N,Cin,H,W), w is (Cin,Cout,KH,KW),
 *      y is (N,Cout,out_h,out_w) ------------------------------------------------------
 * Seen from the output, out[r,c] reads F at (r + crop_top, c + crop_left), and
 * F[i*s + kh, j*s + kw] gathers x[i,j] w[kh,kw]: this is the conv2d with image
 * = the output plane, padding = the crops and grid = x's plane, run backwards.
 * So the geometry below describes the output as the "image" side. */

static conv_geom transpose_geom(const agave_tensor *x, const agave_tensor *w, int stride,
                                int crop_top, int crop_left, int out_h, int out_w)
{
    return (conv_geom){tC(w), out_h, out_w, tH(w), tW(w), stride, crop_top, crop_left,
                       tH(x), tW(x)};
}

static agave_status conv2d_transpose_forward(agave_context *ctx, const conv_geom *g,
                                             const agave_tensor *x, const agave_tensor *w,
                                             const agave_tensor *bias, agave_tensor *y)
{
    const int N = tN(x), Cin = tC(x), Cout = g->channels;
    const size_t R = geom_rows(g), P = geom_cols(g), y_img = (size_t)Cout * geom_plane(g);
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, R));
    const int fold = P < PANEL_COLS;
    const size_t col_n = R * bp.nb * P, x_n = (size_t)Cin * bp.nb * P;
    float *col_all = thread_scratch(ctx, 0, col_n, &bp, "conv2d_transpose");
    float *x_all = fold ? thread_scratch(ctx, 1, x_n, &bp, "conv2d_transpose") : NULL;
    if (!col_all || (fold && !x_all))
        return AGAVE_ERR_NOMEM;
    // col2im adds into y, so y starts as the bias
    fill_bias(ctx, y->data, N, Cout, geom_plane(g), bias ? bias->data : NULL);
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *col = PIECE(col_all, col_n), *xcn = PIECE(x_all, x_n);
        int n0;
        const int m = block_images(&bp, N, blk, &n0);
        image_cols xb = as_operand(ctx, x->data + (size_t)n0 * Cin * P, m, Cin, P, fold, xcn);
        // every tap's contribution, (Cout*KH*KW, Cin) x (Cin, m*P), then scattered
        gemm_images(ctx, 1, (int)R, Cin, w->data, (int)R, xb, 0.0f, wide_cols(col, R), m, P);
        col2im_add(ctx, g, col, m, y->data + (size_t)n0 * y_img);
    }
    return AGAVE_OK;
}

agave_status agave_conv2d_transpose(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                                    agave_tensor *bias, int stride, int crop_top, int crop_left,
                                    int out_h, int out_w, agave_tensor **out)
{
    static const char op[] = "conv2d_transpose";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    TRY(check_rank(ctx, x, 4, op, "x", "(N,Cin,H,W)"));
    TRY(check_rank(ctx, w, 4, op, "w", "(Cin,Cout,KH,KW)"));
    if (tC(x) != tN(w)) {
        char sx[SHAPE_BUF], sw[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "conv2d_transpose: x %s has %d channels but w %s (Cin,Cout,KH,KW) "
                         "expects %d",
                         shape_str(x, sx, sizeof sx), tC(x), shape_str(w, sw, sizeof sw),
                         tN(w));
    }
    TRY(check_bias(ctx, bias, w, 1, op));
    TRY(check_stride(ctx, stride, op));
    if (crop_top < 0 || crop_left < 0)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "conv2d_transpose: crops must be >= 0, got top %d left %d", crop_top,
                         crop_left);
    if (out_h < 1 || out_w < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "conv2d_transpose: output size %dx%d must be at least 1x1", out_h,
                         out_w);
    long long dims[4] = {tN(x), tC(w), out_h, out_w};
    TRY(check_gemm_dims(ctx, (size_t)tC(w) * tH(w) * tW(w), (size_t)tH(x) * tW(x), op));
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    conv_geom g = transpose_geom(x, w, stride, crop_top, crop_left, out_h, out_w);
    TRY(conv2d_transpose_forward(ctx, &g, x, w, bias, y));
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    tape_node *node = op_record(ctx, OP_CONV2D_TRANSPOSE, y, in, 3, &st);
    TRY(st);
    if (node) {
        node->iarg[0] = stride;
        node->iarg[1] = crop_top;
        node->iarg[2] = crop_left;
    }
    *out = y;
    return AGAVE_OK;
}

/* A conv2d of dY: col = im2col(dY); dx += W col; dW += x col^T; dbias = sum dY. */
agave_status conv2d_transpose_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    conv_geom g = transpose_geom(x, w, node->iarg[0], node->iarg[1], node->iarg[2], tH(y),
                                 tW(y));
    const int N = tN(x), Cin = tC(x), Cout = g.channels;
    const size_t R = geom_rows(&g), P = geom_cols(&g), y_img = (size_t)Cout * geom_plane(&g);
    if (gb)
        bias_grad(ctx, y->grad, N, Cout, geom_plane(&g), gb);
    if (!gx && !gw)
        return AGAVE_OK;
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, R));
    const int fold = P < PANEL_COLS;
    const size_t col_n = R * bp.nb * P, x_n = (size_t)Cin * bp.nb * P, w_n = (size_t)Cin * R;
    float *col_all = thread_scratch(ctx, 0, col_n, &bp, "conv2d_transpose backward");
    float *x_all = fold ? thread_scratch(ctx, 1, x_n, &bp, "conv2d_transpose backward") : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, "conv2d_transpose backward", &part));
    if (!col_all || (fold && !x_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *col = PIECE(col_all, col_n), *xcn = PIECE(x_all, x_n);
        float *gw_sum = gw ? chunk_sum(&bp, c, gw, part, w_n) : NULL;
        for (int blk = chunk_first(&bp, c); blk < chunk_first(&bp, c + 1); blk++) {
            int n0;
            const int m = block_images(&bp, N, blk, &n0);
            im2col(ctx, &g, y->grad + (size_t)n0 * y_img, m, col);   // (Cout*KH*KW, m*P)
            if (gx) {   // dx (Cin, m*P) += W (Cin, R) x col, through xcn when folded
                float *gxb = gx + (size_t)n0 * Cin * P;
                image_cols dx = fold ? wide_cols(xcn, (size_t)Cin) : nchw_cols(gxb, (size_t)Cin);
                gemm_images(ctx, 0, Cin, (int)R, w->data, (int)R, wide_cols(col, R),
                            fold ? 0.0f : 1.0f, dx, m, P);
                if (fold)
                    cn_to_nchw(ctx, xcn, m, Cin, P, NULL, 1, gxb);
            }
            if (gw) {   // dW (Cin, R) += x (Cin, m*P) x col^T
                image_cols xb =
                    as_operand(ctx, x->data + (size_t)n0 * Cin * P, m, Cin, P, fold, xcn);
                gemm_sum_images(ctx, Cin, (int)R, xb, wide_cols(col, R), gw_sum, (int)R, m, P);
            }
        }
    }
    if (gw)
        add_chunk_sums(ctx, &bp, part, w_n, gw);
    return AGAVE_OK;
}

/* ---- nin: x is (N,Cin,H,W), w is (Cout,Cin), y is (N,Cout,H,W) --------------------- */

static agave_status nin_forward(agave_context *ctx, const agave_tensor *x,
                                const agave_tensor *w, const agave_tensor *bias,
                                agave_tensor *y)
{
    const int N = tN(x), Cin = tC(x), Cout = tN(w);
    const size_t P = (size_t)tH(x) * tW(x);
    const int fold = P < PANEL_COLS;
    // unfolded, x and y are used in place: the whole batch is one block
    const block_plan bp =
        plan_blocks(ctx, N, fold ? images_per_block(N, P, (size_t)(Cin > Cout ? Cin : Cout)) : N);
    const size_t x_n = (size_t)Cin * bp.nb * P, y_n = (size_t)Cout * bp.nb * P;
    float *x_all = fold ? thread_scratch(ctx, 0, x_n, &bp, "nin") : NULL;
    float *y_all = fold ? thread_scratch(ctx, 1, y_n, &bp, "nin") : NULL;
    if (fold && (!x_all || !y_all))
        return AGAVE_ERR_NOMEM;
    const float *b = bias ? bias->data : NULL;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *xcn = PIECE(x_all, x_n), *ycn = PIECE(y_all, y_n);
        int n0;
        const int m = block_images(&bp, N, blk, &n0);
        float *yb = y->data + (size_t)n0 * Cout * P;   // (m,Cout,P)
        image_cols xb = as_operand(ctx, x->data + (size_t)n0 * Cin * P, m, Cin, P, fold, xcn);
        image_cols out = fold ? wide_cols(ycn, (size_t)Cout) : nchw_cols(yb, (size_t)Cout);
        gemm_images(ctx, 0, Cout, Cin, w->data, Cin, xb, 0.0f, out, m, P);   // (Cout,Cin) x (Cin,m*P)
        if (fold)
            cn_to_nchw(ctx, ycn, m, Cout, P, b, 0, yb);
        else if (b)
            add_bias(ctx, yb, m, Cout, P, b);
    }
    return AGAVE_OK;
}

agave_status agave_nin(agave_context *ctx, agave_tensor *x, agave_tensor *w, agave_tensor *bias,
                       agave_tensor **out)
{
    static const char op[] = "nin";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    TRY(check_rank(ctx, x, 4, op, "x", "(N,Cin,H,W)"));
    TRY(check_rank(ctx, w, 2, op, "w", "(Cout,Cin)"));
    if (tC(x) != tC(w)) {
        char sx[SHAPE_BUF], sw[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "nin: x %s has %d channels but w %s (Cout,Cin) expects %d",
                         shape_str(x, sx, sizeof sx), tC(x), shape_str(w, sw, sizeof sw),
                         tC(w));
    }
    TRY(check_bias(ctx, bias, w, 0, op));
    TRY(check_gemm_dims(ctx, (size_t)tC(x), (size_t)tH(x) * tW(x), op));
    long long dims[4] = {tN(x), tN(w), tH(x), tW(x)};
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    TRY(nin_forward(ctx, x, w, bias, y));
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    op_record(ctx, OP_NIN, y, in, 3, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* dx (m,Cin,P) += W^T dY for a block of m images: in place when unfolded,
 * else through buf in the wide layout (Cin, m*P) and permuted back. */
static void nin_input_grad(agave_context *ctx, const float *w, int Cin, int Cout, image_cols dy,
                           int fold, float *buf, float *gxb, int m, size_t P)
{
    image_cols dx = fold ? wide_cols(buf, (size_t)Cin) : nchw_cols(gxb, (size_t)Cin);
    gemm_images(ctx, 1, Cin, Cout, w, Cin, dy, fold ? 0.0f : 1.0f, dx, m, P);
    if (fold)
        cn_to_nchw(ctx, buf, m, Cin, P, NULL, 1, gxb);
}

/* dbias = sum dY; dW += dY x^T; dx += W^T dY; per block of nb images. */
agave_status nin_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const int N = tN(x), Cin = tC(x), Cout = tN(w);
    const size_t P = (size_t)tH(x) * tW(x);
    if (gb)
        bias_grad(ctx, y->grad, N, Cout, P, gb);
    if (!gx && !gw)
        return AGAVE_OK;
    const int fold = P < PANEL_COLS;
    const block_plan bp =
        plan_blocks(ctx, N, fold ? images_per_block(N, P, (size_t)(Cin > Cout ? Cin : Cout)) : N);
    const size_t x_n = (size_t)Cin * bp.nb * P, dy_n = (size_t)Cout * bp.nb * P;
    const size_t w_n = (size_t)Cout * Cin;
    float *x_all = fold ? thread_scratch(ctx, 0, x_n, &bp, "nin backward") : NULL;
    float *dy_all = fold ? thread_scratch(ctx, 1, dy_n, &bp, "nin backward") : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, "nin backward", &part));
    if (fold && (!x_all || !dy_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *xcn = PIECE(x_all, x_n), *dycn = PIECE(dy_all, dy_n);
        float *gw_sum = gw ? chunk_sum(&bp, c, gw, part, w_n) : NULL;
        for (int blk = chunk_first(&bp, c); blk < chunk_first(&bp, c + 1); blk++) {
            int n0;
            const int m = block_images(&bp, N, blk, &n0);
            image_cols dy =
                as_operand(ctx, y->grad + (size_t)n0 * Cout * P, m, Cout, P, fold, dycn);
            if (gw) {   // dW (Cout,Cin) += dY (Cout, m*P) x x^T
                image_cols xb =
                    as_operand(ctx, x->data + (size_t)n0 * Cin * P, m, Cin, P, fold, xcn);
                gemm_sum_images(ctx, Cout, Cin, dy, xb, gw_sum, Cin, m, P);
            }
            if (gx)   // through xcn (free again) when folded
                nin_input_grad(ctx, w->data, Cin, Cout, dy, fold, xcn,
                               gx + (size_t)n0 * Cin * P, m, P);
        }
    }
    if (gw)
        add_chunk_sums(ctx, &bp, part, w_n, gw);
    return AGAVE_OK;
}

/* ---- nin_add (ops/fused.h): y = base + nin(x or concat_elu(x)) ----------------------
 * x is (N,Cx,H,W), w is (Cout,Cin) with Cin = 2Cx under concat_elu (ce) else Cx,
 * base and y are (N,Cout,H,W). Per block of m images: the operand X (Cin, m*P)
 * is x in place (NCHW, wide planes), x permuted (small planes) or concat_elu(x)
 * written into scratch; T = W X goes to scratch in the wide layout; then
 * y = base + (T + bias). T and concat_elu(x) are never stored in the arena. */

static int nin_add_block(int N, size_t P, int Cin, int Cout)
{
    return images_per_block(N, P, (size_t)(Cin > Cout ? Cin : Cout));
}

/* The operand X of images [n0, n0+m): wide when fold, NCHW otherwise. */
static image_cols nin_add_operand(agave_context *ctx, const agave_tensor *x, int n0, int m,
                                  int ce, int fold, float *buf)
{
    const int Cx = tC(x);
    const size_t P = (size_t)tH(x) * tW(x);
    const float *xb = x->data + (size_t)n0 * Cx * P;
    if (!ce)
        return as_operand(ctx, xb, m, Cx, P, fold, buf);
    if (fold) {
        concat_elu_into(ctx, xb, m, Cx, P, buf, (size_t)m * P, P);
        return wide_cols(buf, (size_t)2 * Cx);
    }
    concat_elu_into(ctx, xb, m, Cx, P, buf, P, (size_t)2 * Cx * P);
    return nchw_cols(buf, (size_t)2 * Cx);
}

static agave_status nin_add_forward(agave_context *ctx, const agave_tensor *x,
                                    const agave_tensor *w, const agave_tensor *bias,
                                    const agave_tensor *base, int ce, agave_tensor *y)
{
    const int N = tN(x), Cin = tC(w), Cout = tN(w);
    const size_t P = (size_t)tH(x) * tW(x);
    const int fold = P < PANEL_COLS;
    const block_plan bp = plan_blocks(ctx, N, nin_add_block(N, P, Cin, Cout));
    const size_t x_n = (size_t)Cin * bp.nb * P, t_n = (size_t)Cout * bp.nb * P;
    float *x_all = ce || fold ? thread_scratch(ctx, 0, x_n, &bp, "nin_add") : NULL;
    float *t_all = thread_scratch(ctx, 1, t_n, &bp, "nin_add");
    if (!t_all || ((ce || fold) && !x_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *xbuf = PIECE(x_all, x_n), *t = PIECE(t_all, t_n);
        int n0;
        const int m = block_images(&bp, N, blk, &n0);
        const size_t off = (size_t)n0 * Cout * P;
        image_cols xb = nin_add_operand(ctx, x, n0, m, ce, fold, xbuf);
        // T (Cout, m*P) = (Cout,Cin) x (Cin, m*P)
        gemm_images(ctx, 0, Cout, Cin, w->data, Cin, xb, 0.0f, wide_cols(t, (size_t)Cout), m, P);
        cn_add_base(ctx, t, m, Cout, P, bias ? bias->data : NULL, base->data + off,
                    y->data + off);
    }
    return AGAVE_OK;
}

agave_status nin_add(agave_context *ctx, agave_tensor *x, agave_tensor *w, agave_tensor *bias,
                     agave_tensor *base, int ce, agave_tensor **out)
{
    static const char op[] = "nin_add";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    TRY(check_tensor(ctx, base, op, "base"));
    TRY(check_rank(ctx, x, 4, op, "x", "(N,Cx,H,W)"));
    TRY(check_rank(ctx, w, 2, op, "w", "(Cout,Cin)"));
    char sx[SHAPE_BUF], sw[SHAPE_BUF];
    if ((long long)tC(x) * (ce ? 2 : 1) != tC(w))
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "nin_add: x %s%s does not match w %s (Cout,Cin)",
                         shape_str(x, sx, sizeof sx), ce ? " under concat_elu" : "",
                         shape_str(w, sw, sizeof sw));
    TRY(check_bias(ctx, bias, w, 0, op));
    TRY(check_gemm_dims(ctx, (size_t)tC(w), (size_t)tH(x) * tW(x), op));
    long long dims[4] = {tN(x), tN(w), tH(x), tW(x)};
    if (base->ndim != 4 || tN(base) != dims[0] || tC(base) != dims[1] || tH(base) != dims[2] ||
        tW(base) != dims[3])
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "nin_add: base %s must be (%lld,%lld,%lld,%lld)",
                         shape_str(base, sx, sizeof sx), dims[0], dims[1], dims[2], dims[3]);
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    TRY(nin_add_forward(ctx, x, w, bias, base, ce, y));
    agave_status st;
    agave_tensor *in[4] = {x, w, bias, base};
    tape_node *node = op_record(ctx, OP_NIN_ADD, y, in, 4, &st);
    TRY(st);
    if (node)
        node->iarg[0] = ce;
    *out = y;
    return AGAVE_OK;
}

/* dbase += dY; dbias = sum dY; dW += dY X^T; dX = W^T dY, through concat_elu's
 * gradient into dx under ce, else added into dx as nin_backward does. */
agave_status nin_add_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st), *gbase = input_grad(node, 3, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const int ce = node->iarg[0], N = tN(x), Cx = tC(x), Cin = tC(w), Cout = tN(w);
    const size_t P = (size_t)tH(x) * tW(x);
    const float *g = y->grad;
    if (gbase) {
        const long n = (long)y->numel;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > 65536) schedule(dynamic, 16384)
        for (long i = 0; i < n; i++)
            gbase[i] += g[i];
    }
    if (gb)
        bias_grad(ctx, g, N, Cout, P, gb);
    if (!gx && !gw)
        return AGAVE_OK;
    const int fold = P < PANEL_COLS;
    const block_plan bp = plan_blocks(ctx, N, nin_add_block(N, P, Cin, Cout));
    const size_t x_n = (size_t)Cin * bp.nb * P, dy_n = (size_t)Cout * bp.nb * P;
    const size_t w_n = (size_t)Cout * Cin;
    float *x_all = thread_scratch(ctx, 0, x_n, &bp, "nin_add backward");
    float *dy_all = fold ? thread_scratch(ctx, 1, dy_n, &bp, "nin_add backward") : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, "nin_add backward", &part));
    if (!x_all || (fold && !dy_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *xbuf = PIECE(x_all, x_n), *dycn = PIECE(dy_all, dy_n);
        float *gw_sum = gw ? chunk_sum(&bp, c, gw, part, w_n) : NULL;
        for (int blk = chunk_first(&bp, c); blk < chunk_first(&bp, c + 1); blk++) {
            int n0;
            const int m = block_images(&bp, N, blk, &n0);
            image_cols dy = as_operand(ctx, g + (size_t)n0 * Cout * P, m, Cout, P, fold, dycn);
            if (gw) {   // dW (Cout,Cin) += dY (Cout, m*P) x X^T
                image_cols xb = nin_add_operand(ctx, x, n0, m, ce, fold, xbuf);
                gemm_sum_images(ctx, Cout, Cin, dy, xb, gw_sum, Cin, m, P);
            }
            if (!gx)
                continue;
            float *gxb = gx + (size_t)n0 * Cx * P;
            if (ce) {   // dX into scratch, laid out as the operand, then through concat_elu
                image_cols dx =
                    fold ? wide_cols(xbuf, (size_t)Cin) : nchw_cols(xbuf, (size_t)Cin);
                gemm_images(ctx, 1, Cin, Cout, w->data, Cin, dy, 0.0f, dx, m, P);
                concat_elu_grad_into(ctx, x->data + (size_t)n0 * Cx * P, m, Cx, P, xbuf,
                                     fold ? (size_t)m * P : P, fold ? P : (size_t)Cin * P, gxb);
            } else {   // as nin_backward
                nin_input_grad(ctx, w->data, Cin, Cout, dy, fold, xbuf, gxb, m, P);
            }
        }
    }
    if (gw)
        add_chunk_sums(ctx, &bp, part, w_n, gw);
    return AGAVE_OK;
}

/* ---- dense: x is (N,K) (or (N,...) flattened), w is (M,K), y is (N,M) -------------- */

agave_status agave_dense(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                         agave_tensor *bias, agave_tensor **out)
{
    static const char op[] = "dense";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    char sx[SHAPE_BUF], sw[SHAPE_BUF];
    if (x->ndim < 2)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "dense: x must be (N,K) or (N,...), got %s",
                         shape_str(x, sx, sizeof sx));
    TRY(check_rank(ctx, w, 2, op, "w", "(M,K)"));
    const size_t K = x->numel / (size_t)tN(x);
    if (K != (size_t)tC(w))
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "dense: x %s has %zu features per row but w %s (M,K) expects %d",
                         shape_str(x, sx, sizeof sx), K, shape_str(w, sw, sizeof sw), tC(w));
    TRY(check_bias(ctx, bias, w, 0, op));
    long long dims[4] = {tN(x), tN(w), 1, 1};
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 2, op, &y));
    const int N = tN(x), M = tN(w);
    // (N,K) x (K,M) = x w^T, then the bias on every row
    gemm(ctx, 0, 1, N, M, (int)K, 1.0f, x->data, (int)K, w->data, (int)K, 0.0f, y->data, M);
    if (bias)
        add_bias(ctx, y->data, N, M, 1, bias->data);
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    op_record(ctx, OP_DENSE, y, in, 3, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* dx += dY W; dW += dY^T x; dbias = column sums of dY. */
agave_status dense_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const int N = tN(x), M = tN(w), K = tC(w);
    const float *dy = y->grad;   // (N,M)
    if (gx)   // (N,M) x (M,K)
        gemm(ctx, 0, 0, N, K, M, 1.0f, dy, M, w->data, K, 1.0f, gx, K);
    if (gw)   // (M,N) x (N,K)
        gemm(ctx, 1, 0, M, K, N, 1.0f, dy, M, x->data, K, 1.0f, gw, K);
    if (gb)
        bias_grad(ctx, dy, N, M, 1, gb);
    return AGAVE_OK;
}
