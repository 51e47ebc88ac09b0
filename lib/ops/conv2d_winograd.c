/* conv2d by Winograd minimal filtering along the rows, F(4,3) (winograd.h).
 *
 * With a tile d of alpha = 4 + r - 1 inputs of a row, the 4 outputs
 * y_j = sum_k g_k d_{j+k} are y = AT [(G g) . (BT d)]. Over a block of m
 * images with R = C*KH rows (input channel c, kernel row kh) and one column
 * per (image n, tile tw, output row oh):
 *   forward    V_a = BT-transform of the images       (alpha, R, cols)
 *              U_a = G-transform of w                 (alpha, Cout, R)
 *              M_a = U_a V_a                          alpha GEMMs
 *              y   = AT-transform of M, + bias
 *   backward   dM_a = AT^T-transform of dy            (alpha, Cout, cols)
 *              dW  += G^T (dM_a V_a^T)                alpha GEMMs summed over a chunk's
 *                                                     blocks, then transformed once
 *              dx  += BT^T-transform of (U_a^T dM_a)  alpha GEMMs
 * Columns run oh fastest, so that 16 output rows of one tile are one vector:
 * a plane is read as 16 rows at a time and transposed into column vectors
 * (lanes = rows), transformed along the columns, and written back the same
 * way. Every float of dx, dW and y is summed in an order fixed by the loops,
 * whatever the thread count's schedule. Blocks, threads and the weight
 * gradient's chunk sums are conv_blocks.h's, as for conv2d. */
#include <stdint.h>
#include <string.h>

#include "fused.h"
#include "winograd.h"

static const wino_tables F43 = {
    3,
    6,
    {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}},
    {{1.0 / 4, 0, 0},
     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
     {1.0 / 24, 1.0 / 12, 1.0 / 6},
     {1.0 / 24, -1.0 / 12, 1.0 / 6},
     {0, 0, 1}},
    {{4, 0, -5, 0, 1, 0},
     {0, -4, -4, 1, 1, 0},
     {0, 4, -4, -1, 1, 0},
     {0, -2, -1, 2, 1, 0},
     {0, 2, -1, -2, 1, 0},
     {0, 4, 0, -5, 0, 1}},
};

const wino_tables *wino_tables_for(int r)
{
    return r == 3 ? &F43 : NULL;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "../core/gemm_avx512.h"
#include "../core/transpose16.h"

#define TARGET __attribute__((target("avx512f")))
#define PADC 8   /* column vectors left of column 0 (a tile starts up to r-1 before it) */
#define NCOLV (PADC + WINO_MAX_WIDTH + 2 * WINO_ALPHA_MAX + 16)

int winograd_available(void) { return gemm_avx512_available(0); }

int winograd_fits(const agave_context *ctx, const conv_geom *g)
{
    return !ctx->conv_plain && g->stride == 1 && g->out_w == g->in_w && wino_tables_for(g->k_w) &&
           g->pad_left < g->k_w && g->in_w <= WINO_MAX_WIDTH && g->k_h <= WINO_MAX_KH &&
           g->out_h >= WINO_MIN_SIDE && g->in_w >= WINO_MIN_SIDE &&
           ctx_gemm_precision(ctx) == AGAVE_PRECISION_FP32 && ctx->gemm_engine != GEMM_OPENBLAS &&
           winograd_available();
}

/* The block's shapes: R rows (c, kh), cols columns (n, tw, oh). */
typedef struct wino_shape {
    const conv_geom *g;
    const wino_tables *t;
    int tiles;   /* per row: ceil(W / 4) */
    int R, Cout, m;
    size_t cols;
} wino_shape;

static wino_shape shape_of(const conv_geom *g, int Cout, int m)
{
    wino_shape s = {g, wino_tables_for(g->k_w), (g->in_w + WINO_TILE - 1) / WINO_TILE,
                    g->channels * g->k_h, Cout, m, 0};
    s.cols = (size_t)m * s.tiles * g->out_h;
    return s;
}

/* Column (n, tw, oh) of the block. */
static size_t col_of(const wino_shape *s, int n, int tw, long oh)
{
    return ((size_t)n * s->tiles + tw) * s->g->out_h + oh;
}

static inline __mmask16 lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* Lanes l < n with lo <= first + l < hi. */
static inline __mmask16 lanes_in(int n, long first, long lo, long hi)
{
    __mmask16 m = 0;
    for (int l = 0; l < n && l < 16; l++)
        if (first + l >= lo && first + l < hi)
            m |= (__mmask16)(1u << l);
    return m;
}

/* p + off floats, as an integer: the address of a masked-off lane may lie
 * outside the buffer; it is never touched. */
static inline float *at(float *p, long off)
{
    return (float *)((uintptr_t)p + (uintptr_t)(off * (long)sizeof(float)));
}

/* colv[q] lane l = plane row r0 + l, column c0 + q, for l < nrows and
 * column < W; zero elsewhere. */
TARGET static void load_columns(const float *plane, int W, int r0, int nrows, int c0,
                                __m512 colv[16])
{
    __m512 r[16];   // in registers (transpose16.h): colv is the caller's memory
#pragma GCC unroll 16
    for (int l = 0; l < 16; l++)
        r[l] = l < nrows ? _mm512_maskz_loadu_ps(lanes(W - c0), plane + (size_t)(r0 + l) * W + c0)
                         : _mm512_setzero_ps();
    transpose16(r);
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++)
        colv[q] = r[q];
}

