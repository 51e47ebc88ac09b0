/* Image files as data: the decoders (PNG, JPEG, BMP, PGM/PPM), the crop and
 * the area-average resize, image folders (train/ and test/, or one folder
 * split by name), the errors a mixed or foreign folder gets, a PNG passed
 * where a CIFAR-10 batch was expected, and agave_dataset_image_name.
 *
 * The references are independent of the code under test: BMP and PGM files
 * are written byte by byte here, PNG and JPEG by stb_image_write (an encoder,
 * not the decoder under test); the resize is checked against closed forms
 * (constants, block means, exact replication) and a direct two-dimensional
 * sum of overlap areas; the split rule against the published FNV-1a test
 * vectors. Every file lives in a fresh temporary directory. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jpeglib.h>

#include <cmocka.h>

#include "agave.h"
#include "data/data.h"
#include "data/image.h"
#include "support/support.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

static char g_root[512];
static agave_context *g_ctx;

/* ---- scratch files ------------------------------------------------------------ */

static const char *tmp_path(const char *rel) { return support_path(g_root, rel); }

static void make_dir(const char *rel) { assert_int_equal(mkdir(tmp_path(rel), 0755), 0); }

static int setup(void **state)
{
    (void)state;
    if (support_tmpdir_make(g_root, sizeof g_root, "agave-test-images") != 0)
        return -1;
    return agave_context_create(&g_ctx, 1) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(g_ctx);
    return support_tmpdir_remove(g_root);
}

/* A binary PGM (c = 1, P5) or PPM (c = 3, P6) of planar pixels (c,h,w). */
static void write_pnm(const char *path, const uint8_t *planar, int c, int h, int w)
{
    char head[64];
    int n = snprintf(head, sizeof head, "P%d\n%d %d\n255\n", c == 1 ? 5 : 6, w, h);
    size_t len = (size_t)n + (size_t)c * h * w;
    uint8_t *bytes = malloc(len);
    assert_non_null(bytes);
    memcpy(bytes, head, (size_t)n);
    for (int p = 0; p < h * w; p++)
        for (int k = 0; k < c; k++)
            bytes[n + p * c + k] = planar[k * h * w + p];
    support_write_file(path, bytes, len);
    free(bytes);
}

static void put_le(uint8_t *p, uint32_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A 24-bit bottom-up BMP of planar RGB pixels (3,h,w), rows padded to 4 bytes. */
static void write_bmp(const char *path, const uint8_t *planar, int h, int w)
{
    int row = (3 * w + 3) / 4 * 4;
    size_t len = 54 + (size_t)row * h;
    uint8_t *b = calloc(1, len);
    assert_non_null(b);
    b[0] = 'B', b[1] = 'M';
    put_le(b + 2, (uint32_t)len, 4);
    put_le(b + 10, 54, 4);          /* pixel data offset */
    put_le(b + 14, 40, 4);          /* BITMAPINFOHEADER */
    put_le(b + 18, (uint32_t)w, 4);
    put_le(b + 22, (uint32_t)h, 4); /* positive: bottom-up */
    put_le(b + 26, 1, 2);           /* planes */
    put_le(b + 28, 24, 2);          /* bits per pixel */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *px = b + 54 + (size_t)(h - 1 - y) * row + 3 * x;
            px[0] = planar[2 * h * w + y * w + x];   /* B, G, R */
            px[1] = planar[1 * h * w + y * w + x];
            px[2] = planar[0 * h * w + y * w + x];
        }
    support_write_file(path, b, len);
    free(b);
}

/* A JPEG of quality 100 of interleaved pixels (h,w,c), by libjpeg: stb's JPEG
 * writer shifts signed ints out of range, which UBSan stops. */
static void write_jpeg(const char *path, const uint8_t *inter, int c, int h, int w)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 100, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(inter + (size_t)cinfo.next_scanline * (size_t)w * (size_t)c);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    assert_int_equal(fclose(f), 0);
}

/* A PNG (or with jpeg set, a JPEG of quality 100) of planar pixels. */
static void write_stb(const char *path, const uint8_t *planar, int c, int h, int w, int jpeg)
{
    uint8_t *inter = malloc((size_t)c * h * w);
    assert_non_null(inter);
    for (int p = 0; p < h * w; p++)
        for (int k = 0; k < c; k++)
            inter[p * c + k] = planar[k * h * w + p];
    if (jpeg)
        write_jpeg(path, inter, c, h, w);
    else
        assert_true(stbi_write_png(path, w, h, c, inter, w * c));
    free(inter);
}

