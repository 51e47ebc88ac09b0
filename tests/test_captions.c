/* Picture files and caption rows of image grids: the format chosen by the
 * file name (PNG, BMP, PGM, PPM; JPEG and the like refused), the 5x7 font,
 * the wrapping of caption text, and where the caption and the images land
 * on the canvas.
 *
 * A picture written as PNG and as BMP, PPM or PGM must decode to the same
 * pixels (PNG through libpng, BMP through stb_image, PGM/PPM through the
 * library's reader: three decoders that are not the encoders under test).
 * The caption's ink is counted against the font's own pictures, and its
 * position against the layout's arithmetic written out here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agave.h"
#include "data/caption.h"
#include "data/font.h"
#include "data/image.h"
#include "support/support.h"

static char g_root[512];
static agave_context *g_ctx;

static const char *tmp_path(const char *rel) { return support_path(g_root, rel); }

static int setup(void **state)
{
    (void)state;
    if (support_tmpdir_make(g_root, sizeof g_root, "agave-test-captions") != 0)
        return -1;
    return agave_context_create(&g_ctx, 1) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(g_ctx);
    return support_tmpdir_remove(g_root);
}

/* The picture at path, decoded: (channels,h,w) planar. */
static decoded_image read_picture(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 22];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    decoded_image im;
    if (image_decode(g_ctx, path, buf, len, IMAGE_MAX_PIXELS, &im) != AGAVE_OK)
        fail_msg("%s: %s", path, agave_context_last_error(g_ctx));
    return im;
}

static void file_starts_with(const char *path, const char *magic, size_t n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char head[8] = {0};
    assert_int_equal(fread(head, 1, n, f), n);
    fclose(f);
    assert_memory_equal(head, magic, n);
}

/* ---- the font ---------------------------------------------------------------------- */

static int ink_of(char ch)
{
    uint8_t rows[FONT_HEIGHT];
    font_glyph(ch, rows);
    int n = 0;
    for (int r = 0; r < FONT_HEIGHT; r++)
        n += __builtin_popcount(rows[r]);
    return n;
}

/* Every printable character has a glyph of its own; space is blank. */
static void test_font_is_complete_and_distinct(void **state)
{
    (void)state;
    uint8_t glyphs[95][FONT_HEIGHT];
    for (int c = ' '; c <= '~'; c++) {
        assert_true(font_glyph((char)c, glyphs[c - ' ']));
        for (int r = 0; r < FONT_HEIGHT; r++)
            assert_true(glyphs[c - ' '][r] < (1 << FONT_WIDTH));
        if (c == ' ')
            assert_int_equal(ink_of(' '), 0);
        else if (ink_of((char)c) == 0)
            fail_msg("'%c' has no ink", c);
    }
    for (int a = 0; a < 95; a++)
        for (int b = a + 1; b < 95; b++)
            if (memcmp(glyphs[a], glyphs[b], FONT_HEIGHT) == 0)
                fail_msg("'%c' and '%c' are drawn alike", a + ' ', b + ' ');
    uint8_t rows[FONT_HEIGHT];
    assert_false(font_glyph('\t', rows));
    assert_false(font_glyph((char)200, rows));
}

/* ---- wrapping ----------------------------------------------------------------------- */

static void test_caption_wrapping(void **state)
{
    (void)state;
    assert_int_equal(caption_lines(NULL, 10), 0);
    assert_int_equal(caption_lines("", 10), 0);
    assert_int_equal(caption_lines("abc", 10), 1);
    assert_int_equal(caption_lines("abc def ghi", 7), 2);    /* "abc def" / "ghi" */
    assert_int_equal(caption_lines("abc def ghi", 6), 3);    /* the space after def does not fit */
    assert_int_equal(caption_lines("abcdefghij", 4), 3);     /* a long word is cut: 4 + 4 + 2 */
    assert_int_equal(caption_lines("ab\ncd", 10), 2);
    assert_int_equal(caption_lines("ab\n\ncd", 10), 3);      /* an empty line in between */
    assert_int_equal(caption_lines("abc    def", 3), 2);     /* spaces at a break vanish */
}

/* ---- grids with captions ------------------------------------------------------------- */

