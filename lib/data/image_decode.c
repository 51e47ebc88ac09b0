/* Image files to planar pixels. stb_image (Debian's libstb-dev) decodes BMP
 * from memory; PNG goes to libpng (lib/data/image_png.c), JPEG to
 * libjpeg-turbo (lib/data/image_jpeg.c) and PGM/PPM to lib/data/image_pnm.c,
 * each of which says what the fuzzer found in stb_image 2.27's decoder for
 * that format. stb_image is compiled into this file only, every function
 * static, so no stb symbol leaves the library; the formats it is not used for
 * are left out of it, which keeps their decoders out of reach of untrusted
 * files. Sizes are checked from the header before the pixels are decoded. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_BMP
#define STBI_MAX_DIMENSIONS AGAVE_DATASET_MAX_SIDE
/* The library never aborts (tests/check_no_abort.sh). What stb_image 2.27
 * asserts on the BMP path are its own invariants, which the BMP loader
 * establishes before them (8-bit channels; a mask of at most 8 bits, checked
 * with a "bad masks" error, so the shifted value stays below 256; the
 * req_comp this file passes), not properties of the file: compiled out. */
#define STBI_ASSERT(x) ((void)0)
/* stb declares static functions of the formats left out, which GCC reports
 * at the end of the file: silenced for the whole file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

typedef unsigned long long ull;

image_kind image_kind_of(const uint8_t *h, size_t n)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(h, png, 8) == 0)
        return IMAGE_PNG;
    if (n >= 3 && h[0] == 0xff && h[1] == 0xd8 && h[2] == 0xff)
        return IMAGE_JPEG;
    if (n >= 2 && h[0] == 'B' && h[1] == 'M')
        return IMAGE_BMP;
    if (n >= 2 && h[0] == 'P' && (h[1] == '5' || h[1] == '6'))
        return IMAGE_PNM;
    if (n >= 2 && h[0] == 'P' && h[1] >= '1' && h[1] <= '4')
        return IMAGE_PNM_TEXT;
    if (n >= 4 && memcmp(h, "GIF8", 4) == 0)
        return IMAGE_GIF;
    if (n >= 4 && (memcmp(h, "II*\0", 4) == 0 || memcmp(h, "MM\0*", 4) == 0))
        return IMAGE_TIFF;
    if (n >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0)
        return IMAGE_WEBP;
    return IMAGE_NONE;
}

const char *image_kind_name(image_kind kind)
{
    switch (kind) {
    case IMAGE_PNG:
        return "PNG";
    case IMAGE_JPEG:
        return "JPEG";
    case IMAGE_BMP:
        return "BMP";
    case IMAGE_PNM:
        return "PGM/PPM";
    case IMAGE_PNM_TEXT:
        return "ASCII PNM or PBM";
    case IMAGE_GIF:
        return "GIF";
    case IMAGE_TIFF:
        return "TIFF";
    case IMAGE_WEBP:
        return "WebP";
    case IMAGE_NONE:
        break;
    }
    return "unknown";
}

int image_kind_readable(image_kind kind)
{
    return kind == IMAGE_PNG || kind == IMAGE_JPEG || kind == IMAGE_BMP || kind == IMAGE_PNM;
}

void image_free(decoded_image *im)
{
    if (!im)
        return;
    free(im->pixels);
    im->pixels = NULL;
}

/* The header's size and channel count, checked against the limits. */
static agave_status probe(agave_context *ctx, const char *name, const uint8_t *bytes, size_t len,
                          uint64_t max_pixels, int *w, int *h, int *comp)
{
    image_kind kind = image_kind_of(bytes, len);
    if (kind == IMAGE_NONE)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: not an image file: expected a PNG, JPEG, "
                         "BMP or binary PGM/PPM image", name);
    if (!image_kind_readable(kind))
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: a %s image, which is not read: convert it "
                         "to PNG (PNG, JPEG, BMP and binary PGM/PPM are read)",
                         name, image_kind_name(kind));
    if (len > IMAGE_MAX_FILE_BYTES || len > INT_MAX)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: %llu bytes, above the limit of %llu for one "
                         "image file", name, (ull)len, (ull)IMAGE_MAX_FILE_BYTES);
    if (!stbi_info_from_memory(bytes, (int)len, w, h, comp))
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: a damaged %s file: %s", name,
                         image_kind_name(kind), stbi_failure_reason());
    if (*w < 1 || *h < 1 || *w > AGAVE_DATASET_MAX_SIDE || *h > AGAVE_DATASET_MAX_SIDE ||
        *comp < 1 || *comp > 4)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: %s header gives %dx%d pixels (WxH) and %d "
                         "channels; expected 1..%d per side and 1..4 channels",
                         name, image_kind_name(kind), *w, *h, *comp, AGAVE_DATASET_MAX_SIDE);
    if ((uint64_t)*w * (uint64_t)*h > max_pixels)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: %dx%d pixels (WxH), above the limit of %llu "
                         "pixels for one image", name, *w, *h, (ull)max_pixels);
    return AGAVE_OK;
}

