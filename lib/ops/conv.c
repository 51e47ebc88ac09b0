/* Convolution family: conv2d, conv2d_transpose, nin (1x1 conv) and dense.
 *
 * Every op is one or more cblas_sgemm calls (through gemm() in core/blas.c)
 * around cheap OpenMP data movement:
 *   conv2d           y = W * im2col(x)             (Cout,K) x (K,cols)
 *   conv2d backward  dW += dY * im2col(x)^T,  dx += col2im(W^T * dY)
 *   conv2d_transpose y = col2im(W^T * x): exactly conv2d's dx path, so its
 *                    backward is a conv2d: dx = W * im2col(dY),
 *                    dW += x * im2col(dY)^T
 *   nin              y = W * x per image, no im2col (x already is (Cin,H*W))
 * with K = Cin*KH*KW and cols = images * Ho*Wo.
 *
 * Batch folding: at 8x8 or 16x16 one image gives the GEMM only 64..256
 * columns, too few for OpenBLAS to run near peak. So images are grouped into
 * blocks of nb images whose columns sit side by side ((C, nb*P) layout), and
 * one GEMM serves the block; the result is permuted back to NCHW. At 32x32
 * and above a block is one image and the GEMM reads and writes NCHW directly.
 *
 * Memory: the column matrix is scratch from the step arena, capped per block
 * (SCRATCH_FLOATS), and it is not saved for backward: backward recomputes
 * im2col, which costs one pass over memory against the GEMM's K flops per
 * element, and keeps the step's memory close to the activations' size.
 */
#include <limits.h>

#include "conv.h"
#include "ops.h"

/* A GEMM with this many columns runs near peak in OpenBLAS (its panels are a
 * few hundred wide); folding more images in buys nothing. */
#define PANEL_COLS 1024
/* Cap on one block's column matrix (16 MB): more images per block would only
 * grow the arena, since the GEMM is already wide enough. */
#define SCRATCH_FLOATS ((size_t)4 << 20)
/* Tensors hold at most 2^40 elements (core/tensor.c). */
#define MAX_NUMEL ((long long)1 << 40)

/* ---- shared helpers ------------------------------------------------------------ */

/* Images per GEMM: enough for PANEL_COLS columns, within the scratch cap. */
static int images_per_gemm(int N, size_t cols_per_image, size_t rows)
{
    size_t nb = cols_per_image >= PANEL_COLS ? 1
                                             : (PANEL_COLS + cols_per_image - 1) / cols_per_image;
    size_t fit = SCRATCH_FLOATS / (rows * cols_per_image);
    if (nb > fit)
        nb = fit;
    if (nb > (size_t)N)
        nb = (size_t)N;
    return nb < 1 ? 1 : (int)nb;
}

static float *scratch(agave_context *ctx, size_t floats, const char *op)
{
    float *p = arena_alloc(&ctx->arena, floats * sizeof(float));
    if (!p)
        ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: step arena: cannot allocate %zu floats of scratch",
                  op, floats);
    return p;
}

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

static conv_geom conv2d_geom(const agave_tensor *x, const agave_tensor *w, int stride,
                             int pad_top, int pad_left, int out_h, int out_w)
{
    return (conv_geom){tC(x), tH(x), tW(x), tH(w), tW(w), stride, pad_top, pad_left,
                       out_h, out_w};
}

