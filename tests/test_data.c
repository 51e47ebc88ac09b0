/* The data layer: IDX and CIFAR-10 readers (good and broken files, plain and
 * gzip), directory detection, shuffled batches, PNG grids and the histogram
 * baseline. Every file is generated here, in a fresh temporary directory; no
 * test reads ../shared/data or /usr/share/datasets. */
#include <dirent.h>
#include <errno.h>
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
#include <zlib.h>

#include <cmocka.h>

#include "agave.h"
#include "data/data.h"
#include "support/support.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
/* File-wide, not pushed: this stb_image declares a static function it never
 * defines, which GCC reports at the end of the file. */
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

/* cmocka 1.1 compares floats only in single precision. */
#define assert_near(a, b, tol)                                                                 \
    do {                                                                                       \
        double a_ = (a), b_ = (b);                                                             \
        if (!(fabs(a_ - b_) <= (tol)))                                                         \
            fail_msg("%s = %.17g, expected %.17g (within %g)", #a, a_, b_, (double)(tol));     \
    } while (0)

/* ---- scratch files ------------------------------------------------------------ */

static char g_root[512];      /* the suite's temporary directory */
static agave_context *g_ctx;

/* A path under the temporary root: tmp_path("a/b") -> "<root>/a/b" (static ring). */
static const char *tmp_path(const char *rel) { return support_path(g_root, rel); }

static void make_dir(const char *rel)
{
    assert_int_equal(mkdir(tmp_path(rel), 0755), 0);
}

static int suite_setup(void **state)
{
    (void)state;
    if (support_tmpdir_make(g_root, sizeof g_root, "agave-test-data") != 0)
        return -1;
    return agave_context_create(&g_ctx, 1) == AGAVE_OK ? 0 : -1;
}

static int suite_teardown(void **state)
{
    (void)state;
    agave_context_free(g_ctx);
    return support_tmpdir_remove(g_root);
}

/* ---- building files --------------------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t len;
} bytes;

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Pixel value of image i at byte k: a pattern that tells images apart. */
static uint8_t pattern(size_t i, size_t k) { return (uint8_t)(i * 37 + k * 11 + (k >> 3)); }

/* IDX image file of n images of rows x cols with pattern(i + first, k) pixels. */
static bytes idx_file(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t first)
{
    size_t d = (size_t)rows * cols;
    bytes b = {malloc(16 + n * d), 16 + n * d};
    assert_non_null(b.p);
    put_be32(b.p, magic);
    put_be32(b.p + 4, n);
    put_be32(b.p + 8, rows);
    put_be32(b.p + 12, cols);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < d; k++)
            b.p[16 + i * d + k] = pattern(first + i, k);
    return b;
}

/* CIFAR-10 batch of n records, labels i % 10, pixels pattern(first + i, k). */
static bytes cifar_file(size_t n, size_t first)
{
    bytes b = {malloc(n * 3073), n * 3073};
    assert_non_null(b.p);
    for (size_t i = 0; i < n; i++) {
        b.p[i * 3073] = (uint8_t)(i % 10);
        for (size_t k = 0; k < 3072; k++)
            b.p[i * 3073 + 1 + k] = pattern(first + i, k);
    }
    return b;
}

/* One gzip member holding b. */
static bytes gzip_of(bytes b)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, (uLong)b.len) + 64;
    bytes out = {malloc(cap), 0};
    assert_non_null(out.p);
    z.next_in = b.p;
    z.avail_in = (uInt)b.len;
    z.next_out = out.p;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    out.len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static void write_file(const char *rel, bytes b) { support_write_file(tmp_path(rel), b.p, b.len); }

static void write_gz(const char *rel, bytes b)
{
    bytes gz = gzip_of(b);
    write_file(rel, gz);
    free(gz.p);
}

/* Checks that ds holds images [first, first+n) of the pattern in order. */
static void expect_pattern(const agave_dataset *ds, size_t at, size_t n, size_t first)
{
    size_t d = (size_t)agave_dataset_channels(ds) * agave_dataset_height(ds) *
               agave_dataset_width(ds);
    uint8_t *img = malloc(n * d);
    assert_non_null(img);
    assert_int_equal(agave_dataset_copy_images(ds, at, n, img), AGAVE_OK);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < d; k++)
            if (img[i * d + k] != pattern(first + i, k))
                fail_msg("image %zu byte %zu: %u, expected %u", at + i, k, img[i * d + k],
                         pattern(first + i, k));
    free(img);
}

static agave_dataset *open_ok(const char *path, agave_data_split split)
{
    agave_dataset *ds = NULL;
    agave_status st = agave_dataset_open(g_ctx, path, split, &ds);
    if (st != AGAVE_OK)
        fail_msg("%s: %s (%s)", path, agave_status_string(st), agave_context_last_error(g_ctx));
    return ds;
}

static void expect_geometry(const agave_dataset *ds, size_t n, int c, int h, int w)
{
    assert_int_equal(agave_dataset_count(ds), n);
    assert_int_equal(agave_dataset_channels(ds), c);
    assert_int_equal(agave_dataset_height(ds), h);
    assert_int_equal(agave_dataset_width(ds), w);
}

/* Opening path fails with `status`, and the message holds the file name
 * `name_part` and the phrase `why`. */
static void expect_refused(const char *path, agave_data_split split, agave_status status,
                           const char *name_part, const char *why)
{
    agave_dataset *ds = (agave_dataset *)&ds;   /* must be reset to NULL */
    agave_status st = agave_dataset_open(g_ctx, path, split, &ds);
    const char *msg = agave_context_last_error(g_ctx);
    if (st != status)
        fail_msg("%s: status %s, expected %s (%s)", path, agave_status_string(st),
                 agave_status_string(status), msg);
    assert_null(ds);
    if (!strstr(msg, name_part) || !strstr(msg, why))
        fail_msg("%s: message '%s' lacks '%s' or '%s'", path, msg, name_part, why);
}

/* ---- good files ------------------------------------------------------------------ */

