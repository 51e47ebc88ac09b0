/* conv2d and conv2d_ce (conv2d of concat_elu(x), ops/fused.h):
 * x is (N,Cin,H,W), w is (Cout,Cin',KH,KW) with Cin' = Cin, or 2Cin under
 * concat_elu; y is (N,Cout,Ho,Wo). With K = Cin'*KH*KW and one column per
 * output pixel:
 *   forward   y = W im2col(x)                         (Cout,K) x (K,cols)
 *   backward  dW += dY im2col(x)^T, dx += col2im(W^T dY)
 * blocked as conv_blocks.h describes. Stride-1 convolutions with a grid as
 * wide as the image and a kernel 3 wide (within winograd.h's size limits)
 * run by Winograd instead (winograd_fits). */
#include <string.h>

#include "fused.h"
#include "winograd.h"

/* What backward needs besides x, w and y. */
typedef struct conv2d_saved {
    int stride, pad_top, pad_left;
    int ce;   /* the image side is concat_elu(x) */
} conv2d_saved;

/* The image side is x, or concat_elu(x) (2C channels) with ce. */
static conv_geom conv2d_geom(const agave_tensor *x, const agave_tensor *w, int stride,
                             int pad_top, int pad_left, int out_h, int out_w, int ce)
{
    return (conv_geom){ce ? 2 * tC(x) : tC(x), tH(x), tW(x), tH(w), tW(w), stride, pad_top,
                       pad_left, out_h, out_w};
}

/* winograd.h: x in place or concat_elu(x) in buf, so that it is never stored. */
const float *conv2d_images(agave_context *ctx, const agave_tensor *x, int n0, int m,
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
    if (winograd_fits(ctx, g))
        return winograd_forward(ctx, g, x, w, bias, ce, y);
    const int N = tN(x), Cout = tN(w);
    const size_t K = geom_rows(g), P = geom_cols(g), img = (size_t)g->channels * geom_plane(g);
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, K));
    const int fold = P < PANEL_COLS;
    const size_t col_n = K * bp.nb * P, ycn_n = (size_t)Cout * bp.nb * P, ce_n = img * bp.nb;
    float *col_all = thread_scratch(ctx, SCRATCH_COLS, col_n, &bp, "conv2d");
    float *ycn_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, ycn_n, &bp, "conv2d") : NULL;
    float *ce_all = ce ? thread_scratch(ctx, SCRATCH_CE, ce_n, &bp, "conv2d") : NULL;
    if (!col_all || (fold && !ycn_all) || (ce && !ce_all))
        return AGAVE_ERR_NOMEM;
    const float *b = bias ? bias->data : NULL;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *col = PIECE(ctx, col_all, col_n), *ycn = PIECE(ctx, ycn_all, ycn_n);
        float *cebuf = PIECE(ctx, ce_all, ce_n);
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

/* The shapes of conv2d's arguments; *dims gets y's shape. */
static agave_status conv2d_check(agave_context *ctx, const agave_tensor *x,
                                 const agave_tensor *w, const agave_tensor *bias, int stride,
                                 const int pad[4], int ce, const char *op, long long dims[4])
{
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
    const int top = pad[0], bottom = pad[1], left = pad[2], right = pad[3];
    if (top < 0 || bottom < 0 || left < 0 || right < 0)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "conv2d: paddings must be >= 0, got top %d bottom %d left %d right %d",
                         top, bottom, left, right);
    long long span_h = (long long)tH(x) + top + bottom - tH(w);
    long long span_w = (long long)tW(x) + left + right - tW(w);
    if (span_h < 0 || span_w < 0)
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "conv2d: x %s padded to %lldx%lld is smaller than the %dx%d kernel of "
                         "w %s: the output would be empty",
                         shape_str(x, sx, sizeof sx), span_h + tH(w), span_w + tW(w), tH(w),
                         tW(w), shape_str(w, sw, sizeof sw));
    dims[0] = tN(x);
    dims[1] = tN(w);
    dims[2] = span_h / stride + 1;
    dims[3] = span_w / stride + 1;
    return check_gemm_dims(ctx, (size_t)w->dims[1] * tH(w) * tW(w), (size_t)(dims[2] * dims[3]),
                           op);
}

