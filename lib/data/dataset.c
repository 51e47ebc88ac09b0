/* The data set handle: files read into one (count,C,H,W) uint8 buffer, and the
 * directory layouts (CIFAR-10 batches or IDX files) recognised by name. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "image.h"

typedef unsigned long long ull;

void pixels_init(pixel_buffer *pb)
{
    memset(pb, 0, sizeof *pb);
    pb->limit = AGAVE_DATASET_MAX_BYTES;
    if (pb->limit > SIZE_MAX)
        pb->limit = SIZE_MAX;
}

/* Reads one file (or buffer, when data is not NULL) and appends its images. */
static agave_status read_one(agave_context *ctx, const char *name, const void *data,
                             size_t size, pixel_buffer *pb, image_geometry *geo)
{
    byte_source src;
    agave_status st = data ? src_open_memory(&src, ctx, name, data, size)
                           : src_open_file(&src, ctx, name);
    if (st == AGAVE_OK)
        st = read_any(&src, pb, geo);
    src_close(&src);
    return st;
}

static agave_status check_same_geometry(agave_context *ctx, const char *first_name,
                                        const image_geometry *first, const char *name,
                                        const image_geometry *geo)
{
    if (geo->channels == first->channels && geo->height == first->height &&
        geo->width == first->width)
        return AGAVE_OK;
    return ctx_error(ctx, AGAVE_ERR_FORMAT,
                     "%s holds %dx%dx%d images (CxHxW) but %s holds %dx%dx%d; all files of a "
                     "data set must agree",
                     name, geo->channels, geo->height, geo->width, first_name, first->channels,
                     first->height, first->width);
}

/* Trims the buffer to its length. */
agave_status dataset_from_pixels(agave_context *ctx, pixel_buffer *pb, const image_geometry *geo,
                                 size_t count, agave_dataset **out)
{
    agave_dataset *ds = calloc(1, sizeof *ds);
    if (!ds)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory for a data set handle");
    uint8_t *trimmed = pb->len < pb->cap ? realloc(pb->bytes, pb->len) : pb->bytes;
    ds->pixels = trimmed ? trimmed : pb->bytes;  /* a failed trim keeps the larger block */
    pb->bytes = NULL;
    ds->ctx = ctx;
    ds->count = count;
    ds->channels = geo->channels;
    ds->height = geo->height;
    ds->width = geo->width;
    ds->image_bytes = (size_t)geo->channels * geo->height * geo->width;
    *out = ds;
    return AGAVE_OK;
}

agave_status agave_dataset_open_files(agave_context *ctx, const char *const *paths, int n_paths,
                                      agave_dataset **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !paths || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_dataset_open_files: NULL argument");
    if (n_paths < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_dataset_open_files: %d paths, expected at least 1", n_paths);
    for (int i = 0; i < n_paths; i++)
        if (!paths[i])
            return ctx_error(ctx, AGAVE_ERR_NULL, "agave_dataset_open_files: paths[%d] is NULL",
                             i);
    pixel_buffer pb;
    pixels_init(&pb);
    image_geometry first = {0};
    size_t count = 0;
    agave_status st = AGAVE_OK;
    for (int i = 0; i < n_paths && st == AGAVE_OK; i++) {
        image_geometry geo = {0};
        st = read_one(ctx, paths[i], NULL, 0, &pb, &geo);
        if (st != AGAVE_OK)
            break;
        if (i == 0)
            first = geo;
        st = check_same_geometry(ctx, paths[0], &first, paths[i], &geo);
        count += geo.count;
    }
    if (st == AGAVE_OK)
        st = dataset_from_pixels(ctx, &pb, &first, count, out);
    free(pb.bytes);
    if (st == AGAVE_OK)
        ctx_clear_error(ctx);
    return st;
}

agave_status dataset_open_memory(agave_context *ctx, const char *name, const void *data,
                                 size_t size, agave_dataset **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !name || !data || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "dataset_open_memory: NULL argument");
    pixel_buffer pb;
    pixels_init(&pb);
    image_geometry geo = {0};
    agave_status st = read_one(ctx, name, data, size, &pb, &geo);
    if (st == AGAVE_OK)
        st = dataset_from_pixels(ctx, &pb, &geo, geo.count, out);
    free(pb.bytes);
    return st;
}

/* ---- directory layouts ------------------------------------------------------ */

/* A file of the requested split found in the directory. */
typedef struct found_file {
    char name[256];
    int batch;       /* CIFAR data_batch_<batch>; 0 otherwise */
    int gz;          /* name ends in .gz */
} found_file;

