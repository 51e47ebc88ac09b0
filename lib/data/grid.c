/* Image grids written as PNG. The pixels are laid out on a canvas here, the
 * PNG is encoded in memory by stb_image_write (compiled into this file only,
 * all of it static, so no stb symbol leaves the library) and written with
 * file_write_atomic: an interrupted run leaves the old picture or the new
 * one, never half.
 *
 * Out of memory is an error, never an abort: stb's own deflate grows its
 * buffers with an assert() on realloc, so zlib's compress2 takes its place
 * (STBIW_ZLIB_COMPRESS), and stb's other allocations are checked by stb.
 * What remains of STBIW_ASSERT checks stb's own arithmetic, not memory, and
 * is compiled out so that nothing in the library can call abort(). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../core/struct_size.h"
#include "caption.h"
#include "data.h"
#include "image.h"

static unsigned char *grid_zlib_compress(unsigned char *data, int len, int *out_len, int quality);
static void grid_stb_free(void *p);

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBIW_ZLIB_COMPRESS grid_zlib_compress
#define STBIW_ASSERT(x) ((void)0)
#define STBIW_MALLOC(sz) malloc(sz)
#define STBIW_REALLOC(p, sz) realloc(p, sz)
#define STBIW_FREE(p) grid_stb_free(p)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

/* stb_image_write returns NULL without freeing the compressed stream when
 * the allocation after it fails. The stream this thread's call to
 * grid_zlib_compress made and stb has not freed yet is kept here, so that
 * encode_and_write can free it; it is set and cleared within one call. */
static _Thread_local unsigned char *grid_pending_stream;

/* zlib's deflate for stb: NULL when memory runs out; quality is stb's level. */
static unsigned char *grid_zlib_compress(unsigned char *data, int len, int *out_len, int quality)
{
    uLongf bound = compressBound((uLong)len);
    unsigned char *out = malloc(bound);
    if (!out)
        return NULL;
    int level = quality < 1 ? 1 : quality > 9 ? 9 : quality;
    if (compress2(out, &bound, data, (uLong)len, level) != Z_OK || bound > INT32_MAX) {
        free(out);
        return NULL;
    }
    *out_len = (int)bound;
    grid_pending_stream = out;
    return out;
}

static void grid_stb_free(void *p)
{
    if (p && p == grid_pending_stream)
        grid_pending_stream = NULL;
    free(p);
}

#define GRID_MAX_SIDE 32768                      /* canvas pixels per side */
#define GRID_MAX_BYTES ((uint64_t)1 << 30)       /* canvas bytes */
#define GRID_MAX_SETS 16
#define CAPTION_MAX_CHARS 4096
#define CAPTION_MIN_LINE 24                      /* characters a caption line holds at least */

typedef unsigned long long ull;

static void options_defaults(agave_grid_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->gap = 2;
    opt->group_gap = 4;
    opt->scale = 1;
    opt->background[0] = opt->background[1] = opt->background[2] = 255;
}

void agave_grid_options_init_sized(agave_grid_options *opt, size_t struct_size)
{
    if (!opt)
        return;
    agave_grid_options d;
    options_defaults(&d);
    struct_init(opt, struct_size, &d, sizeof d);
}

/* Programs built against 0.1's agave.h call this symbol with that header's
 * struct, which ends with background. */
void (agave_grid_options_init)(agave_grid_options *opt)
{
    agave_grid_options_init_sized(opt, STRUCT_SIZE(agave_grid_options, background));
}

/* The caller's options over the defaults (the struct_size rule). */
static agave_status grid_options(agave_context *ctx, const agave_grid_options *opt,
                                 agave_grid_options *o)
{
    options_defaults(o);
    if (!opt)
        return AGAVE_OK;
    char msg[256];
    if (!struct_read(o, sizeof *o, opt, sizeof o->struct_size, "agave_grid_options", msg,
                     sizeof msg))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "grid options: %s", msg);
    if (o->gap < 0 || o->gap > 256 || o->group_gap < 0 || o->group_gap > 256 || o->scale < 1 ||
        o->scale > 64)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "grid options: gap %d, group_gap %d, scale %d; expected gaps in 0..256 "
                         "and scale in 1..64",
                         o->gap, o->group_gap, o->scale);
    if (o->caption && strlen(o->caption) > CAPTION_MAX_CHARS)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "grid options: a caption of %llu characters; at most %d",
                         (ull)strlen(o->caption), CAPTION_MAX_CHARS);
    return AGAVE_OK;
}

