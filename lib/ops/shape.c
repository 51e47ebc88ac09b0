/* Shape and resampling ops: concat, split (channel axis), down_shift,
 * right_shift (PixelCNN++'s causal shifts), upsample2x and avg_pool.
 * All are copies or sums of copies, memory-bound: loops are parallel over
 * images or planes for large tensors, each task writing only its own part of
 * the output (or of the input's gradient), so results never depend on the
 * thread count. */
#include <limits.h>
#include <string.h>

#include "ops.h"

#define SHAPE_PARALLEL_MIN 65536 /* elements below which one thread is faster */

/* Floats of one image (all axes after 0) and of one channel plane (after 1). */
static size_t image_size(const agave_tensor *t) { return t->numel / (size_t)tN(t); }
static size_t plane_size(const agave_tensor *t) { return image_size(t) / (size_t)tC(t); }

static agave_status need_4d(agave_context *ctx, const agave_tensor *x, const char *op)
{
    if (x->ndim == 4)
        return AGAVE_OK;
    char sx[SHAPE_BUF];
    return ctx_error(ctx, AGAVE_ERR_SHAPE, "%s: x must be 4-D (N,C,H,W), got %s", op,
                     shape_str(x, sx, sizeof sx));
}

/* Copies `count` channels of every image: dst image n, channel dst_c0 +
 * k  <-  src image n, channel src_c0 + k. `add` accumulates instead (the
 * backward of a copy). Both tensors share N and the plane size. */
static void copy_channels(agave_context *ctx, const agave_tensor *src, int src_c0, float *dst,
                          int dst_channels, int dst_c0, int count, const float *src_data, int add)
{
    size_t plane = plane_size(src), n_img = (size_t)tN(src);
    size_t src_img = (size_t)tC(src) * plane, dst_img = (size_t)dst_channels * plane;
    size_t len = (size_t)count * plane;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n_img * len > SHAPE_PARALLEL_MIN)           \
    schedule(static)
    for (long n = 0; n < (long)n_img; n++) {
        const float *s = src_data + (size_t)n * src_img + (size_t)src_c0 * plane;
        float *d = dst + (size_t)n * dst_img + (size_t)dst_c0 * plane;
        if (add)
            for (size_t i = 0; i < len; i++)
                d[i] += s[i];
        else
            memcpy(d, s, len * sizeof *d);
    }
}

/* ---- concat: a (N,Ca,...) and b (N,Cb,...) -> (N,Ca+Cb,...) ------------------------------ */
agave_status agave_concat(agave_context *ctx, agave_tensor *a, agave_tensor *b, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "concat"));
    TRY(check_tensor(ctx, a, "concat", "a"));
    TRY(check_tensor(ctx, b, "concat", "b"));
    char sa[SHAPE_BUF], sb[SHAPE_BUF];
    int fits = a->ndim == b->ndim && a->ndim >= 2;
    for (int i = 0; fits && i < AGAVE_MAX_DIMS; i++)
        fits = i == 1 || a->dims[i] == b->dims[i];
    if (!fits)
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "concat: a %s and b %s must have 2..4 dims agreeing in all but axis 1",
                         shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
    if (tC(a) > INT_MAX - tC(b))
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "concat: a %s and b %s have too many channels",
                         shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
    int dims[AGAVE_MAX_DIMS];
    memcpy(dims, a->dims, sizeof dims);
    dims[1] = tC(a) + tC(b);
    agave_tensor *y = tensor_new_arena(ctx, a->ndim, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    copy_channels(ctx, a, 0, y->data, dims[1], 0, tC(a), a->data, 0);
    copy_channels(ctx, b, 0, y->data, dims[1], tC(a), tC(b), b->data, 0);
    agave_status st;
    agave_tensor *in[2] = {a, b};
    op_record(ctx, OP_CONCAT, y, in, 2, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* ga += g[:, :Ca], gb += g[:, Ca:]. (a == b is fine: the two adds run in turn.) */
agave_status concat_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *ga = input_grad(node, 0, &st), *gb = input_grad(node, 1, &st);
    TRY(st);
    const agave_tensor *a = node->in[0], *b = node->in[1], *y = node->out;
    if (ga)
        copy_channels(ctx, y, 0, ga, tC(a), 0, tC(a), y->grad, 1);
    if (gb)
        copy_channels(ctx, y, tC(a), gb, tC(b), 0, tC(b), y->grad, 1);
    return AGAVE_OK;
}

/* ---- split: channels [start, start+count) of x (N,C,...) -> (N,count,...) ------------------ */
typedef struct split_saved {
    int start;   /* the first channel taken */
} split_saved;

agave_status agave_split(agave_context *ctx, agave_tensor *x, int start, int count,
                         agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "split"));
    TRY(check_tensor(ctx, x, "split", "x"));
    char sx[SHAPE_BUF];
    if (x->ndim < 2)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "split: x %s has no channel axis (N,C,...)",
                         shape_str(x, sx, sizeof sx));
    if (start < 0 || count < 1 || start > tC(x) - count)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "split: start %d and count %d do not select channels within the %d "
                         "of x %s",
                         start, count, tC(x), shape_str(x, sx, sizeof sx));
    int dims[AGAVE_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[1] = count;
    agave_tensor *y = tensor_new_arena(ctx, x->ndim, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    copy_channels(ctx, x, start, y->data, count, 0, count, x->data, 0);
    agave_status st;
    tape_node *node = op_record(ctx, OP_SPLIT, y, &x, 1, &st);
    TRY(st);
    if (node) {
        split_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        saved->start = start;
    }
    *out = y;
    return AGAVE_OK;
}

/* gx[:, start:start+count] += g. */
agave_status split_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    const agave_tensor *y = node->out;
    const split_saved *saved = node->saved;
    if (gx)
        copy_channels(ctx, y, 0, gx, tC(node->in[0]), saved->start, tC(y), y->grad, 1);
    return AGAVE_OK;
}