static void test_idx_plain_and_gzip(void **state)
{
    (void)state;
    make_dir("idx1");
    bytes b = idx_file(0x803, 7, 4, 6, 0);   /* 4 rows x 6 cols: a swap would show */
    write_file("idx1/plain-images-idx3-ubyte", b);
    write_gz("idx1/packed-images-idx3-ubyte.gz", b);
    free(b.p);
    const char *names[] = {"idx1/plain-images-idx3-ubyte", "idx1/packed-images-idx3-ubyte.gz"};
    for (int i = 0; i < 2; i++) {
        agave_dataset *ds = open_ok(tmp_path(names[i]), AGAVE_SPLIT_TEST);
        expect_geometry(ds, 7, 1, 4, 6);
        expect_pattern(ds, 0, 7, 0);
        assert_int_equal(agave_dataset_pixels(ds)[24], pattern(1, 0));
        agave_dataset_free(ds);
    }
}

static void test_cifar_plain_and_gzip(void **state)
{
    (void)state;
    make_dir("cif1");
    bytes b = cifar_file(12, 100);
    write_file("cif1/one.bin", b);
    write_gz("cif1/one.bin.gz", b);
    /* Two gzip members back to back are one stream (gzip allows concatenation). */
    bytes half1 = {b.p, 5 * 3073}, half2 = {b.p + 5 * 3073, 7 * 3073};
    bytes g1 = gzip_of(half1), g2 = gzip_of(half2);
    bytes both = {malloc(g1.len + g2.len), g1.len + g2.len};
    memcpy(both.p, g1.p, g1.len);
    memcpy(both.p + g1.len, g2.p, g2.len);
    write_file("cif1/two-members.bin.gz", both);
    free(both.p), free(g1.p), free(g2.p), free(b.p);
    const char *names[] = {"cif1/one.bin", "cif1/one.bin.gz", "cif1/two-members.bin.gz"};
    for (int i = 0; i < 3; i++) {
        agave_dataset *ds = open_ok(tmp_path(names[i]), AGAVE_SPLIT_TRAIN);
        expect_geometry(ds, 12, 3, 32, 32);
        expect_pattern(ds, 0, 12, 100);
        agave_dataset_free(ds);
    }
}

static void test_format_from_content(void **state)
{
    (void)state;
    make_dir("guess");
    bytes idx = idx_file(0x803, 3, 2, 2, 0), cif = cifar_file(2, 0);
    write_file("guess/mystery1", idx);
    write_gz("guess/mystery2", cif);   /* gzip recognised by its magic, not its name */
    free(idx.p), free(cif.p);
    agave_dataset *ds = open_ok(tmp_path("guess/mystery1"), AGAVE_SPLIT_TRAIN);
    expect_geometry(ds, 3, 1, 2, 2);
    agave_dataset_free(ds);
    ds = open_ok(tmp_path("guess/mystery2"), AGAVE_SPLIT_TRAIN);
    expect_geometry(ds, 2, 3, 32, 32);
    expect_pattern(ds, 0, 2, 0);
    agave_dataset_free(ds);
}

static void test_cifar_directory(void **state)
{
    (void)state;
    make_dir("cifdir");
    bytes b1 = cifar_file(4, 0), b2 = cifar_file(3, 4), b3 = cifar_file(2, 7), t = cifar_file(5, 50);
    bytes stale = cifar_file(9, 900);
    write_file("cifdir/data_batch_1.bin", b1);
    write_gz("cifdir/data_batch_1.bin.gz", stale);   /* the plain copy wins */
    write_gz("cifdir/data_batch_2.bin.gz", b2);
    write_file("cifdir/data_batch_10.bin", b3);       /* numeric, not lexical, order... */
    for (int k = 3; k <= 9; k++) {                    /* ...so batches 3..9 are needed too */
        char name[64];
        snprintf(name, sizeof name, "cifdir/data_batch_%d.bin", k);
        bytes e = cifar_file(1, 1000 + (size_t)k);
        write_file(name, e);
        free(e.p);
    }
    write_gz("cifdir/test_batch.bin.gz", t);
    support_write_file(tmp_path("cifdir/batches.meta.txt"), "airplane\n", 9);
    free(b1.p), free(b2.p), free(b3.p), free(t.p), free(stale.p);

    agave_dataset *ds = open_ok(tmp_path("cifdir"), AGAVE_SPLIT_TRAIN);
    expect_geometry(ds, 4 + 3 + 7 + 2, 3, 32, 32);
    expect_pattern(ds, 0, 7, 0);      /* batches 1 and 2 */
    expect_pattern(ds, 7, 1, 1003);   /* batch 3 */
    expect_pattern(ds, 14, 2, 7);     /* batch 10 last */
    agave_dataset_free(ds);
    ds = open_ok(tmp_path("cifdir/"), AGAVE_SPLIT_TEST);
    expect_geometry(ds, 5, 3, 32, 32);
    expect_pattern(ds, 0, 5, 50);
    agave_dataset_free(ds);
}

static void test_idx_directory(void **state)
{
    (void)state;
    make_dir("fashion");
    bytes train = idx_file(0x803, 6, 28, 28, 0), test = idx_file(0x803, 4, 28, 28, 60);
    bytes labels = idx_file(0x801, 6, 1, 1, 0);
    write_gz("fashion/train-images-idx3-ubyte.gz", train);
    write_gz("fashion/train-labels-idx1-ubyte.gz", labels);   /* ignored */
    write_file("fashion/t10k-images-idx3-ubyte", test);
    free(train.p), free(test.p), free(labels.p);
    agave_dataset *ds = open_ok(tmp_path("fashion"), AGAVE_SPLIT_TRAIN);
    expect_geometry(ds, 6, 1, 28, 28);
    expect_pattern(ds, 0, 6, 0);
    agave_dataset_free(ds);
    ds = open_ok(tmp_path("fashion"), AGAVE_SPLIT_TEST);
    expect_geometry(ds, 4, 1, 28, 28);
    expect_pattern(ds, 0, 4, 60);
    agave_dataset_free(ds);
}