/* ---- layout ------------------------------------------------------------------ */

typedef struct grid_layout {
    int n_sets, n, cols, group_rows;
    agave_grid_layout kind;
    int gap, group_gap;
    uint64_t cell_h, cell_w;       /* every image is drawn at this size */
    uint64_t canvas_h, canvas_w;
    int out_channels;              /* 1 (grey) or 3 (RGB) */
    const char *caption;           /* NULL, or the text of the band above the grid */
    uint64_t caption_h;            /* that band's height (0 without a caption) */
    int caption_scale;
    size_t caption_chars;          /* characters per caption line */
} grid_layout;

static void layout_size(grid_layout *g)
{
    uint64_t step_h = g->cell_h + (uint64_t)g->gap, step_w = g->cell_w + (uint64_t)g->gap;
    uint64_t groups_between_rows = (uint64_t)g->group_rows - 1;
    uint64_t groups_between_cols = (uint64_t)g->cols - 1;
    if (g->kind == AGAVE_GRID_SETS_AS_ROWS) {
        g->canvas_w = g->gap + (uint64_t)g->cols * step_w;
        g->canvas_h = g->gap + (uint64_t)g->group_rows * g->n_sets * step_h +
                      groups_between_rows * g->group_gap;
    } else {
        g->canvas_w = g->gap + (uint64_t)g->cols * g->n_sets * step_w +
                      groups_between_cols * g->group_gap;
        g->canvas_h = g->gap + (uint64_t)g->group_rows * step_h;
    }
}

/* Top-left corner of image i of set s. */
static void cell_origin(const grid_layout *g, int s, int i, uint64_t *y0, uint64_t *x0)
{
    uint64_t row = (uint64_t)(i / g->cols), col = (uint64_t)(i % g->cols);
    uint64_t step_h = g->cell_h + (uint64_t)g->gap, step_w = g->cell_w + (uint64_t)g->gap;
    if (g->kind == AGAVE_GRID_SETS_AS_ROWS) {
        *x0 = g->gap + col * step_w;
        *y0 = g->gap + (row * g->n_sets + (uint64_t)s) * step_h + row * g->group_gap;
    } else {
        *x0 = g->gap + (col * g->n_sets + (uint64_t)s) * step_w + col * g->group_gap;
        *y0 = g->gap + row * step_h;
    }
    *y0 += g->caption_h;
}

/* The caption's band above the grid: the text wrapped to the grid's width
 * (the picture is widened to hold CAPTION_MIN_LINE characters a line). */
static void caption_size(grid_layout *g, const agave_grid_options *o)
{
    if (!o->caption || !*o->caption)
        return;
    g->caption = o->caption;
    g->caption_scale = caption_scale(o->scale);
    uint64_t margin = g->gap > 2 ? (uint64_t)g->gap : 2, advance = caption_advance(g->caption_scale);
    uint64_t least = 2 * margin + CAPTION_MIN_LINE * advance;
    if (g->canvas_w < least)
        g->canvas_w = least;
    g->caption_chars = (size_t)((g->canvas_w - 2 * margin) / advance);
    int lines = caption_lines(o->caption, g->caption_chars);
    g->caption_h = margin + (uint64_t)lines * caption_line_height(g->caption_scale);
    g->canvas_h += g->caption_h;
}

