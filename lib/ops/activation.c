/* Element-wise nonlinearities: elu, concat_elu, sigmoid, tanh, exp, log,
 * softplus. Each op is a pair of kernels over a flat range (forward writes y,
 * backward adds into gx) run block by block, in parallel for large tensors.
 * Blocks are disjoint and every element is computed the same way whatever
 * the thread count, so results are bit-identical for any number of threads.
 * The blocks are handed out dynamically: a thread that loses its core to
 * another process then delays only its own block, not every other thread's
 * share (the element-wise loops of arith.c, gate.c and dropout.c likewise). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fused.h"
#include "ops.h"
#include "../core/simd.h"

/* elu, concat_elu and sigmoid run on every activation of every training step.
 * The library is built portable (no -march=native, it is installed and
 * packaged), so these kernels are compiled three times, for AVX-512, AVX2 and
 * baseline x86-64, and the dynamic loader picks the widest the CPU has (an
 * ifunc). They use only +, -, *, / and comparisons (no libm call, which would
 * stop vectorisation), and the Makefile's -std=c11 implies -ffp-contract=off
 * (a GNU dialect would let the AVX-512 clone fuse multiply-adds), so every
 * clone rounds exactly like the scalar code: the same inputs give the same
 * bits on any x86-64 machine. */

/* ---- driving a kernel over a tensor in blocks --------------------------------------- */
typedef void (*fwd_kernel)(const float *restrict x, float *restrict y, size_t n);
typedef void (*bwd_kernel)(const float *restrict x, const float *restrict y,
                           const float *restrict g, float *restrict gx, size_t n);


static void run_forward(agave_context *ctx, fwd_kernel k, const float *x, float *y, size_t n)
{
    long blocks = (long)((n + EW_BLOCK - 1) / EW_BLOCK);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * EW_BLOCK;
        k(x + i0, y + i0, ew_block_len(n, i0));
    }
}

static void run_backward(agave_context *ctx, bwd_kernel k, const float *x, const float *y,
                         const float *g, float *gx, size_t n)
{
    long blocks = (long)((n + EW_BLOCK - 1) / EW_BLOCK);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (n > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long b = 0; b < blocks; b++) {
        size_t i0 = (size_t)b * EW_BLOCK;
        k(x + i0, y + i0, g + i0, gx + i0, ew_block_len(n, i0));
    }
}

/* y = f(x) on an arena tensor shaped like x, recorded as `op`. */
static agave_status unary_forward(agave_context *ctx, agave_tensor *x, agave_tensor **out, const op_def *op,
                                  fwd_kernel k)
{
    const char *name = op->name;
    TRY(check_op_entry(ctx, out, name));
    TRY(check_tensor(ctx, x, name, "x"));
    agave_tensor *y = tensor_new_like(ctx, x);
    if (!y)
        return AGAVE_ERR_NOMEM;
    run_forward(ctx, k, x->data, y->data, x->numel);
    agave_status st;
    op_record(ctx, op, y, &x, 1, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

/* gx += g * f'(x), the kernel reading x, y = f(x) and g. */
static agave_status unary_backward(agave_context *ctx, const tape_node *node, bwd_kernel k)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (gx)
        run_backward(ctx, k, node->in[0]->data, node->out->data, node->out->grad, gx,
                     node->out->numel);
    return AGAVE_OK;
}

/* ---- elu: x > 0 ? x : exp(x) - 1 ------------------------------------------------------ */
/* exp is taken of min(x, 0) only, so large positive x never overflows. */
SIMD_CLONES static void elu_fwd(const float *restrict x, float *restrict y, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float e = exp_nonpos(select_f(x[i] > 0.0f, 0.0f, x[i]));
        y[i] = select_f(x[i] > 0.0f, x[i], e - 1.0f);
    }
}