static agave_status conv2d_forward(agave_context *ctx, const conv_geom *g,
                                   const agave_tensor *x, const agave_tensor *w,
                                   const agave_tensor *bias, agave_tensor *y)
{
    const int N = tN(x), Cout = tN(w);
    const size_t K = geom_rows(g), P = geom_cols(g), x_img = (size_t)tC(x) * geom_plane(g);
    const int nb = images_per_gemm(N, P, K);
    float *col = scratch(ctx, K * (size_t)nb * P, "conv2d");
    float *ycn = nb > 1 ? scratch(ctx, (size_t)Cout * nb * P, "conv2d") : NULL;
    if (!col || (nb > 1 && !ycn))
        return AGAVE_ERR_NOMEM;
    const float *b = bias ? bias->data : NULL;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int m = nb < N - n0 ? nb : N - n0;
        const int cols = m * (int)P;
        float *yb = y->data + (size_t)n0 * Cout * P;   // (m,Cout,P)
        im2col(ctx, g, x->data + (size_t)n0 * x_img, m, col);
        if (m == 1) {   // (Cout,K) x (K,P) lands in NCHW as is
            gemm(ctx, 0, 0, Cout, cols, (int)K, 1.0f, w->data, (int)K, col, cols, 0.0f, yb, cols);
            if (b)
                add_bias(ctx, yb, 1, Cout, P, b);
        } else {        // (Cout,K) x (K,m*P), then (Cout,m,P) -> (m,Cout,P)
            gemm(ctx, 0, 0, Cout, cols, (int)K, 1.0f, w->data, (int)K, col, cols, 0.0f, ycn, cols);
            cn_to_nchw(ctx, ycn, m, Cout, P, b, 0, yb);
        }
    }
    return AGAVE_OK;
}

agave_status agave_conv2d(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                          agave_tensor *bias, int stride, int pad_top, int pad_bottom,
                          int pad_left, int pad_right, agave_tensor **out)
{
    static const char op[] = "conv2d";
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    TRY(check_tensor(ctx, w, op, "w"));
    TRY(check_tensor_opt(ctx, bias, op, "bias"));
    TRY(check_rank(ctx, x, 4, op, "x", "(N,Cin,H,W)"));
    TRY(check_rank(ctx, w, 4, op, "w", "(Cout,Cin,KH,KW)"));
    char sx[SHAPE_BUF], sw[SHAPE_BUF];
    if (tC(x) != w->dims[1])
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "conv2d: x %s has %d channels but w %s (Cout,Cin,KH,KW) expects %d",
                         shape_str(x, sx, sizeof sx), tC(x), shape_str(w, sw, sizeof sw),
                         w->dims[1]);
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
    TRY(check_gemm_dims(ctx, (size_t)tC(x) * tH(w) * tW(w), (size_t)(dims[2] * dims[3]), op));
    agave_tensor *y = NULL;
    TRY(new_output(ctx, dims, 4, op, &y));
    conv_geom g = conv2d_geom(x, w, stride, pad_top, pad_left, tH(y), tW(y));
    TRY(conv2d_forward(ctx, &g, x, w, bias, y));
    agave_status st;
    agave_tensor *in[3] = {x, w, bias};
    tape_node *node = op_record(ctx, OP_CONV2D, y, in, 3, &st);
    TRY(st);
    if (node) {
        node->iarg[0] = stride;
        node->iarg[1] = pad_top;
        node->iarg[2] = pad_left;
    }
    *out = y;
    return AGAVE_OK;
}