/* Pixels (c,h,w) with a pattern that tells every position and channel apart. */
static uint8_t *pattern(int c, int h, int w, int seed)
{
    uint8_t *p = malloc((size_t)c * h * w);
    assert_non_null(p);
    for (int i = 0; i < c * h * w; i++)
        p[i] = (uint8_t)((i * 37 + seed * 101 + (i / w) * 11) % 256);
    return p;
}

static agave_dataset *open_ok(const char *path, agave_data_split split,
                              const agave_dataset_options *opt)
{
    agave_dataset *ds = NULL;
    agave_status st = agave_dataset_open_v2(g_ctx, path, split, opt, &ds);
    if (st != AGAVE_OK)
        fail_msg("open %s: %s", path, agave_context_last_error(g_ctx));
    assert_non_null(ds);
    return ds;
}

/* Expects status st and a message containing each of the NULL-terminated words. */
static void open_fails(const char *path, agave_data_split split, const agave_dataset_options *opt,
                       agave_status want, ...)
{
    agave_dataset *ds = (agave_dataset *)1;
    agave_status st = agave_dataset_open_v2(g_ctx, path, split, opt, &ds);
    const char *msg = agave_context_last_error(g_ctx);
    if (st != want)
        fail_msg("open %s: status %d, expected %d (%s)", path, st, want, msg);
    assert_null(ds);
    va_list ap;
    va_start(ap, want);
    for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
        if (!strstr(msg, w))
            fail_msg("message '%s' lacks '%s'", msg, w);
    va_end(ap);
}

/* ---- formats ------------------------------------------------------------------- */

static void test_kinds_from_magic(void **state)
{
    (void)state;
    const uint8_t png[8] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
    const uint8_t jpg[3] = {0xff, 0xd8, 0xff};
    assert_int_equal(image_kind_of(png, 8), IMAGE_PNG);
    assert_int_equal(image_kind_of(png, 7), IMAGE_NONE);
    assert_int_equal(image_kind_of(jpg, 3), IMAGE_JPEG);
    assert_int_equal(image_kind_of((const uint8_t *)"BM", 2), IMAGE_BMP);
    assert_int_equal(image_kind_of((const uint8_t *)"P5", 2), IMAGE_PNM);
    assert_int_equal(image_kind_of((const uint8_t *)"P6", 2), IMAGE_PNM);
    assert_int_equal(image_kind_of((const uint8_t *)"P2", 2), IMAGE_PNM_TEXT);
    assert_int_equal(image_kind_of((const uint8_t *)"GIF89a", 6), IMAGE_GIF);
    assert_int_equal(image_kind_of((const uint8_t *)"II*\0", 4), IMAGE_TIFF);
    assert_int_equal(image_kind_of((const uint8_t *)"RIFF\0\0\0\0WEBP", 12), IMAGE_WEBP);
    /* IDX and CIFAR-10 data never look like images. */
    const uint8_t idx[4] = {0, 0, 8, 3}, cifar[2] = {9, 'M'};
    assert_int_equal(image_kind_of(idx, 4), IMAGE_NONE);
    assert_int_equal(image_kind_of(cifar, 2), IMAGE_NONE);
}

/* Every lossless format gives back exactly the pixels written, planar. */
static void test_lossless_formats_round_trip(void **state)
{
    (void)state;
    make_dir("fmt");
    make_dir("fmt/train");
    make_dir("fmt/test");
    uint8_t *grey = pattern(1, 5, 7, 1), *rgb = pattern(3, 5, 7, 2);
    write_pnm(tmp_path("fmt/train/a.pgm"), grey, 1, 5, 7);
    write_stb(tmp_path("fmt/test/b.png"), grey, 1, 5, 7, 0);
    agave_dataset *a = open_ok(tmp_path("fmt"), AGAVE_SPLIT_TRAIN, NULL);
    agave_dataset *b = open_ok(tmp_path("fmt"), AGAVE_SPLIT_TEST, NULL);
    assert_int_equal(agave_dataset_channels(a), 1);
    assert_int_equal(agave_dataset_height(a), 5);
    assert_int_equal(agave_dataset_width(a), 7);
    assert_memory_equal(agave_dataset_pixels(a), grey, 35);
    assert_memory_equal(agave_dataset_pixels(b), grey, 35);
    agave_dataset_free(a);
    agave_dataset_free(b);

    make_dir("rgb");
    write_pnm(tmp_path("rgb/a.ppm"), rgb, 3, 5, 7);
    write_bmp(tmp_path("rgb/b.bmp"), rgb, 5, 7);
    write_stb(tmp_path("rgb/c.png"), rgb, 3, 5, 7, 0);
    decoded_image im;
    for (int f = 0; f < 3; f++) {
        const char *name = tmp_path(f == 0 ? "rgb/a.ppm" : f == 1 ? "rgb/b.bmp" : "rgb/c.png");
        FILE *in = fopen(name, "rb");
        assert_non_null(in);
        uint8_t buf[4096];
        size_t len = fread(buf, 1, sizeof buf, in);
        fclose(in);
        assert_int_equal(image_decode(g_ctx, name, buf, len, IMAGE_MAX_PIXELS, &im), AGAVE_OK);
        assert_int_equal(im.channels, 3);
        assert_int_equal(im.height, 5);
        assert_int_equal(im.width, 7);
        assert_memory_equal(im.pixels, rgb, 105);
        image_free(&im);
    }
    free(grey);
    free(rgb);
}