static void test_list_of_files(void **state)
{
    (void)state;
    make_dir("list");
    bytes a = idx_file(0x803, 3, 5, 4, 0), b = idx_file(0x803, 2, 5, 4, 3);
    write_file("list/a-idx", a);
    write_gz("list/b-idx.gz", b);
    free(a.p), free(b.p);
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s", tmp_path("list/a-idx"));
    snprintf(pb, sizeof pb, "%s", tmp_path("list/b-idx.gz"));
    const char *paths[] = {pa, pb};
    agave_dataset *ds = NULL;
    assert_int_equal(agave_dataset_open_files(g_ctx, paths, 2, &ds), AGAVE_OK);
    expect_geometry(ds, 5, 1, 5, 4);
    expect_pattern(ds, 0, 5, 0);
    uint8_t one;
    assert_int_equal(agave_dataset_copy_images(ds, 4, 2, &one), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dataset_copy_images(ds, 6, 0, &one), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_dataset_copy_images(ds, 5, 0, NULL), AGAVE_OK);
    agave_dataset_free(ds);

    assert_int_equal(agave_dataset_open_files(g_ctx, paths, 0, &ds), AGAVE_ERR_INVALID_ARG);
    assert_null(ds);
    assert_int_equal(agave_dataset_open_files(g_ctx, NULL, 1, &ds), AGAVE_ERR_NULL);
    assert_int_equal(agave_dataset_open(g_ctx, pa, (agave_data_split)7, &ds),
                     AGAVE_ERR_INVALID_ARG);
    agave_dataset_free(NULL);
    assert_int_equal(agave_dataset_count(NULL), 0);
    assert_null(agave_dataset_pixels(NULL));
}

/* ---- broken files ------------------------------------------------------------------ */

typedef struct broken_case {
    const char *name;      /* file name inside "broken/" */
    int gzip;              /* write it gzip-compressed */
    agave_status status;
    const char *why;       /* a phrase the message must contain */
} broken_case;

/* Builds the contents of each broken case by name. */
static bytes broken_contents(const char *name)
{
    if (strstr(name, "magic"))
        return idx_file(0x50415445, 2, 3, 3, 0);
    if (strstr(name, "dims5"))
        return idx_file(0x805, 2, 3, 3, 0);
    if (strstr(name, "labels"))
        return idx_file(0x801, 2, 1, 1, 0);
    if (strstr(name, "shortheader")) {
        bytes b = idx_file(0x803, 2, 3, 3, 0);
        b.len = 10;
        return b;
    }
    if (strstr(name, "truncated")) {
        bytes b = idx_file(0x803, 5, 3, 3, 0);
        b.len -= 4;
        return b;
    }
    if (strstr(name, "trailing")) {
        bytes b = idx_file(0x803, 5, 3, 3, 0);
        b.p = realloc(b.p, b.len + 3);
        memset(b.p + b.len, 0, 3);
        b.len += 3;
        return b;
    }
    if (strstr(name, "zeroimages"))
        return idx_file(0x803, 0, 3, 3, 0);
    if (strstr(name, "zerorows"))
        return idx_file(0x803, 2, 0, 3, 0);
    if (strstr(name, "huge")) {   /* promises 2^32-1 images of 65535^2: refused unread */
        bytes b = idx_file(0x803, 1, 1, 1, 0);
        put_be32(b.p + 4, 0xffffffffu);
        put_be32(b.p + 8, 65535);
        put_be32(b.p + 12, 65535);
        return b;
    }
    if (strstr(name, "wide"))
        return idx_file(0x803, 1, 1, 70000, 0);
    if (strstr(name, "notmultiple")) {
        bytes b = cifar_file(3, 0);
        b.len -= 100;
        return b;
    }
    if (strstr(name, "onebyteshort")) {
        bytes b = cifar_file(3, 0);
        b.len -= 1;
        return b;
    }
    if (strstr(name, "onebytelong")) {   /* three records and a valid label byte */
        bytes b = cifar_file(4, 0);
        b.len = 3 * 3073 + 1;
        return b;
    }
    if (strstr(name, "badlabel")) {
        bytes b = cifar_file(3, 0);
        b.p[2 * 3073] = 10;
        return b;
    }
    if (strstr(name, "empty"))
        return (bytes){malloc(1), 0};
    fail_msg("no contents for %s", name);
    return (bytes){NULL, 0};
}

static const broken_case broken_cases[] = {
    {"magic-idx", 0, AGAVE_ERR_FORMAT, "magic number 0x50415445, expected 0x00000803"},
    {"dims5-idx", 0, AGAVE_ERR_FORMAT, "unsupported IDX file (magic 0x00000805"},
    {"labels-idx1-ubyte", 0, AGAVE_ERR_FORMAT, "label file"},
    {"labels-idx1-ubyte.gz", 1, AGAVE_ERR_FORMAT, "label file"},
    {"shortheader-idx", 0, AGAVE_ERR_FORMAT, "truncated IDX header"},
    {"truncated-idx", 0, AGAVE_ERR_FORMAT, "truncated"},
    {"truncated-idx.gz", 1, AGAVE_ERR_FORMAT, "truncated"},
    {"trailing-idx", 0, AGAVE_ERR_FORMAT, "trailing bytes"},
    {"trailing-idx.gz", 1, AGAVE_ERR_FORMAT, "trailing bytes"},
    {"zeroimages-idx", 0, AGAVE_ERR_FORMAT, "zero images"},
    {"zerorows-idx", 0, AGAVE_ERR_FORMAT, "out of range"},
    {"wide-idx", 0, AGAVE_ERR_FORMAT, "out of range"},
    {"huge-idx", 0, AGAVE_ERR_LIMIT, "limit"},
    {"huge-idx.gz", 1, AGAVE_ERR_LIMIT, "limit"},
    {"notmultiple.bin", 0, AGAVE_ERR_FORMAT, "3073"},
    {"notmultiple.bin.gz", 1, AGAVE_ERR_FORMAT, "3073"},
    /* One byte off a whole number of records, either way: the file's size
     * refuses it before reading; a gzip stream's size is known only at its
     * end, and the last record is refused there. */
    {"onebyteshort.bin", 0, AGAVE_ERR_FORMAT, "2 records and 3072 bytes over"},
    {"onebytelong.bin", 0, AGAVE_ERR_FORMAT, "3 records and 1 bytes over"},
    {"onebyteshort.bin.gz", 1, AGAVE_ERR_FORMAT, "the last record has 3072"},
    {"onebytelong.bin.gz", 1, AGAVE_ERR_FORMAT, "the last record has 1"},
    {"badlabel.bin", 0, AGAVE_ERR_FORMAT, "record 2 (byte offset 6146) has label 10"},
    {"badlabel.bin.gz", 1, AGAVE_ERR_FORMAT, "label 10"},
    {"empty.bin", 0, AGAVE_ERR_FORMAT, "empty"},
    {"empty-idx", 0, AGAVE_ERR_FORMAT, "truncated IDX header"},
    {"empty.bin.gz", 1, AGAVE_ERR_FORMAT, "no CIFAR-10 records"},
};