/* dbias = sum dY; dW += dY im2col(x)^T; dx += col2im(W^T dY); per block of nb images. */
agave_status conv2d_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st), *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    conv_geom g = conv2d_geom(x, w, node->iarg[0], node->iarg[1], node->iarg[2], tH(y), tW(y));
    const int N = tN(x), Cout = tN(w);
    const size_t K = geom_rows(&g), P = geom_cols(&g), x_img = (size_t)tC(x) * geom_plane(&g);
    if (gb)
        bias_grad(ctx, y->grad, N, Cout, P, gb);
    if (!gx && !gw)
        return AGAVE_OK;
    const int nb = images_per_gemm(N, P, K);
    float *col = scratch(ctx, K * (size_t)nb * P, "conv2d backward");   // im2col, then dcol
    float *dycn = nb > 1 ? scratch(ctx, (size_t)Cout * nb * P, "conv2d backward") : NULL;
    if (!col || (nb > 1 && !dycn))
        return AGAVE_ERR_NOMEM;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int m = nb < N - n0 ? nb : N - n0;
        const int cols = m * (int)P;
        const float *dy = y->grad + (size_t)n0 * Cout * P;   // (m,Cout,P)
        if (m > 1) {
            nchw_to_cn(ctx, dy, m, Cout, P, dycn);             // (Cout,m*P)
            dy = dycn;
        }
        if (gw) {   // (Cout,m*P) x (m*P,K) accumulated into dW (Cout,K)
            im2col(ctx, &g, x->data + (size_t)n0 * x_img, m, col);
            gemm(ctx, 0, 1, Cout, (int)K, cols, 1.0f, dy, cols, col, cols, 1.0f, gw, (int)K);
        }
        if (gx) {   // (K,Cout) x (Cout,m*P) = dcol, scattered back into dx
            gemm(ctx, 1, 0, (int)K, cols, Cout, 1.0f, w->data, (int)K, dy, cols, 0.0f, col, cols);
            col2im_add(ctx, &g, col, m, gx + (size_t)n0 * x_img);
        }
    }
    return AGAVE_OK;
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
    const int nb = images_per_gemm(N, P, R);
    float *col = scratch(ctx, R * (size_t)nb * P, "conv2d_transpose");
    float *xcn = nb > 1 ? scratch(ctx, (size_t)Cin * nb * P, "conv2d_transpose") : NULL;
    if (!col || (nb > 1 && !xcn))
        return AGAVE_ERR_NOMEM;
    // col2im adds into y, so y starts as the bias
    fill_bias(ctx, y->data, N, Cout, geom_plane(g), bias ? bias->data : NULL);
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int m = nb < N - n0 ? nb : N - n0;
        const int cols = m * (int)P;
        const float *xb = x->data + (size_t)n0 * Cin * P;    // (m,Cin,P)
        if (m > 1) {
            nchw_to_cn(ctx, xb, m, Cin, P, xcn);             // (Cin,m*P)
            xb = xcn;
        }
        // (Cout*KH*KW,Cin) x (Cin,m*P): every tap's contribution, then scattered
        gemm(ctx, 1, 0, (int)R, cols, Cin, 1.0f, w->data, (int)R, xb, cols, 0.0f, col, cols);
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
    const int nb = images_per_gemm(N, P, R);
    float *col = scratch(ctx, R * (size_t)nb * P, "conv2d_transpose backward");
    float *xcn = nb > 1 ? scratch(ctx, (size_t)Cin * nb * P, "conv2d_transpose backward") : NULL;
    if (!col || (nb > 1 && !xcn))
        return AGAVE_ERR_NOMEM;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int m = nb < N - n0 ? nb : N - n0;
        const int cols = m * (int)P;
        float *gxb = gx ? gx + (size_t)n0 * Cin * P : NULL;   // (m,Cin,P)
        im2col(ctx, &g, y->grad + (size_t)n0 * y_img, m, col);  // (Cout*KH*KW,m*P)
        if (gx && m == 1) {   // (Cin,R) x (R,P) straight into dx
            gemm(ctx, 0, 0, Cin, cols, (int)R, 1.0f, w->data, (int)R, col, cols, 1.0f, gxb, cols);
        } else if (gx) {      // into (Cin,m*P) scratch, then added as (m,Cin,P)
            gemm(ctx, 0, 0, Cin, cols, (int)R, 1.0f, w->data, (int)R, col, cols, 0.0f, xcn, cols);
            cn_to_nchw(ctx, xcn, m, Cin, P, NULL, 1, gxb);
        }
        if (gw) {   // (Cin,m*P) x (m*P,R) accumulated into dW (Cin,R)
            const float *xb = x->data + (size_t)n0 * Cin * P;
            if (m > 1) {
                nchw_to_cn(ctx, xb, m, Cin, P, xcn);
                xb = xcn;
            }
            gemm(ctx, 0, 1, Cin, (int)R, cols, 1.0f, xb, cols, col, cols, 1.0f, gw, (int)R);
        }
    }
    return AGAVE_OK;
}