/* JPEG is lossy: a flat colour comes back within 2 levels; RGBA drops alpha. */
static void test_jpeg_and_alpha(void **state)
{
    (void)state;
    make_dir("jpg");
    uint8_t flat[3 * 16 * 16];
    for (int i = 0; i < 16 * 16; i++)
        flat[i] = 200, flat[256 + i] = 60, flat[512 + i] = 120;
    write_stb(tmp_path("jpg/a.jpg"), flat, 3, 16, 16, 1);
    agave_dataset_options o;
    agave_dataset_options_init(&o);
    o.test_percent = 1;   /* "a.jpg" hashes to 37: training */
    assert_false(image_folder_is_test("a.jpg", o.test_percent));
    agave_dataset *ds = open_ok(tmp_path("jpg"), AGAVE_SPLIT_TRAIN, &o);
    const uint8_t *px = agave_dataset_pixels(ds);
    for (int i = 0; i < 3 * 256; i++)
        assert_true(abs((int)px[i] - (int)flat[i]) <= 2);
    agave_dataset_free(ds);

    /* RGBA and grey + alpha: the colour (or grey) channels only. */
    uint8_t rgba[4 * 4], ga[2 * 4];
    for (int i = 0; i < 4; i++) {
        rgba[4 * i] = (uint8_t)(10 * i), rgba[4 * i + 1] = 50, rgba[4 * i + 2] = 90;
        rgba[4 * i + 3] = (uint8_t)(i * 60);
        ga[2 * i] = (uint8_t)(30 + i), ga[2 * i + 1] = 0;
    }
    int len;
    unsigned char *png = stbi_write_png_to_mem(rgba, 8, 2, 2, 4, &len);
    decoded_image im;
    assert_int_equal(image_decode(g_ctx, "rgba.png", png, (size_t)len, IMAGE_MAX_PIXELS, &im),
                     AGAVE_OK);
    assert_int_equal(im.channels, 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(im.pixels[i], 10 * i);
        assert_int_equal(im.pixels[4 + i], 50);
        assert_int_equal(im.pixels[8 + i], 90);
    }
    image_free(&im);
    STBIW_FREE(png);
    png = stbi_write_png_to_mem(ga, 4, 2, 2, 2, &len);
    assert_int_equal(image_decode(g_ctx, "ga.png", png, (size_t)len, IMAGE_MAX_PIXELS, &im),
                     AGAVE_OK);
    assert_int_equal(im.channels, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(im.pixels[i], 30 + i);
    image_free(&im);
    STBIW_FREE(png);
}

/* Damaged and foreign files are refused with their name and what they are. */
static void test_bad_files(void **state)
{
    (void)state;
    decoded_image im;
    const char *msg;
    static const uint8_t text[] = "hello, world";
    assert_int_equal(image_decode(g_ctx, "x.png", text, sizeof text, IMAGE_MAX_PIXELS, &im),
                     AGAVE_ERR_FORMAT);
    msg = agave_context_last_error(g_ctx);
    assert_non_null(strstr(msg, "x.png: not an image file"));
    static const uint8_t gif[] = "GIF89a\1\0\1\0";
    assert_int_equal(image_decode(g_ctx, "x.gif", gif, sizeof gif, IMAGE_MAX_PIXELS, &im),
                     AGAVE_ERR_FORMAT);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "a GIF image, which is not read"));
    /* A PNG cut short: its header still reads, the data does not. */
    uint8_t px[64];
    memset(px, 7, sizeof px);
    int len;
    unsigned char *png = stbi_write_png_to_mem(px, 8, 8, 8, 1, &len);
    assert_int_equal(image_decode(g_ctx, "cut.png", png, (size_t)len - 20, IMAGE_MAX_PIXELS, &im),
                     AGAVE_ERR_FORMAT);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "cut.png: a damaged PNG file"));
    /* Above the pixel limit: refused from the header, before decoding. */
    assert_int_equal(image_decode(g_ctx, "big.png", png, (size_t)len, 63, &im), AGAVE_ERR_LIMIT);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "8x8 pixels (WxH), above the limit"));
    assert_null(im.pixels);
    STBIW_FREE(png);
}

