/* The library's one atomic file writer (lib/core/file.c) and its three users:
 * agave_file_write_atomic itself, checkpoints (agave_model_save) and image
 * grids. Each file gets mode 0666 less the umask, whatever wrote it; a write
 * replaces the old file whole and leaves no temporary file; a failed write
 * leaves the old file as it was and says which path and which step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/support.h"

typedef struct fixture {
    char dir[4096];
    agave_context *ctx;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || support_tmpdir_make(f->dir, sizeof f->dir, "test_files") != 0 ||
        agave_context_create(&f->ctx, 1) != AGAVE_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    int gone = support_tmpdir_remove(f->dir);
    agave_context_free(f->ctx);
    free(f);
    return gone;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

/* Entries of dir other than . and .. */
static int entries(const char *dir)
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

static void expect_contents(const char *path, const char *text)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char buf[256] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    assert_int_equal(n, strlen(text));
    assert_string_equal(buf, text);
}

/* Every writer, under three umasks: the file's mode is 0666 & ~umask. */
typedef agave_status (*writer_fn)(agave_context *ctx, const char *path);

static agave_status write_text(agave_context *ctx, const char *path)
{
    return agave_file_write_atomic(ctx, path, "hello\n", 6);
}

static agave_status write_grid(agave_context *ctx, const char *path)
{
    uint8_t img[2 * 4 * 4];
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)(i * 8);
    return agave_image_grid_write(ctx, path, img, 2, 1, 4, 4, 2, NULL);
}

static agave_status write_checkpoint(agave_context *ctx, const char *path)
{
    agave_config cfg = support_tiny_config(1, 0, 1, 256, AGAVE_MODE_AGAVE);
    agave_model *m;
    agave_status st = agave_model_create(ctx, &cfg, &m);
    if (st == AGAVE_OK)
        st = agave_model_save(m, path);
    agave_model_free(m);
    return st;
}

static void test_every_writer_honours_the_umask(void **state)
{
    fixture *f = *state;
    const struct {
        const char *name;
        writer_fn write;
    } writers[] = {
        {.name = "file.txt", .write = write_text},
        {.name = "grid.png", .write = write_grid},
        {.name = "model.ckpt", .write = write_checkpoint},
    };
    const mode_t masks[] = {022, 027, 077, 0};
    for (size_t w = 0; w < sizeof writers / sizeof writers[0]; w++)
        for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
            const char *path = support_path(f->dir, writers[w].name);
            unlink(path);
            mode_t old = umask(masks[k]);
            agave_status st = writers[w].write(f->ctx, path);
            umask(old);
            if (st != AGAVE_OK)
                fail_msg("%s: %s", writers[w].name, agave_context_last_error(f->ctx));
            if (mode_of(path) != (0666 & ~masks[k]))
                fail_msg("%s under umask %03o has mode %03o, expected %03o", writers[w].name,
                         (unsigned)masks[k], (unsigned)mode_of(path),
                         (unsigned)(0666 & ~masks[k]));
        }
    assert_int_equal(entries(f->dir), 3);   /* no temporary file left */
}

static void test_a_write_replaces_the_file_whole(void **state)
{
    fixture *f = *state;
    const char *path = support_path(f->dir, "report.json");
    assert_int_equal(agave_file_write_atomic(f->ctx, path, "a long first version\n", 21),
                     AGAVE_OK);
    assert_int_equal(agave_file_write_atomic(f->ctx, path, "short\n", 6), AGAVE_OK);
    expect_contents(path, "short\n");
    assert_int_equal(agave_file_write_atomic(f->ctx, path, NULL, 0), AGAVE_OK);
    expect_contents(path, "");
    assert_int_equal(entries(f->dir), 1);
}

/* The rename fails (the target is a non-empty directory): the temporary
 * file is removed, the message names the path and the step. */
static void test_a_failed_write_leaves_nothing_behind(void **state)
{
    fixture *f = *state;
    const char *target = support_path(f->dir, "taken");
    assert_int_equal(mkdir(target, 0755), 0);
    assert_int_equal(agave_file_write_atomic(f->ctx, support_path(target, "inside"), "x", 1),
                     AGAVE_OK);
    assert_int_equal(agave_file_write_atomic(f->ctx, target, "new", 3), AGAVE_ERR_IO);
    const char *msg = agave_context_last_error(f->ctx);
    if (!strstr(msg, target) || !strstr(msg, "rename"))
        fail_msg("the message does not say which path and which step: %s", msg);
    assert_int_equal(entries(f->dir), 1);       /* only the directory, no temporary file */
    assert_int_equal(entries(target), 1);
    expect_contents(support_path(target, "inside"), "x");
    /* A directory that does not exist: refused when the temporary file is made. */
    assert_int_equal(agave_file_write_atomic(f->ctx, support_path(f->dir, "no/such"), "x", 1),
                     AGAVE_ERR_IO);
    assert_non_null(strstr(agave_context_last_error(f->ctx), "temporary"));
}

static void test_bad_arguments_are_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(agave_file_write_atomic(NULL, "x", "x", 1), AGAVE_ERR_NULL);
    assert_int_equal(agave_file_write_atomic(f->ctx, NULL, "x", 1), AGAVE_ERR_NULL);
    assert_int_equal(agave_file_write_atomic(f->ctx, "x", NULL, 1), AGAVE_ERR_NULL);
    assert_int_equal(agave_file_write_atomic(f->ctx, "", "x", 1), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_file_write_atomic(f->ctx, support_path(f->dir, "d/"), "x", 1),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(entries(f->dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_writer_honours_the_umask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_write_replaces_the_file_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_write_leaves_nothing_behind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_are_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