static void test_broken_files(void **state)
{
    (void)state;
    make_dir("broken");
    for (size_t i = 0; i < sizeof broken_cases / sizeof *broken_cases; i++) {
        const broken_case *c = &broken_cases[i];
        char rel[256];
        snprintf(rel, sizeof rel, "broken/%s", c->name);
        bytes b = broken_contents(c->name);
        if (c->gzip)
            write_gz(rel, b);
        else
            write_file(rel, b);
        free(b.p);
        expect_refused(tmp_path(rel), AGAVE_SPLIT_TRAIN, c->status, c->name, c->why);
    }
}

static void test_broken_gzip(void **state)
{
    (void)state;
    make_dir("gz");
    bytes raw = idx_file(0x803, 40, 8, 8, 0);
    bytes gz = gzip_of(raw);
    free(raw.p);

    /* A flipped bit in the deflate data; the CRC-32 catches what inflate does not. */
    gz.p[gz.len / 2] ^= 0x10;
    write_file("gz/corrupt-idx.gz", gz);
    expect_refused(tmp_path("gz/corrupt-idx.gz"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_FORMAT,
                   "corrupt-idx.gz", "gzip");
    gz.p[gz.len / 2] ^= 0x10;

    bytes cut = {gz.p, gz.len - 6};   /* into the CRC-32 and length trailer */
    write_file("gz/cut-trailer-idx.gz", cut);
    expect_refused(tmp_path("gz/cut-trailer-idx.gz"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_FORMAT,
                   "cut-trailer-idx.gz", "truncated gzip stream");
    cut.len = gz.len / 2;
    write_file("gz/cut-middle-idx.gz", cut);
    expect_refused(tmp_path("gz/cut-middle-idx.gz"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_FORMAT,
                   "cut-middle-idx.gz", "truncated gzip stream");

    bytes junk = {malloc(gz.len + 4), gz.len + 4};
    memcpy(junk.p, gz.p, gz.len);
    memcpy(junk.p + gz.len, "junk", 4);
    write_file("gz/junk-after-idx.gz", junk);
    expect_refused(tmp_path("gz/junk-after-idx.gz"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_FORMAT,
                   "junk-after-idx.gz", "after the end of the gzip stream");
    free(junk.p);

    support_write_file(tmp_path("gz/fake-idx.gz"), "\0\0\x08\x03 not gzip", 14);
    expect_refused(tmp_path("gz/fake-idx.gz"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_FORMAT,
                   "fake-idx.gz", "not gzip");
    free(gz.p);
}

static void test_mismatched_files(void **state)
{
    (void)state;
    make_dir("mix");
    bytes a = idx_file(0x803, 2, 28, 28, 0), b = idx_file(0x803, 2, 32, 32, 0);
    bytes c = cifar_file(1, 0);
    write_file("mix/a-idx", a);
    write_file("mix/b-idx", b);
    write_file("mix/c.bin", c);
    free(a.p), free(b.p), free(c.p);
    char pa[1024], pb[1024], pc[1024];
    snprintf(pa, sizeof pa, "%s", tmp_path("mix/a-idx"));
    snprintf(pb, sizeof pb, "%s", tmp_path("mix/b-idx"));
    snprintf(pc, sizeof pc, "%s", tmp_path("mix/c.bin"));
    const char *sizes[] = {pa, pb}, *kinds[] = {pa, pc};
    agave_dataset *ds = NULL;
    assert_int_equal(agave_dataset_open_files(g_ctx, sizes, 2, &ds), AGAVE_ERR_FORMAT);
    const char *msg = agave_context_last_error(g_ctx);
    assert_non_null(strstr(msg, "a-idx"));
    assert_non_null(strstr(msg, "b-idx"));
    assert_non_null(strstr(msg, "1x32x32"));
    assert_non_null(strstr(msg, "1x28x28"));
    assert_int_equal(agave_dataset_open_files(g_ctx, kinds, 2, &ds), AGAVE_ERR_FORMAT);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "3x32x32"));
    assert_null(ds);
}

static void test_bad_paths(void **state)
{
    (void)state;
    make_dir("empty");
    expect_refused(tmp_path("does-not-exist"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_IO, "does-not-exist",
                   "No such file");
    expect_refused(tmp_path("empty"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_IO, "empty",
                   "no training data found");
    /* A FIFO is neither a file nor a directory, and opening it must not block. */
    assert_int_equal(mkfifo(tmp_path("fifo"), 0600), 0);
    expect_refused(tmp_path("fifo"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_IO, "fifo",
                   "neither a regular file nor a directory");
    const char *fifo = tmp_path("fifo");
    agave_dataset *ds = NULL;
    assert_int_equal(agave_dataset_open_files(g_ctx, &fifo, 1, &ds), AGAVE_ERR_IO);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "not a regular file"));
    const char *dir = tmp_path("empty");
    assert_int_equal(agave_dataset_open_files(g_ctx, &dir, 1, &ds), AGAVE_ERR_IO);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "a directory"));

    /* Only test files: the training split is missing, and the message says so. */
    make_dir("onlytest");
    bytes t = cifar_file(1, 0);
    write_file("onlytest/test_batch.bin", t);
    expect_refused(tmp_path("onlytest"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_IO, "onlytest",
                   "only files of the other split");
    /* A gap in the batch numbers is a damaged copy. */
    make_dir("gap");
    write_file("gap/data_batch_1.bin", t);
    write_file("gap/data_batch_3.bin", t);
    expect_refused(tmp_path("gap"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_IO, "gap",
                   "data_batch_2.bin is missing");
    /* Both layouts in one directory is ambiguous. */
    make_dir("both");
    write_file("both/data_batch_1.bin", t);
    bytes i = idx_file(0x803, 1, 2, 2, 0);
    write_file("both/train-images-idx3-ubyte", i);
    expect_refused(tmp_path("both"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_FORMAT, "both", "ambiguous");
    /* A broken file inside a directory is named with its full path. */
    make_dir("dirbad");
    t.p[0] = 42;
    write_file("dirbad/test_batch.bin", t);
    expect_refused(tmp_path("dirbad"), AGAVE_SPLIT_TEST, AGAVE_ERR_FORMAT,
                   "dirbad/test_batch.bin", "label 42");
    free(t.p), free(i.p);

    if (geteuid() != 0) {   /* root reads anything */
        bytes ok = idx_file(0x803, 1, 2, 2, 0);
        write_file("locked-idx", ok);
        free(ok.p);
        chmod(tmp_path("locked-idx"), 0);
        expect_refused(tmp_path("locked-idx"), AGAVE_SPLIT_TRAIN, AGAVE_ERR_IO, "locked-idx",
                       "Permission denied");
    }
}

static void test_memory_source(void **state)
{
    (void)state;
    bytes b = idx_file(0x803, 3, 2, 3, 5);
    bytes gz = gzip_of(b);
    agave_dataset *ds = NULL;
    assert_int_equal(dataset_open_memory(g_ctx, "mem-idx.gz", gz.p, gz.len, &ds), AGAVE_OK);
    expect_geometry(ds, 3, 1, 2, 3);
    expect_pattern(ds, 0, 3, 5);
    agave_dataset_free(ds);
    /* Every prefix of a gzip file is refused without a crash or a leak. */
    for (size_t len = 0; len < gz.len; len++) {
        assert_int_not_equal(dataset_open_memory(g_ctx, "mem-idx.gz", gz.p, len, &ds), AGAVE_OK);
        assert_null(ds);
    }
    free(b.p), free(gz.p);
}

/* ---- batches --------------------------------------------------------------------- */

/* n images of 1x1x2 whose bytes are (i, i >> 8): the pixels name the image. */
static agave_dataset *indexed_dataset(const char *rel, uint32_t n)
{
    bytes b = idx_file(0x803, n, 1, 2, 0);
    for (uint32_t i = 0; i < n; i++) {
        b.p[16 + 2 * i] = (uint8_t)i;
        b.p[16 + 2 * i + 1] = (uint8_t)(i >> 8);
    }
    write_file(rel, b);
    free(b.p);
    return open_ok(tmp_path(rel), AGAVE_SPLIT_TRAIN);
}

/* Draws n_batches batches of b into order[] (n_batches * batch entries),
 * checking that the pixels match the reported indices. */
static void draw(agave_batcher *b, int batch, int n_batches, size_t *order)
{
    uint8_t *img = malloc((size_t)batch * 2);
    assert_non_null(img);
    for (int k = 0; k < n_batches; k++) {
        size_t *idx = order + (size_t)k * batch;
        assert_int_equal(agave_batcher_next(b, img, idx), AGAVE_OK);
        for (int j = 0; j < batch; j++)
            assert_int_equal(img[2 * j] | img[2 * j + 1] << 8, idx[j]);
    }
    free(img);
}

/* Each consecutive run of m entries is a permutation of the same m indices. */
static void expect_epochs(const size_t *order, size_t total, size_t m, size_t limit)
{
    int *seen = calloc(limit, sizeof *seen);
    assert_non_null(seen);
    for (size_t start = 0; start + m <= total; start += m) {
        for (size_t i = 0; i < m; i++) {
            assert_true(order[start + i] < limit);
            seen[order[start + i]]++;
        }
        size_t distinct = 0;
        for (size_t v = 0; v < limit; v++) {
            if (seen[v])
                distinct++;
            assert_true(seen[v] == 0 || seen[v] == (int)(start / m + 1));
        }
        assert_int_equal(distinct, m);
    }
    free(seen);
}

static void test_batches_cover_epochs(void **state)
{
    (void)state;
    agave_dataset *ds = indexed_dataset("batch-idx", 300);
    agave_batcher *b = NULL;
    /* 7 does not divide 300: batches run across epoch boundaries. */
    assert_int_equal(agave_batcher_create(g_ctx, ds, 7, 42, 0, AGAVE_SUBSET_FIRST, &b), AGAVE_OK);
    assert_int_equal(agave_batcher_epoch_size(b), 300);
    size_t order[7 * 130];   /* a little over 3 epochs */
    draw(b, 7, 130, order);
    expect_epochs(order, sizeof order / sizeof *order, 300, 300);
    assert_memory_not_equal(order, order + 300, 300 * sizeof *order);   /* reshuffled */
    uint64_t epoch, index, seed;
    assert_int_equal(agave_batcher_position(b, &epoch, &index, &seed), AGAVE_OK);
    assert_int_equal(epoch, 3);
    assert_int_equal(index, 7 * 130 - 900);
    assert_int_equal(seed, 42);
    agave_batcher_free(b);

    /* A batch larger than the set spans epochs but keeps the rule. */
    assert_int_equal(agave_batcher_create(g_ctx, ds, 25, 1, 10, AGAVE_SUBSET_FIRST, &b), AGAVE_OK);
    size_t big[50];
    draw(b, 25, 2, big);
    expect_epochs(big, 50, 10, 10);
    agave_batcher_free(b);
    agave_dataset_free(ds);
}

/* The shuffle is Fisher-Yates: every permutation possible, so images stay in
 * place about once per epoch on average. Sattolo's variant (rng_below(i)
 * instead of rng_below(i + 1), a one-character slip) gives only cyclic
 * permutations, which never have a fixed point. 40 seeds of 8 images: about 40
 * fixed points expected; the chance of none is about 0.37^40. */
static void test_shuffle_keeps_fixed_points(void **state)
{
    (void)state;
    agave_dataset *ds = indexed_dataset("batch-fixed", 8);
    int fixed = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        agave_batcher *b = NULL;
        assert_int_equal(agave_batcher_create(g_ctx, ds, 8, seed, 0, AGAVE_SUBSET_FIRST, &b),
                         AGAVE_OK);
        size_t order[8];
        draw(b, 8, 1, order);
        expect_epochs(order, 8, 8, 8);
        for (size_t i = 0; i < 8; i++)
            fixed += order[i] == i;
        agave_batcher_free(b);
    }
    assert_in_range(fixed, 15, 70);
    agave_dataset_free(ds);
}

static void test_batches_seeded(void **state)
{
    (void)state;
    agave_dataset *ds = indexed_dataset("seed-idx", 64);
    size_t a[64], b[64], c[64];
    agave_batcher *ba, *bb, *bc;
    assert_int_equal(agave_batcher_create(g_ctx, ds, 8, 5, 0, AGAVE_SUBSET_FIRST, &ba), AGAVE_OK);
    assert_int_equal(agave_batcher_create(g_ctx, ds, 16, 5, 0, AGAVE_SUBSET_FIRST, &bb), AGAVE_OK);
    assert_int_equal(agave_batcher_create(g_ctx, ds, 8, 6, 0, AGAVE_SUBSET_FIRST, &bc), AGAVE_OK);
    /* The context's generator does not matter. */
    agave_context_seed(g_ctx, 999);
    draw(ba, 8, 8, a);
    draw(bb, 16, 4, b);   /* same seed, other batch size: same order */
    draw(bc, 8, 8, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    agave_batcher_free(ba), agave_batcher_free(bb), agave_batcher_free(bc);
    agave_dataset_free(ds);
}

static void test_batches_subset(void **state)
{
    (void)state;
    agave_dataset *ds = indexed_dataset("subset-idx", 50);
    agave_batcher *b;
    size_t order[60];
    assert_int_equal(agave_batcher_create(g_ctx, ds, 4, 3, 12, AGAVE_SUBSET_FIRST, &b), AGAVE_OK);
    assert_int_equal(agave_batcher_epoch_size(b), 12);
    draw(b, 4, 15, order);
    expect_epochs(order, 60, 12, 12);   /* indices below 12 */
    agave_batcher_free(b);

    int differs = 0;
    for (uint64_t seed = 1; seed <= 5; seed++) {
        assert_int_equal(agave_batcher_create(g_ctx, ds, 4, seed, 12, AGAVE_SUBSET_RANDOM, &b),
                         AGAVE_OK);
        draw(b, 4, 15, order);
        expect_epochs(order, 60, 12, 50);   /* the same 12 images every epoch */
        for (int i = 0; i < 12; i++)
            differs |= order[i] >= 12;
        agave_batcher_free(b);
    }
    assert_true(differs);

    assert_int_equal(agave_batcher_create(g_ctx, ds, 4, 3, 51, AGAVE_SUBSET_FIRST, &b),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_batcher_create(g_ctx, ds, 0, 3, 0, AGAVE_SUBSET_FIRST, &b),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_batcher_create(g_ctx, NULL, 1, 3, 0, AGAVE_SUBSET_FIRST, &b),
                     AGAVE_ERR_NULL);
    assert_null(b);
    agave_batcher_free(NULL);
    agave_dataset_free(ds);
}

static void test_batches_resume(void **state)
{
    (void)state;
    agave_dataset *ds = indexed_dataset("resume-idx", 40);
    for (int mode = 0; mode < 2; mode++) {
        size_t subset = mode ? 25 : 0;
        agave_batcher *b1, *b2;
        assert_int_equal(agave_batcher_create(g_ctx, ds, 6, 77, subset, (agave_subset_mode)mode,
                                              &b1),
                         AGAVE_OK);
        size_t skip[6 * 11], rest1[6 * 9], rest2[6 * 9];
        draw(b1, 6, 11, skip);
        uint64_t epoch, index, seed;
        assert_int_equal(agave_batcher_position(b1, &epoch, &index, &seed), AGAVE_OK);
        assert_true(epoch >= 1 && index > 0);   /* mid-epoch, after a reshuffle */
        draw(b1, 6, 9, rest1);
        /* A batcher made with another seed takes the stored one, subset included. */
        assert_int_equal(agave_batcher_create(g_ctx, ds, 6, 1234, subset, (agave_subset_mode)mode,
                                              &b2),
                         AGAVE_OK);
        assert_int_equal(agave_batcher_set_position(b2, epoch, index, seed), AGAVE_OK);
        draw(b2, 6, 9, rest2);
        assert_memory_equal(rest1, rest2, sizeof rest1);
        uint64_t size = agave_batcher_epoch_size(b2);
        assert_int_equal(agave_batcher_set_position(b2, 0, size, seed), AGAVE_ERR_INVALID_ARG);
        agave_batcher_free(b1), agave_batcher_free(b2);
    }
    agave_dataset_free(ds);
}

/* ---- PNG grids --------------------------------------------------------------------- */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static uint8_t *load_png(const char *path, int *w, int *h, int *c)
{
    uint8_t *px = stbi_load(path, w, h, c, 0);
    if (!px)
        fail_msg("%s: stb_image cannot read it: %s", path, stbi_failure_reason());
    return px;
}

static void test_grid_grey(void **state)
{
    (void)state;
    make_dir("png");
    /* 3 images of 1x4x5 in 2 columns, gap 1, scale 2: cells 8x10. */
    uint8_t img[3 * 20];
    for (int i = 0; i < 60; i++)
        img[i] = (uint8_t)(i * 4 + 1);
    agave_grid_options opt;
    agave_grid_options_init(&opt);
    opt.gap = 1;
    opt.scale = 2;
    opt.background[0] = opt.background[1] = opt.background[2] = 128;
    const char *path = tmp_path("png/grey.png");
    assert_int_equal(agave_image_grid_write(g_ctx, path, img, 3, 1, 4, 5, 2, &opt), AGAVE_OK);
    int w, h, c;
    uint8_t *px = load_png(path, &w, &h, &c);
    assert_int_equal(w, 1 + 2 * (10 + 1));
    assert_int_equal(h, 1 + 2 * (8 + 1));
    assert_int_equal(c, 1);
    for (int i = 0; i < 3; i++) {
        int y0 = 1 + (i / 2) * 9, x0 = 1 + (i % 2) * 11;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 10; x++)
                assert_int_equal(px[(y0 + y) * w + x0 + x], img[i * 20 + (y / 2) * 5 + x / 2]);
    }
    assert_int_equal(px[0], 128);                  /* border */
    assert_int_equal(px[1 * w + 11], 128);         /* gap between columns */
    assert_int_equal(px[(10 + 3) * w + 12 + 3], 128);   /* the empty fourth cell */
    stbi_image_free(px);

    /* Written again over itself; no temporary file stays behind. */
    img[0] = 0;
    assert_int_equal(agave_image_grid_write(g_ctx, path, img, 3, 1, 4, 5, 2, &opt), AGAVE_OK);
    px = load_png(path, &w, &h, &c);
    assert_int_equal(px[1 * w + 1], 0);
    stbi_image_free(px);
    assert_int_equal(count_entries(tmp_path("png")), 1);
}

static void test_grid_rgb(void **state)
{
    (void)state;
    make_dir("png-rgb");
    uint8_t img[2 * 3 * 2 * 2];   /* 2 images of 3x2x2, planar */
    for (int i = 0; i < 24; i++)
        img[i] = (uint8_t)(10 * i);
    const char *path = tmp_path("png-rgb/rgb.png");
    assert_int_equal(agave_image_grid_write(g_ctx, path, img, 2, 3, 2, 2, 8, NULL), AGAVE_OK);
    int w, h, c;
    uint8_t *px = load_png(path, &w, &h, &c);
    assert_int_equal(w, 2 + 2 * (2 + 2));   /* default gap 2; 2 images: 2 columns, not 8 */
    assert_int_equal(h, 2 + 2 + 2);
    assert_int_equal(c, 3);
    for (int i = 0; i < 2; i++)
        for (int y = 0; y < 2; y++)
            for (int x = 0; x < 2; x++)
                for (int ch = 0; ch < 3; ch++)
                    assert_int_equal(px[((2 + y) * w + 2 + i * 4 + x) * 3 + ch],
                                     img[i * 12 + ch * 4 + y * 2 + x]);
    assert_int_equal(px[0], 255);   /* white by default */
    stbi_image_free(px);

    /* A grey image on a coloured background becomes RGB. */
    agave_grid_options opt;
    agave_grid_options_init(&opt);
    opt.background[0] = 200;
    opt.background[1] = opt.background[2] = 0;
    assert_int_equal(agave_image_grid_write(g_ctx, path, img, 1, 1, 2, 2, 1, &opt), AGAVE_OK);
    px = load_png(path, &w, &h, &c);
    assert_int_equal(c, 3);
    assert_int_equal(px[0], 200);
    assert_int_equal(px[1], 0);
    assert_int_equal(px[(2 * w + 2) * 3 + 1], img[0]);
    stbi_image_free(px);
}

/* f(z) at half resolution beside its sample: pairs side by side (Figure 1c),
 * then test / reconstruction / sample as rows (Figure 3). */
static void test_grid_sets(void **state)
{
    (void)state;
    make_dir("png-sets");
    uint8_t small[3 * 4], full[3 * 16];   /* 3 images: 1x2x2 and 1x4x4 */
    for (int i = 0; i < 12; i++)
        small[i] = (uint8_t)(200 + i);
    for (int i = 0; i < 48; i++)
        full[i] = (uint8_t)i;
    const uint8_t *sets[2] = {small, full};
    int hs[2] = {2, 4}, ws[2] = {2, 4};
    agave_grid_options opt;
    agave_grid_options_init(&opt);
    opt.gap = 1;
    opt.group_gap = 3;
    opt.background[0] = opt.background[1] = opt.background[2] = 99;
    const char *path = tmp_path("png-sets/pairs.png");
    assert_int_equal(agave_image_grid_write_sets(g_ctx, path, sets, 2, 3, 1, hs, ws, 2,
                                                 AGAVE_GRID_SETS_SIDE_BY_SIDE, &opt),
                     AGAVE_OK);
    int w, h, c;
    uint8_t *px = load_png(path, &w, &h, &c);
    /* 2 groups of 2 cells of 4x4 per row, gaps 1, 3 between groups; 2 rows. */
    assert_int_equal(w, 1 + 4 * 5 + 3);
    assert_int_equal(h, 1 + 2 * 5);
    for (int i = 0; i < 3; i++) {
        int y0 = 1 + (i / 2) * 5, x0 = 1 + (i % 2) * (2 * 5 + 3);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                assert_int_equal(px[(y0 + y) * w + x0 + x], small[i * 4 + (y / 2) * 2 + x / 2]);
                assert_int_equal(px[(y0 + y) * w + x0 + 5 + x], full[i * 16 + y * 4 + x]);
            }
    }
    assert_int_equal(px[1 * w + 1 + 2 * 5], 99);   /* inside the group gap */
    stbi_image_free(px);

    path = tmp_path("png-sets/rows.png");
    assert_int_equal(agave_image_grid_write_sets(g_ctx, path, sets, 2, 3, 1, hs, ws, 2,
                                                 AGAVE_GRID_SETS_AS_ROWS, &opt),
                     AGAVE_OK);
    px = load_png(path, &w, &h, &c);
    /* 2 columns; 2 blocks of 2 rows (small, full) with 3 extra pixels between blocks. */
    assert_int_equal(w, 1 + 2 * 5);
    assert_int_equal(h, 1 + 4 * 5 + 3);
    for (int i = 0; i < 3; i++) {
        int block = i / 2, x0 = 1 + (i % 2) * 5;
        int y_small = 1 + block * (2 * 5 + 3), y_full = y_small + 5;
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                assert_int_equal(px[(y_small + y) * w + x0 + x],
                                 small[i * 4 + (y / 2) * 2 + x / 2]);
                assert_int_equal(px[(y_full + y) * w + x0 + x], full[i * 16 + y * 4 + x]);
            }
    }
    stbi_image_free(px);
    assert_int_equal(count_entries(tmp_path("png-sets")), 2);
}

static void test_grid_errors(void **state)
{
    (void)state;
    uint8_t img[16] = {0};
    const char *path = tmp_path("no-such-dir/grid.png");
    assert_int_equal(agave_image_grid_write(g_ctx, path, img, 1, 1, 4, 4, 1, NULL), AGAVE_ERR_IO);
    assert_non_null(strstr(agave_context_last_error(g_ctx), "no-such-dir/grid.png"));
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("x.png"), img, 1, 2, 4, 4, 1, NULL),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("x.png"), NULL, 1, 1, 4, 4, 1, NULL),
                     AGAVE_ERR_NULL);
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path(""), img, 1, 1, 4, 4, 1, NULL),
                     AGAVE_ERR_INVALID_ARG);
    agave_grid_options opt;
    agave_grid_options_init(&opt);
    opt.scale = 64;   /* 65535 * 64 pixels wide: refused before any allocation */
    uint8_t *wide = calloc(65535, 1);
    assert_non_null(wide);
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("x.png"), wide, 1, 1, 1, 65535, 1,
                                            &opt),
                     AGAVE_ERR_LIMIT);
    free(wide);
    opt.struct_size = 4;   /* not initialised */
    assert_int_equal(agave_image_grid_write(g_ctx, tmp_path("x.png"), img, 1, 1, 4, 4, 1, &opt),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(access(tmp_path("x.png"), F_OK), -1);
}