/* Plane rows r0 + l (l < nrows), columns c0 .. min(c0 + 16, W): = colv's
 * lanes + bias, or += them with accumulate. */
TARGET static void store_columns(float *plane, int W, int r0, int nrows, int c0,
                                 const __m512 colv[16], float bias, int accumulate)
{
    __m512 r[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++)
        r[q] = colv[q];
    transpose16(r);
    const __mmask16 m = lanes(W - c0);
#pragma GCC unroll 16
    for (int l = 0; l < 16; l++) {
        if (l >= nrows)
            break;
        float *p = plane + (size_t)(r0 + l) * W + c0;
        __m512 v = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), r[l])
                              : _mm512_add_ps(r[l], _mm512_set1_ps(bias));
        _mm512_mask_storeu_ps(p, m, v);
    }
}

/* Vectors [0, PADC + used) of a column array for a row of W columns: every
 * tile's points (up to 4 * tiles + alpha) and every group of 16 columns. */
static int columns_used(int W)
{
    const int tiles_end = (W + WINO_TILE - 1) / WINO_TILE * WINO_TILE + WINO_ALPHA_MAX;
    const int groups_end = (W + 15) / 16 * 16;
    return PADC + (tiles_end > groups_end ? tiles_end : groups_end);
}

/* colv[PADC + w] lane l = plane row h0 + l, column w (rows h0 .. h0 + nrows,
 * columns 0 .. W); every other vector of colv a tile can read zero. */
TARGET static void rows_as_columns(const float *plane, int W, int h0, int nrows,
                                   __m512 colv[NCOLV])
{
    const int W16 = (W + 15) / 16 * 16, used = columns_used(W);
    for (int i = 0; i < PADC; i++)   // (only these and the tail: zeroing the whole
        colv[i] = _mm512_setzero_ps();   //  array cost much of the transform)
    for (int i = PADC + W16; i < used; i++)
        colv[i] = _mm512_setzero_ps();
    for (int c0 = 0; c0 < W; c0 += 16)
        load_columns(plane, W, h0, nrows, c0, colv + PADC + c0);
}

/* The transforms below are written for a table and inlined with it as a
 * constant (INLINE, the *_of functions): the compiler then unrolls the loops
 * over its points and drops the zero coefficients. */
#define INLINE TARGET static inline __attribute__((always_inline))

