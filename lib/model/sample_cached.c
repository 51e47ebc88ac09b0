/* Cached sampling of the conditional PixelCNN++ (Ramachandran et al. 2017).
 *
 * Why it is exact: every activation of the network depends only on pixels
 * before it in raster order, and on which ones is fixed by its stream and
 * level (l = 0, 1, 2 at H, H/2, H/4; a position (I, J) at level l covers
 * pixels from (2^l I, 2^l J) on):
 *  - the u stream at level l, row I, depends only on image rows < 2^l I (its
 *    convolutions are down-shifted; the stride-2 convs read rows 2I-1 and 2I
 *    of the finer level, the deconvs row I/2 of the coarser one);
 *  - the ul stream at level l, position (I, J), depends only on pixels
 *    before (2^l I, 2^l J) (down-right-shifted, plus u at the same position).
 * So each activation is computed once, at the first step where it is final:
 * u rows of level l when image row 2^l I begins, ul positions of level l when
 * pixel (2^l I, 2^l J) is next. One image then costs one forward pass in all,
 * spread over H*W steps, instead of H*W forward passes.
 *
 * What is kept: every convolution has two kernel rows and reads the row it
 * computes and the one above (stride-2 convs: rows 2I-1, 2I of the finer
 * level, which are its two newest; deconvs: the coarser level's current
 * row), so each activation keeps a ring of two rows. The image [x~, 1] and
 * the conditioning elu(g_l) (fixed per image) are kept whole.
 *
 * Layout: (row, column, image, channel), so the values of one position for
 * all images are contiguous; a layer over positions (I, j0..j1) is one GEMM:
 * (positions * images, K) x (K, out) with K = taps * in (tap-major), and a
 * gated block's 1x1 short-cut and conditioning projections are extra columns
 * of the same GEMM (x W^T with W = [conv | nin]). With fixed products a
 * stride-1 conv's taps are not copied: in this layout tap (a, b) of
 * positions j0.. for all images is one run of rows ch floats apart, which
 * gemm_rows_runs reads in place (taps_product).
 *
 * Fixed products (the codec, and sampling where the CPU has AVX-512F): every
 * GEMM runs on lib/core/gemm_rows.c over weights packed once, each element
 * one chain of multiply-adds in k order whatever the number of rows
 * multiplied at once. Then a position's activations have the same bits
 * whether it is computed alone or with its whole row, and an encoder, which
 * knows every pixel, can run each ul row as one GEMM per layer
 * (cached_sampler_run_known) while the decoder steps pixel by pixel, and both
 * get the same numbers.
 *
 * Threads: the images are split into lanes, one per context thread, each with
 * its own caches (and a one-thread context for its GEMMs, which are too small
 * to split); the weights are shared. sample_pixels_cached runs each lane
 * through the whole image in one parallel region (sample_lanes);
 * cached_sampler_step runs the lanes in parallel for one pixel.
 *
 * Untouched positions hold NaN from the start of each batch, so a read of
 * anything not yet computed would show up in the parameters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../loss/loss.h"
#include "sample_cached.h"
#include "../core/gemm_avx512.h"
#include "../core/gemm_rows.h"
#include "../core/simd.h"

#define LEVELS TOPO_LEVELS
/* Up to this many rows a layer runs as dot products rather than sgemm (on
 * fashion, batch 1: 65 images/s against 13; batch 16 runs its 16-row ul GEMMs
 * faster through sgemm than as dot products). */
#define SMALL_ROWS 8
#define STACK (LEVELS * (MODEL_MAX_R + 1))

/* ---- pieces --------------------------------------------------------------------- */

/* One activation at one level: rows x w positions of a lane's n images x ch channels. */
typedef struct act {
    float *d;        /* [rows][w][n][ch]: row i lives in slot i % rows */
    int h, w, ch;    /* logical height and width at its level, channels */
    int rows;        /* 2 (a ring of the two newest rows) or h (whole) */
} act;

/* A weight-normalised linear map, ready for y = x W^T + b. */
typedef struct lin {
    float *w;        /* (cout, k): conv taps first, tap-major ((a*KW + b)*in + c), then 1x1 */
    float *b;        /* (cout): the sum of the fused layers' biases */
    int cout, k;
    float *packed;   /* w for gemm_rows (fixed products), else NULL */
} lin;

/* Where the taps of a (transposed) convolution read: lib/nn's own geometry. */
typedef layer_geometry geo;

/* A gated residual block: c1 = conv1(ce(x)) [+ nin_a(ce(a))];
 * c2 = conv2(ce(c1)) [+ nin_h(g)]; out = x + c2[:F] * sigmoid(c2[F:]). */
typedef struct gated {
    lin c1, c2;      /* conv1 with nin_a, conv2 with nin_h, fused */
    geo g;
    int shortcut;    /* channels of a (0, F or 2F) */
} gated;

/* What a gated block keeps: concat_elu of its input and of conv1's output (2F). */
typedef struct gated_cache {
    act ce_x, ce_c1;
} gated_cache;

/* The caches of images [n0, n0 + n), worked on by one thread. */
typedef struct lane {
    int n0, n;
    agave_context *gemm_ctx;  /* the sampler's context, or a one-thread one of the lane's own */
    float *mem;               /* every act's data, one block */
    size_t mem_floats;
    act x;                    /* [x~, 1], whole */
    act g[LEVELS];            /* elu(g_l), whole (conditional only) */
    act su[STACK], sul[STACK];                        /* the up pass's stack */
    act du_out[LEVELS][MODEL_MAX_R + 1], dul_out[LEVELS][MODEL_MAX_R + 1];
    act upu[2], upul[2];      /* deconv outputs at levels 0 and 1 */
    gated_cache cu[LEVELS][MODEL_MAX_R], cul[LEVELS][MODEL_MAX_R];          /* up pass */
    gated_cache cdu[LEVELS][MODEL_MAX_R + 1], cdul[LEVELS][MODEL_MAX_R + 1];  /* down pass */
    float *cols;              /* (positions * n, k) for the largest k */
    float *shortcut;          /* (positions * n, 4F): a gated block's concat_elu(a) */
    float *zeros;             /* the largest k of zeros: taps on padding, read in place */
    float *tmp;               /* (positions * n, 2F) */
    float *row_params;        /* (W, n, P): a row's parameters (cached_sampler_run_known) */
} lane;

struct cached_sampler {
    agave_model *m;
    agave_context *ctx;
    int n, C, H, W, F, R, P, cond;
    int fixed;                /* fixed products (cached_sampler_fix_products) */
    /* the first layers on [x~, 1] and the output head */
    lin u_init, ul_a, ul_b, out;
    geo u_init_g, ul_a_g, ul_b_g;
    /* down_*[l]: level l -> l+1 (stride-2 conv); up_*[l]: level l+1 -> l (deconv) */
    lin down_u[2], down_ul[2], up_u[2], up_ul[2];
    geo down_u_g, down_ul_g, up_u_g, up_ul_g;
    gated gu[LEVELS][MODEL_MAX_R], gul[LEVELS][MODEL_MAX_R];          /* up pass */
    gated du[LEVELS][MODEL_MAX_R + 1], dul[LEVELS][MODEL_MAX_R + 1];  /* down pass */
    size_t cols_cap;          /* the largest k */
    lane *lanes;
    int n_lanes;              /* lanes of the current batch */
    int n_cap, lanes_cap;     /* the largest batch (as created) and its lanes */
    float *params;            /* (n_cap, P) */
    const uint8_t *img;
    int next;                 /* raster index of the next pixel to step, -1 before begin */
};

