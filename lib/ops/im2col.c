/* im2col / col2im and the batch-folding permutes of the convolution family.
 * All loops split work so that no two threads ever write the same float:
 * im2col over (column-matrix row, image), col2im over (image, channel), the
 * permutes over (image, channel) planes. Results are therefore independent
 * of the thread count and of the schedule. The schedule is guided rather than
 * static: on a machine shared with other work, a thread that gets descheduled
 * would otherwise hold every other thread at the region's closing barrier. */
#include <string.h>

#include "../core/simd.h"
#include "conv.h"

/* Below this many floats of work a loop runs on one thread: the fork/join of
 * a parallel region (a few microseconds) would cost more than it saves. */
#define PAR_MIN_WORK 32768

/* Threads for the loops below: the context's, or 1 when the conv runs this
 * block on one thread of its own (ctx_region_threads). GEMMs are threaded by
 * OpenMP panels over a single-threaded OpenBLAS (core/blas.c), so these loops
 * and the GEMMs share one pool and no second pool competes for the cores. */
static int data_threads(const agave_context *ctx) { return ctx_region_threads(ctx); }

/* The kernel positions ow in [lo, hi) whose tap kw reads a pixel inside a
 * row of width in_w: 0 <= ow*stride + kw - pad_left < in_w. */
static void valid_range(int out_w, int in_w, int stride, int offset, int *lo, int *hi)
{
    /* offset = kw - pad_left; solve 0 <= ow*s + offset <= in_w - 1. */
    long first = offset >= 0 ? 0 : (-(long)offset + stride - 1) / stride;
    long last_px = (long)in_w - 1 - offset;   /* ow*s <= last_px */
    long end = last_px < 0 ? 0 : last_px / stride + 1;
    if (end > out_w)
        end = out_w;
    if (first > end)
        first = end;
    *lo = (int)first;
    *hi = (int)end;
}

/* Rows here are short (28 floats for Fashion-MNIST, with pads of 0-2), so
 * libc's memset/memcpy cost more in calls than in bytes (docs/performance.md).
 * The loops below are vector loops (omp simd), and GCC is told not to turn
 * them back into those calls. */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_LIBC_IDIOMS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_LIBC_IDIOMS   /* (clang, for the fuzz build: no such attribute) */
#endif

/* im2col_row where the grid is as wide as the image at stride 1 (the
 * PixelCNN's shifted convolutions): the tap is then the whole plane shifted
 * by one offset, copied in one run, then its rows above or below the image
 * and its columns past the image's left or right edge zeroed. The same floats
 * as the row by row copy, in a few long loops instead of out_h short ones. */
SIMD_CLONES NO_LIBC_IDIOMS static void im2col_row_shifted(const conv_geom *g,
                                                          const float *restrict plane, int kh,
                                                          int kw, int lo, int hi,
                                                          float *restrict dst)
{
    const long w = g->out_w, plane_len = (long)g->in_h * w, len = (long)g->out_h * w;
    const long shift = (long)(kh - g->pad_top) * w + (kw - g->pad_left);
    /* dst[i] = plane[i + shift] where that is inside the plane; the rest is
     * padding, zeroed here or by the edge loops below */
    long first = -shift > 0 ? -shift : 0, end = plane_len - shift < len ? plane_len - shift : len;
    if (first > len)
        first = len;
    if (end < first)
        end = first;
#pragma omp simd
    for (long i = 0; i < first; i++)
        dst[i] = 0.0f;
#pragma omp simd
    for (long i = first; i < end; i++)
        dst[i] = plane[i + shift];
#pragma omp simd
    for (long i = end; i < len; i++)
        dst[i] = 0.0f;
    for (long oh = 0; oh < g->out_h; oh++) {
        float *row = dst + oh * w;
        for (int ow = 0; ow < lo; ow++)
            row[ow] = 0.0f;
        for (int ow = hi; ow < w; ow++)
            row[ow] = 0.0f;
    }
}

/* One row of the column matrix for one image: tap (c, kh, kw) over the grid.
 * plane is the image's channel c (in_h, in_w); dst holds out_h*out_w floats. */