/* sum_i coef[i * stride] v[i] over n terms, zero coefficients skipped. */
INLINE __m512 combine(const float *coef, int stride, const __m512 *v, int n)
{
    __m512 acc = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < n; i++)
        if (coef[i * stride] != 0.0f)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(coef[i * stride]), v[i], acc);
    return acc;
}

/* V rows (c, kh) of image n from its plane c (in_h, in_w): V_a = BT d per
 * tile, stored for every kh at oh = ih + pad_top - kh; rows whose input row
 * is padding are zero. */
INLINE void input_plane(const wino_shape *s, const wino_tables *t, const float *plane, int n,
                        int c, float *V)
{
    const conv_geom *g = s->g;
    const size_t RC = (size_t)s->R * s->cols;
    for (int h0 = 0; h0 < g->in_h; h0 += 16) {
        const int nrows = g->in_h - h0 < 16 ? g->in_h - h0 : 16;
        __m512 colv[NCOLV];
        rows_as_columns(plane, g->in_w, h0, nrows, colv);
        __mmask16 keep[WINO_MAX_KH];   // per kh: lanes whose output row exists
        for (int kh = 0; kh < g->k_h; kh++)
            keep[kh] = lanes_in(nrows, (long)h0 + g->pad_top - kh, 0, g->out_h);
        for (int tw = 0; tw < s->tiles; tw++) {
            const __m512 *d = colv + PADC + tw * WINO_TILE - g->pad_left;
#pragma GCC unroll 8
            for (int a = 0; a < t->alpha; a++) {
                const __m512 v = combine(t->BT[a], 1, d, t->alpha);
                for (int kh = 0; kh < g->k_h; kh++) {
                    const long oh0 = (long)h0 + g->pad_top - kh;
                    float *row = V + a * RC + (size_t)(c * g->k_h + kh) * s->cols;
                    _mm512_mask_storeu_ps(at(row, (long)col_of(s, n, tw, 0) + oh0), keep[kh], v);
                }
            }
        }
    }
    for (int kh = 0; kh < g->k_h; kh++)   // output rows whose input row kh is padding
        for (int oh = 0; oh < g->out_h; oh++) {
            const int ih = oh + kh - g->pad_top;
            if (ih >= 0 && ih < g->in_h)
                continue;
            for (int a = 0; a < t->alpha; a++)
                for (int tw = 0; tw < s->tiles; tw++)
                    V[a * RC + (size_t)(c * g->k_h + kh) * s->cols + col_of(s, n, tw, oh)] = 0.0f;
        }
}

/* Plane o of image n of y from M: y = AT M per tile, + bias. */
INLINE void output_plane(const wino_shape *s, const wino_tables *t, const float *M, int n, int o,
                         float bias, float *plane)
{
    const conv_geom *g = s->g;
    const size_t OC = (size_t)s->Cout * s->cols;
    for (int h0 = 0; h0 < g->out_h; h0 += 16) {
        const int nrows = g->out_h - h0 < 16 ? g->out_h - h0 : 16;
        __m512 colv[NCOLV];
        for (int i = s->tiles * WINO_TILE; i < s->tiles * WINO_TILE + 16; i++)
            colv[i] = _mm512_setzero_ps();   // read by the last store_columns, never stored
        for (int tw = 0; tw < s->tiles; tw++) {
            __m512 mv[WINO_ALPHA_MAX];
#pragma GCC unroll 8
            for (int a = 0; a < t->alpha; a++)
                mv[a] = _mm512_maskz_loadu_ps(
                    lanes(nrows), M + a * OC + (size_t)o * s->cols + col_of(s, n, tw, h0));
#pragma GCC unroll 4
            for (int j = 0; j < WINO_TILE; j++)
                colv[tw * WINO_TILE + j] = combine(t->AT[j], 1, mv, t->alpha);
        }
        for (int c0 = 0; c0 < g->out_w; c0 += 16)
            store_columns(plane, g->out_w, h0, nrows, c0, colv + c0, bias, 0);
    }
}

