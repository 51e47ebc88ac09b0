/* Internal kernels of the convolution family (lib/ops/conv_blocks.h): im2col and
 * col2im over a block of images, and the layout permutes that fold a batch
 * into one GEMM. Every function here runs its own OpenMP loop on the
 * context's threads, or on the calling thread alone inside a parallel region
 * (data_threads in im2col.c). */
#ifndef AGAVE_OPS_CONV_H
#define AGAVE_OPS_CONV_H

#include "../core/core.h"

/* Where a kernel is applied on an image. Column (oh, ow) of the grid reads
 * image pixel (oh*stride + kh - pad_top, ow*stride + kw - pad_left); pixels
 * outside the image are zero. The grid size is given, not derived, so that a
 * transposed convolution can reuse the geometry of the conv it transposes. */
typedef struct conv_geom {
    int channels;         /* image channels C */
    int in_h, in_w;       /* image plane */
    int k_h, k_w;         /* kernel */
    int stride;
    int pad_top, pad_left;
    int out_h, out_w;     /* grid of kernel positions */
} conv_geom;

static inline size_t geom_rows(const conv_geom *g)   /* C*KH*KW */
{
    return (size_t)g->channels * (size_t)g->k_h * (size_t)g->k_w;
}
static inline size_t geom_cols(const conv_geom *g)   /* out_h*out_w per image */
{
    return (size_t)g->out_h * (size_t)g->out_w;
}
static inline size_t geom_plane(const conv_geom *g)  /* in_h*in_w per channel */
{
    return (size_t)g->in_h * (size_t)g->in_w;
}

/* img is (nb,C,in_h,in_w); col is (C*KH*KW, nb*out_h*out_w), overwritten. */
void im2col(agave_context *ctx, const conv_geom *g, const float *img, int nb, float *col);

/* img (nb,C,in_h,in_w) += the columns of col (C*KH*KW, nb*out_h*out_w) scattered
 * back to the pixels they were read from; columns over padding are dropped.
 * col is scratch: its columns over padding may be overwritten (with -0.0). */
void col2im_add(agave_context *ctx, const conv_geom *g, float *col, int nb, float *img);

/* src is (nb,C,P), dst is (C,nb*P): one GEMM then sees the whole block. */
void nchw_to_cn(agave_context *ctx, const float *src, int nb, int C, size_t P, float *dst);

/* dst (nb,C,P) = src (C,nb*P) permuted, plus bias[c] (bias may be NULL);
 * with accumulate, dst += instead of =. */
void cn_to_nchw(agave_context *ctx, const float *src, int nb, int C, size_t P,
                const float *bias, int accumulate, float *dst);

/* y (nb,C,P) = base + (src (C,nb*P) permuted + bias[c]); bias may be NULL. */
void cn_add_base(agave_context *ctx, const float *src, int nb, int C, size_t P,
                 const float *bias, const float *base, float *y);

/* t (nb,C,P) = bias[c] (or 0 when bias is NULL). */
void fill_bias(agave_context *ctx, float *t, int nb, int C, size_t P, const float *bias);

/* t (nb,C,P) += bias[c]. */
void add_bias(agave_context *ctx, float *t, int nb, int C, size_t P, const float *bias);

/* gb[c] += sum over n and p of g (N,C,P), summed in double. */
void bias_grad(agave_context *ctx, const float *g, int N, int C, size_t P, float *gb);

#endif