/* elu'(x) = 1 for x > 0, exp(x) = y + 1 otherwise. */
SIMD_CLONES static void elu_bwd(const float *restrict x, const float *restrict y,
                                const float *restrict g, float *restrict gx, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        gx[i] += select_f(x[i] > 0.0f, g[i], g[i] * (y[i] + 1.0f));
}

agave_status agave_elu(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return unary_forward(ctx, x, out, OP_ELU, elu_fwd);
}

agave_status elu_backward(agave_context *ctx, const tape_node *node)
{
    return unary_backward(ctx, node, elu_bwd);
}

/* ---- concat_elu: x (N,C,...) -> y (N,2C,...) = (elu(x), elu(-x)) ----------------------- */
/* One exp per element: with e = exp(-|x|), elu(x) = e - 1 when x <= 0 and
 * elu(-x) = e - 1 when x >= 0; the other half is just max(x, 0) or max(-x, 0). */
SIMD_CLONES static void concat_elu_fwd(const float *restrict x, float *restrict pos,
                                       float *restrict neg, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float em1 = exp_nonpos(neg_abs(xi)) - 1.0f;
        pos[i] = select_f(xi > 0.0f, xi, em1);
        neg[i] = select_f(xi < 0.0f, -xi, em1);
    }
}

/* d/dx elu(x) = 1 or exp(x); d/dx elu(-x) = -(1 or exp(-x)); both exps are
 * e = exp(-|x|) = y + 1 of the half whose argument is <= 0. */
SIMD_CLONES static void concat_elu_bwd(const float *restrict x, const float *restrict pos,
                                       const float *restrict neg, const float *restrict gpos,
                                       const float *restrict gneg, float *restrict gx, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float dpos = select_f(xi > 0.0f, gpos[i], gpos[i] * (pos[i] + 1.0f));
        float dneg = select_f(xi < 0.0f, gneg[i], gneg[i] * (neg[i] + 1.0f));
        gx[i] += dpos - dneg;
    }
}

/* Image n of x is `plane` floats; of y, two such halves. Blocks never cross
 * images, and each image's blocks are a separate task. */
static long concat_elu_tasks(size_t plane, size_t images)
{
    return (long)(images * ((plane + EW_BLOCK - 1) / EW_BLOCK));
}

/* y = concat_elu(x), checked and computed but not recorded; op names the caller. */
static agave_status concat_elu_compute(agave_context *ctx, agave_tensor *x, const char *op,
                                       agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, op));
    TRY(check_tensor(ctx, x, op, "x"));
    char sx[SHAPE_BUF];
    if (x->ndim < 2)
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "%s: x %s has no channel axis (N,C,...)", op,
                         shape_str(x, sx, sizeof sx));
    if (tC(x) > INT32_MAX / 2)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: x %s has too many channels to double", op,
                         shape_str(x, sx, sizeof sx));
    int dims[AGAVE_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[1] *= 2;
    agave_tensor *y = tensor_new_arena(ctx, x->ndim, dims);
    if (!y)
        return AGAVE_ERR_NOMEM;
    size_t plane = x->numel / (size_t)tN(x), per_image = (plane + EW_BLOCK - 1) / EW_BLOCK;
    long tasks = concat_elu_tasks(plane, (size_t)tN(x));
    const float *px = x->data;
    float *py = y->data;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        size_t img = (size_t)t / per_image, i0 = (size_t)t % per_image * EW_BLOCK;
        float *pos = py + img * 2 * plane + i0;
        concat_elu_fwd(px + img * plane + i0, pos, pos + plane, ew_block_len(plane, i0));
    }
    *out = y;
    return AGAVE_OK;
}

agave_status agave_concat_elu(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    agave_tensor *y;
    TRY(check_op_entry(ctx, out, "concat_elu"));
    TRY(concat_elu_compute(ctx, x, "concat_elu", &y));
    agave_status st;
    op_record(ctx, OP_CONCAT_ELU, y, &x, 1, &st);
    TRY(st);
    *out = y;
    return AGAVE_OK;
}