static void decode_expect(const char *bytes, size_t len, agave_status want, const char *words)
{
    decoded_image im;
    agave_status st = image_decode(g_ctx, "x.pnm", (const uint8_t *)bytes, len,
                                   IMAGE_MAX_PIXELS, &im);
    if (st != want)
        fail_msg("'%.*s': status %d, expected %d (%s)", (int)(len < 20 ? len : 20), bytes, st,
                 want, agave_context_last_error(g_ctx));
    if (words && !strstr(agave_context_last_error(g_ctx), words))
        fail_msg("message '%s' lacks '%s'", agave_context_last_error(g_ctx), words);
    if (st != AGAVE_OK)
        assert_null(im.pixels);
    image_free(&im);
}

/* PGM/PPM by Netpbm's rules: comments, maxval scaling, 16-bit samples. */
static void test_pnm_rules(void **state)
{
    (void)state;
    decoded_image im;
    /* maxval 15: 0, 5, 15 -> 0, 85, 255; a comment in the header. */
    static const char p15[] = "P5 # grey\n3 # three wide\n1\n15\n\0\5\17";
    assert_int_equal(image_decode(g_ctx, "a.pgm", (const uint8_t *)p15, sizeof p15 - 1,
                                  IMAGE_MAX_PIXELS, &im), AGAVE_OK);
    assert_int_equal(im.pixels[0], 0);
    assert_int_equal(im.pixels[1], 85);
    assert_int_equal(im.pixels[2], 255);
    image_free(&im);
    /* 16-bit big-endian, maxval 65535: 0x8000 -> round(32768 * 255 / 65535) = 128. */
    static const char p16[] = "P6 1 1 65535\n\x80\x00\xff\xff\x00\x00";
    assert_int_equal(image_decode(g_ctx, "b.ppm", (const uint8_t *)p16, sizeof p16 - 1,
                                  IMAGE_MAX_PIXELS, &im), AGAVE_OK);
    assert_int_equal(im.channels, 3);
    assert_int_equal(im.pixels[0], 128);
    assert_int_equal(im.pixels[1], 255);
    assert_int_equal(im.pixels[2], 0);
    image_free(&im);
    static const char above[] = "P5 2 1 10\n\5\13";
    decode_expect(above, sizeof above - 1, AGAVE_ERR_FORMAT, "sample 1 is 11, above the maxval 10");
    static const char cut[] = "P6 2 2 255\n\1\2\3";
    decode_expect(cut, sizeof cut - 1, AGAVE_ERR_FORMAT, "truncated PGM/PPM file: 12 bytes");
    static const char huge[] = "P6 2553625536 5\n";
    decode_expect(huge, sizeof huge - 1, AGAVE_ERR_FORMAT, "damaged PGM/PPM header");
    static const char zero[] = "P5 0 1 255\n";
    decode_expect(zero, sizeof zero - 1, AGAVE_ERR_FORMAT, "damaged PGM/PPM header");
    static const char nospace[] = "P5 1 1 255";
    decode_expect(nospace, sizeof nospace - 1, AGAVE_ERR_FORMAT, "damaged PGM/PPM header");
    static const char big[] = "P5 2048 2048 255\n";
    decode_expect(big, sizeof big - 1, AGAVE_ERR_FORMAT, "truncated");
    image_fit none = {0, 0, 0, 0, 0};
    agave_dataset *ds = NULL;
    assert_int_equal(image_open_memory(g_ctx, "big.pgm", (const uint8_t *)big, sizeof big - 1,
                                       &none, 1000, &ds), AGAVE_ERR_LIMIT);
    assert_null(ds);
}

/* ---- crop and resize ------------------------------------------------------------ */

/* The area average by its definition: every source pixel's overlap with the
 * output pixel's footprint, in two dimensions at once, in 64-bit integers
 * (lengths in units of 1/H and 1/W). */
static uint8_t reference_pixel(const uint8_t *src, int h, int w, int H, int W, int i, int j)
{
    uint64_t sum = 0;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            int64_t rlo = (int64_t)i * h > (int64_t)r * H ? (int64_t)i * h : (int64_t)r * H;
            int64_t rhi = (int64_t)(i + 1) * h < (int64_t)(r + 1) * H ? (int64_t)(i + 1) * h
                                                                        : (int64_t)(r + 1) * H;
            int64_t clo = (int64_t)j * w > (int64_t)c * W ? (int64_t)j * w : (int64_t)c * W;
            int64_t chi = (int64_t)(j + 1) * w < (int64_t)(c + 1) * W ? (int64_t)(j + 1) * w
                                                                        : (int64_t)(c + 1) * W;
            if (rhi > rlo && chi > clo)
                sum += (uint64_t)((rhi - rlo) * (chi - clo)) * src[r * w + c];
        }
    uint64_t total = (uint64_t)h * (uint64_t)w;
    return (uint8_t)((sum + total / 2) / total);
}