/* ---- activations ------------------------------------------------------------------ */
/* Position (i, j) of the lane's image 0; image k follows at + k * ch. */
static inline float *act_at(const lane *l, const act *a, int i, int j)
{
    return a->d + ((size_t)(i % a->rows) * a->w + j) * l->n * a->ch;
}

/* Gives a its shape and its place at *used floats into base (NULL: counting). */
static void place(const lane *l, act *a, int h, int w, int ch, int whole, float *base,
                  size_t *used)
{
    a->h = h, a->w = w, a->ch = ch, a->rows = whole ? h : 2;
    a->d = base ? base + *used : NULL;
    size_t floats = (size_t)a->rows * w * l->n * ch;
    *used += (floats + 15) / 16 * 16;   /* each act on its own 64-byte line */
}

static inline int down_blocks(const cached_sampler *s, int lv)
{
    return topo_down_blocks(&s->m->cfg, lv);
}

/* The up pass pushes R + 1 activations per level: the level's first one (the
 * first layers, or the stride-2 conv), then one per block. */
static inline int stack_index(const cached_sampler *s, int lv, int t) { return lv * (s->R + 1) + t; }

/* Lays out every activation of lane l in base (NULL: only counts); returns
 * the floats needed. */
static size_t lane_place(const cached_sampler *s, lane *l, float *base)
{
    const int F = s->F;
    size_t used = 0;
    place(l, &l->x, s->H, s->W, s->C + 1, 1, base, &used);
    for (int lv = 0; lv < LEVELS; lv++) {
        int h = s->H >> lv, w = s->W >> lv;
        if (s->cond)
            place(l, &l->g[lv], h, w, F, 1, base, &used);
        for (int t = 0; t <= s->R; t++) {
            place(l, &l->su[stack_index(s, lv, t)], h, w, F, 0, base, &used);
            place(l, &l->sul[stack_index(s, lv, t)], h, w, F, 0, base, &used);
        }
        for (int r = 0; r < s->R; r++) {
            gated_cache *c[2] = {&l->cu[lv][r], &l->cul[lv][r]};
            for (int k = 0; k < 2; k++) {
                place(l, &c[k]->ce_x, h, w, 2 * F, 0, base, &used);
                place(l, &c[k]->ce_c1, h, w, 2 * F, 0, base, &used);
            }
        }
        for (int r = 0; r < down_blocks(s, lv); r++) {
            gated_cache *c[2] = {&l->cdu[lv][r], &l->cdul[lv][r]};
            for (int k = 0; k < 2; k++) {
                place(l, &c[k]->ce_x, h, w, 2 * F, 0, base, &used);
                place(l, &c[k]->ce_c1, h, w, 2 * F, 0, base, &used);
            }
            place(l, &l->du_out[lv][r], h, w, F, 0, base, &used);
            place(l, &l->dul_out[lv][r], h, w, F, 0, base, &used);
        }
        if (lv < 2) {
            place(l, &l->upu[lv], h, w, F, 0, base, &used);
            place(l, &l->upul[lv], h, w, F, 0, base, &used);
        }
    }
    return used;
}

/* ---- element-wise ---------------------------------------------------------------- */
/* The formulas of lib/ops/activation.c with its exp (lib/core/simd.h), over
 * short runs (a position's channels) in loops the compiler vectorises (libm's
 * expf would not be). Compiled for AVX-512, AVX2 and baseline x86-64, picked
 * at load time like the library's element-wise kernels. */

/* pos[c] = elu(src[c]), neg[c] = elu(-src[c]): concat_elu's two halves. */
SIMD_CLONES static void concat_elu_halves(const float *restrict src, int ch, float *restrict pos,
                                          float *restrict neg)
{
#pragma omp simd
    for (int c = 0; c < ch; c++) {
        float v = src[c], em1 = exp_nonpos(-fabsf(v)) - 1.0f;
        pos[c] = v > 0.0f ? v : em1;
        neg[c] = v < 0.0f ? -v : em1;
    }
}

/* dst[0..2ch) = (elu(src), elu(-src)) for one position of one image. */
static void concat_elu1(const float *src, int ch, float *dst)
{
    concat_elu_halves(src, ch, dst, dst + ch);
}

/* dst = elu(src) over count values. */
SIMD_CLONES static void elu_run(const float *restrict src, size_t count, float *restrict dst)
{
#pragma omp simd
    for (size_t i = 0; i < count; i++) {
        float v = src[i], em1 = exp_nonpos(v < 0.0f ? v : 0.0f) - 1.0f;
        dst[i] = v > 0.0f ? v : em1;
    }
}

/* out = x + value * sigmoid(gate) over ch channels: the end of a gated block. */
SIMD_CLONES static void gate_run(const float *restrict x, const float *restrict value,
                                 const float *restrict gate, int ch, float *restrict out)
{
#pragma omp simd
    for (int c = 0; c < ch; c++)
        out[c] = x[c] + value[c] * sigmoid_nonlibm(gate[c]);
}

/* ---- gathering the GEMM's rows --------------------------------------------------- */
/* The input position that tap (a, b) of output (I, j) reads; 0 where it reads
 * padding (or, for a deconv, where no input lands on that tap). */
static int tap_source(const geo *g, const act *in, int I, int j, int a, int b, int *ii, int *jj)
{
    int r, c;
    if (g->deconv) {
        /* out[I, j] = F[I + top, j + left], F[i*st + a, j*st + b] += x[i, j] w[a, b] */
        int fr = I + g->top - a, fc = j + g->left - b;
        if (fr < 0 || fc < 0 || fr % g->stride || fc % g->stride)
            return 0;
        r = fr / g->stride, c = fc / g->stride;
    } else {
        r = I * g->stride - g->top + a, c = j * g->stride - g->left + b;
    }
    if (r < 0 || r >= in->h || c < 0 || c >= in->w)
        return 0;
    *ii = r, *jj = c;
    return 1;
}

/* cols[((j - j0) * n + k) * ld + tap * ch + c] = in at tap (a, b) of output
 * (I, j), image k, channel c (0 on padding). */
static void gather_taps(const lane *l, float *cols, int ld, const act *in, const geo *g, int I,
                        int j0, int j1)
{
    size_t bytes = (size_t)in->ch * sizeof(float);
    for (int j = j0; j < j1; j++) {
        float *row = cols + (size_t)(j - j0) * l->n * ld;
        for (int a = 0; a < g->kh; a++)
            for (int b = 0; b < g->kw; b++) {
                float *dst = row + (size_t)(a * g->kw + b) * in->ch;
                int ii, jj;
                if (!tap_source(g, in, I, j, a, b, &ii, &jj)) {
                    for (int k = 0; k < l->n; k++)
                        memset(dst + (size_t)k * ld, 0, bytes);
                    continue;
                }
                const float *src = act_at(l, in, ii, jj);
                for (int k = 0; k < l->n; k++)
                    memcpy(dst + (size_t)k * ld, src + (size_t)k * in->ch, bytes);
            }
    }
}

/* sc[row] = concat_elu(concat(a0, a1)) at (I, j), row = (j - j0) * n + image:
 * the short-cut input of a gated block (a1 NULL: just a0). The halves of
 * ce(cat(u, ul)) are (elu(u), elu(ul)) and (elu(-u), elu(-ul)). Returns the
 * row's width. */
