/* Binary PGM (P5) and PPM (P6) files, read here: the format is a few header
 * numbers and the samples, and stb_image 2.27's reader overflows an int on a
 * header number of ten digits (found by fuzz/fuzz_image.c). Netpbm's rules:
 * "P5" or "P6", then width, height and maxval (1..65535) as decimal numbers
 * separated by whitespace, with '#' comments running to the end of a line,
 * then one whitespace byte and the samples, row by row, one byte each when
 * maxval < 256, else two (big-endian). Samples are scaled from 0..maxval to
 * 0..255, rounded half up; a sample above maxval is refused. */
#include <stdlib.h>
#include <string.h>

#include "image.h"

typedef unsigned long long ull;

typedef struct pnm_cursor {
    const uint8_t *p;
    size_t len, at;
} pnm_cursor;

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Skips whitespace and comments before a header number. */
static void skip_blank(pnm_cursor *c)
{
    while (c->at < c->len) {
        if (is_space(c->p[c->at])) {
            c->at++;
        } else if (c->p[c->at] == '#') {
            while (c->at < c->len && c->p[c->at] != '\n')
                c->at++;
        } else {
            return;
        }
    }
}

/* A decimal number of at most `max`; 0 when there is none or it is larger. */
static int header_number(pnm_cursor *c, uint32_t max, uint32_t *out)
{
    skip_blank(c);
    uint64_t v = 0;
    size_t start = c->at;
    while (c->at < c->len && c->p[c->at] >= '0' && c->p[c->at] <= '9') {
        v = v * 10 + (uint64_t)(c->p[c->at] - '0');
        if (v > max)
            return 0;
        c->at++;
    }
    if (c->at == start)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

/* Reads the samples after the header into planar pixels. */
static agave_status read_samples(agave_context *ctx, const char *name, const pnm_cursor *c,
                                 int channels, uint32_t w, uint32_t h, uint32_t maxval,
                                 uint8_t *dst)
{
    size_t bytes_per = maxval < 256 ? 1 : 2;
    size_t plane = (size_t)w * h, need = plane * (size_t)channels * bytes_per;
    if (c->len - c->at < need)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: truncated PGM/PPM file: %llu bytes of samples for %ux%u pixels, "
                         "%llu present", name, (ull)need, w, h, (ull)(c->len - c->at));
    const uint8_t *s = c->p + c->at;
    for (size_t i = 0; i < plane * (size_t)channels; i++) {
        uint32_t v = bytes_per == 1 ? s[i] : (uint32_t)s[2 * i] << 8 | s[2 * i + 1];
        if (v > maxval)
            return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: sample %llu is %u, above the maxval %u",
                             name, (ull)i, v, maxval);
        dst[(i % (size_t)channels) * plane + i / (size_t)channels] =
            (uint8_t)(((uint64_t)v * 255 + maxval / 2) / maxval);
    }
    return AGAVE_OK;
}

agave_status image_decode_pnm(agave_context *ctx, const char *name, const uint8_t *bytes,
                              size_t len, uint64_t max_pixels, decoded_image *out)
{
    memset(out, 0, sizeof *out);
    pnm_cursor c = {bytes, len, 2};
    int channels = len >= 2 && bytes[1] == '6' ? 3 : 1;
    uint32_t w, h, maxval;
    if (!header_number(&c, AGAVE_DATASET_MAX_SIDE, &w) ||
        !header_number(&c, AGAVE_DATASET_MAX_SIDE, &h) || !header_number(&c, 65535, &maxval) ||
        w == 0 || h == 0 || maxval == 0 || c.at >= len || !is_space(bytes[c.at]))
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: a damaged PGM/PPM header: expected P5 or P6, then width and "
                         "height (1..%d) and maxval (1..65535), each followed by whitespace",
                         name, AGAVE_DATASET_MAX_SIDE);
    c.at++;   /* the one whitespace byte before the samples */
    if ((uint64_t)w * h > max_pixels)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "%s: %ux%u pixels (WxH), above the limit of %llu pixels for one image",
                         name, w, h, (ull)max_pixels);
    out->pixels = malloc((size_t)channels * w * h);
    if (!out->pixels)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for %ux%u pixels", name, w, h);
    agave_status st = read_samples(ctx, name, &c, channels, w, h, maxval, out->pixels);
    if (st != AGAVE_OK) {
        image_free(out);
        return st;
    }
    out->channels = channels;
    out->height = (int)h;
    out->width = (int)w;
    return AGAVE_OK;
}
