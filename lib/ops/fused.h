/* Internal fused ops: pairs of public ops that the model always runs back to
 * back, computed as one op so that the tensor between them is never stored
 * (a step's memory is its stored activations). Each gives the same numbers,
 * bit for bit, as the pair it replaces; each has its own op-table entry and
 * gradient check. Not part of the public API. */
#ifndef AGAVE_OPS_FUSED_H
#define AGAVE_OPS_FUSED_H

#include "../core/core.h"

/* agave_dropout(agave_concat_elu(x), p): x (N,C,...) -> y (N,2C,...), the same
 * random draws in the same order, x's N items sitting at span in their
 * batch's random stream. Backward recomputes concat_elu from x, so only y
 * (for the next op) and the mask are kept, not concat_elu's output.
 * p in (0, 1). */
agave_status concat_elu_dropout(agave_context *ctx, agave_tensor *x, float p, rng_span span,
                                agave_tensor **out);

/* agave_conv2d(agave_concat_elu(x), w, bias, ...): x is (N,C,H,W), w is
 * (Cout,2C,KH,KW). concat_elu(x) is computed for each block of images into
 * scratch just before im2col reads it, and recomputed in backward, so it is
 * never stored. */
agave_status conv2d_ce(agave_context *ctx, agave_tensor *x, agave_tensor *w, agave_tensor *bias,
                       int stride, int pad_top, int pad_bottom, int pad_left, int pad_right,
                       agave_tensor **out);

/* y (N,Cout,H,W) = base + nin(x, w, bias), or base + nin(concat_elu(x), w,
 * bias) with `ce`: x is (N,Cx,H,W), w is (Cout, ce ? 2Cx : Cx), bias (Cout) or
 * NULL, base (N,Cout,H,W). Neither the nin's output nor concat_elu(x) is
 * stored: concat_elu is computed block by block into scratch and recomputed
 * in backward. Rounds as agave_add(base, agave_nin(...)). */
agave_status nin_add(agave_context *ctx, agave_tensor *x, agave_tensor *w, agave_tensor *bias,
                     agave_tensor *base, int ce, agave_tensor **out);

/* Building blocks for ops that take concat_elu(x) as input without storing it.
 * x is (m,C,P); image n's row c (c < 2C, the concat_elu channel) lives at
 * dst + c*row_stride + n*image_stride: (P, 2C*P) gives NCHW (m,2C,P),
 * (m*P, P) the wide layout (2C, m*P). */
void concat_elu_into(agave_context *ctx, const float *x, int m, int C, size_t P, float *dst,
                     size_t row_stride, size_t image_stride);
/* gx (m,C,P) += the gradient through concat_elu at x of d, laid out as above;
 * = with fresh (gx holds no gradient yet). */
void concat_elu_grad_into(agave_context *ctx, const float *x, int m, int C, size_t P,
                          const float *d, size_t row_stride, size_t image_stride, float *gx,
                          int fresh);

#endif
