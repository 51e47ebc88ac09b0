/* conv2d by Winograd minimal filtering along the rows (lib/ops/conv2d_winograd.c):
 * for stride-1 convolutions whose grid is as wide as the image and whose
 * kernel is 3 wide (the PixelCNN's shifted 2x3 convolutions, the VAE's 3x3s),
 * in float32 on CPUs with AVX-512F. F(4, 3): each run of 4 outputs of a row
 * takes 6 products per input channel and kernel row instead of 12, so the
 * products do half of im2col's multiply-adds. The same function as conv2d,
 * rounded differently. (F(4, 2) for the 2x2 convolutions saves only 3/8 and
 * measured slower than im2col: docs/performance.md.) */
#ifndef AGAVE_OPS_WINOGRAD_H
#define AGAVE_OPS_WINOGRAD_H

#include "conv_blocks.h"

#define WINO_TILE 4                          /* outputs per tile */
#define WINO_ALPHA_MAX (WINO_TILE + 3 - 1)   /* points of F(4, 3) */
#define WINO_MAX_WIDTH 64                    /* widest image row */
#define WINO_MAX_KH 8                        /* tallest kernel */
/* Smallest grid side: the transforms take 16 rows at a time, so a 7-row grid
 * fills less than half of each vector (measured slower than im2col at 7x7,
 * faster from 14x14 up: docs/performance.md). */
#define WINO_MIN_SIDE 12

/* The transform of F(4, r): y = AT [(G g) . (BT d)] for the correlation
 * y_j = sum_k g_k d_{j+k} of a tile d of alpha = 4 + r - 1 inputs (r = 3). */
typedef struct wino_tables {
    int r, alpha;
    float AT[WINO_TILE][WINO_ALPHA_MAX];
    double G[WINO_ALPHA_MAX][3];
    float BT[WINO_ALPHA_MAX][WINO_ALPHA_MAX];
} wino_tables;

/* The tables for a kernel r wide (3), else NULL. */
const wino_tables *wino_tables_for(int r);

/* 1 when this CPU runs conv2d by Winograd at all (AVX-512F; the codec's
 * environment text records it, since it changes the VAE's numbers). */
int winograd_available(void);

/* 1 when conv2d on ctx runs this geometry by Winograd: the shape above,
 * fp32 on the library's AVX-512 kernels, and ctx->conv_plain unset. */
int winograd_fits(const agave_context *ctx, const conv_geom *g);

/* Images [n0, n0+m) of the conv's input: x in place, or under ce
 * concat_elu(x) computed into buf (m, 2C, H, W) (lib/ops/conv2d.c). */
const float *conv2d_images(agave_context *ctx, const agave_tensor *x, int n0, int m, int ce,
                           float *buf);

/* y = conv2d(x or concat_elu(x), w) + bias by Winograd, for winograd_fits(g). */
agave_status winograd_forward(agave_context *ctx, const conv_geom *g, const agave_tensor *x,
                              const agave_tensor *w, const agave_tensor *bias, int ce,
                              agave_tensor *y);

/* The gradients gx (dx, may be NULL) and gw (dW, may be NULL) of that conv
 * from y->grad, added (dx stored instead when gx_fresh: it holds no gradient
 * yet); the bias gradient is the caller's. */
agave_status winograd_backward(agave_context *ctx, const conv_geom *g, const agave_tensor *x,
                               const agave_tensor *w, const agave_tensor *y, int ce, float *gx,
                               int gx_fresh, float *gw);

#endif