typedef struct dir_scan {
    found_file *cifar, *idx;      /* growable lists for the requested split */
    int n_cifar, n_idx, cap_cifar, cap_idx;
    int other_split;              /* files of the other split were seen */
} dir_scan;

static int strip_gz(char *name)
{
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".gz") == 0) {
        name[n - 3] = '\0';
        return 1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "data_batch_<1..9999>" (without .bin): the batch number, else 0. */
static int cifar_batch_number(const char *stem)
{
    const char *p = stem + strlen("data_batch_");
    if (strncmp(stem, "data_batch_", strlen("data_batch_")) != 0 || *p < '1' || *p > '9')
        return 0;
    int n = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || n >= 1000)
            return 0;
        n = n * 10 + (*p - '0');
    }
    return n;
}

static int idx_split_of(const char *stem, agave_data_split *split)
{
    static const char *const train[] = {"train-images-idx3-ubyte", "train-images.idx3-ubyte",
                                        "train-images-idx4-ubyte"};
    static const char *const test[] = {"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte",
                                       "test-images-idx3-ubyte", "test-images.idx3-ubyte",
                                       "t10k-images-idx4-ubyte", "test-images-idx4-ubyte"};
    for (size_t i = 0; i < sizeof train / sizeof *train; i++)
        if (ends_with(stem, train[i]))
            return *split = AGAVE_SPLIT_TRAIN, 1;
    for (size_t i = 0; i < sizeof test / sizeof *test; i++)
        if (ends_with(stem, test[i]))
            return *split = AGAVE_SPLIT_TEST, 1;
    return 0;
}

static agave_status list_push(agave_context *ctx, found_file **list, int *n, int *cap,
                              const found_file *f)
{
    if (*n == *cap) {
        int grown = *cap ? 2 * *cap : 8;
        found_file *p = realloc(*list, (size_t)grown * sizeof *p);
        if (!p)
            return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing a directory");
        *list = p;
        *cap = grown;
    }
    (*list)[(*n)++] = *f;
    return AGAVE_OK;
}

/* Classifies one directory entry and keeps it if it belongs to `split`. */
static agave_status scan_entry(agave_context *ctx, dir_scan *scan, const char *entry,
                               agave_data_split split)
{
    if (strlen(entry) >= sizeof((found_file *)0)->name)
        return AGAVE_OK;
    found_file f = {.batch = 0};
    snprintf(f.name, sizeof f.name, "%s", entry);
    char stem[256];
    snprintf(stem, sizeof stem, "%s", entry);
    f.gz = strip_gz(stem);
    agave_data_split idx_split;
    int is_cifar = 0;
    agave_data_split cifar_split = AGAVE_SPLIT_TRAIN;
    if (ends_with(stem, ".bin")) {
        stem[strlen(stem) - 4] = '\0';
        if ((f.batch = cifar_batch_number(stem)) > 0)
            is_cifar = 1;
        else if (strcmp(stem, "test_batch") == 0)
            is_cifar = 1, cifar_split = AGAVE_SPLIT_TEST;
    }
    if (is_cifar) {
        if (cifar_split != split)
            return scan->other_split = 1, AGAVE_OK;
        return list_push(ctx, &scan->cifar, &scan->n_cifar, &scan->cap_cifar, &f);
    }
    if (idx_split_of(stem, &idx_split)) {
        if (idx_split != split)
            return scan->other_split = 1, AGAVE_OK;
        return list_push(ctx, &scan->idx, &scan->n_idx, &scan->cap_idx, &f);
    }
    return AGAVE_OK;
}

static agave_status scan_directory(agave_context *ctx, const char *dir, agave_data_split split,
                                   dir_scan *scan)
{
    char why[128];
    DIR *d = opendir(dir);
    if (!d)
        return ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot open directory: %s", dir,
                         errno_text(errno, why, sizeof why));
    agave_status st = AGAVE_OK;
    struct dirent *e;
    errno = 0;
    while (st == AGAVE_OK && (e = readdir(d)) != NULL)
        st = scan_entry(ctx, scan, e->d_name, split);
    if (st == AGAVE_OK && errno != 0)
        st = ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot read directory: %s", dir,
                       errno_text(errno, why, sizeof why));
    closedir(d);
    return st;
}