/* ---- down_shift and right_shift: y[h,w] = x[h-dh, w-dw], zero where that is outside ------- */
typedef struct shift_saved {
    int dh, dw;   /* rows and columns moved */
} shift_saved;

/* Plane p of y from plane p of x (H x W): rows below dh and columns below dw
 * are zero. Backward is the transpose: gx[h-dh, w-dw] += g[h, w]. */
static void shift_plane(const float *x, float *y, int H, int W, int dh, int dw)
{
    for (int h = 0; h < H; h++) {
        float *row = y + (size_t)h * W;
        if (h < dh) {
            memset(row, 0, (size_t)W * sizeof *row);
            continue;
        }
        const float *src = x + (size_t)(h - dh) * W;
        for (int w = 0; w < dw; w++)
            row[w] = 0.0f;
        memcpy(row + dw, src, (size_t)(W - dw) * sizeof *row);
    }
}

static void shift_plane_backward(const float *g, float *gx, int H, int W, int dh, int dw)
{
    for (int h = dh; h < H; h++) {
        const float *grow = g + (size_t)h * W + dw;
        float *dst = gx + (size_t)(h - dh) * W;
        for (int w = 0; w < W - dw; w++)
            dst[w] += grow[w];
    }
}

static agave_status shift_op(agave_context *ctx, agave_tensor *x, agave_tensor **out, const op_def *op,
                             int dh, int dw)
{
    const char *name = op->name;
    TRY(check_op_entry(ctx, out, name));
    TRY(check_tensor(ctx, x, name, "x"));
    TRY(need_4d(ctx, x, name));
    agave_tensor *y = tensor_new_like(ctx, x);
    if (!y)
        return AGAVE_ERR_NOMEM;
    long planes = (long)tN(x) * tC(x);
    size_t P = plane_size(x);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > SHAPE_PARALLEL_MIN)              \
    schedule(static)
    for (long p = 0; p < planes; p++)
        shift_plane(x->data + (size_t)p * P, y->data + (size_t)p * P, tH(x), tW(x), dh, dw);
    agave_status st;
    tape_node *node = op_record(ctx, op, y, &x, 1, &st);
    TRY(st);
    if (node) {
        shift_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        saved->dh = dh;
        saved->dw = dw;
    }
    *out = y;
    return AGAVE_OK;
}

static agave_status shift_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const agave_tensor *y = node->out;
    const shift_saved *saved = node->saved;
    long planes = (long)tN(y) * tC(y);
    size_t P = plane_size(y);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (y->numel > SHAPE_PARALLEL_MIN)              \
    schedule(static)
    for (long p = 0; p < planes; p++)
        shift_plane_backward(y->grad + (size_t)p * P, gx + (size_t)p * P, tH(y), tW(y),
                             saved->dh, saved->dw);
    return AGAVE_OK;
}

/* Drops the last row and puts a row of zeros on top. */
agave_status agave_down_shift(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return shift_op(ctx, x, out, OP_DOWN_SHIFT, 1, 0);
}

agave_status down_shift_backward(agave_context *ctx, const tape_node *node)
{
    return shift_backward(ctx, node);
}

/* Drops the last column and puts a column of zeros on the left. */
agave_status agave_right_shift(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return shift_op(ctx, x, out, OP_RIGHT_SHIFT, 0, 1);
}

agave_status right_shift_backward(agave_context *ctx, const tape_node *node)
{
    return shift_backward(ctx, node);
}

