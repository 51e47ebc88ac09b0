/* Helpers shared by the test programs (support.h). */
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

#include "gradcheck.h"
#include "support.h"

agave_config support_tiny_config(int C, int T, int s, int b, agave_mode mode)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.C = C, cfg.T = T, cfg.s = s, cfg.b = b, cfg.mode = mode;
    return cfg;
}

char *support_read_text(const char *path)
{
    char full[4096];
    const char *src = getenv("AGAVE_SRCDIR");
    snprintf(full, sizeof full, "%s%s%s", src && *src ? src : "", src && *src ? "/" : "", path);
    FILE *f = fopen(full, "rb");
    if (!f)
        fail_msg("cannot open %s (set AGAVE_SRCDIR to the source tree)", full);
    size_t cap = 1 << 16, len = 0;
    char *p = malloc(cap);
    assert_non_null(p);
    size_t got;
    while ((got = fread(p + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            cap *= 2;
            p = realloc(p, cap);
            assert_non_null(p);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        fail_msg("cannot read %s", full);
    p[len] = 0;
    return p;
}

unsigned char *support_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    assert_true(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
    unsigned char *p = malloc(n ? (size_t)n : 1);
    assert_non_null(p);
    *len = fread(p, 1, (size_t)n, f);
    fclose(f);
    if (*len != (size_t)n)
        fail_msg("short read on %s", path);
    return p;
}

void support_write_file(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot create %s", path);
    size_t done = fwrite(p, 1, len, f);
    if (fclose(f) != 0 || done != len)
        fail_msg("cannot write %s", path);
}

int support_tmpdir_make(char *buf, size_t len, const char *name)
{
    const char *base = getenv("TMPDIR");
    int n = snprintf(buf, len, "%s/%s.XXXXXX", base && *base ? base : "/tmp", name);
    if (n < 0 || (size_t)n >= len)
        return -1;
    return mkdtemp(buf) ? 0 : -1;
}

/* path and everything under it, following no symbolic link */
static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[4096];
        if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) < (int)sizeof child)
            remove_tree(child);
    }
    if (d)
        closedir(d);
    rmdir(path);
}

int support_tmpdir_remove(const char *dir)
{
    struct stat st;
    remove_tree(dir);
    return lstat(dir, &st) == 0 ? -1 : 0;
}

const char *support_path(const char *dir, const char *name)
{
    static char ring[8][4096];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", dir, name);
    return p;
}

void *support_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    assert_non_null(p);
    return p;
}

agave_tensor *support_uniform_tensor(agave_context *ctx, int ndim, int d0, int d1, int d2,
                                     int d3)
{
    int dims[4] = {d0, d1, d2, d3};
    agave_tensor *t = NULL;
    assert_int_equal(agave_tensor_create(ctx, ndim, dims, &t), AGAVE_OK);
    float *p = agave_tensor_data(t);
    for (size_t i = 0; i < agave_tensor_numel(t); i++)
        p[i] = (float)test_uniform(-1, 1);
    return t;
}

const float *support_backward_against_random(agave_context *ctx, agave_tensor *y,
                                             agave_tensor **R)
{
    *R = support_uniform_tensor(ctx, 4, agave_tensor_dim(y, 0), agave_tensor_dim(y, 1),
                                agave_tensor_dim(y, 2), agave_tensor_dim(y, 3));
    agave_tensor *prod = NULL, *L = NULL;
    assert_int_equal(agave_mul(ctx, y, *R, &prod), AGAVE_OK);
    assert_int_equal(agave_sum(ctx, prod, &L), AGAVE_OK);
    assert_int_equal(agave_backward(ctx, L), AGAVE_OK);
    return agave_tensor_data(*R);
}