static void resize(const uint8_t *src, int c, int h, int w, uint8_t *dst, int H, int W)
{
    uint64_t *acc = malloc((size_t)w * sizeof *acc);
    assert_non_null(acc);
    image_resize_area(src, c, h, w, dst, H, W, acc);
    free(acc);
}

static void test_resize_against_the_definition(void **state)
{
    (void)state;
    static const int sizes[][4] = {{7, 5, 3, 2}, {5, 7, 11, 13}, {9, 9, 4, 6}, {3, 10, 7, 3},
                                   {1, 1, 3, 3}, {13, 4, 13, 4}, {6, 6, 1, 1}, {31, 17, 8, 8}};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int h = sizes[k][0], w = sizes[k][1], H = sizes[k][2], W = sizes[k][3];
        uint8_t *src = pattern(2, h, w, (int)k), *dst = malloc((size_t)2 * H * W);
        assert_non_null(dst);
        resize(src, 2, h, w, dst, H, W);
        for (int ch = 0; ch < 2; ch++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    uint8_t want = reference_pixel(src + ch * h * w, h, w, H, W, i, j);
                    if (dst[(ch * H + i) * W + j] != want)
                        fail_msg("%dx%d -> %dx%d channel %d (%d,%d): %d, expected %d", h, w, H,
                                 W, ch, i, j, dst[(ch * H + i) * W + j], want);
                }
        free(src);
        free(dst);
    }
}

static void test_resize_closed_forms(void **state)
{
    (void)state;
    /* Halving: each output is its 2x2 block's mean, rounded half up. */
    uint8_t src[4 * 6], dst[2 * 3], up[8 * 12];
    for (int i = 0; i < 24; i++)
        src[i] = (uint8_t)(i * i % 251);
    resize(src, 1, 4, 6, dst, 2, 3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            int s = src[2 * i * 6 + 2 * j] + src[2 * i * 6 + 2 * j + 1] +
                    src[(2 * i + 1) * 6 + 2 * j] + src[(2 * i + 1) * 6 + 2 * j + 1];
            assert_int_equal(dst[i * 3 + j], (s + 2) / 4);
        }
    /* Doubling: every source pixel covers exactly a 2x2 block. */
    resize(src, 1, 4, 6, up, 8, 12);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 12; j++)
            assert_int_equal(up[i * 12 + j], src[(i / 2) * 6 + j / 2]);
    /* The same size: the image itself. A constant stays that constant. */
    uint8_t same[24];
    resize(src, 1, 4, 6, same, 4, 6);
    assert_memory_equal(same, src, 24);
    uint8_t flat[35], out[6];
    memset(flat, 77, sizeof flat);
    resize(flat, 1, 5, 7, out, 2, 3);
    for (int i = 0; i < 6; i++)
        assert_int_equal(out[i], 77);
}

static void test_crop_windows(void **state)
{
    (void)state;
    int top, left;
    image_crop_origin(10, 7, 4, 4, &top, &left);
    assert_int_equal(top, 3);
    assert_int_equal(left, 1);   /* (7 - 4) / 2 rounded down */
    image_fit fit = {.crop_height = 2, .crop_width = 3};
    uint8_t *src = pattern(1, 5, 6, 3), dst[6];
    int h, w;
    assert_int_equal(image_fit_size(g_ctx, "x", &fit, 5, 6, &h, &w), AGAVE_OK);
    assert_int_equal(h, 2);
    assert_int_equal(w, 3);
    assert_int_equal(image_fit_apply(g_ctx, "x", &fit, src, 1, 5, 6, dst), AGAVE_OK);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            assert_int_equal(dst[i * 3 + j], src[(1 + i) * 6 + 1 + j]);
    /* Smaller than the window: refused, named. */
    assert_int_equal(image_fit_size(g_ctx, "small.png", &fit, 1, 6, &h, &w), AGAVE_ERR_FORMAT);
    assert_non_null(strstr(agave_context_last_error(g_ctx),
                           "small.png is 1x6 pixels (HxW), smaller than the crop window 2x3"));
    /* The aspect window of 1:1 in 5x6 is 5x5 at left 0; then resized to 5x5: a crop. */
    image_fit sq = {.crop_aspect = 1, .resize_height = 5, .resize_width = 5};
    uint8_t sq_out[25];
    assert_int_equal(image_fit_size(g_ctx, "x", &sq, 5, 6, &h, &w), AGAVE_OK);
    assert_int_equal(h * 10 + w, 55);
    assert_int_equal(image_fit_apply(g_ctx, "x", &sq, src, 1, 5, 6, sq_out), AGAVE_OK);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            assert_int_equal(sq_out[i * 5 + j], src[i * 6 + j]);
    free(src);
}