/* dM of plane o of image n from dy's plane: dM_a = sum_j AT[j][a] dy_j. */
INLINE void grad_output_plane(const wino_shape *s, const wino_tables *t, const float *plane,
                              int n, int o, float *dM)
{
    const conv_geom *g = s->g;
    const size_t OC = (size_t)s->Cout * s->cols;
    for (int h0 = 0; h0 < g->out_h; h0 += 16) {
        const int nrows = g->out_h - h0 < 16 ? g->out_h - h0 : 16;
        __m512 colv[NCOLV];
        rows_as_columns(plane, g->out_w, h0, nrows, colv);
        for (int tw = 0; tw < s->tiles; tw++)
#pragma GCC unroll 8
            for (int a = 0; a < t->alpha; a++)   // dM_a = sum_j AT[j][a] dy_j
                _mm512_mask_storeu_ps(
                    dM + a * OC + (size_t)o * s->cols + col_of(s, n, tw, h0), lanes(nrows),
                    combine(&t->AT[0][a], WINO_ALPHA_MAX, colv + PADC + tw * WINO_TILE,
                            WINO_TILE));
    }
}

/* dx plane c of image n += the transposed input transform of dV rows (c, kh):
 * d_i += sum_a BT[a][i] dV_a, summed over kh, then tiles, then i; = (every
 * value of the plane written) unless accumulate. */
INLINE void grad_input_plane(const wino_shape *s, const wino_tables *t, const float *dV, int n,
                             int c, float *plane, int accumulate)
{
    const conv_geom *g = s->g;
    const size_t RC = (size_t)s->R * s->cols;
    for (int h0 = 0; h0 < g->in_h; h0 += 16) {
        const int nrows = g->in_h - h0 < 16 ? g->in_h - h0 : 16;
        __m512 acc[NCOLV];
        for (int i = 0; i < columns_used(g->in_w); i++)
            acc[i] = _mm512_setzero_ps();
        for (int kh = 0; kh < g->k_h; kh++) {
            const long oh0 = (long)h0 + g->pad_top - kh;
            const __mmask16 m = lanes_in(nrows, oh0, 0, g->out_h);
            const float *row = dV + (size_t)(c * g->k_h + kh) * s->cols;
            for (int tw = 0; tw < s->tiles; tw++) {
                __m512 dv[WINO_ALPHA_MAX];
#pragma GCC unroll 8
                for (int a = 0; a < t->alpha; a++)
                    dv[a] = _mm512_maskz_loadu_ps(
                        m, at((float *)row + a * RC, (long)col_of(s, n, tw, 0) + oh0));
                __m512 *d = acc + PADC + tw * WINO_TILE - g->pad_left;
#pragma GCC unroll 8
                for (int i = 0; i < t->alpha; i++)   // d_i += sum_a BT[a][i] dV_a
                    d[i] = _mm512_add_ps(d[i], combine(&t->BT[0][i], WINO_ALPHA_MAX, dv, t->alpha));
            }
        }
        for (int c0 = 0; c0 < g->in_w; c0 += 16)
            store_columns(plane, g->in_w, h0, nrows, c0, acc + PADC + c0, 0.0f, accumulate);
    }
}

/* Each transform inlined with the table as a constant. */
TARGET static void input_plane_of(const wino_shape *s, const float *plane, int n, int c, float *V)
{
    input_plane(s, &F43, plane, n, c, V);
}

TARGET static void output_plane_of(const wino_shape *s, const float *M, int n, int o, float bias,
                                   float *plane)
{
    output_plane(s, &F43, M, n, o, bias, plane);
}

TARGET static void grad_output_plane_of(const wino_shape *s, const float *plane, int n, int o,
                                        float *dM)
{
    grad_output_plane(s, &F43, plane, n, o, dM);
}

TARGET static void grad_input_plane_of(const wino_shape *s, const float *dV, int n, int c,
                                       float *plane, int accumulate)
{
    grad_input_plane(s, &F43, dV, n, c, plane, accumulate);
}

/* ---- transforms over a block, on the threads the region allows ------------------ */