SIMD_CLONES NO_LIBC_IDIOMS static void im2col_row(const conv_geom *g, const float *restrict plane,
                                                  int kh, int kw, float *restrict dst)
{
    int lo, hi;
    valid_range(g->out_w, g->in_w, g->stride, kw - g->pad_left, &lo, &hi);
    if (g->stride == 1 && g->out_w == g->in_w) {
        im2col_row_shifted(g, plane, kh, kw, lo, hi, dst);
        return;
    }
    const int out_w = g->out_w, stride = g->stride;
    for (int oh = 0; oh < g->out_h; oh++, dst += out_w) {
        int ih = oh * stride + kh - g->pad_top;
        if (ih < 0 || ih >= g->in_h || lo == hi) {
#pragma omp simd
            for (int ow = 0; ow < out_w; ow++)
                dst[ow] = 0.0f;
            continue;
        }
        /* pixel of column ow: row ih, x = ow*stride + kw - pad_left (>= 0 from lo on) */
        const float *restrict src = plane + (size_t)ih * g->in_w;
        const long offset = (long)kw - g->pad_left;
#pragma omp simd
        for (int ow = 0; ow < lo; ow++)
            dst[ow] = 0.0f;
        if (stride == 1) {
#pragma omp simd
            for (int ow = lo; ow < hi; ow++)
                dst[ow] = src[ow + offset];
        } else {
#pragma omp simd
            for (int ow = lo; ow < hi; ow++)
                dst[ow] = src[(long)ow * stride + offset];
        }
#pragma omp simd
        for (int ow = hi; ow < out_w; ow++)
            dst[ow] = 0.0f;
    }
}

void im2col(agave_context *ctx, const conv_geom *g, const float *img, int nb, float *col)
{
    // img is (nb,C,in_h,in_w), col is (C*KH*KW, nb*P) with P = out_h*out_w
    const long rows = (long)geom_rows(g);
    const size_t P = geom_cols(g), ld = (size_t)nb * P;
    const size_t taps = (size_t)g->k_h * g->k_w;
#pragma omp parallel for collapse(2) num_threads(data_threads(ctx)) \
    if ((size_t)rows * ld > PAR_MIN_WORK) schedule(guided)
    for (long r = 0; r < rows; r++)
        for (int n = 0; n < nb; n++) {
            size_t c = (size_t)r / taps;
            int kh = (int)(((size_t)r % taps) / (size_t)g->k_w), kw = (int)((size_t)r % (size_t)g->k_w);
            const float *plane = img + ((size_t)n * g->channels + c) * geom_plane(g);
            im2col_row(g, plane, kh, kw, col + (size_t)r * ld + (size_t)n * P);
        }
}

/* col2im_row where the grid is as wide as the image at stride 1: the tap's
 * columns over the image's left or right padding become -0.0, which leaves
 * any float it is added to unchanged (x + -0.0 == x, -0.0 included), and the
 * tap is then added as one run at one offset: every pixel gets the same adds
 * in the same order as row by row, in a few long loops instead of out_h
 * short ones. src is scratch (it is changed). */
SIMD_CLONES static void col2im_row_shifted(const conv_geom *g, float *restrict src, int kh,
                                           int kw, int lo, int hi, float *restrict plane)
{
    const long w = g->out_w, plane_len = (long)g->in_h * w, len = (long)g->out_h * w;
    const long shift = (long)(kh - g->pad_top) * w + (kw - g->pad_left);
    for (long oh = 0; oh < g->out_h; oh++) {
        float *row = src + oh * w;
        for (int ow = 0; ow < lo; ow++)
            row[ow] = -0.0f;
        for (int ow = hi; ow < w; ow++)
            row[ow] = -0.0f;
    }
    /* the rows above and below the image fall outside the plane */
    long first = -shift > 0 ? -shift : 0, end = plane_len - shift < len ? plane_len - shift : len;
#pragma omp simd
    for (long i = first; i < end; i++)
        plane[i + shift] += src[i];
}

/* Adds one row of the column matrix back into channel plane (in_h, in_w). */
static void col2im_row(const conv_geom *g, float *src, int kh, int kw, float *plane)
{
    int lo, hi;
    valid_range(g->out_w, g->in_w, g->stride, kw - g->pad_left, &lo, &hi);
    if (g->stride == 1 && g->out_w == g->in_w) {
        col2im_row_shifted(g, src, kh, kw, lo, hi, plane);
        return;
    }
    for (int oh = 0; oh < g->out_h; oh++, src += g->out_w) {
        int ih = oh * g->stride + kh - g->pad_top;
        if (ih < 0 || ih >= g->in_h)
            continue;
        float *dst = plane + (size_t)ih * g->in_w;
        long x = (long)lo * g->stride + kw - g->pad_left;
        if (g->stride == 1) {   /* contiguous: lets the compiler vectorise */
            float *d = dst + x;
            const float *s = src + lo;
            for (int i = 0; i < hi - lo; i++)
                d[i] += s[i];
        } else {
            for (int ow = lo; ow < hi; ow++, x += g->stride)
                dst[x] += src[ow];
        }
    }
}

