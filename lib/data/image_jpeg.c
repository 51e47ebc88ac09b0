/* JPEG files through libjpeg-turbo (Debian's libjpeg62-turbo-dev). stb_image
 * 2.27, the version Debian 12 ships, writes past a Huffman table when a
 * JPEG's DHT segment declares more than 256 codes (found by fuzz/fuzz_image.c),
 * so JPEG takes the library that every browser relies on. libjpeg reports
 * errors through a callback that must not return: it jumps back here, and its
 * message becomes the context's. Sizes are checked from the header before any
 * pixel is decoded. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "image.h"

typedef unsigned long long ull;

typedef struct jpeg_failure {
    struct jpeg_error_mgr mgr;   /* first: libjpeg passes this pointer */
    jmp_buf back;
    char message[JMSG_LENGTH_MAX];
} jpeg_failure;

static void on_error(j_common_ptr cinfo)
{
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    f->mgr.format_message(cinfo, f->message);
    longjmp(f->back, 1);
}

/* Warnings (a corrupt but decodable stream) are not errors: libjpeg carries
 * on with what it can read, as every viewer does. Nothing is printed. */
static void on_message(j_common_ptr cinfo, int level)
{
    (void)cinfo;
    (void)level;
}

/* The header's size and channels, against the limits; 1 or 3 output channels. */
static agave_status check_header(agave_context *ctx, const char *name,
                                 struct jpeg_decompress_struct *c, uint64_t max_pixels,
                                 int *channels)
{
    if (c->image_width < 1 || c->image_height < 1 || c->image_width > AGAVE_DATASET_MAX_SIDE ||
        c->image_height > AGAVE_DATASET_MAX_SIDE)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: JPEG header gives %ux%u pixels (WxH); expected 1..%d per side",
                         name, c->image_width, c->image_height, AGAVE_DATASET_MAX_SIDE);
    if ((uint64_t)c->image_width * c->image_height > max_pixels)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "%s: %ux%u pixels (WxH), above the limit of %llu pixels for one image",
                         name, c->image_width, c->image_height, (ull)max_pixels);
    if (c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: a CMYK JPEG, which is not read: convert it to RGB", name);
    *channels = c->num_components == 1 ? 1 : 3;
    c->out_color_space = *channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    return AGAVE_OK;
}

/* Decodes into *interleaved (h,w,channels), malloc'ed. Every libjpeg call
 * may jump back to the setjmp below, so the buffer it fills is reached
 * through a pointer the jump leaves intact. */
static agave_status decode(agave_context *ctx, const char *name, const uint8_t *bytes, size_t len,
                           uint64_t max_pixels, uint8_t **interleaved, int *channels, int *h,
                           int *w)
{
    struct jpeg_decompress_struct c;
    jpeg_failure f;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&f.mgr);
    f.mgr.error_exit = on_error;
    f.mgr.emit_message = on_message;
    f.message[0] = '\0';
    *interleaved = NULL;
    if (setjmp(f.back)) {
        free(*interleaved);
        *interleaved = NULL;
        jpeg_destroy_decompress(&c);
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: a damaged JPEG file: %s", name, f.message);
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, bytes, (unsigned long)len);
    jpeg_read_header(&c, TRUE);
    agave_status st = check_header(ctx, name, &c, max_pixels, channels);
    if (st != AGAVE_OK) {
        jpeg_destroy_decompress(&c);
        return st;
    }
    jpeg_start_decompress(&c);
    size_t stride = (size_t)c.output_width * (size_t)c.output_components;
    *interleaved = malloc(stride * c.output_height);
    if (!*interleaved) {
        jpeg_destroy_decompress(&c);
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for %ux%u pixels", name,
                         c.output_width, c.output_height);
    }
    while (c.output_scanline < c.output_height) {
        JSAMPROW row = *interleaved + (size_t)c.output_scanline * stride;
        jpeg_read_scanlines(&c, &row, 1);
    }
    *h = (int)c.output_height;
    *w = (int)c.output_width;
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    return AGAVE_OK;
}

agave_status image_decode_jpeg(agave_context *ctx, const char *name, const uint8_t *bytes,
                               size_t len, uint64_t max_pixels, decoded_image *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *interleaved = NULL;
    int channels = 0, h = 0, w = 0;
    agave_status st = decode(ctx, name, bytes, len, max_pixels, &interleaved, &channels, &h, &w);
    if (st != AGAVE_OK)
        return st;
    st = image_from_interleaved(ctx, name, interleaved, channels, h, w, out);
    free(interleaved);
    return st;
}