/* V (alpha, R, cols) of the block's m images (m, C, in_h, in_w). */
static void input_transform(agave_context *ctx, const wino_shape *s, const float *imgs,
                            float *V)
{
    const int C = s->g->channels;
    const size_t plane = geom_plane(s->g);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static)
    for (int nc = 0; nc < s->m * C; nc++)
        input_plane_of(s, imgs + (size_t)nc * plane, nc / C, nc % C, V);
}

/* U (alpha, Cout, R): U_a[o][c*KH + kh] = sum_k G[a][k] w[o][c][kh][k], in double. */
static void weight_transform(const wino_shape *s, const float *w, float *U)
{
    const int r = s->t->r;
    for (int a = 0; a < s->t->alpha; a++)
        for (size_t oj = 0; oj < (size_t)s->Cout * s->R; oj++) {
            double u = 0.0;
            for (int k = 0; k < r; k++)
                u += s->t->G[a][k] * w[oj * r + k];
            U[(size_t)a * s->Cout * s->R + oj] = (float)u;
        }
}

/* gw[o][c][kh][k] += G[a][k] dU_a[o][c*KH + kh]: point a's share of dW. */
static void weight_grad_transform(const wino_shape *s, int a, const float *dU_a, float *gw)
{
    const int r = s->t->r;
    for (size_t oj = 0; oj < (size_t)s->Cout * s->R; oj++)
        for (int k = 0; k < r; k++)
            gw[oj * r + k] += (float)(s->t->G[a][k] * dU_a[oj]);
}

/* ---- forward and backward ------------------------------------------------------- */

/* Columns of a block's GEMMs: a quarter of im2col's PANEL_COLS. A block
 * holds alpha transformed matrices at once: with 1024 columns cifar-small's
 * peak RSS at batch 32 went past 1.5 GiB; with 256 it stays under, and the
 * steps are as fast (docs/performance.md, "Winograd"). */
#define WINO_BLOCK_COLS 256

/* Images per block: enough for WINO_BLOCK_COLS columns. */
static block_plan wino_plan(agave_context *ctx, const conv_geom *g, int N, int Cout)
{
    const wino_shape s1 = shape_of(g, Cout, 1);
    size_t nb = (WINO_BLOCK_COLS + s1.cols - 1) / s1.cols;
    return plan_blocks(ctx, N, nb < (size_t)N ? (int)nb : N);
}

agave_status winograd_forward(agave_context *ctx, const conv_geom *g, const agave_tensor *x,
                              const agave_tensor *w, const agave_tensor *bias, int ce,
                              agave_tensor *y)
{
    const int N = tN(x), Cout = tN(w);
    const block_plan bp = wino_plan(ctx, g, N, Cout);
    const wino_shape sb = shape_of(g, Cout, bp.nb);
    const int alpha = sb.t->alpha;
    const size_t P = geom_cols(g), img = (size_t)g->channels * geom_plane(g);
    const size_t v_n = alpha * sb.R * sb.cols, m_n = alpha * (size_t)Cout * sb.cols;
    const size_t u_n = alpha * (size_t)Cout * sb.R, ce_n = img * bp.nb;
    float *V_all = thread_scratch(ctx, SCRATCH_COLS, v_n, &bp, "conv2d");
    float *M_all = thread_scratch(ctx, SCRATCH_OPERAND, m_n, &bp, "conv2d");
    float *ce_all = ce ? thread_scratch(ctx, SCRATCH_CE, ce_n, &bp, "conv2d") : NULL;
    float *U = ctx_scratch(ctx, SCRATCH_WEIGHTS, u_n * sizeof(float));
    if (!V_all || !M_all || (ce && !ce_all))
        return AGAVE_ERR_NOMEM;
    if (!U)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "conv2d: cannot allocate %zu floats of scratch",
                         u_n);
    weight_transform(&sb, w->data, U);
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int blk = 0; blk < bp.nblocks; blk++) {
        float *V = PIECE(ctx, V_all, v_n), *M = PIECE(ctx, M_all, m_n), *cebuf = PIECE(ctx, ce_all, ce_n);
        int n0;
        const int m = block_images(&bp, N, blk, &n0);
        const wino_shape s = shape_of(g, Cout, m);
        input_transform(ctx, &s, conv2d_images(ctx, x, n0, m, ce, cebuf), V);
        for (int a = 0; a < alpha; a++)   // M_a (Cout, cols) = U_a (Cout, R) V_a (R, cols)
            gemm(ctx, 0, 0, Cout, (int)s.cols, s.R, 1.0f, U + (size_t)a * Cout * s.R, s.R,
                 V + (size_t)a * s.R * s.cols, (int)s.cols, 0.0f, M + (size_t)a * Cout * s.cols,
                 (int)s.cols);
        float *yb = y->data + (size_t)n0 * Cout * P;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static)
        for (int no = 0; no < m * Cout; no++)
            output_plane_of(&s, M, no / Cout, no % Cout, bias ? bias->data[no % Cout] : 0.0f,
                         yb + (size_t)no * P);
    }
    return AGAVE_OK;
}