/* Orders by batch number, then plain before gzip, then name. */
static int found_cmp(const void *a, const void *b)
{
    const found_file *x = a, *y = b;
    if (x->batch != y->batch)
        return x->batch < y->batch ? -1 : 1;
    char sx[256], sy[256];
    snprintf(sx, sizeof sx, "%s", x->name);
    snprintf(sy, sizeof sy, "%s", y->name);
    strip_gz(sx);
    strip_gz(sy);
    int c = strcmp(sx, sy);
    if (c != 0)
        return c;
    return x->gz - y->gz;
}

/* Sorts and drops foo.gz where foo exists too (the plain one is read). */
static void sort_and_dedupe(found_file *list, int *n)
{
    if (*n == 0)
        return;
    qsort(list, (size_t)*n, sizeof *list, found_cmp);
    int kept = 0;
    for (int i = 0; i < *n; i++) {
        if (kept > 0 && list[kept - 1].gz == 0 && list[i].gz == 1) {
            char a[256], b[256];
            snprintf(a, sizeof a, "%s", list[kept - 1].name);
            snprintf(b, sizeof b, "%s", list[i].name);
            strip_gz(b);
            if (strcmp(a, b) == 0)
                continue;
        }
        list[kept++] = list[i];
    }
    *n = kept;
}

static const char *split_name(agave_data_split split)
{
    return split == AGAVE_SPLIT_TEST ? "test" : "training";
}

/* Picks the files of one layout or explains why none or both fit. */
static agave_status choose_files(agave_context *ctx, const char *dir, agave_data_split split,
                                 dir_scan *scan, found_file **files, int *n)
{
    sort_and_dedupe(scan->cifar, &scan->n_cifar);
    sort_and_dedupe(scan->idx, &scan->n_idx);
    if (scan->n_cifar > 0 && scan->n_idx > 0)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: ambiguous: holds both CIFAR-10 (%s) and IDX (%s) %s files; "
                         "pass the files to use with agave_dataset_open_files",
                         dir, scan->cifar[0].name, scan->idx[0].name, split_name(split));
    if (scan->n_idx > 1)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: ambiguous: holds %d IDX image files for the %s split (%s, %s%s); "
                         "pass the one to use",
                         dir, scan->n_idx, split_name(split), scan->idx[0].name,
                         scan->idx[1].name, scan->n_idx > 2 ? ", ..." : "");
    if (scan->n_cifar == 0 && scan->n_idx == 0)
        return ctx_error(ctx, AGAVE_ERR_IO,
                         "%s: no %s data found: expected %s (CIFAR-10) or %s (IDX), "
                         "optionally .gz%s, or image files (.png, .jpg, .bmp, .pgm, .ppm)",
                         dir, split_name(split),
                         split == AGAVE_SPLIT_TEST ? "test_batch.bin" : "data_batch_N.bin",
                         split == AGAVE_SPLIT_TEST ? "t10k-images-idx3-ubyte"
                                                   : "train-images-idx3-ubyte",
                         scan->other_split ? "; only files of the other split are there" : "");
    for (int i = 0; i < scan->n_cifar; i++)
        if (scan->cifar[i].batch > 0 && scan->cifar[i].batch != i + 1)
            return ctx_error(ctx, AGAVE_ERR_IO,
                             "%s: data_batch_%d.bin is missing: found data_batch_%d but the "
                             "batches must run 1..N",
                             dir, i + 1, scan->cifar[i].batch);
    *files = scan->n_cifar > 0 ? scan->cifar : scan->idx;
    *n = scan->n_cifar > 0 ? scan->n_cifar : scan->n_idx;
    return AGAVE_OK;
}

/* Joins dir and the chosen names and opens them as one data set. */
static agave_status open_found(agave_context *ctx, const char *dir, const found_file *files,
                               int n, agave_dataset **out)
{
    size_t dir_len = strlen(dir);
    char **paths = calloc((size_t)n, sizeof *paths);
    agave_status st = paths ? AGAVE_OK : ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && st == AGAVE_OK; i++) {
        size_t len = dir_len + 1 + strlen(files[i].name) + 1;
        paths[i] = malloc(len);
        if (!paths[i]) {
            st = ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory");
            break;
        }
        int slash = dir_len > 0 && dir[dir_len - 1] == '/';
        snprintf(paths[i], len, "%s%s%s", dir, slash ? "" : "/", files[i].name);
    }
    if (st == AGAVE_OK)
        st = agave_dataset_open_files(ctx, (const char *const *)paths, n, out);
    for (int i = 0; paths && i < n; i++)
        free(paths[i]);
    free(paths);
    return st;
}

