/* The file format of a picture, from its name, and the two simple formats
 * written here (BMP and PGM/PPM; PNG is stb_image_write's, lib/data/grid.c).
 * A name asking for a format that is not written (JPEG, GIF, TIFF, WebP) is
 * refused: PNG bytes under such a name would mislead every program that opens
 * it, and JPEG's loss would blur the very pixels a grid is there to show. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image.h"

/* The name's ending after its last dot ("" when there is none). */
static const char *ending(const char *path)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot + 1 : "";
}

agave_status image_format_of(agave_context *ctx, const char *path, int channels,
                             image_format *format)
{
    static const char *const refused[] = {"jpg", "jpeg", "jpe", "gif", "tif", "tiff", "webp",
                                          "heic", "avif"};
    const char *e = ending(path);
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (strcasecmp(e, refused[i]) == 0)
            return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                             "%s: .%s files are not written (the format is lossy or not "
                             "supported); name the file .png, .bmp, .ppm or .pgm",
                             path, e);
    if (strcasecmp(e, "bmp") == 0)
        *format = IMAGE_OUT_BMP;
    else if (strcasecmp(e, "ppm") == 0 || (strcasecmp(e, "pnm") == 0 && channels == 3))
        *format = IMAGE_OUT_PPM;
    else if (strcasecmp(e, "pgm") == 0 || strcasecmp(e, "pnm") == 0)
        *format = IMAGE_OUT_PGM;
    else
        *format = IMAGE_OUT_PNG;   /* .png, and any other name, as always */
    if (*format == IMAGE_OUT_PGM && channels != 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: a PGM file holds grey pictures and this one is in colour; name "
                         "it .ppm or .png",
                         path);
    return AGAVE_OK;
}

static void put_le(uint8_t *p, uint32_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A bottom-up BMP: 8-bit with a grey palette for channels 1, else 24-bit BGR. */
static uint8_t *encode_bmp(const uint8_t *px, int w, int h, int channels, size_t *len)
{
    size_t palette = channels == 1 ? 256 * 4 : 0, offset = 54 + palette;
    size_t row = ((size_t)w * (channels == 1 ? 1 : 3) + 3) / 4 * 4;
    *len = offset + row * (size_t)h;
    uint8_t *b = calloc(1, *len);
    if (!b)
        return NULL;
    b[0] = 'B', b[1] = 'M';
    put_le(b + 2, (uint32_t)*len, 4);
    put_le(b + 10, (uint32_t)offset, 4);
    put_le(b + 14, 40, 4);                 /* BITMAPINFOHEADER */
    put_le(b + 18, (uint32_t)w, 4);
    put_le(b + 22, (uint32_t)h, 4);
    put_le(b + 26, 1, 2);
    put_le(b + 28, channels == 1 ? 8 : 24, 2);
    put_le(b + 46, channels == 1 ? 256 : 0, 4);   /* palette entries */
    for (size_t i = 0; i < palette / 4; i++)
        memset(b + 54 + 4 * i, (int)i, 3);
    for (int y = 0; y < h; y++) {
        uint8_t *dst = b + offset + (size_t)(h - 1 - y) * row;
        const uint8_t *src = px + (size_t)y * w * channels;
        for (int x = 0; x < w; x++) {
            if (channels == 1) {
                dst[x] = src[x];
            } else {
                dst[3 * x] = src[3 * x + 2];
                dst[3 * x + 1] = src[3 * x + 1];
                dst[3 * x + 2] = src[3 * x];
            }
        }
    }
    return b;
}

/* P5 (grey) or P6 (colour; a grey canvas has its value repeated). */
static uint8_t *encode_pnm(const uint8_t *px, int w, int h, int channels, int colour, size_t *len)
{
    char head[48];
    int n = snprintf(head, sizeof head, "P%d\n%d %d\n255\n", colour ? 6 : 5, w, h);
    size_t pixels = (size_t)w * h, out_c = colour ? 3 : 1;
    *len = (size_t)n + pixels * out_c;
    uint8_t *b = malloc(*len);
    if (!b)
        return NULL;
    memcpy(b, head, (size_t)n);
    for (size_t p = 0; p < pixels; p++)
        for (size_t k = 0; k < out_c; k++)
            b[(size_t)n + p * out_c + k] = px[p * (size_t)channels + (channels == 1 ? 0 : k)];
    return b;
}

agave_status image_encode_plain(agave_context *ctx, const char *path, image_format format,
                                const uint8_t *pixels, int w, int h, int channels,
                                uint8_t **bytes, size_t *len)
{
    *bytes = format == IMAGE_OUT_BMP ? encode_bmp(pixels, w, h, channels, len)
                                     : encode_pnm(pixels, w, h, channels,
                                                  format == IMAGE_OUT_PPM, len);
    if (!*bytes)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory encoding a %dx%d picture", path,
                         w, h);
    return AGAVE_OK;
}