/* ---- upsample2x: x (N,C,H,W) -> y (N,C,2H,2W), y[2i+a, 2j+b] = x[i, j] ------------------- */
agave_status agave_upsample2x(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "upsample2x"));
    TRY(check_tensor(ctx, x, "upsample2x", "x"));
    TRY(need_4d(ctx, x, "upsample2x"));
    int H = tH(x), W = tW(x);
    if (H > INT_MAX / 2 || W > INT_MAX / 2) {
        char sx[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "upsample2x: x %s is too large to double",
                         shape_str(x, sx, sizeof sx));
    }
    int dims[4] = {tN(x), tC(x), 2 * H, 2 * W};
    agave_tensor *y = tensor_new_arena(ctx, 4, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    long planes = (long)tN(x) * tC(x);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (y->numel > SHAPE_PARALLEL_MIN)              \
    schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *src = x->data + (size_t)p * H * W;
        float *dst = y->data + (size_t)p * 4 * H * W;
        for (int i = 0; i < H; i++) {
            float *even = dst + (size_t)(2 * i) * 2 * W; /* row 2i; row 2i+1 is its copy */
            for (int j = 0; j < W; j++)
                even[2 * j] = even[2 * j + 1] = src[(size_t)i * W + j];
            memcpy(even + 2 * W, even, (size_t)2 * W * sizeof *even);
        }
    }
    agave_status st;
    op_record(ctx, OP_UPSAMPLE2X, y, &x, 1, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* gx[i, j] += the four gradients of the 2x2 block it was copied to. */
agave_status upsample2x_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const agave_tensor *x = node->in[0], *y = node->out;
    int H = tH(x), W = tW(x);
    long planes = (long)tN(x) * tC(x);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (y->numel > SHAPE_PARALLEL_MIN)              \
    schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *g = y->grad + (size_t)p * 4 * H * W;
        float *dst = gx + (size_t)p * H * W;
        for (int i = 0; i < H; i++) {
            const float *top = g + (size_t)(2 * i) * 2 * W, *bottom = top + 2 * W;
            for (int j = 0; j < W; j++)
                dst[(size_t)i * W + j] +=
                    (top[2 * j] + top[2 * j + 1]) + (bottom[2 * j] + bottom[2 * j + 1]);
        }
    }
    return AGAVE_OK;
}

/* ---- avg_pool: x (N,C,H,W) -> y (N,C,H/s,W/s), the mean of each s x s block ---------------- */
typedef struct avg_pool_saved {
    int s;   /* the block side */
} avg_pool_saved;

agave_status agave_avg_pool(agave_context *ctx, agave_tensor *x, int s, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "avg_pool"));
    TRY(check_tensor(ctx, x, "avg_pool", "x"));
    TRY(need_4d(ctx, x, "avg_pool"));
    char sx[SHAPE_BUF];
    if (s < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "avg_pool: s = %d must be >= 1", s);
    if (tH(x) % s || tW(x) % s)
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "avg_pool: H and W of x %s must be multiples of s = %d",
                         shape_str(x, sx, sizeof sx), s);
    int Ho = tH(x) / s, Wo = tW(x) / s, W = tW(x);
    int dims[4] = {tN(x), tC(x), Ho, Wo};
    agave_tensor *y = tensor_new_arena(ctx, 4, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    float area = (float)s * (float)s;
    long planes = (long)tN(x) * tC(x);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > SHAPE_PARALLEL_MIN)              \
    schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *src = x->data + (size_t)p * tH(x) * W;
        float *dst = y->data + (size_t)p * Ho * Wo;
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                float acc = 0.0f;
                for (int a = 0; a < s; a++)
                    for (int b = 0; b < s; b++)
                        acc += src[(size_t)(i * s + a) * W + (size_t)j * s + b];
                dst[(size_t)i * Wo + j] = acc / area;
            }
    }
    agave_status st;
    tape_node *node = op_record(ctx, OP_AVG_POOL, y, &x, 1, &st);
    TRY(st);
    if (node) {
        avg_pool_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        saved->s = s;
    }
    *out = y;
    return AGAVE_OK;
}

/* Every x in a block receives g / s^2 of the block's output. */
agave_status avg_pool_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const agave_tensor *x = node->in[0], *y = node->out;
    const avg_pool_saved *saved = node->saved;
    int s = saved->s, W = tW(x), Ho = tH(y), Wo = tW(y);
    float area = (float)s * (float)s;
    long planes = (long)tN(x) * tC(x);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > SHAPE_PARALLEL_MIN)              \
    schedule(static)
    for (long p = 0; p < planes; p++) {
        const float *g = y->grad + (size_t)p * Ho * Wo;
        float *dst = gx + (size_t)p * tH(x) * W;
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                float share = g[(size_t)i * Wo + j] / area;
                for (int a = 0; a < s; a++)
                    for (int b = 0; b < s; b++)
                        dst[(size_t)(i * s + a) * W + (size_t)j * s + b] += share;
            }
    }
    return AGAVE_OK;
}