/* dM (alpha, Cout, cols) from dy (m, Cout, out_h, out_w). */
static void grad_output_transform(agave_context *ctx, const wino_shape *s, const float *dy,
                                  float *dM)
{
    const size_t P = geom_cols(s->g);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static)
    for (int no = 0; no < s->m * s->Cout; no++)
        grad_output_plane_of(s, dy + (size_t)no * P, no / s->Cout, no % s->Cout, dM);
}

/* dx (m, C, in_h, in_w) += the transposed input transform of dV (= unless
 * accumulate). */
static void grad_input_transform(agave_context *ctx, const wino_shape *s, const float *dV,
                                 float *dx, int accumulate)
{
    const int C = s->g->channels;
    const size_t plane = geom_plane(s->g);
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static)
    for (int nc = 0; nc < s->m * C; nc++)
        grad_input_plane_of(s, dV, nc / C, nc % C, dx + (size_t)nc * plane, accumulate);
}

agave_status winograd_backward(agave_context *ctx, const conv_geom *g, const agave_tensor *x,
                               const agave_tensor *w, const agave_tensor *y, int ce, float *gx,
                               int gx_fresh, float *gw)
{
    const int N = tN(x), Cout = tN(w);
    const block_plan bp = wino_plan(ctx, g, N, Cout);
    const wino_shape sb = shape_of(g, Cout, bp.nb);
    const int alpha = sb.t->alpha;
    const size_t P = geom_cols(g), img = (size_t)g->channels * geom_plane(g);
    const size_t x_img = (size_t)tC(x) * geom_plane(g), w_n = (size_t)Cout * sb.R * sb.t->r;
    const size_t v_n = alpha * sb.R * sb.cols, m_n = alpha * (size_t)Cout * sb.cols;
    const size_t u_n = alpha * (size_t)Cout * sb.R, ce_n = img * bp.nb;
    const char *op = "conv2d backward";
    float *V_all = thread_scratch(ctx, SCRATCH_COLS, v_n, &bp, op);   // V, then dV
    float *M_all = thread_scratch(ctx, SCRATCH_OPERAND, m_n, &bp, op);
    float *ce_all = ce ? thread_scratch(ctx, SCRATCH_CE, ce_n, &bp, op) : NULL;
    float *dU_all = gw ? thread_scratch(ctx, SCRATCH_WEIGHT_GRADS, u_n, &bp, op) : NULL;
    float *U = gx ? ctx_scratch(ctx, SCRATCH_WEIGHTS, u_n * sizeof(float)) : NULL;
    float *part;
    TRY(chunk_parts(ctx, &bp, gw, w_n, op, &part));
    if (!V_all || !M_all || (ce && !ce_all) || (gw && !dU_all))
        return AGAVE_ERR_NOMEM;
    if (gx && !U)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: cannot allocate %zu floats of scratch", op,
                         u_n);
    if (gx)
        weight_transform(&sb, w->data, U);