static agave_status check_sets(agave_context *ctx, const uint8_t *const *sets, int n_sets, int n,
                               int channels, const int *heights, const int *widths, int cols,
                               agave_grid_layout kind)
{
    if (!sets || !heights || !widths)
        return ctx_error(ctx, AGAVE_ERR_NULL, "image grid: NULL argument");
    if (n_sets < 1 || n_sets > GRID_MAX_SETS || n < 1 || cols < 1 ||
        (channels != 1 && channels != 3))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "image grid: %d sets of %d images with %d channels in %d columns; "
                         "expected 1..%d sets, n >= 1, channels 1 or 3, cols >= 1",
                         n_sets, n, channels, cols, GRID_MAX_SETS);
    if (kind != AGAVE_GRID_SETS_AS_ROWS && kind != AGAVE_GRID_SETS_SIDE_BY_SIDE)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "image grid: unknown layout %d", (int)kind);
    for (int s = 0; s < n_sets; s++) {
        if (!sets[s])
            return ctx_error(ctx, AGAVE_ERR_NULL, "image grid: set %d is NULL", s);
        if (heights[s] < 1 || widths[s] < 1 || heights[s] > AGAVE_DATASET_MAX_SIDE ||
            widths[s] > AGAVE_DATASET_MAX_SIDE)
            return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                             "image grid: set %d has images of %dx%d, expected 1..%d per side",
                             s, heights[s], widths[s], AGAVE_DATASET_MAX_SIDE);
    }
    return AGAVE_OK;
}

static agave_status plan_grid(agave_context *ctx, int n_sets, int n, int channels,
                              const int *heights, const int *widths, int cols,
                              agave_grid_layout kind, const agave_grid_options *o, grid_layout *g)
{
    memset(g, 0, sizeof *g);
    g->n_sets = n_sets;
    g->n = n;
    g->cols = cols < n ? cols : n;
    g->group_rows = (n + g->cols - 1) / g->cols;
    g->kind = kind;
    g->gap = o->gap;
    g->group_gap = n_sets > 1 ? o->group_gap : 0;   /* one set: a plain grid */
    for (int s = 0; s < n_sets; s++) {
        if ((uint64_t)heights[s] > g->cell_h)
            g->cell_h = (uint64_t)heights[s];
        if ((uint64_t)widths[s] > g->cell_w)
            g->cell_w = (uint64_t)widths[s];
    }
    g->cell_h *= (uint64_t)o->scale;
    g->cell_w *= (uint64_t)o->scale;
    int grey = o->background[0] == o->background[1] && o->background[1] == o->background[2];
    g->out_channels = channels == 1 && grey ? 1 : 3;
    layout_size(g);
    caption_size(g, o);
    if (g->canvas_h > GRID_MAX_SIDE || g->canvas_w > GRID_MAX_SIDE ||
        g->canvas_h * g->canvas_w * (uint64_t)g->out_channels > GRID_MAX_BYTES)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "image grid: the picture would be %llux%llu pixels, above the limit of "
                         "%d per side and %llu bytes",
                         (ull)g->canvas_w, (ull)g->canvas_h, GRID_MAX_SIDE, (ull)GRID_MAX_BYTES);
    return AGAVE_OK;
}

/* ---- drawing ------------------------------------------------------------------ */

static void fill_background(uint8_t *canvas, const grid_layout *g, const uint8_t *rgb)
{
    size_t pixels = (size_t)(g->canvas_h * g->canvas_w);
    for (size_t p = 0; p < pixels; p++)
        for (int c = 0; c < g->out_channels; c++)
            canvas[p * (size_t)g->out_channels + c] = rgb[c];
}

/* Draws one (channels,h,w) image into its cell, nearest-neighbour scaled to
 * cell_h x cell_w; a grey image fills all three channels of an RGB canvas. */
static void draw_image(uint8_t *canvas, const grid_layout *g, uint64_t y0, uint64_t x0,
                       const uint8_t *image, int channels, int h, int w)
{
    size_t plane = (size_t)h * (size_t)w;
    size_t oc = (size_t)g->out_channels;
    for (uint64_t y = 0; y < g->cell_h; y++) {
        size_t sy = (size_t)(y * (uint64_t)h / g->cell_h);
        uint8_t *row = canvas + ((y0 + y) * g->canvas_w + x0) * oc;
        for (uint64_t x = 0; x < g->cell_w; x++) {
            size_t sx = (size_t)(x * (uint64_t)w / g->cell_w);
            for (size_t c = 0; c < oc; c++) {
                size_t src_c = channels == 1 ? 0 : c;
                row[x * oc + c] = image[src_c * plane + sy * (size_t)w + sx];
            }
        }
    }
}