/* ---- folders -------------------------------------------------------------------- */

/* The published FNV-1a 64 vectors: "" 0xcbf29ce484222325 (mod 100: 37),
 * "a" 0xaf63dc4c8601ec8c (96), "foobar" 0x85944171f73967e8 (68). */
static void test_split_rule_is_fnv1a(void **state)
{
    (void)state;
    assert_false(image_folder_is_test("", 37));
    assert_true(image_folder_is_test("", 38));
    assert_false(image_folder_is_test("a", 96));
    assert_true(image_folder_is_test("a", 97));
    assert_false(image_folder_is_test("foobar", 68));
    assert_true(image_folder_is_test("foobar", 69));
}

/* One folder with subfolders: the rule splits it, names are relative paths
 * in byte order, and nothing else (hidden files, text files) is read. */
static void test_one_folder_split_and_names(void **state)
{
    (void)state;
    make_dir("one");
    make_dir("one/sub");
    make_dir("one/.hidden");
    int n_test = 0, n_train = 0;
    char rel[64];
    for (int i = 0; i < 40; i++) {
        snprintf(rel, sizeof rel, "%s%02d.pgm", i % 2 ? "sub/" : "", 39 - i);
        uint8_t *px = pattern(1, 4, 4, i);
        char path[80];
        snprintf(path, sizeof path, "one/%s", rel);
        write_pnm(tmp_path(path), px, 1, 4, 4);
        free(px);
        if (image_folder_is_test(rel, 25))
            n_test++;
        else
            n_train++;
    }
    support_write_file(tmp_path("one/notes.txt"), "not an image", 12);
    support_write_file(tmp_path("one/.hidden/x.pgm"), "not an image", 12);
    agave_dataset_options o;
    agave_dataset_options_init(&o);
    o.test_percent = 25;
    agave_dataset *test = open_ok(tmp_path("one"), AGAVE_SPLIT_TEST, &o);
    agave_dataset *train = open_ok(tmp_path("one"), AGAVE_SPLIT_TRAIN, &o);
    assert_true(n_test > 0 && n_train > 0);
    assert_int_equal(agave_dataset_count(test), n_test);
    assert_int_equal(agave_dataset_count(train), n_train);
    for (size_t i = 0; i < agave_dataset_count(train); i++) {
        const char *name = agave_dataset_image_name(train, i);
        assert_non_null(name);
        assert_false(image_folder_is_test(name, 25));
        if (i > 0)
            assert_true(strcmp(agave_dataset_image_name(train, i - 1), name) < 0);
        /* The pixels are that file's: its number is its seed. */
        int number = atoi(strncmp(name, "sub/", 4) == 0 ? name + 4 : name);
        uint8_t *px = pattern(1, 4, 4, 39 - number);
        assert_memory_equal(agave_dataset_pixels(train) + i * 16, px, 16);
        free(px);
    }
    assert_null(agave_dataset_image_name(train, agave_dataset_count(train)));
    agave_dataset_free(test);
    agave_dataset_free(train);
}

static void test_train_and_test_folders(void **state)
{
    (void)state;
    make_dir("tt");
    make_dir("tt/train");
    make_dir("tt/test");
    make_dir("tt/train/cat");
    uint8_t *px = pattern(3, 6, 6, 5);
    write_pnm(tmp_path("tt/train/cat/b.ppm"), px, 3, 6, 6);
    write_pnm(tmp_path("tt/train/a.ppm"), px, 3, 6, 6);
    write_pnm(tmp_path("tt/test/z.ppm"), px, 3, 6, 6);
    agave_dataset *train = open_ok(tmp_path("tt"), AGAVE_SPLIT_TRAIN, NULL);
    assert_int_equal(agave_dataset_count(train), 2);
    assert_string_equal(agave_dataset_image_name(train, 0), "train/a.ppm");
    assert_string_equal(agave_dataset_image_name(train, 1), "train/cat/b.ppm");
    agave_dataset_free(train);
    /* agave_dataset_open reads folders too. */
    agave_dataset *test = NULL;
    assert_int_equal(agave_dataset_open(g_ctx, tmp_path("tt"), AGAVE_SPLIT_TEST, &test), AGAVE_OK);
    assert_int_equal(agave_dataset_count(test), 1);
    assert_string_equal(agave_dataset_image_name(test, 0), "test/z.ppm");
    agave_dataset_free(test);
    /* A train/ folder without test/ is named in the error. */
    make_dir("half");
    make_dir("half/train");
    write_pnm(tmp_path("half/train/a.ppm"), px, 3, 6, 6);
    open_fails(tmp_path("half"), AGAVE_SPLIT_TEST, NULL, AGAVE_ERR_IO, "has a train folder",
               "no test folder", NULL);
    free(px);
}