static int shortcut_rows(const lane *l, float *sc, const act *a0, const act *a1, int I, int j0,
                         int j1)
{
    size_t rows = (size_t)(j1 - j0) * l->n;
    int c0 = a0->ch, c1 = a1 ? a1->ch : 0, width = 2 * (c0 + c1);
    const float *p0 = act_at(l, a0, I, j0), *p1 = a1 ? act_at(l, a1, I, j0) : NULL;
    for (size_t r = 0; r < rows; r++) {
        float *pos = sc + r * width, *neg = pos + c0 + c1;
        concat_elu_halves(p0 + r * c0, c0, pos, neg);
        if (a1)
            concat_elu_halves(p1 + r * c1, c1, pos + c0, neg + c0);
    }
    return width;
}

/* out[r][o] = b[o] + cols[r] . w[o] for the 4 rows at cols: each weight row
 * is read once for 4 dot products. */
SIMD_CLONES static void dot_rows4(const float *restrict cols, int k, const float *restrict w,
                                  const float *restrict b, int cout, float *restrict out)
{
    const float *c0 = cols, *c1 = cols + k, *c2 = cols + 2 * k, *c3 = cols + 3 * k;
    for (int o = 0; o < cout; o++) {
        const float *wo = w + (size_t)o * k;
        float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
        for (int i = 0; i < k; i++) {
            a0 += c0[i] * wo[i];
            a1 += c1[i] * wo[i];
            a2 += c2[i] * wo[i];
            a3 += c3[i] * wo[i];
        }
        out[o] = a0 + b[o];
        out[cout + o] = a1 + b[o];
        out[2 * cout + o] = a2 + b[o];
        out[3 * cout + o] = a3 + b[o];
    }
}

/* The same for one row. */
SIMD_CLONES static void dot_row(const float *restrict c0, int k, const float *restrict w,
                                const float *restrict b, int cout, float *restrict out)
{
    for (int o = 0; o < cout; o++) {
        const float *wo = w + (size_t)o * k;
        float a0 = 0;
#pragma omp simd reduction(+ : a0)
        for (int i = 0; i < k; i++)
            a0 += c0[i] * wo[i];
        out[o] = a0 + b[o];
    }
}

/* out (rows, cout) += b. */
static void add_bias(const lin *w, size_t rows, float *out)
{
    for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < w->cout; o++)
            out[r * w->cout + o] += w->b[o];
}

static void count_flops(lane *l, const lin *w, size_t rows)
{
    l->gemm_ctx->gemm_flops += 2ull * rows * (uint64_t)w->cout * (uint64_t)w->k;
}

/* out (rows, cout) = the lane's cols (rows, k) W^T + b. A few rows (a ul
 * position of a small batch) as dot products: sgemm would pack all of W for
 * them, which cost more than the products. */
static void linear(lane *l, const lin *w, size_t rows, float *out)
{
    if (w->packed) {   /* fixed products: the same bits for any rows */
        gemm_rows((int)rows, w->cout, w->k, l->cols, (size_t)w->k, w->packed, w->b, out,
                  (size_t)w->cout);
        count_flops(l, w, rows);
        return;
    }
    if (rows <= SMALL_ROWS) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4)
            dot_rows4(l->cols + r * w->k, w->k, w->w, w->b, w->cout, out + r * w->cout);
        for (; r < rows; r++)
            dot_row(l->cols + r * w->k, w->k, w->w, w->b, w->cout, out + r * w->cout);
        return;
    }
    gemm(l->gemm_ctx, 0, 1, (int)rows, w->cout, w->k, 1.0f, l->cols, w->k, w->w, w->k, 0.0f, out,
         w->cout);
    add_bias(w, rows, out);
}

/* ---- a convolution's product, its taps read in place where they can be ---------------- */
/* Runs of a product read in place: a conv's taps (the model's largest kernel
 * is 2x3; larger ones are gathered), then at most a short-cut and the
 * conditioning. */
#define MAX_TAPS 6
#define MAX_EXTRA 2

/* The extra runs from row `by` on. */
static void shift_runs(const gemm_run *extra, int n_extra, size_t by, gemm_run *out)
{
    for (int q = 0; q < n_extra; q++)
        out[q] = (gemm_run){extra[q].base + by * extra[q].stride, extra[q].stride, extra[q].len};
}

/* cols[r * ld + off ..] = the runs' columns, row by row. */
static void copy_runs(float *cols, int ld, int off, const gemm_run *runs, int n_runs, size_t rows)
{
    for (int q = 0; q < n_runs; off += runs[q].len, q++)
        for (size_t r = 0; r < rows; r++)
            memcpy(cols + r * ld + off, runs[q].base + r * runs[q].stride,
                   (size_t)runs[q].len * sizeof(float));
}

/* The output positions [*lo, *hi) of a row whose taps all lie inside in's
 * width, where every tap can be read in place: a stride-1 convolution, whose
 * tap (a, b) of rows (j, image k) sits at in(I - top + a, j - left + b) + k ch,
 * ch floats further for each next row (layout (row, column, image, channel)). */
static int in_place_span(const geo *g, const act *in, int *lo, int *hi)
{
    if (g->deconv || g->stride != 1 || g->kh * g->kw > MAX_TAPS)
        return 0;
    *lo = g->left, *hi = in->w - g->kw + 1 + g->left;
    return *hi > *lo;
}

/* One run per tap of positions (I, j0..) of a stride-1 convolution: in place,
 * or zeros for a tap row above or below in. */
static int tap_runs(const lane *l, const geo *g, const act *in, int I, int j0, gemm_run *runs)
{
    int n = 0;
    for (int a = 0; a < g->kh; a++) {
        int ii = I - g->top + a, inside = ii >= 0 && ii < in->h;
        for (int b = 0; b < g->kw; b++)
            runs[n++] = inside ? (gemm_run){act_at(l, in, ii, j0 - g->left + b), (size_t)in->ch,
                                            in->ch}
                               : (gemm_run){l->zeros, 0, in->ch};
    }
    return n;
}

/* Positions (I, js..je) of a product over (I, j0..j1): taps in place, or
 * gathered into cols with the extra runs after them. */
static void taps_piece(lane *l, const lin *w, const geo *g, const act *in, int I, int j0, int js,
                       int je, const gemm_run *extra, int n_extra, int in_place, float *out)
{
    if (js >= je)
        return;
    const size_t first = (size_t)(js - j0) * l->n, rows = (size_t)(je - js) * l->n;
    gemm_run runs[MAX_TAPS + MAX_EXTRA];
    float *o = out + first * w->cout;
    if (in_place) {
        int n = tap_runs(l, g, in, I, js, runs);
        shift_runs(extra, n_extra, first, runs + n);
        gemm_rows_runs((int)rows, w->cout, runs, n + n_extra, w->packed, w->b, o,
                       (size_t)w->cout);
        count_flops(l, w, rows);
        return;
    }
    gather_taps(l, l->cols, w->k, in, g, I, js, je);
    shift_runs(extra, n_extra, first, runs);
    copy_runs(l->cols, w->k, g->kh * g->kw * in->ch, runs, n_extra, rows);
    linear(l, w, rows, o);
}

/* out at (I, j0..j1) = w over [the taps of (transposed) convolution g on in
 * | the extra runs' columns] at each position. With fixed products the taps
 * of a stride-1 convolution are read where they are (gemm_rows_runs: the
 * same bits as gathered); the edges of the row, whose taps fall on padding,
 * other convolutions and other products gather them into cols. */