agave_status concat_elu_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const agave_tensor *x = node->in[0], *y = node->out;
    size_t plane = x->numel / (size_t)tN(x), per_image = (plane + EW_BLOCK - 1) / EW_BLOCK;
    long tasks = concat_elu_tasks(plane, (size_t)tN(x));
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        size_t img = (size_t)t / per_image, i0 = (size_t)t % per_image * EW_BLOCK;
        size_t yo = img * 2 * plane + i0, xo = img * plane + i0;
        concat_elu_bwd(x->data + xo, y->data + yo, y->data + yo + plane, y->grad + yo,
                       y->grad + yo + plane, gx + xo, ew_block_len(plane, i0));
    }
    return AGAVE_OK;
}

/* ---- concat_elu_dropout (ops/fused.h): dropout(concat_elu(x)) ----------------------- */
/* concat_elu_bwd with its output recomputed from x (em1 exactly as
 * concat_elu_fwd rounds it) and the gradient first passed back through the
 * dropout mask as dropout_backward would have added it into a zeroed buffer. */
static inline float concat_elu_dropout_grad(float xi, unsigned keep_pos, unsigned keep_neg,
                                            float gpos, float gneg, float scale)
{
    float e = exp_nonpos(neg_abs(xi)) - 1.0f + 1.0f;
    float gp = 0.0f + select_f(keep_pos != 0, gpos * scale, 0.0f);
    float gn = 0.0f + select_f(keep_neg != 0, gneg * scale, 0.0f);
    float dpos = select_f(xi > 0.0f, gp, gp * e);
    float dneg = select_f(xi < 0.0f, gn, gn * e);
    return dpos - dneg;
}

SIMD_CLONES static void concat_elu_dropout_bwd(const float *restrict x,
                                               const unsigned char *restrict keep,
                                               size_t kpos, size_t kneg,
                                               const float *restrict gpos,
                                               const float *restrict gneg, float scale,
                                               float *restrict gx, size_t n)
{
    // 16 values per mask load: a keep_bit per lane would be a gather
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        unsigned mpos = keep_bits16(keep, kpos + i), mneg = keep_bits16(keep, kneg + i);
#pragma omp simd
        for (size_t j = 0; j < 16; j++)
            gx[i + j] += concat_elu_dropout_grad(x[i + j], (mpos >> j) & 1u, (mneg >> j) & 1u,
                                                 gpos[i + j], gneg[i + j], scale);
    }
    for (; i < n; i++)
        gx[i] += concat_elu_dropout_grad(x[i], keep_bit(keep, kpos + i), keep_bit(keep, kneg + i),
                                         gpos[i], gneg[i], scale);
}

agave_status concat_elu_dropout(agave_context *ctx, agave_tensor *x, float p, rng_span span,
                                agave_tensor **out)
{
    static const char op[] = "concat_elu_dropout";
    TRY(check_op_entry(ctx, out, op));
    if (!(p > 0.0f && p < 1.0f))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: p = %g must be in (0, 1)", op,
                         (double)p);
    agave_tensor *y;
    TRY(concat_elu_compute(ctx, x, op, &y));
    // dropout in place, agave_dropout's draws in its order: y's concat_elu is never kept
    dropout_saved mask;
    TRY(dropout_apply(ctx, span, p, tape_should_record(ctx, &x, 1), y->data, y->numel, tN(y),
                      &mask));
    agave_status st;
    tape_node *node = op_record(ctx, OP_CONCAT_ELU_DROPOUT, y, &x, 1, &st);
    TRY(st);
    if (node) {
        dropout_saved *saved = tape_save(ctx, node, sizeof *saved);
        if (!saved)
            return AGAVE_ERR_NOMEM;
        *saved = mask;
    }
    *out = y;
    return AGAVE_OK;
}

