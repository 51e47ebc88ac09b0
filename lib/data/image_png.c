/* PNG files through libpng (Debian's libpng-dev). stb_image 2.27 computes a
 * pointer from NULL on a PNG with an empty IDAT chunk (UBSan: "applying zero
 * offset to null pointer", found by fuzz/fuzz_image.c); libpng is the
 * reference decoder. libpng reports errors through a callback that must not
 * return: it jumps back here with its message. The transformations give 8-bit
 * grey or RGB whatever the file holds: palettes expanded, 1-, 2- and 4-bit
 * grey widened, 16-bit samples cut to their high byte, alpha dropped (not
 * composited), interlacing undone. Sizes are checked from the header first. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image.h"

typedef unsigned long long ull;

typedef struct png_reader {
    const uint8_t *bytes;
    size_t len, at;
    char message[160];
} png_reader;

static void on_error(png_structp png, png_const_charp msg)
{
    png_reader *r = png_get_error_ptr(png);
    snprintf(r->message, sizeof r->message, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (an unknown chunk, a bad CRC in an ancillary chunk) are not errors. */
static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void read_bytes(png_structp png, png_bytep dst, size_t n)
{
    png_reader *r = png_get_io_ptr(png);
    if (r->len - r->at < n)
        png_error(png, "the file ends early");
    memcpy(dst, r->bytes + r->at, n);
    r->at += n;
}

/* 8-bit grey or RGB from any PNG; *channels is 1 or 3. */
static void set_transforms(png_structp png, png_infop info, int *channels)
{
    int type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_bit_depth(png, info) == 16)
        png_set_strip_16(png);
    if (type & PNG_COLOR_MASK_ALPHA)
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    *channels = type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA ? 1 : 3;
}

/* The decode proper; every libpng call may jump back to the setjmp, so what
 * must be freed then is reached through pointers the jump leaves intact. */
static agave_status decode(agave_context *ctx, const char *name, png_reader *r,
                           uint64_t max_pixels, uint8_t **interleaved, png_bytep **rows,
                           int *channels, int *h, int *w)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for the PNG decoder", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: a damaged PNG file: %s", name, r->message);
    }
    png_set_read_fn(png, r, read_bytes);
    png_read_info(png, info);
    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if (width > AGAVE_DATASET_MAX_SIDE || height > AGAVE_DATASET_MAX_SIDE ||
        (uint64_t)width * height > max_pixels) {
        png_destroy_read_struct(&png, &info, NULL);
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "%s: %ux%u pixels (WxH), above the limit of %d per side and %llu "
                         "pixels for one image",
                         name, width, height, AGAVE_DATASET_MAX_SIDE, (ull)max_pixels);
    }
    set_transforms(png, info, channels);
    size_t stride = png_get_rowbytes(png, info);
    *interleaved = malloc(stride * height);
    *rows = malloc(height * sizeof **rows);
    if (!*interleaved || !*rows) {
        png_destroy_read_struct(&png, &info, NULL);
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for %ux%u pixels", name, width,
                         height);
    }
    for (png_uint_32 y = 0; y < height; y++)
        (*rows)[y] = *interleaved + (size_t)y * stride;
    png_read_image(png, *rows);
    png_destroy_read_struct(&png, &info, NULL);
    *h = (int)height;
    *w = (int)width;
    return AGAVE_OK;
}

agave_status image_decode_png(agave_context *ctx, const char *name, const uint8_t *bytes,
                              size_t len, uint64_t max_pixels, decoded_image *out)
{
    memset(out, 0, sizeof *out);
    png_reader r = {bytes, len, 0, "unknown error"};
    uint8_t *interleaved = NULL;
    png_bytep *rows = NULL;
    int channels = 0, h = 0, w = 0;
    agave_status st = decode(ctx, name, &r, max_pixels, &interleaved, &rows, &channels, &h, &w);
    free(rows);
    if (st == AGAVE_OK)
        st = image_from_interleaved(ctx, name, interleaved, channels, h, w, out);
    free(interleaved);
    return st;
}