static void taps_product(lane *l, const lin *w, const geo *g, const act *in, int I, int j0,
                         int j1, const gemm_run *extra, int n_extra, float *out)
{
    int lo, hi;
    if (!w->packed || !in_place_span(g, in, &lo, &hi)) {
        taps_piece(l, w, g, in, I, j0, j0, j1, extra, n_extra, 0, out);
        return;
    }
    lo = lo < j0 ? j0 : lo > j1 ? j1 : lo;
    hi = hi < lo ? lo : hi > j1 ? j1 : hi;
    taps_piece(l, w, g, in, I, j0, j0, lo, extra, n_extra, 0, out);
    taps_piece(l, w, g, in, I, j0, lo, hi, extra, n_extra, 1, out);
    taps_piece(l, w, g, in, I, j0, hi, j1, extra, n_extra, 0, out);
}

/* out at (I, j0..j1) = the (transposed) convolution w of in. */
static void conv_rows(lane *l, const lin *w, const geo *g, const act *in, int I, int j0, int j1,
                      float *out)
{
    taps_product(l, w, g, in, I, j0, j1, NULL, 0, out);
}

/* ---- the gated block ---------------------------------------------------------------- */
/* out at (I, j0..j1) from x, the short-cut (a0, a1) (or none) and the
 * conditioning h (or NULL), all at the same level. */
static void gated_rows(lane *l, const gated *b, gated_cache *c, const act *x, const act *a0,
                       const act *a1, const act *h, int I, int j0, int j1, act *out)
{
    const int F = x->ch;
    const size_t rows = (size_t)(j1 - j0) * l->n;
    const float *xv = act_at(l, x, I, j0);
    float *ce_x = act_at(l, &c->ce_x, I, j0), *ce_c1 = act_at(l, &c->ce_c1, I, j0);
    for (size_t r = 0; r < rows; r++)
        concat_elu1(xv + r * F, F, ce_x + r * 2 * F);
    /* c1 = conv1(ce(x)) + nin_a(ce(a)): one GEMM over [taps | short-cut] */
    gemm_run extra[1] = {{NULL, 0, 0}};
    int n_extra = 0;
    if (b->shortcut) {
        int width = shortcut_rows(l, l->shortcut, a0, a1, I, j0, j1);
        extra[n_extra++] = (gemm_run){l->shortcut, (size_t)width, width};
    }
    taps_product(l, &b->c1, &b->g, &c->ce_x, I, j0, j1, extra, n_extra, l->tmp);
    for (size_t r = 0; r < rows; r++)
        concat_elu1(l->tmp + r * F, F, ce_c1 + r * 2 * F);
    /* c2 = conv2(ce(c1)) + nin_h(h): the conditioning read where it is */
    n_extra = 0;
    if (h)
        extra[n_extra++] = (gemm_run){act_at(l, h, I, j0), (size_t)h->ch, h->ch};
    taps_product(l, &b->c2, &b->g, &c->ce_c1, I, j0, j1, extra, n_extra, l->tmp);
    float *o = act_at(l, out, I, j0);
    for (size_t r = 0; r < rows; r++)
        gate_run(xv + r * F, l->tmp + r * 2 * F, l->tmp + r * 2 * F + F, F, o + r * F);
}

/* ---- the network, a level at a time ---------------------------------------------------- */
/* Which up-pass entry down block r of level lv reads as its short-cut: the
 * down pass pops the stack, top first (the top itself starts level 2). */
static inline int popped(const cached_sampler *s, int lv, int r)
{
    return stack_index(s, lv, s->R - r - (lv == 2 ? 1 : 0));
}

static const act *cond_at(const cached_sampler *s, const lane *l, int lv)
{
    return s->cond ? &l->g[lv] : NULL;
}

/* u row i at level 0: down_shift(conv_2x3(xp)), i.e. the conv's row i - 1. */
static void first_u(const cached_sampler *s, lane *l, int i)
{
    float *o = act_at(l, &l->su[0], i, 0);
    if (i == 0)
        memset(o, 0, (size_t)s->W * l->n * s->F * sizeof(float));
    else
        conv_rows(l, &s->u_init, &s->u_init_g, &l->x, i - 1, 0, s->W, o);
}

/* ul at (i, j0..j1), level 0: down_shift(conv_1x3(xp)) + right_shift(conv_2x1(xp));
 * position j takes the 2x1 conv's output at j - 1 (nothing at j = 0). */
static void first_ul(const cached_sampler *s, lane *l, int i, int j0, int j1)
{
    const size_t per = (size_t)l->n * s->F;
    float *o = act_at(l, &l->sul[0], i, j0);
    memset(o, 0, (size_t)(j1 - j0) * per * sizeof(float));
    if (i > 0) {
        conv_rows(l, &s->ul_a, &s->ul_a_g, &l->x, i - 1, j0, j1, l->tmp);
        for (size_t k = 0; k < (size_t)(j1 - j0) * per; k++)
            o[k] += l->tmp[k];
    }
    int b0 = j0 > 0 ? j0 : 1;
    if (b0 < j1) {
        conv_rows(l, &s->ul_b, &s->ul_b_g, &l->x, i, b0 - 1, j1 - 1, l->tmp);
        float *ob = act_at(l, &l->sul[0], i, b0);
        for (size_t k = 0; k < (size_t)(j1 - b0) * per; k++)
            ob[k] += l->tmp[k];
    }
}

/* Up pass of the u stream at level lv, positions (I, j0..j1). */
static void up_u(const cached_sampler *s, lane *l, int lv, int I, int j0, int j1)
{
    act *first = &l->su[stack_index(s, lv, 0)];
    if (lv == 0)
        first_u(s, l, I);
    else
        conv_rows(l, &s->down_u[lv - 1], &s->down_u_g, &l->su[stack_index(s, lv - 1, s->R)], I,
                  j0, j1, act_at(l, first, I, j0));
    for (int r = 0; r < s->R; r++)
        gated_rows(l, &s->gu[lv][r], &l->cu[lv][r], &l->su[stack_index(s, lv, r)], NULL, NULL,
                   cond_at(s, l, lv), I, j0, j1, &l->su[stack_index(s, lv, r + 1)]);
}

/* Up pass of the ul stream at level lv, positions (I, j0..j1): short-cut u. */
static void up_ul(const cached_sampler *s, lane *l, int lv, int I, int j0, int j1)
{
    act *first = &l->sul[stack_index(s, lv, 0)];
    if (lv == 0)
        first_ul(s, l, I, j0, j1);
    else
        conv_rows(l, &s->down_ul[lv - 1], &s->down_ul_g, &l->sul[stack_index(s, lv - 1, s->R)], I,
                  j0, j1, act_at(l, first, I, j0));
    for (int r = 0; r < s->R; r++)
        gated_rows(l, &s->gul[lv][r], &l->cul[lv][r], &l->sul[stack_index(s, lv, r)],
                   &l->su[stack_index(s, lv, r + 1)], NULL, cond_at(s, l, lv), I, j0, j1,
                   &l->sul[stack_index(s, lv, r + 1)]);
}

/* The down pass's output at level lv (1 or 2): its last block's, or, at level
 * 2 with R = 0 (no blocks there), the top of the up stack it starts from. */
static const act *down_last(const cached_sampler *s, act out[][MODEL_MAX_R + 1],
                            const act *stack, int lv)
{
    int blocks = down_blocks(s, lv);
    return blocks ? &out[lv][blocks - 1] : &stack[stack_index(s, 2, s->R)];
}

/* Down pass of the u stream at level lv: from the top of the stack (level 2)
 * or the deconv of level lv + 1's last block. */