agave_status concat_elu_dropout_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *gx = input_grad(node, 0, &st);
    TRY(st);
    if (!gx)
        return AGAVE_OK;
    const agave_tensor *x = node->in[0], *y = node->out;
    const dropout_saved *saved = node->saved;
    const unsigned char *keep = saved->keep;
    const float scale = saved->scale;
    size_t plane = x->numel / (size_t)tN(x), per_image = (plane + EW_BLOCK - 1) / EW_BLOCK;
    long tasks = concat_elu_tasks(plane, (size_t)tN(x));
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if (x->numel > EW_PARALLEL_MIN) schedule(dynamic, 1)
    for (long t = 0; t < tasks; t++) {
        size_t img = (size_t)t / per_image, i0 = (size_t)t % per_image * EW_BLOCK;
        size_t yo = img * 2 * plane + i0, xo = img * plane + i0;
        concat_elu_dropout_bwd(x->data + xo, keep, yo, yo + plane, y->grad + yo,
                               y->grad + yo + plane, scale, gx + xo, ew_block_len(plane, i0));
    }
    return AGAVE_OK;
}

/* ---- concat_elu inside other ops (ops/fused.h) --------------------------------------- */
/* d concat_elu / d x at x of the gradients gpos (of elu(x)) and gneg (of
 * elu(-x)), with elu's output recomputed from x as concat_elu_fwd rounds it. */
static inline float concat_elu_grad_at(float x, float gpos, float gneg)
{
    float e = exp_nonpos(neg_abs(x)) - 1.0f + 1.0f;
    float dpos = select_f(x > 0.0f, gpos, gpos * e);
    float dneg = select_f(x < 0.0f, gneg, gneg * e);
    return dpos - dneg;
}

/* concat_elu_bwd with the output recomputed from x, rounded as concat_elu_fwd
 * rounds it: the same gradient, bit for bit, without the stored output.
 * Added into gx, or stored with fresh. */
SIMD_CLONES static void concat_elu_bwd_recompute(const float *restrict x,
                                                 const float *restrict gpos,
                                                 const float *restrict gneg, float *restrict gx,
                                                 size_t n, int fresh)
{
    if (fresh) {   // (gx is not read: it holds garbage)
#pragma omp simd
        for (size_t i = 0; i < n; i++)
            gx[i] = concat_elu_grad_at(x[i], gpos[i], gneg[i]);
        return;
    }
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        gx[i] += concat_elu_grad_at(x[i], gpos[i], gneg[i]);
}

void concat_elu_into(agave_context *ctx, const float *x, int m, int C, size_t P, float *dst,
                     size_t row_stride, size_t image_stride)
{
    // x is (m,C,P); row c of image n at dst + c*row_stride + n*image_stride
    const long planes = (long)m * C;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if ((size_t)planes * P > EW_PARALLEL_MIN) \
    schedule(dynamic, 1)
    for (long nc = 0; nc < planes; nc++) {
        size_t n = (size_t)nc / (size_t)C, c = (size_t)nc % (size_t)C;
        float *pos = dst + c * row_stride + n * image_stride;
        concat_elu_fwd(x + (size_t)nc * P, pos, pos + (size_t)C * row_stride, P);
    }
}

void concat_elu_grad_into(agave_context *ctx, const float *x, int m, int C, size_t P,
                          const float *d, size_t row_stride, size_t image_stride, float *gx,
                          int fresh)
{
    // d laid out as concat_elu_into's dst; gx is (m,C,P) like x
    const long planes = (long)m * C;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) if ((size_t)planes * P > EW_PARALLEL_MIN) \
    schedule(dynamic, 1)
    for (long nc = 0; nc < planes; nc++) {
        size_t n = (size_t)nc / (size_t)C, c = (size_t)nc % (size_t)C;
        const float *gpos = d + c * row_stride + n * image_stride;
        concat_elu_bwd_recompute(x + (size_t)nc * P, gpos, gpos + (size_t)C * row_stride,
                                 gx + (size_t)nc * P, P, fresh);
    }
}