static uint32_t le(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* 1 for a BMP of 1, 4 or 8 bits per pixel whose palette entries are all grey
 * (R = G = B). The header: its size at byte 14 (12 for OS/2's, with 16-bit
 * fields and 3-byte entries; 40 or more otherwise), then the palette. */
static int bmp_grey_palette(const uint8_t *b, size_t len)
{
    if (len < 30 || b[0] != 'B' || b[1] != 'M')
        return 0;
    uint32_t header = le(b + 14, 4);
    int os2 = header == 12;
    uint32_t bpp = os2 ? le(b + 24, 2) : le(b + 28, 2);
    if (bpp != 1 && bpp != 4 && bpp != 8)
        return 0;
    uint32_t entries = !os2 && len >= 50 ? le(b + 46, 4) : 0;
    if (entries == 0 || entries > (1u << bpp))
        entries = 1u << bpp;
    size_t at = 14 + (size_t)header, size = os2 ? 3 : 4;
    if (header > len - 14 || len - 14 - header < entries * size)
        return 0;   /* stb_image will refuse it */
    for (uint32_t i = 0; i < entries; i++) {
        const uint8_t *e = b + at + i * size;
        if (e[0] != e[1] || e[1] != e[2])
            return 0;
    }
    return 1;
}

void image_to_planar(const uint8_t *src, int c, int h, int w, uint8_t *dst)
{
    size_t plane = (size_t)h * (size_t)w;
    for (size_t p = 0; p < plane; p++)
        for (int k = 0; k < c; k++)
            dst[(size_t)k * plane + p] = src[p * (size_t)c + (size_t)k];
}

agave_status image_from_interleaved(agave_context *ctx, const char *name,
                                    const uint8_t *interleaved, int c, int h, int w,
                                    decoded_image *out)
{
    out->pixels = malloc((size_t)c * (size_t)h * (size_t)w);
    if (!out->pixels)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for %dx%d pixels", name, w, h);
    image_to_planar(interleaved, c, h, w, out->pixels);
    out->channels = c;
    out->height = h;
    out->width = w;
    return AGAVE_OK;
}

agave_status image_decode(agave_context *ctx, const char *name, const uint8_t *bytes, size_t len,
                          uint64_t max_pixels, decoded_image *out)
{
    memset(out, 0, sizeof *out);
    if (len > IMAGE_MAX_FILE_BYTES)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: %llu bytes, above the limit of %llu for one "
                         "image file", name, (ull)len, (ull)IMAGE_MAX_FILE_BYTES);
    image_kind kind = image_kind_of(bytes, len);
    if (kind == IMAGE_JPEG)
        return image_decode_jpeg(ctx, name, bytes, len, max_pixels, out);
    if (kind == IMAGE_PNM)
        return image_decode_pnm(ctx, name, bytes, len, max_pixels, out);
    if (kind == IMAGE_PNG)
        return image_decode_png(ctx, name, bytes, len, max_pixels, out);
    int w = 0, h = 0, comp = 0;
    agave_status st = probe(ctx, name, bytes, len, max_pixels, &w, &h, &comp);
    if (st != AGAVE_OK)
        return st;
    /* grey (+ alpha) or colour (+ alpha); a BMP of grey palette entries is
     * grey, as the 8-bit BMPs that image programs write for grey pictures. */
    int channels = comp <= 2 || bmp_grey_palette(bytes, len) ? 1 : 3;
    int dw, dh, dcomp;
    uint8_t *interleaved = stbi_load_from_memory(bytes, (int)len, &dw, &dh, &dcomp, channels);
    if (!interleaved)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: a damaged %s file: %s", name,
                         image_kind_name(image_kind_of(bytes, len)), stbi_failure_reason());
    if (dw != w || dh != h) {
        stbi_image_free(interleaved);
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: the header says %dx%d pixels but the data "
                         "decodes to %dx%d", name, w, h, dw, dh);
    }
    st = image_from_interleaved(ctx, name, interleaved, channels, h, w, out);
    stbi_image_free(interleaved);
    return st;
}