void col2im_add(agave_context *ctx, const conv_geom *g, float *col, int nb, float *img)
{
    // col is (C*KH*KW, nb*P), img is (nb,C,in_h,in_w); one thread owns one (n, c) plane
    const long planes = (long)nb * g->channels;
    const size_t P = geom_cols(g), ld = (size_t)nb * P;
#pragma omp parallel for num_threads(data_threads(ctx)) \
    if (geom_rows(g) * ld > PAR_MIN_WORK) schedule(guided)
    for (long nc = 0; nc < planes; nc++) {
        size_t n = (size_t)nc / (size_t)g->channels, c = (size_t)nc % (size_t)g->channels;
        float *plane = img + (size_t)nc * geom_plane(g);
        for (int kh = 0; kh < g->k_h; kh++)
            for (int kw = 0; kw < g->k_w; kw++) {
                size_t r = (c * (size_t)g->k_h + (size_t)kh) * (size_t)g->k_w + (size_t)kw;
                col2im_row(g, col + r * ld + n * P, kh, kw, plane);
            }
    }
}

void nchw_to_cn(agave_context *ctx, const float *src, int nb, int C, size_t P, float *dst)
{
    // src is (nb,C,P), dst is (C,nb*P)
    const long planes = (long)nb * C;
#pragma omp parallel for num_threads(data_threads(ctx)) if ((size_t)planes * P > PAR_MIN_WORK) \
    schedule(guided)
    for (long nc = 0; nc < planes; nc++) {
        size_t n = (size_t)nc / (size_t)C, c = (size_t)nc % (size_t)C;
        memcpy(dst + (c * (size_t)nb + n) * P, src + (size_t)nc * P, P * sizeof *dst);
    }
}

void cn_to_nchw(agave_context *ctx, const float *src, int nb, int C, size_t P,
                const float *bias, int accumulate, float *dst)
{
    // src is (C,nb*P), dst is (nb,C,P)
    const long planes = (long)nb * C;
#pragma omp parallel for num_threads(data_threads(ctx)) if ((size_t)planes * P > PAR_MIN_WORK) \
    schedule(guided)
    for (long nc = 0; nc < planes; nc++) {
        size_t n = (size_t)nc / (size_t)C, c = (size_t)nc % (size_t)C;
        const float *s = src + (c * (size_t)nb + n) * P;
        float *d = dst + (size_t)nc * P;
        float b = bias ? bias[c] : 0.0f;
        if (accumulate)
            for (size_t p = 0; p < P; p++)
                d[p] += s[p] + b;
        else
            for (size_t p = 0; p < P; p++)
                d[p] = s[p] + b;
    }
}

void cn_add_base(agave_context *ctx, const float *src, int nb, int C, size_t P,
                 const float *bias, const float *base, float *y)
{
    // src is (C,nb*P); base and y are (nb,C,P)
    const long planes = (long)nb * C;
#pragma omp parallel for num_threads(data_threads(ctx)) if ((size_t)planes * P > PAR_MIN_WORK) \
    schedule(guided)
    for (long nc = 0; nc < planes; nc++) {
        size_t n = (size_t)nc / (size_t)C, c = (size_t)nc % (size_t)C;
        const float *s = src + (c * (size_t)nb + n) * P, *bs = base + (size_t)nc * P;
        float *d = y + (size_t)nc * P;
        float b = bias ? bias[c] : 0.0f;
        for (size_t p = 0; p < P; p++)
            d[p] = bs[p] + (s[p] + b);
    }
}

void fill_bias(agave_context *ctx, float *t, int nb, int C, size_t P, const float *bias)
{
    // t is (nb,C,P)
    const long planes = (long)nb * C;
#pragma omp parallel for num_threads(data_threads(ctx)) if ((size_t)planes * P > PAR_MIN_WORK) \
    schedule(guided)
    for (long nc = 0; nc < planes; nc++) {
        float b = bias ? bias[nc % C] : 0.0f;
        float *d = t + (size_t)nc * P;
        for (size_t p = 0; p < P; p++)
            d[p] = b;
    }
}