/* ---- histogram baseline -------------------------------------------------------------- */

static void test_baseline_constant(void **state)
{
    (void)state;
    const size_t n = 10;
    uint8_t train[10 * 12], test[2 * 12];
    memset(train, 7, sizeof train);
    memset(test, 7, sizeof test);
    double bpd;
    assert_int_equal(agave_marginal_baseline_bpd(g_ctx, train, n, test, 2, 3, 2, 2, &bpd),
                     AGAVE_OK);
    assert_near(bpd, -log2((n + 1.0) / (n + 256.0)), 1e-12);
    /* A value never seen keeps its add-one count. */
    memset(test, 8, sizeof test);
    assert_int_equal(agave_marginal_baseline_bpd(g_ctx, train, n, test, 2, 3, 2, 2, &bpd),
                     AGAVE_OK);
    assert_near(bpd, -log2(1.0 / (n + 256.0)), 1e-12);
    /* No training images: uniform, exactly 8 bits. */
    assert_int_equal(agave_marginal_baseline_bpd(g_ctx, NULL, 0, test, 2, 3, 2, 2, &bpd),
                     AGAVE_OK);
    assert_near(bpd, 8.0, 1e-12);
    assert_int_equal(agave_marginal_baseline_bpd(g_ctx, train, n, test, 0, 3, 2, 2, &bpd),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_marginal_baseline_bpd(g_ctx, train, n, test, 1, 3, 65535, 65535, &bpd),
                     AGAVE_ERR_LIMIT);
}