/* ---- sigmoid: 1 / (1 + exp(-x)) ------------------------------------------------------- */
/* With e = exp(-|x|) <= 1 nothing overflows: sigmoid = 1/(1+e) for x >= 0 and
 * e/(1+e) for x < 0, which keeps full relative precision far into the left tail. */
SIMD_CLONES static void sigmoid_fwd(const float *restrict x, float *restrict y, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float e = exp_nonpos(neg_abs(x[i]));
        float s = 1.0f / (1.0f + e);
        y[i] = select_f(x[i] >= 0.0f, s, e * s);
    }
}

SIMD_CLONES static void sigmoid_bwd(const float *restrict x, const float *restrict y,
                                    const float *restrict g, float *restrict gx, size_t n)
{
    (void)x;
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        gx[i] += g[i] * y[i] * (1.0f - y[i]);
}

agave_status agave_sigmoid(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return unary_forward(ctx, x, out, OP_SIGMOID, sigmoid_fwd);
}

agave_status sigmoid_backward(agave_context *ctx, const tape_node *node)
{
    return unary_backward(ctx, node, sigmoid_bwd);
}

/* ---- tanh, exp, log: libm, used outside the hot path ---------------------------------- */
static void tanh_fwd(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = tanhf(x[i]);
}

static void tanh_bwd(const float *restrict x, const float *restrict y, const float *restrict g,
                     float *restrict gx, size_t n)
{
    (void)x;
    for (size_t i = 0; i < n; i++)
        gx[i] += g[i] * (1.0f - y[i] * y[i]);
}

agave_status agave_tanh(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return unary_forward(ctx, x, out, OP_TANH, tanh_fwd);
}

agave_status tanh_backward(agave_context *ctx, const tape_node *node)
{
    return unary_backward(ctx, node, tanh_bwd);
}

static void exp_fwd(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = expf(x[i]);
}

static void exp_bwd(const float *restrict x, const float *restrict y, const float *restrict g,
                    float *restrict gx, size_t n)
{
    (void)x;
    for (size_t i = 0; i < n; i++)
        gx[i] += g[i] * y[i];
}

agave_status agave_exp(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return unary_forward(ctx, x, out, OP_EXP, exp_fwd);
}

agave_status exp_backward(agave_context *ctx, const tape_node *node)
{
    return unary_backward(ctx, node, exp_bwd);
}

static void log_fwd(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = logf(x[i]);
}

static void log_bwd(const float *restrict x, const float *restrict y, const float *restrict g,
                    float *restrict gx, size_t n)
{
    (void)y;
    for (size_t i = 0; i < n; i++)
        gx[i] += g[i] / x[i];
}

agave_status agave_log(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return unary_forward(ctx, x, out, OP_LOG, log_fwd);
}

agave_status log_backward(agave_context *ctx, const tape_node *node)
{
    return unary_backward(ctx, node, log_bwd);
}

/* ---- softplus: log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) --------------------------- */
/* The exp argument is never positive, so nothing overflows; for x << 0 the
 * result is exp(x) to full relative precision, for x >> 0 it is x. */
static void softplus_fwd(const float *restrict x, float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (x[i] > 0.0f ? x[i] : 0.0f) + log1pf(expf(-fabsf(x[i])));
}

/* softplus'(x) = sigmoid(x), in the same overflow-free form as sigmoid_fwd. */
static void softplus_bwd(const float *restrict x, const float *restrict y, const float *restrict g,
                         float *restrict gx, size_t n)
{
    (void)y;
    for (size_t i = 0; i < n; i++) {
        float e = expf(-fabsf(x[i]));
        gx[i] += g[i] * (x[i] >= 0.0f ? 1.0f : e) / (1.0f + e);
    }
}

agave_status agave_softplus(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    return unary_forward(ctx, x, out, OP_SOFTPLUS, softplus_fwd);
}

agave_status softplus_backward(agave_context *ctx, const tape_node *node)
{
    return unary_backward(ctx, node, softplus_bwd);
}