static void down_u(const cached_sampler *s, lane *l, int lv, int I, int j0, int j1)
{
    const act *x = &l->su[stack_index(s, 2, s->R)];
    if (lv < 2) {
        conv_rows(l, &s->up_u[lv], &s->up_u_g, down_last(s, l->du_out, l->su, lv + 1), I, j0, j1,
                  act_at(l, &l->upu[lv], I, j0));
        x = &l->upu[lv];
    }
    for (int r = 0; r < down_blocks(s, lv); r++) {
        gated_rows(l, &s->du[lv][r], &l->cdu[lv][r], x, &l->su[popped(s, lv, r)], NULL,
                   cond_at(s, l, lv), I, j0, j1, &l->du_out[lv][r]);
        x = &l->du_out[lv][r];
    }
}

/* Down pass of the ul stream: short-cut concat(u of this block, popped ul). */
static void down_ul(const cached_sampler *s, lane *l, int lv, int I, int j0, int j1)
{
    const act *x = &l->sul[stack_index(s, 2, s->R)];
    if (lv < 2) {
        conv_rows(l, &s->up_ul[lv], &s->up_ul_g, down_last(s, l->dul_out, l->sul, lv + 1), I, j0,
                  j1, act_at(l, &l->upul[lv], I, j0));
        x = &l->upul[lv];
    }
    for (int r = 0; r < down_blocks(s, lv); r++) {
        gated_rows(l, &s->dul[lv][r], &l->cdul[lv][r], x, &l->du_out[lv][r],
                   &l->sul[popped(s, lv, r)], cond_at(s, l, lv), I, j0, j1,
                   &l->dul_out[lv][r]);
        x = &l->dul_out[lv][r];
    }
}

/* The coarsest level whose grid has a point at image position p (0..2). */
static int top_level(int p) { return p % 4 == 0 ? 2 : p % 2 == 0 ? 1 : 0; }

/* Image row i begins: the u rows of every level that starts a row here. */
static void u_rows(const cached_sampler *s, lane *l, int i)
{
    int top = top_level(i);
    for (int lv = 0; lv <= top; lv++)
        up_u(s, l, lv, i >> lv, 0, s->W >> lv);
    for (int lv = top; lv >= 0; lv--)
        down_u(s, l, lv, i >> lv, 0, s->W >> lv);
}

/* Pixel (i, j) is next: the ul positions of every level that has one here. */
static void ul_positions(const cached_sampler *s, lane *l, int i, int j)
{
    int top = top_level(i) < top_level(j) ? top_level(i) : top_level(j);
    for (int lv = 0; lv <= top; lv++)
        up_ul(s, l, lv, i >> lv, j >> lv, (j >> lv) + 1);
    for (int lv = top; lv >= 0; lv--)
        down_ul(s, l, lv, i >> lv, j >> lv, (j >> lv) + 1);
}

/* Every ul position of image row i at once, a layer at a time over the row
 * (the encoder, which knows the whole row): the positions ul_positions
 * computes at the pixels of row i, from the same inputs. */
static void ul_row(const cached_sampler *s, lane *l, int i)
{
    int top = top_level(i);
    for (int lv = 0; lv <= top; lv++)
        up_ul(s, l, lv, i >> lv, 0, s->W >> lv);
    for (int lv = top; lv >= 0; lv--)
        down_ul(s, l, lv, i >> lv, 0, s->W >> lv);
}

/* The lane's rows of params (n, P) = nin(elu(ul)) at (i, j). */
static void output_head(const cached_sampler *s, lane *l, int i, int j, float *params)
{
    elu_run(act_at(l, &l->dul_out[0][s->R], i, j), (size_t)l->n * s->F, l->cols);
    linear(l, &s->out, (size_t)l->n, params + (size_t)l->n0 * s->P);
}

/* The lane's row of params (W, n, P) = nin(elu(ul)) at (i, 0..W): the same
 * element-wise calls and products as output_head at each position. */
static void output_head_row(const cached_sampler *s, lane *l, int i, float *params)
{
    const size_t per = (size_t)l->n * s->F;
    for (int j = 0; j < s->W; j++)
        elu_run(act_at(l, &l->dul_out[0][s->R], i, j), per, l->cols + (size_t)j * per);
    linear(l, &s->out, (size_t)s->W * l->n, params);
}

/* x~ and the channel of ones of pixel p (raster index) of the lane's images. */
static void take_pixel(const cached_sampler *s, lane *l, int p)
{
    const size_t plane = (size_t)s->H * s->W;
    float *dst = act_at(l, &l->x, p / s->W, p % s->W);
    for (int k = 0; k < l->n; k++) {
        const uint8_t *px = s->img + (size_t)(l->n0 + k) * s->C * plane + p;
        for (int c = 0; c < s->C; c++)
            dst[k * (s->C + 1) + c] = (float)px[c * plane] / 127.5f - 1.0f;
        dst[k * (s->C + 1) + s->C] = 1.0f;
    }
}

/* One step of one lane: pixel p - 1 comes in, (r, c)'s parameters go out. */
static void lane_step(const cached_sampler *s, lane *l, int r, int c, float *params)
{
    int p = r * s->W + c;
    if (p > 0)
        take_pixel(s, l, p - 1);
    if (c == 0)
        u_rows(s, l, r);
    ul_positions(s, l, r, c);
    output_head(s, l, r, c, params);
}

/* The lanes' own contexts counted their GEMMs: into the sampler's context. */
static void collect_flops(cached_sampler *s)
{
    for (int t = 0; t < s->n_lanes; t++) {
        agave_context *own = s->lanes[t].gemm_ctx;
        if (own == s->ctx)
            continue;
        s->ctx->gemm_flops += own->gemm_flops;
        own->gemm_flops = 0;
    }
}

agave_status cached_sampler_step(cached_sampler *s, int r, int c, const float **params)
{
    if (!s || !params)
        return AGAVE_ERR_NULL;
    if (s->next < 0 || r < 0 || r >= s->H || c < 0 || c >= s->W || r * s->W + c != s->next)
        return ctx_error(s->ctx, AGAVE_ERR_STATE,
                         "cached sampler: pixel (%d, %d) out of turn (next is raster index %d)",
                         r, c, s->next);
    if (s->n_lanes == 1) {
        lane_step(s, &s->lanes[0], r, c, s->params);
        collect_flops(s);
    } else {
        /* lanes touch only their own caches, context and rows of params */
#pragma omp parallel for num_threads(s->n_lanes) schedule(static, 1)
        for (int t = 0; t < s->n_lanes; t++)
            lane_step(s, &s->lanes[t], r, c, s->params);
        collect_flops(s);
    }
    s->next = s->next + 1 < s->H * s->W ? s->next + 1 : -1;
    *params = s->params;
    return AGAVE_OK;
}

/* ---- every pixel with a caller's hook -------------------------------------------------- */
int cached_sampler_lanes(const cached_sampler *s) { return s->n_lanes; }

void cached_sampler_lane_images(const cached_sampler *s, int t, int *first, int *count)
{
    *first = s->lanes[t].n0;
    *count = s->lanes[t].n;
}

/* Lane t through every pixel, the hook after each; stops at the hook's first error. */
static agave_status lane_run(const cached_sampler *s, lane *l, int t, cached_pixel_hook hook,
                             void *user)
{
    for (int p = 0; p < s->H * s->W; p++) {
        lane_step(s, l, p / s->W, p % s->W, s->params);
        agave_status st = hook(user, t, l->n0, l->n, p, s->params + (size_t)l->n0 * s->P);
        if (st != AGAVE_OK)
            return st;
    }
    return AGAVE_OK;
}

/* Lane t through every image row: the row's pixels come in, then its u rows,
 * its ul positions and its parameters at once; the hook after each pixel. */