/* Mixed sizes and channels: the first offending file, in name order, is named
 * with the first image; a resize makes the sizes agree. */
static void test_mixed_folders(void **state)
{
    (void)state;
    make_dir("mix");
    uint8_t *a = pattern(1, 8, 8, 1), *b = pattern(1, 6, 9, 2), *c = pattern(3, 8, 8, 3);
    write_pnm(tmp_path("mix/1.pgm"), a, 1, 8, 8);
    write_pnm(tmp_path("mix/2.pgm"), a, 1, 8, 8);
    write_pnm(tmp_path("mix/3.pgm"), b, 1, 6, 9);
    write_pnm(tmp_path("mix/4.pgm"), b, 1, 6, 9);
    agave_dataset_options o;
    agave_dataset_options_init(&o);
    o.test_percent = 1;   /* 1.pgm .. 4.pgm all hash into the training split */
    for (int i = 1; i <= 4; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d.pgm", i);
        assert_false(image_folder_is_test(n, 1));
    }
    open_fails(tmp_path("mix"), AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_FORMAT, "mix/3.pgm is 6x9",
               "mix/1.pgm, the first image, is 8x8", "--resize", NULL);
    o.resize_height = 4, o.resize_width = 4;
    agave_dataset *ds = open_ok(tmp_path("mix"), AGAVE_SPLIT_TRAIN, &o);
    assert_int_equal(agave_dataset_count(ds), 4);
    assert_int_equal(agave_dataset_height(ds) * 100 + agave_dataset_width(ds), 404);
    uint8_t want[16];
    resize(b, 1, 6, 9, want, 4, 4);
    assert_memory_equal(agave_dataset_pixels(ds) + 2 * 16, want, 16);
    agave_dataset_free(ds);
    write_pnm(tmp_path("mix/5.ppm"), c, 3, 8, 8);
    open_fails(tmp_path("mix"), AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_FORMAT,
               "mix/5.ppm is colour (3 channels) but", "the first image, is grey", NULL);
    assert_int_equal(unlink(tmp_path("mix/5.ppm")), 0);
    support_write_file(tmp_path("mix/6.gif"), "GIF89a", 6);
    open_fails(tmp_path("mix"), AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_FORMAT, "mix/6.gif",
               "not read", NULL);
    assert_int_equal(unlink(tmp_path("mix/6.gif")), 0);
    support_write_file(tmp_path("mix/7.png"), "damaged", 7);
    open_fails(tmp_path("mix"), AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_FORMAT,
               "mix/7.png: not an image file", NULL);
    assert_int_equal(unlink(tmp_path("mix/7.png")), 0);
    /* Too few images for the rule's test split. */
    open_fails(tmp_path("mix"), AGAVE_SPLIT_TEST, &o, AGAVE_ERR_IO,
               "none of its 4 images falls in the test split", NULL);
    free(a);
    free(b);
    free(c);
}

/* A PNG where a CIFAR-10 batch or an IDX file was expected says so. */
static void test_png_given_as_data_file(void **state)
{
    (void)state;
    make_dir("cifar");
    uint8_t *px = pattern(3, 4, 4, 9);
    write_stb(tmp_path("cifar/data_batch_1.bin"), px, 3, 4, 4, 0);
    write_stb(tmp_path("photo.png"), px, 3, 4, 4, 0);
    write_stb(tmp_path("x-images-idx3-ubyte"), px, 3, 4, 4, 1);
    open_fails(tmp_path("cifar"), AGAVE_SPLIT_TRAIN, NULL, AGAVE_ERR_FORMAT,
               "data_batch_1.bin: a PNG image, not a CIFAR-10 batch", NULL);
    open_fails(tmp_path("photo.png"), AGAVE_SPLIT_TRAIN, NULL, AGAVE_ERR_FORMAT,
               "photo.png: a PNG image, not a CIFAR-10 batch or an IDX file", "folder", NULL);
    open_fails(tmp_path("x-images-idx3-ubyte"), AGAVE_SPLIT_TRAIN, NULL, AGAVE_ERR_FORMAT,
               "a JPEG image, not an IDX file", NULL);
    free(px);
}

