/* Regression inputs: every file in tests/regress/ is an input that once broke
 * a reader or the checkpoint loader (found by the fuzzers in fuzz/, see
 * docs/reliability.md). Each is opened through the public API from its file
 * and through the internal memory entry the fuzzer drives, and must give
 * the status and message listed below, the same both ways.
 *
 * The file name says how it is opened:
 *   ckpt-*          agave_model_load / checkpoint_load_memory
 *   idx-*, cifar-*  agave_dataset_open_files / dataset_open_memory; the
 *                   reader is chosen by the name as for any file ("idx" in
 *                   it, or *.bin, or a guess from the content; ".gz" needs gzip)
 *   image-*         agave_dataset_open on a folder holding only that file
 *                   (linked into a temporary directory) / image_open_memory
 * Every file must be listed in `expected` and every entry must have its
 * file, so an input cannot be added (or lost) without its expectation.
 * Under `make sanitize` these runs are also checked for memory errors and
 * leaks, and under `make valgrind` by memcheck. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agave.h"
#include "data/data.h"
#include "data/image.h"
#include "model/checkpoint.h"
#include "support/support.h"

typedef struct expectation {
    const char *file;
    agave_status status;
    const char *message;   /* a part of the context's last error */
    const char *why;       /* what the input once did */
} expectation;

