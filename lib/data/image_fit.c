/* One size for every image of a data set: a centred crop window, then an
 * area-average resize. Both are exact integer arithmetic, so the pixels a
 * data set gets do not depend on the machine, the compiler or the threads. */
#include <stdlib.h>
#include <string.h>

#include "image.h"

int image_fit_is_identity(const image_fit *fit)
{
    return fit->crop_height == 0 && fit->crop_width == 0 && !fit->crop_aspect &&
           fit->resize_height == 0 && fit->resize_width == 0;
}

void image_crop_origin(int h, int w, int ch, int cw, int *top, int *left)
{
    *top = (h - ch) / 2;
    *left = (w - cw) / 2;
}

/* The largest window of aspect ah:aw inside h x w (at least 1 x 1). */
static void aspect_window(int h, int w, int ah, int aw, int *ch, int *cw)
{
    if ((uint64_t)h * (uint64_t)aw >= (uint64_t)w * (uint64_t)ah) {
        *cw = w;   /* the image is taller than the window's shape */
        *ch = (int)((uint64_t)w * (uint64_t)ah / (uint64_t)aw);
    } else {
        *ch = h;
        *cw = (int)((uint64_t)h * (uint64_t)aw / (uint64_t)ah);
    }
    if (*ch < 1)
        *ch = 1;
    if (*cw < 1)
        *cw = 1;
}

/* The crop window for an image of h x w (the whole image without a crop). */
static void crop_window(const image_fit *fit, int h, int w, int *ch, int *cw)
{
    if (fit->crop_aspect)
        aspect_window(h, w, fit->resize_height, fit->resize_width, ch, cw);
    else if (fit->crop_height > 0)
        *ch = fit->crop_height, *cw = fit->crop_width;
    else
        *ch = h, *cw = w;
}

agave_status image_fit_size(agave_context *ctx, const char *name, const image_fit *fit, int height,
                            int width, int *out_height, int *out_width)
{
    int ch, cw;
    crop_window(fit, height, width, &ch, &cw);
    if (ch > height || cw > width)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s is %dx%d pixels (HxW), smaller than the crop window %dx%d; "
                         "resize instead, or crop less",
                         name, height, width, ch, cw);
    *out_height = fit->resize_height > 0 ? fit->resize_height : ch;
    *out_width = fit->resize_width > 0 ? fit->resize_width : cw;
    return AGAVE_OK;
}

/* Source rows (or columns) [first, end) that output index i of n covers,
 * for a source of m: in units of 1/n, output i spans [i*m, (i+1)*m) and
 * source pixel r spans [r*n, (r+1)*n). */
static void footprint(int64_t i, int64_t m, int64_t n, int64_t *first, int64_t *end)
{
    *first = i * m / n;
    *end = ((i + 1) * m + n - 1) / n;
}

/* The length, in units of 1/n, that source pixel r shares with output i. */
static int64_t overlap(int64_t i, int64_t r, int64_t m, int64_t n)
{
    int64_t lo = i * m > r * n ? i * m : r * n;
    int64_t hi = (i + 1) * m < (r + 1) * n ? (i + 1) * m : (r + 1) * n;
    return hi > lo ? hi - lo : 0;
}

/* One plane: src (h,w) -> dst (H,W). For each output row the source rows
 * are summed with their weights (which add up to h) into acc (w entries),
 * then each output pixel sums its columns' weights (adding up to w) times
 * acc: the total weight is h * w, and the largest sum 255 * h * w fits in
 * 64 bits for sides up to 65535. */
static void resize_plane(const uint8_t *src, int h, int w, uint8_t *dst, int H, int W,
                         uint64_t *acc)
{
    const uint64_t total = (uint64_t)h * (uint64_t)w;
    for (int i = 0; i < H; i++) {
        int64_t r0, r1;
        footprint(i, h, H, &r0, &r1);
        memset(acc, 0, (size_t)w * sizeof *acc);
        for (int64_t r = r0; r < r1; r++) {
            uint64_t wr = (uint64_t)overlap(i, r, h, H);
            const uint8_t *row = src + (size_t)r * (size_t)w;
            for (int c = 0; c < w; c++)
                acc[c] += wr * row[c];
        }
        for (int j = 0; j < W; j++) {
            int64_t c0, c1;
            footprint(j, w, W, &c0, &c1);
            uint64_t sum = 0;
            for (int64_t c = c0; c < c1; c++)
                sum += (uint64_t)overlap(j, c, w, W) * acc[c];
            dst[(size_t)i * (size_t)W + (size_t)j] = (uint8_t)((sum + total / 2) / total);
        }
    }
}

void image_resize_area(const uint8_t *src, int channels, int h, int w, uint8_t *dst, int H, int W,
                       uint64_t *acc)
{
    for (int k = 0; k < channels; k++)
        resize_plane(src + (size_t)k * h * w, h, w, dst + (size_t)k * H * W, H, W, acc);
}

/* Copies the ch x cw window at (top, left) of every plane. */
static void crop_planes(const uint8_t *src, int channels, int h, int w, int top, int left, int ch,
                        int cw, uint8_t *dst)
{
    for (int k = 0; k < channels; k++)
        for (int r = 0; r < ch; r++)
            memcpy(dst + ((size_t)k * ch + r) * cw,
                   src + ((size_t)k * h + (size_t)(top + r)) * w + left, (size_t)cw);
}

agave_status image_fit_apply(agave_context *ctx, const char *name, const image_fit *fit,
                             const uint8_t *src, int channels, int height, int width, uint8_t *dst)
{
    int ch, cw, top, left;
    crop_window(fit, height, width, &ch, &cw);
    image_crop_origin(height, width, ch, cw, &top, &left);
    int resize = fit->resize_height > 0 && (fit->resize_height != ch || fit->resize_width != cw);
    if (!resize) {
        crop_planes(src, channels, height, width, top, left, ch, cw, dst);
        return AGAVE_OK;
    }
    int cropped = ch != height || cw != width;
    uint8_t *window = cropped ? malloc((size_t)channels * (size_t)ch * (size_t)cw) : NULL;
    uint64_t *acc = malloc((size_t)cw * sizeof *acc);
    agave_status st = AGAVE_OK;
    if (!acc || (cropped && !window)) {
        st = ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory resizing a %dx%d image", name, ch,
                       cw);
    } else {
        if (cropped)
            crop_planes(src, channels, height, width, top, left, ch, cw, window);
        image_resize_area(cropped ? window : src, channels, ch, cw, dst, fit->resize_height,
                          fit->resize_width, acc);
    }
    free(window);
    free(acc);
    return st;
}