static agave_status lane_run_known(const cached_sampler *s, lane *l, int t, cached_pixel_hook hook,
                                   void *user)
{
    const size_t per_pixel = (size_t)l->n * s->P;
    int taken = 0;   /* pixels [0, taken) are in the lane's x */
    for (int i = 0; i < s->H; i++) {
        /* what the steps of row i have taken by its last pixel */
        for (; taken < i * s->W + s->W - 1; taken++)
            take_pixel(s, l, taken);
        u_rows(s, l, i);
        ul_row(s, l, i);
        output_head_row(s, l, i, l->row_params);
        for (int j = 0; j < s->W; j++) {
            agave_status st = hook(user, t, l->n0, l->n, i * s->W + j,
                                   l->row_params + (size_t)j * per_pixel);
            if (st != AGAVE_OK)
                return st;
        }
    }
    return AGAVE_OK;
}

/* Every lane through its images, in parallel: pixel by pixel, or a row at a
 * time (known); the first failing lane's status. */
static agave_status run_lanes(cached_sampler *s, int known, cached_pixel_hook hook, void *user)
{
    agave_status st = AGAVE_OK;
    if (s->n_lanes == 1) {
        st = known ? lane_run_known(s, &s->lanes[0], 0, hook, user)
                   : lane_run(s, &s->lanes[0], 0, hook, user);
        collect_flops(s);
        s->next = -1;
        return st;
    }
    agave_status *lane_st = malloc((size_t)s->n_lanes * sizeof *lane_st);
    if (!lane_st)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory");
    /* one parallel region for the whole image, as sample_lanes */
#pragma omp parallel for num_threads(s->n_lanes) schedule(static, 1)
    for (int t = 0; t < s->n_lanes; t++)
        lane_st[t] = known ? lane_run_known(s, &s->lanes[t], t, hook, user)
                           : lane_run(s, &s->lanes[t], t, hook, user);
    collect_flops(s);
    for (int t = 0; t < s->n_lanes && st == AGAVE_OK; t++)
        st = lane_st[t];
    free(lane_st);
    s->next = -1;
    return st;
}

agave_status cached_sampler_run(cached_sampler *s, cached_pixel_hook hook, void *user)
{
    if (!s || !hook)
        return AGAVE_ERR_NULL;
    if (s->next != 0)
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "cached sampler: run needs a fresh begin");
    return run_lanes(s, 0, hook, user);
}

agave_status cached_sampler_run_known(cached_sampler *s, cached_pixel_hook hook, void *user)
{
    if (!s || !hook)
        return AGAVE_ERR_NULL;
    if (s->next != 0)
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "cached sampler: run needs a fresh begin");
    if (!s->fixed)
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "cached sampler: a whole row at once gives "
                         "the pixel-by-pixel numbers only with fixed products");
    return run_lanes(s, 1, hook, user);
}

/* ---- weights ------------------------------------------------------------------------- */
static agave_status lin_init(cached_sampler *s, lin *l, int cout, int k)
{
    l->cout = cout, l->k = k;
    l->w = calloc((size_t)cout * k, sizeof(float));
    l->b = calloc((size_t)cout, sizeof(float));
    if (!l->w || !l->b)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory (weights)");
    if ((size_t)k > s->cols_cap)
        s->cols_cap = (size_t)k;
    return AGAVE_OK;
}

/* Writes layer's weights, as lib/nn packs them, into columns off.. of l and
 * adds its bias. */
static agave_status lin_put(cached_sampler *s, lin *l, agave_layer *layer, int off)
{
    layer_geometry g;
    TRY(layer_geometry_of(layer, &g));
    if (g.out != l->cout || off + g.kh * g.kw * g.in > l->k)
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "cached sampler: layer shape %dx%dx%dx%d "
                         "does not fit its place", g.out, g.in, g.kh, g.kw);
    const float *bias;
    TRY(layer_pack_weights(layer, l->w + off, (size_t)l->k, &bias));
    for (int q = 0; q < l->cout; q++)
        l->b[q] += bias[q];
    return AGAVE_OK;
}

/* Columns a layer takes in a fused GEMM: taps * in (0 for no layer). */
static int lin_columns(const agave_layer *layer)
{
    layer_geometry g;
    return layer && layer_geometry_of(layer, &g) == AGAVE_OK ? g.kh * g.kw * g.in : 0;
}

static agave_status lin_of(cached_sampler *s, lin *l, agave_layer *layer)
{
    layer_geometry g;
    TRY(layer_geometry_of(layer, &g));
    TRY(lin_init(s, l, g.out, g.kh * g.kw * g.in));
    return lin_put(s, l, layer, 0);
}

static void lin_free(lin *l) { free(l->w), free(l->b), free(l->packed); }

/* The layer's geometry (lib/nn). The rings hold two rows: every kernel
 * must read at most the row it computes (at its stride) and the one above. */
static agave_status geometry(cached_sampler *s, const agave_layer *l, geo *g)
{
    TRY(layer_geometry_of(l, g));
    int ok = g->deconv ? g->stride == 2 && g->kh <= 2 && g->top == 0
                       : g->kh <= 2 && g->top == g->kh - 1 && g->stride <= 2;
    if (!ok)
        return ctx_error(s->ctx, AGAVE_ERR_STATE,
                         "cached sampler: a %dx%d stride-%d layer does not fit two-row caches",
                         g->kh, g->kw, g->stride);
    return AGAVE_OK;
}

/* A gated block's fused weights: conv1 with nin_a, conv2 with nin_h, each
 * one GEMM (the 1x1 layers' columns after the taps). */
static agave_status gated_init(cached_sampler *s, gated *b, agave_layer *l)
{
    gated_parts p;
    TRY(layer_gated_parts(l, &p));
    if (!p.conv1 || !p.conv2 || (s->cond && !p.nin_h))
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "cached sampler: a gated block lacks a child");
    geo g2;
    TRY(geometry(s, p.conv1, &b->g));
    TRY(layer_geometry_of(p.conv2, &g2));
    int cols1 = lin_columns(p.conv1), cols_a = lin_columns(p.nin_a);
    int cols2 = lin_columns(p.conv2), cols_h = s->cond ? lin_columns(p.nin_h) : 0;
    b->shortcut = cols_a / 2;   /* nin_a reads concat_elu(a): twice a's channels */
    TRY(lin_init(s, &b->c1, b->g.out, cols1 + cols_a));
    TRY(lin_put(s, &b->c1, p.conv1, 0));
    if (cols_a)
        TRY(lin_put(s, &b->c1, p.nin_a, cols1));
    TRY(lin_init(s, &b->c2, g2.out, cols2 + cols_h));
    TRY(lin_put(s, &b->c2, p.conv2, 0));
    if (cols_h)
        TRY(lin_put(s, &b->c2, p.nin_h, cols2));
    return AGAVE_OK;
}


static agave_status first_layers_init(cached_sampler *s)
{
    pixelcnn_net *p = &s->m->pcnn;
    TRY(lin_of(s, &s->u_init, p->u_init));
    TRY(lin_of(s, &s->ul_a, p->ul_init_a));
    TRY(lin_of(s, &s->ul_b, p->ul_init_b));
    TRY(lin_of(s, &s->out, p->out));
    TRY(geometry(s, p->u_init, &s->u_init_g));
    TRY(geometry(s, p->ul_init_a, &s->ul_a_g));
    TRY(geometry(s, p->ul_init_b, &s->ul_b_g));
    for (int l = 0; l < 2; l++) {
        TRY(lin_of(s, &s->down_u[l], p->down_u[l]));
        TRY(lin_of(s, &s->down_ul[l], p->down_ul[l]));
        TRY(lin_of(s, &s->up_u[l], p->upsample_u[l]));
        TRY(lin_of(s, &s->up_ul[l], p->upsample_ul[l]));
    }
    TRY(geometry(s, p->down_u[0], &s->down_u_g));
    TRY(geometry(s, p->down_ul[0], &s->down_ul_g));
    TRY(geometry(s, p->upsample_u[0], &s->up_u_g));
    return geometry(s, p->upsample_ul[0], &s->up_ul_g);
}