void add_bias(agave_context *ctx, float *t, int nb, int C, size_t P, const float *bias)
{
    // t is (nb,C,P)
    const long planes = (long)nb * C;
#pragma omp parallel for num_threads(data_threads(ctx)) if ((size_t)planes * P > PAR_MIN_WORK) \
    schedule(guided)
    for (long nc = 0; nc < planes; nc++) {
        float b = bias[nc % C];
        float *d = t + (size_t)nc * P;
        for (size_t p = 0; p < P; p++)
            d[p] += b;
    }
}

/* Channels bias_grad sums side by side. */
#define BIAS_CHANNELS 16

/* gb[c0 + j] += the sum of channel c0 + j of g (N,C,P), j < K: one double
 * chain per channel in the order n, then p, as a channel summed alone; K
 * chains side by side, so that each add no longer waits for the one before
 * (a lone chain runs at the add's latency). */
static inline void channel_sums(const float *g, int N, int C, size_t P, int c0, const int K,
                                float *gb)
{
    double acc[BIAS_CHANNELS] = {0};
    for (int n = 0; n < N; n++) {
        const float *base = g + ((size_t)n * C + (size_t)c0) * P;
        for (size_t i = 0; i < P; i++)
            for (int j = 0; j < K; j++)
                acc[j] += base[(size_t)j * P + i];
    }
    for (int j = 0; j < K; j++)
        gb[c0 + j] += (float)acc[j];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "../core/gemm_avx512.h"
#include "../core/transpose16.h"

/* acc (the 16 channels' sums, 8 in each of lo and hi) += the 16 floats of
 * v, one per channel, in double. */
__attribute__((target("avx512f"), always_inline)) static inline void add_position(__m512d *lo,
                                                                                 __m512d *hi,
                                                                                 __m512 v)
{
    *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *hi = _mm512_add_pd(
        *hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* channel_sums of 16 channels on AVX-512F: 16 positions of the 16 channels
 * are loaded and transposed, so that a vector holds one position of every
 * channel, and added lane by lane in position order: each channel's double
 * adds are channel_sums' own, in its order, so the bits are too. */
__attribute__((target("avx512f"))) static void channel_sums16(const float *g, int N, int C,
                                                              size_t P, int c0, float *gb)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    const size_t whole = P / 16 * 16;
    for (int n = 0; n < N; n++) {
        const float *base = g + ((size_t)n * C + (size_t)c0) * P;
        for (size_t p0 = 0; p0 < whole; p0 += 16) {
            __m512 r[16];   // r[j] = channel j at p0.., then r[q] = position p0 + q
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)   // (unrolled: r stays in registers, transpose16.h)
                r[j] = _mm512_loadu_ps(base + (size_t)j * P + p0);
            transpose16(r);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++)
                add_position(&lo, &hi, r[q]);
        }
        for (size_t p = whole; p < P; p++) {
            float v[16];
            for (int j = 0; j < 16; j++)
                v[j] = base[(size_t)j * P + p];
            add_position(&lo, &hi, _mm512_loadu_ps(v));
        }
    }
    double sum[16];
    _mm512_storeu_pd(sum, lo);
    _mm512_storeu_pd(sum + 8, hi);
    for (int j = 0; j < 16; j++)
        gb[c0 + j] += (float)sum[j];
}

static int wide_sums(size_t P) { return P >= 16 && gemm_avx512_available(0); }
#else
static int wide_sums(size_t P) { (void)P; return 0; }
static void channel_sums16(const float *g, int N, int C, size_t P, int c0, float *gb)
{
    (void)g, (void)N, (void)C, (void)P, (void)c0, (void)gb;
}
#endif

void bias_grad(agave_context *ctx, const float *g, int N, int C, size_t P, float *gb)
{
    // g is (N,C,P); one thread owns a block of channels, each summed in a fixed
    // order, so the sums do not depend on the thread count
    const int blocks = (C + BIAS_CHANNELS - 1) / BIAS_CHANNELS, wide = wide_sums(P);
#pragma omp parallel for num_threads(data_threads(ctx)) if ((size_t)N * C * P > PAR_MIN_WORK) \
    schedule(guided)
    for (int b = 0; b < blocks; b++) {
        const int c0 = b * BIAS_CHANNELS, left = C - c0;
        if (left >= BIAS_CHANNELS && wide)
            channel_sums16(g, N, C, P, c0, gb);
        else if (left >= BIAS_CHANNELS)
            channel_sums(g, N, C, P, c0, BIAS_CHANNELS, gb);
        else
            channel_sums(g, N, C, P, c0, left, gb);
    }
}
