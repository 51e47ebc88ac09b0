/* Blocking machinery of the convolution family (conv2d.c, conv2d_transpose.c,
 * nin.c): how a layer's images are cut into blocks and the blocks put on the
 * threads, the GEMM operands of a block, per-thread scratch, the
 * weight-gradient sums that keep a thread count's results reproducible, and
 * the argument checks the ops share.
 *
 * Blocks of images. The images of a block share one column matrix, their
 * columns side by side ("wide", (rows, nb*P)). Then:
 *  - planes of >= PANEL_COLS pixels (32x32 and up): one GEMM per image reads
 *    its slice of the column matrix and reads or writes NCHW tensors in place;
 *  - smaller planes (8x8, 16x16: 64..256 columns, too narrow for a GEMM to
 *    reach its peak): the NCHW operands are permuted to the wide layout too,
 *    and one GEMM covers the whole block.
 *
 * Threads. With T >= 2 threads and at least T blocks, the blocks run on the
 * threads at once, each block on one thread with single-threaded kernels and
 * its own scratch: a layer is one parallel region, no thread waits at a
 * barrier between im2col, GEMM and permute, and what im2col writes is read
 * back by the same core's GEMM. Blocks are then cut equal and a multiple of T
 * in number, so that no thread is left with a short last block. Weight
 * gradients are summed per chunk of consecutive blocks (at most
 * CHUNKS_PER_THREAD * T chunks, handed out dynamically) and the chunks' sums
 * added in chunk order, so a given thread count gives the same numbers on
 * every run. With one thread, or fewer blocks than threads (a batch of 1 when
 * sampling), each kernel and GEMM is split over the threads instead.
 *
 * Memory: column matrices and permuted operands live in the context's scratch
 * slots (ctx_scratch), one block's worth per thread, and are not saved for
 * backward: backward recomputes im2col (one pass over cached memory, against
 * K flops per element in the GEMM), so a step's memory stays close to the
 * size of its activations. */
#ifndef AGAVE_OPS_CONV_BLOCKS_H
#define AGAVE_OPS_CONV_BLOCKS_H

#include <omp.h>

#include "conv.h"
#include "ops.h"

/* A GEMM with this many columns runs near its peak: a block has at least
 * this many columns. */
#define PANEL_COLS 1024

/* Scratch slots (ctx_scratch) of the conv family. */
enum {
    SCRATCH_COLS = 0,
    SCRATCH_OPERAND = 1,
    SCRATCH_CE = 2,
    SCRATCH_CHUNKS = 3,
    SCRATCH_WEIGHTS = 4,       /* Winograd: the transformed weights */
    SCRATCH_WEIGHT_GRADS = 5,  /* Winograd: their gradient, per thread */
};

/* Images per block: enough for PANEL_COLS columns, more while the column
 * matrix (rows, nb*P) stays about the size of a core's L2 cache. */
int images_per_block(int N, size_t cols_per_image, size_t rows);

/* How a layer's N images are cut into blocks and the blocks onto threads. */
typedef struct block_plan {
    int nb;        /* images per block (the last block may have fewer) */
    int nblocks;
    int threads;   /* > 1: blocks run on the threads at once; 1: kernels split instead */
    int chunks;    /* runs of consecutive blocks, one weight-gradient sum each */
} block_plan;

/* The plan for N images in blocks of at most nb (images_per_block). */
block_plan plan_blocks(const agave_context *ctx, int N, int nb);
/* Chunk c covers blocks [chunk_first(c), chunk_first(c + 1)). */
int chunk_first(const block_plan *p, int c);
/* Images of block b: [*n0, *n0 + return). */
int block_images(const block_plan *p, int N, int b, int *n0);

/* Weight-gradient sums per chunk. chunk_parts gives the chunks' slices
 * (chunks x size floats of scratch; NULL when there is one chunk or no
 * gradient); chunk_sum is where chunk c sums (gw itself with one chunk, else
 * its zeroed slice); add_chunk_sums adds the slices into gw in chunk order. */
agave_status chunk_parts(agave_context *ctx, const block_plan *p, const float *gw, size_t size,
                         const char *op, float **part);
float *chunk_sum(const block_plan *p, int c, float *gw, float *part, size_t size);
void add_chunk_sums(agave_context *ctx, const block_plan *p, const float *part, size_t size,
                    float *gw);

/* m images of a (rows, P) matrix each, either side by side in one (rows, m*P)
 * matrix (wide) or one after another as in an NCHW tensor. */
typedef struct image_cols {
    float *data;
    size_t rows;
    int wide;
} image_cols;

static inline image_cols wide_cols(float *data, size_t rows)
{
    return (image_cols){data, rows, 1};
}
static inline image_cols nchw_cols(const float *data, size_t rows)
{
    // const dropped: only GEMM outputs are written through, and those are never const
    return (image_cols){(float *)data, rows, 0};
}

/* C (M, cols) = op(A) (M,K) x B (K, cols) + beta C over the m images' columns:
 * one GEMM when B and C are both wide, else one per image. */
void gemm_images(agave_context *ctx, int trans_a, int M, int K, const float *A, int lda,
                 image_cols B, float beta, image_cols C, int m, size_t P);
/* D (M,N) += A (M, cols) x B (N, cols)^T, summed over the m images' columns. */
void gemm_sum_images(agave_context *ctx, int M, int N, image_cols A, image_cols B, float *D,
                     int ldd, int m, size_t P);
/* The NCHW block src (m,C,P) as GEMM operand: in place unless fold, else
 * permuted into the wide buffer buf (C, m*P). */
image_cols as_operand(agave_context *ctx, const float *src, int m, int C, size_t P, int fold,
                      float *buf);

/* Scratch slot `slot` with one piece of `floats` per thread of the plan
 * (pieces 64-byte aligned); NULL with the error set on failure. PIECE gives
 * the calling thread's piece (ctx_thread_slot; NULL stays NULL). */
float *thread_scratch(agave_context *ctx, int slot, size_t floats, const block_plan *p,
                      const char *op);
static inline size_t per_thread(size_t floats) { return (floats + 15) & ~(size_t)15; }
#define PIECE(ctx, base, floats)                                                           \
    ((base) ? (base) + (size_t)ctx_thread_slot(ctx) * per_thread(floats) : NULL)

/* ---- argument checks shared by the family ---- */
/* t is ndim-D, else SHAPE naming `layout`. */
agave_status check_rank(agave_context *ctx, const agave_tensor *t, int ndim, const char *op,
                        const char *name, const char *layout);
/* bias is NULL or (C), C taken from dimension `axis` of w. */
agave_status check_bias(agave_context *ctx, const agave_tensor *bias, const agave_tensor *w,
                        int axis, const char *op);
agave_status check_stride(agave_context *ctx, int stride, const char *op);
/* GEMM sizes are ints: the column matrix's rows and one image's columns must fit. */
agave_status check_gemm_dims(agave_context *ctx, size_t rows, size_t cols, const char *op);
/* A new arena output of ndim dims given in long long; LIMIT if too large. */
agave_status new_output(agave_context *ctx, const long long dims[4], int ndim, const char *op,
                        agave_tensor **y);

#endif