static void draw_grid(uint8_t *canvas, const grid_layout *g, const uint8_t *const *sets,
                      int channels, const int *heights, const int *widths, const uint8_t *rgb)
{
    fill_background(canvas, g, rgb);
    if (g->caption) {
        uint64_t margin = g->gap > 2 ? (uint64_t)g->gap : 2;
        caption_draw(canvas, g->canvas_w, g->out_channels, margin, margin, g->caption,
                     g->caption_chars, g->caption_scale, rgb);
    }
    for (int s = 0; s < g->n_sets; s++) {
        size_t image_bytes = (size_t)channels * (size_t)heights[s] * (size_t)widths[s];
        for (int i = 0; i < g->n; i++) {
            uint64_t y0, x0;
            cell_origin(g, s, i, &y0, &x0);
            draw_image(canvas, g, y0, x0, sets[s] + (size_t)i * image_bytes, channels,
                       heights[s], widths[s]);
        }
    }
}

/* ---- public ------------------------------------------------------------------------ */

static agave_status encode_and_write(agave_context *ctx, const char *path, const uint8_t *canvas,
                                     const grid_layout *g, image_format format)
{
    int w = (int)g->canvas_w, h = (int)g->canvas_h, c = g->out_channels;
    if (format != IMAGE_OUT_PNG) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        agave_status st = image_encode_plain(ctx, path, format, canvas, w, h, c, &bytes, &len);
        if (st == AGAVE_OK)
            st = file_write_atomic(ctx, path, bytes, len);
        free(bytes);
        return st;
    }
    int png_len = 0;
    grid_pending_stream = NULL;
    unsigned char *png = stbi_write_png_to_mem(canvas, w * c, w, h, c, &png_len);
    free(grid_pending_stream);   /* set only when stb failed after compressing */
    grid_pending_stream = NULL;
    if (!png || png_len <= 0) {
        free(png);
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory encoding a %dx%d PNG", path,
                         w, h);
    }
    agave_status st = file_write_atomic(ctx, path, png, (size_t)png_len);
    free(png);
    return st;
}

agave_status agave_image_grid_write_sets(agave_context *ctx, const char *path,
                                         const uint8_t *const *sets, int n_sets, int n,
                                         int channels, const int *heights, const int *widths,
                                         int cols, agave_grid_layout layout,
                                         const agave_grid_options *opt)
{
    if (!path)
        return ctx_error(ctx, AGAVE_ERR_NULL, "image grid: NULL path");
    size_t path_len = strlen(path);
    if (path_len == 0 || path[path_len - 1] == '/')
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "image grid: '%s' is not a file name", path);
    agave_grid_options o;
    agave_status st = grid_options(ctx, opt, &o);
    if (st == AGAVE_OK)
        st = check_sets(ctx, sets, n_sets, n, channels, heights, widths, cols, layout);
    grid_layout g;
    if (st == AGAVE_OK)
        st = plan_grid(ctx, n_sets, n, channels, heights, widths, cols, layout, &o, &g);
    image_format format = IMAGE_OUT_PNG;
    if (st == AGAVE_OK)
        st = image_format_of(ctx, path, g.out_channels, &format);
    if (st != AGAVE_OK)
        return st;
    uint8_t *canvas = malloc((size_t)(g.canvas_h * g.canvas_w * (uint64_t)g.out_channels));
    if (!canvas)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for a %llux%llu canvas", path,
                         (ull)g.canvas_w, (ull)g.canvas_h);
    draw_grid(canvas, &g, sets, channels, heights, widths, o.background);
    st = encode_and_write(ctx, path, canvas, &g, format);
    free(canvas);
    return st;
}

agave_status agave_image_grid_check_name(agave_context *ctx, const char *path, int channels)
{
    if (!path)
        return ctx_error(ctx, AGAVE_ERR_NULL, "image grid: NULL path");
    if (channels != 1 && channels != 3)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "image grid: %d channels, expected 1 or 3",
                         channels);
    image_format format;
    return image_format_of(ctx, path, channels, &format);
}

agave_status agave_image_grid_write(agave_context *ctx, const char *path, const uint8_t *images,
                                    int n, int channels, int height, int width, int cols,
                                    const agave_grid_options *opt)
{
    const uint8_t *sets[1] = {images};
    return agave_image_grid_write_sets(ctx, path, sets, 1, n, channels, &height, &width, cols,
                                       AGAVE_GRID_SETS_AS_ROWS, opt);
}