/* Every layer's weights, normalised once (the arena holds the temporaries). */
static agave_status weights_init(cached_sampler *s)
{
    pixelcnn_net *p = &s->m->pcnn;
    int was_recording = agave_tape_recording(s->ctx);
    agave_tape_set_recording(s->ctx, 0);
    agave_status st = first_layers_init(s);
    for (int lv = 0; lv < LEVELS && st == AGAVE_OK; lv++) {
        for (int r = 0; r < s->R && st == AGAVE_OK; r++) {
            st = gated_init(s, &s->gu[lv][r], p->up_u[lv][r]);
            if (st == AGAVE_OK)
                st = gated_init(s, &s->gul[lv][r], p->up_ul[lv][r]);
        }
        for (int r = 0; r < down_blocks(s, lv) && st == AGAVE_OK; r++) {
            st = gated_init(s, &s->du[lv][r], p->dn_u[lv][r]);
            if (st == AGAVE_OK)
                st = gated_init(s, &s->dul[lv][r], p->dn_ul[lv][r]);
        }
    }
    agave_tape_set_recording(s->ctx, was_recording);
    return st;
}

/* Every lin of s into all (those of absent blocks too, with w NULL); the count. */
#define MAX_LINS (12 + LEVELS * (4 * MODEL_MAX_R + 4 * (MODEL_MAX_R + 1)))
static int all_lins(cached_sampler *s, lin *all[MAX_LINS])
{
    lin *first[] = {&s->u_init, &s->ul_a, &s->ul_b, &s->out, &s->down_u[0], &s->down_u[1],
                    &s->down_ul[0], &s->down_ul[1], &s->up_u[0], &s->up_u[1], &s->up_ul[0],
                    &s->up_ul[1]};
    int n = 0;
    for (size_t i = 0; i < sizeof first / sizeof *first; i++)
        all[n++] = first[i];
    for (int lv = 0; lv < LEVELS; lv++) {
        gated *blocks[] = {s->gu[lv], s->gul[lv], s->du[lv], s->dul[lv]};
        int counts[] = {MODEL_MAX_R, MODEL_MAX_R, MODEL_MAX_R + 1, MODEL_MAX_R + 1};
        for (int b = 0; b < 4; b++)
            for (int r = 0; r < counts[b]; r++)
                all[n++] = &blocks[b][r].c1, all[n++] = &blocks[b][r].c2;
    }
    return n;
}

static void weights_free(cached_sampler *s)
{
    lin *all[MAX_LINS];
    int count = all_lins(s, all);
    for (int i = 0; i < count; i++)
        lin_free(all[i]);
}

/* ---- fixed products ------------------------------------------------------------------ */
int cached_sampler_fixed_products_available(void) { return gemm_avx512_available(0); }

agave_status cached_sampler_fix_products(cached_sampler *s)
{
    if (!s)
        return AGAVE_ERR_NULL;
    if (!cached_sampler_fixed_products_available())
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "cached sampler: fixed products need a CPU "
                         "with AVX-512F");
    if (s->fixed)
        return AGAVE_OK;
    lin *all[MAX_LINS];
    int count = all_lins(s, all);
    for (int i = 0; i < count; i++) {
        lin *w = all[i];
        if (!w->w)
            continue;   /* a block this configuration does not have */
        w->packed = malloc(gemm_rows_packed_floats(w->cout, w->k) * sizeof(float));
        if (!w->packed)
            return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory (weights)");
        gemm_rows_pack(w->cout, w->k, w->w, w->packed);
    }
    s->fixed = 1;
    return AGAVE_OK;
}

/* ---- lanes ----------------------------------------------------------------------------- */
/* A lane's caches and scratch for up to cap images; a context of its own for
 * GEMMs when lanes run in parallel (one thread each: its GEMMs are small, and
 * a context's counters are not shared between threads). */
static agave_status lane_init(cached_sampler *s, lane *l, int cap)
{
    l->gemm_ctx = s->ctx;
    if (s->lanes_cap > 1 && (agave_context_create(&l->gemm_ctx, 0) != AGAVE_OK || !l->gemm_ctx))
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory (contexts)");
    if (s->lanes_cap > 1)   /* it multiplies inside the lanes' team: its buffers are slot 0 */
        l->gemm_ctx->team_level = 1;
    l->n = cap;
    l->mem_floats = lane_place(s, l, NULL);
    l->mem = malloc(l->mem_floats * sizeof(float));
    size_t rows = (size_t)s->W * cap;
    l->cols = malloc(rows * s->cols_cap * sizeof(float));
    l->tmp = malloc(rows * 2 * (size_t)s->F * sizeof(float));
    l->row_params = malloc(rows * (size_t)s->P * sizeof(float));
    l->shortcut = malloc(rows * 4 * (size_t)s->F * sizeof(float));
    l->zeros = calloc(s->cols_cap, sizeof(float));
    if (!l->mem || !l->cols || !l->tmp || !l->row_params || !l->shortcut || !l->zeros)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory (caches)");
    return AGAVE_OK;
}

static void lane_free(const cached_sampler *s, lane *l)
{
    if (l->gemm_ctx && l->gemm_ctx != s->ctx)
        agave_context_free(l->gemm_ctx);
    free(l->mem), free(l->cols), free(l->tmp), free(l->row_params), free(l->shortcut);
    free(l->zeros);
}

/* Lanes for batches of up to n_cap images: min(threads, n_cap) of them, each
 * with room for ceil(n_cap / lanes) images (no later batch gives one more). */
static agave_status lanes_init(cached_sampler *s)
{
    int threads = s->ctx->threads;
    s->lanes_cap = threads < s->n_cap ? threads : s->n_cap;
    s->lanes = calloc((size_t)s->lanes_cap, sizeof *s->lanes);
    s->params = malloc((size_t)s->n_cap * s->P * sizeof(float));
    if (!s->lanes || !s->params)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory");
    int cap = (s->n_cap + s->lanes_cap - 1) / s->lanes_cap;
    for (int t = 0; t < s->lanes_cap; t++)
        TRY(lane_init(s, &s->lanes[t], cap));
    return AGAVE_OK;
}

agave_status cached_sampler_set_batch(cached_sampler *s, int n)
{
    if (!s)
        return AGAVE_ERR_NULL;
    if (n < 1 || n > s->n_cap)
        return ctx_error(s->ctx, AGAVE_ERR_INVALID_ARG, "cached sampler: a batch of %d (it was "
                         "made for 1..%d)", n, s->n_cap);
    s->n = n;
    s->n_lanes = s->lanes_cap < n ? s->lanes_cap : n;
    for (int t = 0; t < s->n_lanes; t++) {
        lane *l = &s->lanes[t];
        l->n0 = n * t / s->n_lanes;
        l->n = n * (t + 1) / s->n_lanes - l->n0;
        l->mem_floats = lane_place(s, l, l->mem);
    }
    s->next = -1;
    return AGAVE_OK;
}

