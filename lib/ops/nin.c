/* nin (1x1 convolution) and nin_add (base + nin(x or concat_elu(x)),
 * ops/fused.h): x is (N,Cin,H,W), w is (Cout,Cin), y is (N,Cout,H,W).
 *   forward   y = W x per image, no im2col (x already is (Cin,H*W))
 *   backward  dW += dY x^T, dx += W^T dY
 * blocked as conv_blocks.h describes. */
#include "conv_blocks.h"
#include "fused.h"

/* ---- nin ------------------------------------------------------------------------ */

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
    float *x_all = fold ? thread_scratch(ctx, SCRATCH_COLS, x_n, &bp, "nin") : NULL;
    float *y_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, y_n, &bp, "nin") : NULL;
    if (fold && (!x_all || !y_all))
        return AGAVE_ERR_NOMEM;
    const float *b = bias ? bias->data : NULL;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *xcn = PIECE(ctx, x_all, x_n), *ycn = PIECE(ctx, y_all, y_n);
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
    float *x_all = fold ? thread_scratch(ctx, SCRATCH_COLS, x_n, &bp, "nin backward") : NULL;
    float *dy_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, dy_n, &bp, "nin backward") : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, "nin backward", &part));
    if (fold && (!x_all || !dy_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *xcn = PIECE(ctx, x_all, x_n), *dycn = PIECE(ctx, dy_all, dy_n);
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

/* ---- nin_add: y = base + nin(x or concat_elu(x)) -------------------------------
 * x is (N,Cx,H,W), w is (Cout,Cin) with Cin = 2Cx under concat_elu (ce) else Cx,
 * base and y are (N,Cout,H,W). Per block of m images: the operand X (Cin, m*P)
 * is x in place (NCHW, wide planes), x permuted (small planes) or concat_elu(x)
 * written into scratch; T = W X goes to scratch in the wide layout; then
 * y = base + (T + bias). T and concat_elu(x) are never stored in the arena. */

/* What backward needs besides x, w, bias and base. */
typedef struct nin_add_saved {
    int ce;   /* the operand is concat_elu(x) */
} nin_add_saved;

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
    float *x_all = ce || fold ? thread_scratch(ctx, SCRATCH_COLS, x_n, &bp, "nin_add") : NULL;
    float *t_all = thread_scratch(ctx, SCRATCH_OPERAND, t_n, &bp, "nin_add");
    if (!t_all || ((ce || fold) && !x_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *xbuf = PIECE(ctx, x_all, x_n), *t = PIECE(ctx, t_all, t_n);
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
    if (node) {
        nin_add_saved *s = tape_save(ctx, node, sizeof *s);
        if (!s)
            return AGAVE_ERR_NOMEM;
        s->ce = ce;
    }
    *out = y;
    return AGAVE_OK;
}

/* dbase += dY; dbias = sum dY; dW += dY X^T; dX = W^T dY, through concat_elu's
 * gradient into dx under ce, else added into dx as nin_backward does. */
agave_status nin_add_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    const float *g = node->out->grad;   // (input_grad_or_take may move it to base)
    const int ce = ((const nin_add_saved *)node->saved)->ce;
    int fresh = 0;   // under ce, dx is stored when gx holds no gradient yet
    float *gx = ce ? input_grad_fresh(node, 0, &fresh, &st) : input_grad(node, 0, &st);
    float *gw = input_grad(node, 1, &st);
    float *gb = input_grad(node, 2, &st), *gbase = input_grad_or_take(node, 3, &st);
    TRY(st);
    const agave_tensor *x = node->in[0], *w = node->in[1], *y = node->out;
    const int N = tN(x), Cx = tC(x), Cin = tC(w), Cout = tN(w);
    const size_t P = (size_t)tH(x) * tW(x);
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
    float *x_all = thread_scratch(ctx, SCRATCH_COLS, x_n, &bp, "nin_add backward");
    float *dy_all = fold ? thread_scratch(ctx, SCRATCH_OPERAND, dy_n, &bp, "nin_add backward") : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, "nin_add backward", &part));
    if (!x_all || (fold && !dy_all))
        return AGAVE_ERR_NOMEM;
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *xbuf = PIECE(ctx, x_all, x_n), *dycn = PIECE(ctx, dy_all, dy_n);
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
                                     fold ? (size_t)m * P : P, fold ? P : (size_t)Cin * P, gxb,
                                     fresh);
            } else {   // as nin_backward
                nin_input_grad(ctx, w->data, Cin, Cout, dy, fold, xbuf, gxb, m, P);
            }
        }
    }
    if (gw)
        add_chunk_sums(ctx, &bp, part, w_n, gw);
    return AGAVE_OK;
}