static void test_baseline_uniform_and_direct(void **state)
{
    (void)state;
    const size_t n_train = 20000, n_test = 500, d = 6;
    uint8_t *train = malloc(n_train * d), *test = malloc(n_test * d);
    assert_non_null(train);
    assert_non_null(test);
    uint64_t x = 88172645463325252ull;   /* xorshift64: independent of the library's RNG */
    for (size_t i = 0; i < n_train * d + n_test * d; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        *(i < n_train * d ? &train[i] : &test[i - n_train * d]) = (uint8_t)(x >> 32);
    }
    double bpd;
    assert_int_equal(agave_marginal_baseline_bpd(g_ctx, train, n_train, test, n_test, 1, 2, 3,
                                                 &bpd),
                     AGAVE_OK);
    assert_true(bpd > 7.98 && bpd < 8.05);

    /* The same number computed directly, one dimension and value at a time. */
    double bits = 0;
    for (size_t i = 0; i < n_test; i++)
        for (size_t k = 0; k < d; k++) {
            size_t count = 0;
            for (size_t j = 0; j < n_train; j += 1)
                count += train[j * d + k] == test[i * d + k];
            bits -= log2((count + 1.0) / (n_train + 256.0));
        }
    assert_near(bpd, bits / (double)(n_test * d), 1e-9);
    free(train), free(test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_plain_and_gzip),
        cmocka_unit_test(test_cifar_plain_and_gzip),
        cmocka_unit_test(test_format_from_content),
        cmocka_unit_test(test_cifar_directory),
        cmocka_unit_test(test_idx_directory),
        cmocka_unit_test(test_list_of_files),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_broken_gzip),
        cmocka_unit_test(test_mismatched_files),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_memory_source),
        cmocka_unit_test(test_batches_cover_epochs),
        cmocka_unit_test(test_shuffle_keeps_fixed_points),
        cmocka_unit_test(test_batches_seeded),
        cmocka_unit_test(test_batches_subset),
        cmocka_unit_test(test_batches_resume),
        cmocka_unit_test(test_grid_grey),
        cmocka_unit_test(test_grid_rgb),
        cmocka_unit_test(test_grid_sets),
        cmocka_unit_test(test_grid_errors),
        cmocka_unit_test(test_baseline_constant),
        cmocka_unit_test(test_baseline_uniform_and_direct),
    };
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