/* Two 4x4 grey images (0 and 60) in one row, scale 1, gap 2, white. */
static agave_status write_two(const char *name, const char *caption, const uint8_t *bg)
{
    uint8_t px[2 * 16];
    memset(px, 0, 16);
    memset(px + 16, 60, 16);
    agave_grid_options o;
    agave_grid_options_init(&o);
    o.caption = caption;
    if (bg)
        memcpy(o.background, bg, 3);
    return agave_image_grid_write(g_ctx, tmp_path(name), px, 2, 1, 4, 4, 2, &o);
}

static void test_caption_band_and_ink(void **state)
{
    (void)state;
    assert_int_equal(write_two("plain.pgm", NULL, NULL), AGAVE_OK);
    decoded_image plain = read_picture(tmp_path("plain.pgm"));
    /* gap + 2 cells of 4 + 2 gaps: 2 + 2 * 6 = 14 wide, 2 + 6 = 8 high. */
    assert_int_equal(plain.width, 14);
    assert_int_equal(plain.height, 8);

    assert_int_equal(write_two("cap.pgm", "AB", NULL), AGAVE_OK);
    decoded_image cap = read_picture(tmp_path("cap.pgm"));
    /* Widened to 24 characters of 6 pixels plus margins of 2: 148; the band
     * is a margin of 2 and one line of 10: 12 rows above the grid. */
    assert_int_equal(cap.width, 2 * 2 + 24 * 6);
    assert_int_equal(cap.height, 8 + 12);
    /* The images moved down by the band, nothing else: cell 1 at (12 + 2, 2 + 6). */
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            assert_int_equal(cap.pixels[(12 + 2 + y) * cap.width + 2 + x], 0);
            assert_int_equal(cap.pixels[(12 + 2 + y) * cap.width + 8 + x], 60);
        }
    /* Black ink: exactly the font's pixels of A and B, at row 2 + 1 (a font
     * pixel above the letters), A at column 2 and B at column 2 + 6. */
    int ink = 0;
    for (int i = 0; i < cap.width * 12; i++)
        ink += cap.pixels[i] == 0;
    assert_int_equal(ink, ink_of('A') + ink_of('B'));
    uint8_t rows[FONT_HEIGHT];
    font_glyph('B', rows);
    for (int r = 0; r < FONT_HEIGHT; r++)
        for (int c = 0; c < FONT_WIDTH; c++)
            assert_int_equal(cap.pixels[(3 + r) * cap.width + 8 + c],
                             (rows[r] >> (FONT_WIDTH - 1 - c) & 1) ? 0 : 255);
    image_free(&plain);
    image_free(&cap);

    /* White ink on a dark background. */
    const uint8_t dark[3] = {20, 20, 20};
    assert_int_equal(write_two("dark.pgm", "AB", dark), AGAVE_OK);
    decoded_image d = read_picture(tmp_path("dark.pgm"));
    int white = 0;
    for (int i = 0; i < d.width * 12; i++)
        white += d.pixels[i] == 255;
    assert_int_equal(white, ink_of('A') + ink_of('B'));
    image_free(&d);
}

/* Three lines when the text wraps; scale 2 doubles the font. */
static void test_caption_lines_and_scale(void **state)
{
    (void)state;
    char text[80];
    memset(text, 'x', 30);   /* 30 characters: two lines of at most 24 */
    text[30] = '\0';
    strcat(text, "\nlast");
    assert_int_equal(write_two("wrap.pgm", text, NULL), AGAVE_OK);
    decoded_image w = read_picture(tmp_path("wrap.pgm"));
    assert_int_equal(w.height, 8 + 2 + 3 * 10);
    image_free(&w);
    uint8_t px[16] = {0};
    agave_grid_options o;
    agave_grid_options_init(&o);
    o.scale = 2;
    o.caption = "x";
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("big.pgm"), px, 1, 1, 4, 4, 1, &o),
                     AGAVE_OK);
    decoded_image b = read_picture(tmp_path("big.pgm"));
    assert_int_equal(b.width, 2 * 2 + 24 * 12);
    assert_int_equal(b.height, 2 + 8 + 2 + 2 + 20);   /* the grid, then margin and one line */
    int ink = 0;
    for (int i = 0; i < b.width * 22; i++)
        ink += b.pixels[i] == 0;
    assert_int_equal(ink, 4 * ink_of('x'));
    image_free(&b);
    char huge[4098];
    memset(huge, 'a', 4097);
    huge[4097] = '\0';
    o.caption = huge;
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("huge.png"), px, 1, 1, 4, 4, 1, &o),
                     AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "4097 characters"));
}