#pragma omp parallel for num_threads(bp.threads) if (bp.threads > 1) schedule(dynamic, 1)
    for (int c = 0; c < bp.chunks; c++) {
        float *V = PIECE(ctx, V_all, v_n), *dM = PIECE(ctx, M_all, m_n), *cebuf = PIECE(ctx, ce_all, ce_n);
        float *dU = PIECE(ctx, dU_all, u_n);   // (alpha, Cout, R), summed over the chunk
        float *gw_sum = gw ? chunk_sum(&bp, c, gw, part, w_n) : NULL;
        for (int blk = chunk_first(&bp, c); blk < chunk_first(&bp, c + 1); blk++) {
            int n0;
            const int m = block_images(&bp, N, blk, &n0);
            const wino_shape s = shape_of(g, Cout, m);
            const float beta = blk == chunk_first(&bp, c) ? 0.0f : 1.0f;
            grad_output_transform(ctx, &s, y->grad + (size_t)n0 * Cout * P, dM);
            if (gw) {   // dU_a (Cout, R) += dM_a (Cout, cols) V_a^T
                input_transform(ctx, &s, conv2d_images(ctx, x, n0, m, ce, cebuf), V);
                for (int a = 0; a < alpha; a++)
                    gemm(ctx, 0, 1, Cout, s.R, (int)s.cols, 1.0f, dM + (size_t)a * Cout * s.cols,
                         (int)s.cols, V + (size_t)a * s.R * s.cols, (int)s.cols, beta,
                         dU + (size_t)a * Cout * s.R, s.R);
            }
            if (!gx)
                continue;
            for (int a = 0; a < alpha; a++)   // dV_a (R, cols) = U_a^T dM_a, into V
                gemm(ctx, 1, 0, s.R, (int)s.cols, Cout, 1.0f, U + (size_t)a * Cout * s.R, s.R,
                     dM + (size_t)a * Cout * s.cols, (int)s.cols, 0.0f,
                     V + (size_t)a * s.R * s.cols, (int)s.cols);
            if (!ce) {
                grad_input_transform(ctx, &s, V, gx + (size_t)n0 * x_img, !gx_fresh);
                continue;
            }
            grad_input_transform(ctx, &s, V, cebuf, 0);
            concat_elu_grad_into(ctx, x->data + (size_t)n0 * x_img, m, tC(x), geom_plane(g),
                                 cebuf, geom_plane(g), img, gx + (size_t)n0 * x_img, gx_fresh);
        }
        for (int a = 0; gw && a < alpha; a++)   // dW += G[a] dU_a, once per chunk
            weight_grad_transform(&sb, a, dU + (size_t)a * Cout * sb.R, gw_sum);
    }
    if (gw)
        add_chunk_sums(ctx, &bp, part, w_n, gw);
    return AGAVE_OK;
}

#else /* not x86-64: conv2d always runs by im2col */

int winograd_available(void) { return 0; }

int winograd_fits(const agave_context *ctx, const conv_geom *g)
{
    (void)ctx, (void)g;
    return 0;
}

agave_status winograd_forward(agave_context *ctx, const conv_geom *g, const agave_tensor *x,
                              const agave_tensor *w, const agave_tensor *bias, int ce,
                              agave_tensor *y)
{
    (void)g, (void)x, (void)w, (void)bias, (void)ce, (void)y;
    return ctx_error(ctx, AGAVE_ERR_STATE, "conv2d: Winograd is x86-64 only");
}

agave_status winograd_backward(agave_context *ctx, const conv_geom *g, const agave_tensor *x,
                               const agave_tensor *w, const agave_tensor *y, int ce, float *gx,
                               int gx_fresh, float *gw)
{
    (void)g, (void)x, (void)w, (void)y, (void)ce, (void)gx, (void)gx_fresh, (void)gw;
    return ctx_error(ctx, AGAVE_ERR_STATE, "conv2d: Winograd is x86-64 only");
}

#endif