static const expectation expected[] = {
    {"ckpt-small-file-huge-config.ckpt", AGAVE_ERR_FORMAT, "too small for its configuration",
     "fuzz_checkpoint: a 478-byte file with a valid CRC and F = 255 made the loader build a "
     "model of 255 filters (11 s under ASan) before finding its parameters missing; with "
     "F = 1024, R = 32 tens of gigabytes"},
    {"image-jpeg-huffman-overflow.jpg", AGAVE_ERR_FORMAT, "a damaged JPEG file",
     "fuzz_image: a DHT segment declaring 4 tables' worth of codes made stb_image 2.27 write "
     "past its 257-entry Huffman size table (UBSan: index 257 out of bounds); JPEG now goes "
     "to libjpeg-turbo"},
    {"image-png-empty-idat.png", AGAVE_ERR_FORMAT, "a damaged PNG file",
     "fuzz_image: an empty IDAT chunk made stb_image 2.27 offset a NULL pointer (UBSan: "
     "applying zero offset to null pointer); PNG is now read by libpng, which also checks "
     "the chunks' CRCs"},
    {"image-pnm-header-overflow.ppm", AGAVE_ERR_FORMAT, "a damaged PGM/PPM header",
     "fuzz_image: a ten-digit height overflowed an int in stb_image 2.27's PNM header parser "
     "(UBSan: signed integer overflow); PGM/PPM is now read by lib/data/image_pnm.c"},
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

static const char *regress_dir(void)
{
    const char *d = getenv("AGAVE_REGRESS_DIR");
    return d ? d : "tests/regress";
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    uint8_t *p = malloc(n ? (size_t)n : 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void expect_result(agave_context *ctx, const expectation *e, agave_status st,
                          const char *how)
{
    const char *msg = agave_context_last_error(ctx);
    if (st != e->status || (e->message && !strstr(msg, e->message))) {
        print_error("%s through %s: status %d (%s), expected %d; message: %s\n", e->file, how,
                    (int)st, agave_status_string(st), (int)e->status, msg);
        fail();
    }
}

static void run_checkpoint(agave_context *ctx, const expectation *e, const char *path)
{
    agave_model *m = NULL;
    expect_result(ctx, e, agave_model_load(ctx, path, NULL, &m), "agave_model_load");
    assert_true((m != NULL) == (e->status == AGAVE_OK));
    agave_model_free(m);
    size_t len;
    uint8_t *bytes = read_all(path, &len);
    m = NULL;
    expect_result(ctx, e, checkpoint_load_memory(ctx, e->file, bytes, len, NULL, &m),
                  "checkpoint_load_memory");
    assert_true((m != NULL) == (e->status == AGAVE_OK));
    agave_model_free(m);
    free(bytes);
}

static void run_dataset(agave_context *ctx, const expectation *e, const char *path)
{
    agave_dataset *ds = NULL;
    const char *paths[] = {path};
    expect_result(ctx, e, agave_dataset_open_files(ctx, paths, 1, &ds),
                  "agave_dataset_open_files");
    assert_true((ds != NULL) == (e->status == AGAVE_OK));
    agave_dataset_free(ds);
    size_t len;
    uint8_t *bytes = read_all(path, &len);
    ds = NULL;
    expect_result(ctx, e, dataset_open_memory(ctx, path, bytes, len, &ds), "dataset_open_memory");
    assert_true((ds != NULL) == (e->status == AGAVE_OK));
    agave_dataset_free(ds);
    free(bytes);
}

/* The image alone in a temporary folder (a symbolic link to it, named x.jpg
 * or x.png by its ending), so that the folder reader opens it. */
static void run_image(agave_context *ctx, const expectation *e, const char *path)
{
    char dir[64], link_path[1100], real[4096];
    assert_int_equal(support_tmpdir_make(dir, sizeof dir, "agave-regress"), 0);
    assert_non_null(realpath(path, real));
    const char *dot = strrchr(e->file, '.');
    snprintf(link_path, sizeof link_path, "%s/x%s", dir, dot ? dot : "");
    assert_int_equal(symlink(real, link_path), 0);
    agave_dataset *ds = NULL;
    expect_result(ctx, e, agave_dataset_open(ctx, dir, AGAVE_SPLIT_TRAIN, &ds),
                  "agave_dataset_open (a folder)");
    assert_true((ds != NULL) == (e->status == AGAVE_OK));
    agave_dataset_free(ds);
    assert_int_equal(unlink(link_path), 0);
    assert_int_equal(support_tmpdir_remove(dir), 0);
    size_t len;
    uint8_t *bytes = read_all(path, &len);
    static const image_fit none;
    ds = NULL;
    expect_result(ctx, e, image_open_memory(ctx, e->file, bytes, len, &none, IMAGE_MAX_PIXELS, &ds),
                  "image_open_memory");
    assert_true((ds != NULL) == (e->status == AGAVE_OK));
    agave_dataset_free(ds);
    free(bytes);
}

static const expectation *find(const char *file)
{
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (strcmp(expected[i].file, file) == 0)
            return &expected[i];
    return NULL;
}

/* Every file has an expectation and every expectation a file. */
static void test_every_file_listed(void **state)
{
    (void)state;
    DIR *d = opendir(regress_dir());
    assert_non_null(d);
    int seen[N_EXPECTED] = {0};
    struct dirent *ent;
    int unlisted = 0;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || strcmp(ent->d_name, "README.md") == 0)
            continue;
        const expectation *e = find(ent->d_name);
        if (!e) {
            print_error("tests/regress/%s has no entry in tests/test_regress.c\n", ent->d_name);
            unlisted++;
            continue;
        }
        seen[e - expected] = 1;
    }
    closedir(d);
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (!seen[i]) {
            print_error("%s is listed but missing from %s\n", expected[i].file, regress_dir());
            unlisted++;
        }
    assert_int_equal(unlisted, 0);
}

static void test_each_input(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    for (size_t i = 0; i < N_EXPECTED; i++) {
        const expectation *e = &expected[i];
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", regress_dir(), e->file);
        if (strncmp(e->file, "ckpt-", 5) == 0)
            run_checkpoint(ctx, e, path);
        else if (strncmp(e->file, "idx-", 4) == 0 || strncmp(e->file, "cifar-", 6) == 0)
            run_dataset(ctx, e, path);
        else if (strncmp(e->file, "image-", 6) == 0)
            run_image(ctx, e, path);
        else
            fail_msg("%s: the name must start with ckpt-, idx-, cifar- or image-", e->file);
    }
    agave_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_file_listed),
        cmocka_unit_test(test_each_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