/* ---- nin: x is (N,Cin,H,W), w is (Cout,Cin), y is (N,Cout,H,W) --------------------- */

static agave_status nin_forward(agave_context *ctx, const agave_tensor *x,
                                const agave_tensor *w, const agave_tensor *bias,
                                agave_tensor *y)
{
    const int N = tN(x), Cin = tC(x), Cout = tN(w);
    const size_t P = (size_t)tH(x) * tW(x);
    const int nb = images_per_gemm(N, P, (size_t)(Cin > Cout ? Cin : Cout));
    float *xcn = nb > 1 ? scratch(ctx, (size_t)Cin * nb * P, "nin") : NULL;
    float *ycn = nb > 1 ? scratch(ctx, (size_t)Cout * nb * P, "nin") : NULL;
    if (nb > 1 && (!xcn || !ycn))
        return AGAVE_ERR_NOMEM;
    const float *b = bias ? bias->data : NULL;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int m = nb < N - n0 ? nb : N - n0;
        const int cols = m * (int)P;
        const float *xb = x->data + (size_t)n0 * Cin * P;   // (m,Cin,P)
        float *yb = y->data + (size_t)n0 * Cout * P;        // (m,Cout,P)
        if (m == 1) {   // (Cout,Cin) x (Cin,P), NCHW in and out
            gemm(ctx, 0, 0, Cout, cols, Cin, 1.0f, w->data, Cin, xb, cols, 0.0f, yb, cols);
            if (b)
                add_bias(ctx, yb, 1, Cout, P, b);
        } else {
            nchw_to_cn(ctx, xb, m, Cin, P, xcn);
            gemm(ctx, 0, 0, Cout, cols, Cin, 1.0f, w->data, Cin, xcn, cols, 0.0f, ycn, cols);
            cn_to_nchw(ctx, ycn, m, Cout, P, b, 0, yb);
        }
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
    const int nb = images_per_gemm(N, P, (size_t)(Cin > Cout ? Cin : Cout));
    float *xcn = nb > 1 ? scratch(ctx, (size_t)Cin * nb * P, "nin backward") : NULL;
    float *dycn = nb > 1 ? scratch(ctx, (size_t)Cout * nb * P, "nin backward") : NULL;
    if (nb > 1 && (!xcn || !dycn))
        return AGAVE_ERR_NOMEM;
    for (int n0 = 0; n0 < N; n0 += nb) {
        const int m = nb < N - n0 ? nb : N - n0;
        const int cols = m * (int)P;
        const float *dy = y->grad + (size_t)n0 * Cout * P;   // (m,Cout,P)
        const float *xb = x->data + (size_t)n0 * Cin * P;    // (m,Cin,P)
        float *gxb = gx ? gx + (size_t)n0 * Cin * P : NULL;
        if (m > 1) {
            nchw_to_cn(ctx, dy, m, Cout, P, dycn);
            dy = dycn;
        }
        if (gw) {   // (Cout,m*P) x (m*P,Cin) accumulated into dW (Cout,Cin)
            if (m > 1) {
                nchw_to_cn(ctx, xb, m, Cin, P, xcn);
                xb = xcn;
            }
            gemm(ctx, 0, 1, Cout, Cin, cols, 1.0f, dy, cols, xb, cols, 1.0f, gw, Cin);
        }
        if (gx && m == 1) {   // (Cin,Cout) x (Cout,P) straight into dx
            gemm(ctx, 1, 0, Cin, cols, Cout, 1.0f, w->data, Cin, dy, cols, 1.0f, gxb, cols);
        } else if (gx) {      // into (Cin,m*P) scratch (x's copy is no longer needed)
            gemm(ctx, 1, 0, Cin, cols, Cout, 1.0f, w->data, Cin, dy, cols, 0.0f, xcn, cols);
            cn_to_nchw(ctx, xcn, m, Cin, P, NULL, 1, gxb);
        }
    }
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