static agave_status conv2d_op(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                              agave_tensor *bias, int stride, int pad_top, int pad_bottom,
                              int pad_left, int pad_right, int ce, agave_tensor **out)
{
    const char *op = ce ? "conv2d_ce" : "conv2d";
    TRY(check_op_entry(ctx, out, op));
    const int pad[4] = {pad_top, pad_bottom, pad_left, pad_right};
    long long dims[4];
    TRY(conv2d_check(ctx, x, w, bias, stride, pad, ce, op, dims));
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    conv_geom g = conv2d_geom(x, w, stride, pad_top, pad_left, tH(y), tW(y), ce);
    TRY(conv2d_forward(ctx, &g, x, w, bias, ce, y));
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    tape_node *node = op_record(ctx, ce ? OP_CONV2D_CE : OP_CONV2D, y, in, 3, &st);
    TRY(st);
    if (node) {
        conv2d_saved *s = tape_save(ctx, node, sizeof *s);
        if (!s)
            return AGAVE_ERR_NOMEM;
        *s = (conv2d_saved){.stride = stride, .pad_top = pad_top, .pad_left = pad_left, .ce = ce};
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

/* dbias = sum dY; dW += dY im2col(x)^T; dx += col2im(W^T dY) (= when dx is
 * new); per block of nb images.
 * Under ce, im2col reads concat_elu(x) recomputed into scratch, and col2im
 * scatters into a zeroed scratch block that concat_elu's gradient then adds
 * into dx: the same numbers as conv2d after concat_elu, nothing stored. */
agave_status conv2d_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    int fresh;   // gx holds no gradient yet: every image's dx is stored, not added
    float *gx = input_grad_fresh(node, 0, &fresh, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const conv2d_saved *s = node->saved;
    const int ce = s->ce;
    conv_geom g = conv2d_geom(x, w, s->stride, s->pad_top, s->pad_left, tH(y), tW(y), ce);
    const int N = tN(x), Cout = tN(w);
    const size_t K = geom_rows(&g), P = geom_cols(&g), x_img = (size_t)tC(x) * geom_plane(&g);
    const size_t img = (size_t)g.channels * geom_plane(&g);
    if (gb)
        bias_grad(ctx, y->grad, N, Cout, P, gb);
    if (!gx && !gw)
        return AGAVE_OK;
    if (winograd_fits(ctx, &g))
        return winograd_backward(ctx, &g, x, w, y, ce, gx, fresh, gw);
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, K));
    const int fold = P < PANEL_COLS;
    const size_t col_n = K * bp.nb * P, dy_n = (size_t)Cout * bp.nb * P, ce_n = img * bp.nb;
    const size_t w_n = (size_t)Cout * K;
    const char *op = "conv2d backward";
    float *col_all = thread_scratch(ctx, SCRATCH_COLS, col_n, &bp, op);   // im2col, then dcol
    float *dy_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, dy_n, &bp, op) : NULL;
    float *ce_all = ce ? thread_scratch(ctx, SCRATCH_CE, ce_n, &bp, op) : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, op, &part));
    if (!col_all || (fold && !dy_all) || (ce && !ce_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *col = PIECE(ctx, col_all, col_n), *dycn = PIECE(ctx, dy_all, dy_n);
        float *cebuf = PIECE(ctx, ce_all, ce_n);
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
                if (fresh)   // col2im adds overlapping windows: from zero
                    memset(gx + (size_t)n0 * x_img, 0, x_img * (size_t)m * sizeof *gx);
                col2im_add(ctx, &g, col, m, gx + (size_t)n0 * x_img);
                continue;
            }
            memset(cebuf, 0, img * (size_t)m * sizeof *cebuf);
            col2im_add(ctx, &g, col, m, cebuf);
            concat_elu_grad_into(ctx, x->data + (size_t)n0 * x_img, m, tC(x), geom_plane(&g),
                                 cebuf, geom_plane(&g), img, gx + (size_t)n0 * x_img, fresh);
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