/* IDX data sets: no names; a resize and a crop apply to them as well. */
static void test_fit_of_idx_data(void **state)
{
    (void)state;
    make_dir("idx");
    uint8_t file[16 + 2 * 64] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 8};
    for (int i = 0; i < 128; i++)
        file[16 + i] = (uint8_t)(i * 7 % 256);
    support_write_file(tmp_path("idx/train-images-idx3-ubyte"), file, sizeof file);
    agave_dataset_options o;
    agave_dataset_options_init(&o);
    o.crop_height = 6, o.crop_width = 6, o.resize_height = 3, o.resize_width = 3;
    agave_dataset *ds = open_ok(tmp_path("idx"), AGAVE_SPLIT_TRAIN, &o);
    assert_null(agave_dataset_image_name(ds, 0));
    assert_int_equal(agave_dataset_count(ds), 2);
    assert_int_equal(agave_dataset_height(ds), 3);
    const uint8_t *px = agave_dataset_pixels(ds);
    for (int n = 0; n < 2; n++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                const uint8_t *s = file + 16 + n * 64;
                int r = 1 + 2 * i, c = 1 + 2 * j;   /* the 6x6 window starts at (1,1) */
                int sum = s[r * 8 + c] + s[r * 8 + c + 1] + s[(r + 1) * 8 + c] +
                          s[(r + 1) * 8 + c + 1];
                assert_int_equal(px[n * 9 + i * 3 + j], (sum + 2) / 4);
            }
    agave_dataset_free(ds);
}

/* Colour IDX: magic 00 00 08 04, count, channels, rows, cols, then NCHW bytes. */
static void test_colour_idx(void **state)
{
    (void)state;
    uint8_t file[20 + 2 * 12] = {0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
    for (int i = 0; i < 24; i++)
        file[20 + i] = (uint8_t)(i * 11);
    support_write_file(tmp_path("rgb-images-idx4-ubyte"), file, sizeof file);
    agave_dataset *ds = open_ok(tmp_path("rgb-images-idx4-ubyte"), AGAVE_SPLIT_TRAIN, NULL);
    assert_int_equal(agave_dataset_count(ds), 2);
    assert_int_equal(agave_dataset_channels(ds), 3);
    assert_int_equal(agave_dataset_height(ds) * 10 + agave_dataset_width(ds), 22);
    assert_memory_equal(agave_dataset_pixels(ds), file + 20, 24);
    agave_dataset_free(ds);
    file[11] = 2;   /* two channels */
    support_write_file(tmp_path("two-images-idx4-ubyte"), file, sizeof file);
    open_fails(tmp_path("two-images-idx4-ubyte"), AGAVE_SPLIT_TRAIN, NULL, AGAVE_ERR_FORMAT,
               "2 channels in the header; expected 1 or 3", NULL);
    file[11] = 3;
    support_write_file(tmp_path("cut-images-idx4-ubyte"), file, sizeof file - 1);
    open_fails(tmp_path("cut-images-idx4-ubyte"), AGAVE_SPLIT_TRAIN, NULL, AGAVE_ERR_FORMAT,
               "header promises 2 images of 3x2x2, 44 bytes with the header", NULL);
}

static void test_options_checked(void **state)
{
    (void)state;
    agave_dataset_options o;
    agave_dataset_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_int_equal(o.test_percent, 10);
    o.resize_height = 4;   /* width 0 */
    open_fails(g_root, AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_INVALID_ARG, "resize 4x0", NULL);
    agave_dataset_options_init(&o);
    o.crop_height = o.crop_width = AGAVE_CROP_ASPECT;
    open_fails(g_root, AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_INVALID_ARG, "no resize", NULL);
    agave_dataset_options_init(&o);
    o.test_percent = 100;
    open_fails(g_root, AGAVE_SPLIT_TRAIN, &o, AGAVE_ERR_INVALID_ARG, "test_percent 100", NULL);
    assert_null(agave_dataset_image_name(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_from_magic),
        cmocka_unit_test(test_lossless_formats_round_trip),
        cmocka_unit_test(test_jpeg_and_alpha),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_pnm_rules),
        cmocka_unit_test(test_resize_against_the_definition),
        cmocka_unit_test(test_resize_closed_forms),
        cmocka_unit_test(test_crop_windows),
        cmocka_unit_test(test_split_rule_is_fnv1a),
        cmocka_unit_test(test_one_folder_split_and_names),
        cmocka_unit_test(test_train_and_test_folders),
        cmocka_unit_test(test_mixed_folders),
        cmocka_unit_test(test_png_given_as_data_file),
        cmocka_unit_test(test_fit_of_idx_data),
        cmocka_unit_test(test_colour_idx),
        cmocka_unit_test(test_options_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