/* CIFAR-10 or IDX files by name; failing those, an image folder (*fitted is
 * then set: the folder's images were cropped and resized as they were read). */
static agave_status open_directory(agave_context *ctx, const char *dir, agave_data_split split,
                                   const image_fit *fit, int test_percent, int *fitted,
                                   agave_dataset **out)
{
    dir_scan scan;
    memset(&scan, 0, sizeof scan);
    found_file *files = NULL;
    int n = 0, images = 0;
    agave_status st = scan_directory(ctx, dir, split, &scan);
    if (st == AGAVE_OK && scan.n_cifar == 0 && scan.n_idx == 0 && !scan.other_split)
        st = image_folder_open(ctx, dir, split, fit, test_percent, &images, out);
    if (st != AGAVE_OK || images) {
        *fitted = images;
        free(scan.cifar);
        free(scan.idx);
        return st;
    }
    if (st == AGAVE_OK)
        st = choose_files(ctx, dir, split, &scan, &files, &n);
    if (st == AGAVE_OK)
        st = open_found(ctx, dir, files, n, out);
    free(scan.cifar);
    free(scan.idx);
    return st;
}

agave_status agave_dataset_open_v2(agave_context *ctx, const char *path, agave_data_split split,
                                   const agave_dataset_options *options, agave_dataset **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !path || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_dataset_open: NULL argument");
    if (split != AGAVE_SPLIT_TRAIN && split != AGAVE_SPLIT_TEST)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_dataset_open: split %d is neither AGAVE_SPLIT_TRAIN nor "
                         "AGAVE_SPLIT_TEST",
                         (int)split);
    image_fit fit;
    int test_percent;
    agave_status status = dataset_options_read(ctx, options, &fit, &test_percent);
    if (status != AGAVE_OK)
        return status;
    struct stat st;
    char why[128];
    if (stat(path, &st) != 0)
        return ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot open: %s", path,
                         errno_text(errno, why, sizeof why));
    int fitted = 0;
    if (S_ISDIR(st.st_mode))
        status = open_directory(ctx, path, split, &fit, test_percent, &fitted, out);
    else if (S_ISREG(st.st_mode))
        status = agave_dataset_open_files(ctx, &path, 1, out);
    else
        return ctx_error(ctx, AGAVE_ERR_IO, "%s: neither a regular file nor a directory", path);
    if (status == AGAVE_OK && !fitted)
        status = dataset_fit(ctx, path, &fit, out);
    if (status == AGAVE_OK)
        ctx_clear_error(ctx);
    return status;
}

agave_status agave_dataset_open(agave_context *ctx, const char *path, agave_data_split split,
                                agave_dataset **out)
{
    return agave_dataset_open_v2(ctx, path, split, NULL, out);
}

void agave_dataset_free(agave_dataset *ds)
{
    if (!ds)
        return;
    free(ds->pixels);
    free(ds->name_block);
    free(ds->name_at);
    free(ds);
}

size_t agave_dataset_count(const agave_dataset *ds) { return ds ? ds->count : 0; }
int agave_dataset_channels(const agave_dataset *ds) { return ds ? ds->channels : 0; }
int agave_dataset_height(const agave_dataset *ds) { return ds ? ds->height : 0; }
int agave_dataset_width(const agave_dataset *ds) { return ds ? ds->width : 0; }

const char *agave_dataset_image_name(const agave_dataset *ds, size_t i)
{
    if (!ds || !ds->name_at || i >= ds->count)
        return NULL;
    return ds->name_block + ds->name_at[i];
}
const uint8_t *agave_dataset_pixels(const agave_dataset *ds) { return ds ? ds->pixels : NULL; }

agave_status agave_dataset_copy_images(const agave_dataset *ds, size_t first, size_t count,
                                       uint8_t *dst)
{
    if (!ds || (!dst && count > 0))
        return ctx_error(ds ? ds->ctx : NULL, AGAVE_ERR_NULL,
                         "agave_dataset_copy_images: NULL argument");
    if (first > ds->count || count > ds->count - first)
        return ctx_error(ds->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_dataset_copy_images: images [%llu, %llu + %llu) leave the data "
                         "set of %llu images",
                         (ull)first, (ull)first, (ull)count, (ull)ds->count);
    if (count > 0)
        memcpy(dst, ds->pixels + first * ds->image_bytes, count * ds->image_bytes);
    return AGAVE_OK;
}