/* ---- the sampler ----------------------------------------------------------------------- */
agave_status cached_sampler_create(agave_model *m, int n, int conditional, cached_sampler **out)
{
    if (!m || !out)
        return AGAVE_ERR_NULL;
    *out = NULL;
    const agave_config *c = &m->cfg;
    if (n < 1 || c->R > MODEL_MAX_R)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "cached sampler: n = %d, R = %d", n,
                         c->R);
    cached_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory");
    s->m = m, s->ctx = m->ctx, s->n_cap = n, s->C = c->C, s->H = c->H, s->W = c->W, s->F = c->F;
    s->R = c->R, s->P = dmol_param_count(c->C, c->M), s->cond = conditional != 0, s->next = -1;
    s->cols_cap = (size_t)s->F;   /* the output head's input */
    agave_status st = weights_init(s);
    if (st == AGAVE_OK)
        st = lanes_init(s);
    if (st == AGAVE_OK)
        st = cached_sampler_set_batch(s, n);
    if (st != AGAVE_OK) {
        cached_sampler_free(s);
        return st;
    }
    *out = s;
    return AGAVE_OK;
}

void cached_sampler_free(cached_sampler *s)
{
    if (!s)
        return;
    weights_free(s);
    for (int t = 0; s->lanes && t < s->lanes_cap; t++)
        lane_free(s, &s->lanes[t]);
    free(s->lanes), free(s->params);
    free(s);
}

/* elu(g_l) of f, by the library's conditioning stream as pixelcnn.c's
 * condition() runs it (f nearest-upsampled to H x W first), then into each
 * lane's cache layout. */
static agave_status condition(cached_sampler *s, const float *f)
{
    agave_context *ctx = s->ctx;
    const agave_config *c = &s->m->cfg;
    int dims[4] = {s->n, c->C, c->H / c->s, c->W / c->s};
    agave_tensor *t = tensor_new_arena(ctx, 4, dims), *g[LEVELS];
    if (!t)
        return AGAVE_ERR_NOMEM;
    memcpy(t->data, f, t->numel * sizeof(float));
    for (int up = c->s; up > 1; up /= 2)
        TRY(agave_upsample2x(ctx, t, &t));
    TRY(agave_layer_forward_cond(s->m->pcnn.cond, t, g));
    for (int q = 0; q < s->n_lanes; q++) {
        lane *l = &s->lanes[q];
        for (int lv = 0; lv < LEVELS; lv++) {
            const act *a = &l->g[lv];
            const size_t plane = (size_t)a->h * a->w;
            const float *src = g[lv]->data + (size_t)l->n0 * s->F * plane;
            /* written in order: a position's (image, channel) values are
             * contiguous, their sources a plane apart */
            for (int i = 0; i < a->h; i++)
                for (int j = 0; j < a->w; j++) {
                    float *dst = act_at(l, a, i, j);
                    const float *at = src + (size_t)i * a->w + j;
                    for (size_t kc = 0; kc < (size_t)l->n * s->F; kc++)
                        dst[kc] = at[kc * plane];
                }
        }
    }
    return AGAVE_OK;
}

agave_status cached_sampler_begin(cached_sampler *s, const float *f, const uint8_t *x)
{
    if (!s || !x || (s->cond && !f))
        return s ? ctx_error(s->ctx, AGAVE_ERR_NULL, "cached sampler: x or f is NULL")
                 : AGAVE_ERR_NULL;
    /* all bits set: a NaN in every float (memset runs wide; a loop of NaN
     * stores stayed scalar) */
    for (int t = 0; t < s->n_lanes; t++)
        memset(s->lanes[t].mem, 0xff, s->lanes[t].mem_floats * sizeof(float));
    s->img = x;
    s->next = 0;
    if (s->cond) {
        int was_recording = agave_tape_recording(s->ctx);
        agave_tape_set_recording(s->ctx, 0);
        agave_status st = condition(s, f);
        agave_tape_set_recording(s->ctx, was_recording);
        TRY(st);
    }
    return AGAVE_OK;
}

/* Advances rng past what dmol_pixel_sample draws for one pixel of one image:
 * n_mix uniforms for the component, then one per channel (lib/loss/loss.h). */
static void skip_pixel_draws(agave_rng *rng, int channels, int n_mix)
{
    for (int k = 0; k < n_mix + channels; k++)
        (void)rng_uniform_double(rng);
}

/* Lane l samples its images through every pixel; draw[p * n + i] is the
 * generator's state where the sequential loop draws pixel p of image i. */
static void lane_sample(const cached_sampler *s, lane *l, const agave_rng *draw, int n_mix,
                        uint8_t *x)
{
    const size_t plane = (size_t)s->H * s->W;
    for (int p = 0; p < (int)plane; p++) {
        lane_step(s, l, p / s->W, p % s->W, s->params);
        for (int k = l->n0; k < l->n0 + l->n; k++) {
            agave_rng rng = draw[(size_t)p * s->n + k];
            dmol_pixel_sample(s->params + (size_t)k * s->P, 1, s->C, n_mix, &rng,
                              x + (size_t)k * s->C * plane + p, plane);
        }
    }
}

/* Several lanes: one parallel region for the whole batch rather than one per
 * pixel (a region per pixel costs a scheduler time slice per pixel whenever
 * another process holds a core). The draws stay those of the sequential loop:
 * each (pixel, image) starts from the generator state the loop would have
 * there, found up front by skipping through the stream in the loop's order. */
static agave_status sample_lanes(cached_sampler *s, agave_rng *rng, int n_mix, uint8_t *x)
{
    const size_t plane = (size_t)s->H * s->W;
    agave_rng *draw = malloc(plane * s->n * sizeof *draw);
    if (!draw)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "cached sampler: out of memory (draws)");
    for (size_t d = 0; d < plane * s->n; d++) {
        draw[d] = *rng;
        skip_pixel_draws(rng, s->C, n_mix);
    }
#pragma omp parallel for num_threads(s->n_lanes) schedule(static, 1)
    for (int t = 0; t < s->n_lanes; t++)
        lane_sample(s, &s->lanes[t], draw, n_mix, x);
    collect_flops(s);
    s->next = -1;
    free(draw);
    return AGAVE_OK;
}

agave_status sample_pixels_cached(agave_model *m, int n, const float *f, uint8_t *x)
{
    const agave_config *c = &m->cfg;
    const size_t plane = (size_t)c->H * c->W;
    cached_sampler *s;
    memset(x, 0, (size_t)n * c->C * plane);
    TRY(cached_sampler_create(m, n, f != NULL, &s));
    /* the weights packed once: faster than OpenBLAS repacking them per pixel */
    agave_status st = cached_sampler_fixed_products_available() ? cached_sampler_fix_products(s)
                                                                : AGAVE_OK;
    if (st == AGAVE_OK)
        st = cached_sampler_begin(s, f, x);
    if (st == AGAVE_OK && s->n_lanes > 1)
        st = sample_lanes(s, &m->ctx->rng, c->M, x);
    for (size_t p = 0; p < plane && st == AGAVE_OK && s->n_lanes == 1; p++) {
        const float *params;
        st = cached_sampler_step(s, (int)(p / c->W), (int)(p % c->W), &params);
        for (int i = 0; i < n && st == AGAVE_OK; i++)
            dmol_pixel_sample(params + (size_t)i * s->P, 1, c->C, c->M, &m->ctx->rng,
                              x + (size_t)i * c->C * plane + p, plane);
    }
    cached_sampler_free(s);
    return st;
}