/* ---- formats ------------------------------------------------------------------------ */

static void test_formats_by_name(void **state)
{
    (void)state;
    uint8_t rgb[3 * 3 * 5];
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 17 % 256);
    const char *names[] = {"c.png", "c.bmp", "c.ppm", "c.pnm", "c.PPM", "c.dat"};
    const char *magic[] = {"\x89PNG", "BM", "P6", "P6", "P6", "\x89PNG"};
    decoded_image ref;
    for (int k = 0; k < 6; k++) {
        agave_grid_options o;
        agave_grid_options_init(&o);
        o.caption = "rgb";
        assert_int_equal(agave_image_grid_write(g_ctx, tmp_path(names[k]), rgb, 1, 3, 3, 5, 1, &o),
                         AGAVE_OK);
        file_starts_with(tmp_path(names[k]), magic[k], strlen(magic[k]));
        decoded_image im = read_picture(tmp_path(names[k]));
        assert_int_equal(im.channels, 3);
        if (k == 0) {
            ref = im;
            continue;
        }
        assert_int_equal(im.height * 1000 + im.width, ref.height * 1000 + ref.width);
        assert_memory_equal(im.pixels, ref.pixels, (size_t)3 * ref.height * ref.width);
        image_free(&im);
    }
    /* Grey pictures: PGM and an 8-bit BMP, the same pixels as the PNG. */
    uint8_t grey[12];
    for (int i = 0; i < 12; i++)
        grey[i] = (uint8_t)(i * 21);
    const char *gnames[] = {"g.png", "g.pgm", "g.bmp", "g.pnm"};
    decoded_image gref;
    for (int k = 0; k < 4; k++) {
        assert_int_equal(agave_image_grid_write(g_ctx, tmp_path(gnames[k]), grey, 1, 1, 3, 4, 1,
                                                NULL), AGAVE_OK);
        decoded_image im = read_picture(tmp_path(gnames[k]));
        assert_int_equal(im.channels, 1);
        if (k == 0) {
            gref = im;
            continue;
        }
        assert_memory_equal(im.pixels, gref.pixels, (size_t)gref.height * gref.width);
        image_free(&im);
    }
    file_starts_with(tmp_path("g.pnm"), "P5", 2);
    image_free(&ref);
    image_free(&gref);
    /* Formats that are not written: refused, and no file appears. */
    const char *refused[] = {"x.jpg", "x.JPEG", "x.gif", "x.tiff", "x.webp"};
    for (int k = 0; k < 5; k++) {
        assert_int_equal(agave_image_grid_write(g_ctx, tmp_path(refused[k]), grey, 1, 1, 3, 4, 1,
                                                NULL), AGAVE_ERR_INVALID_ARG);
        assert_non_null(strstr(agave_context_last_error(g_ctx), "files are not written"));
        assert_int_equal(access(tmp_path(refused[k]), F_OK), -1);
    }
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("c.pgm"), rgb, 1, 3, 3, 5, 1, NULL),
                     AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "name it .ppm"));
    /* The same answers, by name alone, before anything is computed. */
    assert_int_equal(agave_image_grid_check_name(g_ctx, "a/b.jpg", 1), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_grid_check_name(g_ctx, "b.pgm", 3), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_grid_check_name(g_ctx, "b.pgm", 1), AGAVE_OK);
    assert_int_equal(agave_image_grid_check_name(g_ctx, "b.anything", 3), AGAVE_OK);
    assert_int_equal(agave_image_grid_check_name(g_ctx, "b.png", 2), AGAVE_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_font_is_complete_and_distinct),
        cmocka_unit_test(test_caption_wrapping),
        cmocka_unit_test(test_caption_band_and_ink),
        cmocka_unit_test(test_caption_lines_and_scale),
        cmocka_unit_test(test_formats_by_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
