/* conv2d_transpose: x is (N,Cin,H,W), w is (Cin,Cout,KH,KW), y is
 * (N,Cout,out_h,out_w).
 * Seen from the output, out[r,c] reads F at (r + crop_top, c + crop_left), and
 * F[i*s + kh, j*s + kw] gathers x[i,j] w[kh,kw]: this is the conv2d with image
 * = the output plane, padding = the crops and grid = x's plane, run backwards:
 *   forward   y = col2im(W^T x)                       conv2d's dx path
 *   backward  col = im2col(dY); dx += W col; dW += x col^T
 * So the geometry below describes the output as the "image" side; blocked as
 * conv_blocks.h describes. */
#include "conv_blocks.h"

/* What backward needs besides x, w and y. */
typedef struct conv2d_transpose_saved {
    int stride, crop_top, crop_left;
} conv2d_transpose_saved;

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
    const char *op = "conv2d_transpose";
    float *col_all = thread_scratch(ctx, SCRATCH_COLS, col_n, &bp, op);
    float *x_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, x_n, &bp, op) : NULL;
    if (!col_all || (fold && !x_all))
        return AGAVE_ERR_NOMEM;
    // col2im adds into y, so y starts as the bias
    fill_bias(ctx, y->data, N, Cout, geom_plane(g), bias ? bias->data : NULL);
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *col = PIECE(ctx, col_all, col_n), *xcn = PIECE(ctx, x_all, x_n);
        int n0;
        const int m = block_images(&bp, N, blk, &n0);
        image_cols xb = as_operand(ctx, x->data + (size_t)n0 * Cin * P, m, Cin, P, fold, xcn);
        // every tap's contribution, (Cout*KH*KW, Cin) x (Cin, m*P), then scattered
        gemm_images(ctx, 1, (int)R, Cin, w->data, (int)R, xb, 0.0f, wide_cols(col, R), m, P);
        col2im_add(ctx, g, col, m, y->data + (size_t)n0 * y_img);
    }
    return AGAVE_OK;
}

static agave_status conv2d_transpose_check(agave_context *ctx, const agave_tensor *x,
                                           const agave_tensor *w, const agave_tensor *bias,
                                           int stride, int crop_top, int crop_left, int out_h,
                                           int out_w)
{
    static const char op[] = "conv2d_transpose";
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
    return check_gemm_dims(ctx, (size_t)tC(w) * tH(w) * tW(w), (size_t)tH(x) * tW(x), op);
}

agave_status agave_conv2d_transpose(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                                    agave_tensor *bias, int stride, int crop_top, int crop_left,
                                    int out_h, int out_w, agave_tensor **out)
{
    static const char op[] = "conv2d_transpose";
    TRY(check_op_entry(ctx, out, op));
    TRY(conv2d_transpose_check(ctx, x, w, bias, stride, crop_top, crop_left, out_h, out_w));
    long long dims[4] = {tN(x), tC(w), out_h, out_w};
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    conv_geom g = transpose_geom(x, w, stride, crop_top, crop_left, out_h, out_w);
    TRY(conv2d_transpose_forward(ctx, &g, x, w, bias, y));
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    tape_node *node = op_record(ctx, OP_CONV2D_TRANSPOSE, y, in, 3, &st);
    TRY(st);
    if (node) {
        conv2d_transpose_saved *s = tape_save(ctx, node, sizeof *s);
        if (!s)
            return AGAVE_ERR_NOMEM;
        *s = (conv2d_transpose_saved){
            .stride = stride, .crop_top = crop_top, .crop_left = crop_left};
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
    const conv2d_transpose_saved *s = node->saved;
    conv_geom g = transpose_geom(x, w, s->stride, s->crop_top, s->crop_left, tH(y), tW(y));
    const int N = tN(x), Cin = tC(x), Cout = g.channels;
    const size_t R = geom_rows(&g), P = geom_cols(&g), y_img = (size_t)Cout * geom_plane(&g);
    if (gb)
        bias_grad(ctx, y->grad, N, Cout, geom_plane(&g), gb);
    if (!gx && !gw)
        return AGAVE_OK;
    const block_plan bp = plan_blocks(ctx, N, images_per_block(N, P, R));
    const int fold = P < PANEL_COLS;
    const size_t col_n = R * bp.nb * P, x_n = (size_t)Cin * bp.nb * P, w_n = (size_t)Cin * R;
    const char *op = "conv2d_transpose backward";
    float *col_all = thread_scratch(ctx, SCRATCH_COLS, col_n, &bp, op);
    float *x_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, x_n, &bp, op) : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, op, &part));
    if (!col_all || (fold && !x_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *col = PIECE(ctx, col_all, col_n), *xcn = PIECE(ctx, x_all, x_n);
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
