/* Image folders as data sets. A directory is read as
 *  - DIR/train and DIR/test, when either folder exists: each split is every
 *    image under its folder;
 *  - otherwise every image under DIR, split by a rule on the file's name: a
 *    file is a test image when the FNV-1a 64-bit hash of its path relative to
 *    DIR, modulo 100, is below test_percent. Adding or removing files never
 *    moves the others from one split to the other.
 * Subfolders are searched too (class folders), up to FOLDER_MAX_DEPTH deep;
 * names starting with a dot are skipped. Images are taken in the byte order
 * of their relative paths, whatever order the directory lists them in. Every
 * image must have the same channels and, after the fit (crop, resize), the
 * same size; the first one that does not is named in the error. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "image.h"

#define FOLDER_MAX_DEPTH 16

typedef unsigned long long ull;

/* ---- the files ------------------------------------------------------------------ */

typedef struct file_list {
    char **rel;              /* paths relative to the walked folder, malloc'ed */
    size_t n, cap;
    char *foreign;           /* the first file of an image format that is not read */
} file_list;

static void list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->rel[i]);
    free(l->rel);
    free(l->foreign);
    memset(l, 0, sizeof *l);
}

static const char *extension_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name ? dot + 1 : "";
}

/* 1: an image file that is read; 2: an image format that is not; 0: other. */
static int classify_name(const char *name)
{
    static const char *const read[] = {"png", "jpg", "jpeg", "jpe", "bmp", "pgm", "ppm", "pnm"};
    static const char *const unread[] = {"gif", "tif", "tiff", "webp", "heic", "avif", "pbm"};
    const char *ext = extension_of(name);
    for (size_t i = 0; i < sizeof read / sizeof *read; i++)
        if (strcasecmp(ext, read[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof unread / sizeof *unread; i++)
        if (strcasecmp(ext, unread[i]) == 0)
            return 2;
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] != '/';
    char *p = malloc(la + (size_t)slash + lb + 1);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    if (slash)
        p[la] = '/';
    memcpy(p + la + slash, b, lb + 1);
    return p;
}

static agave_status list_push(agave_context *ctx, file_list *l, const char *rel)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->rel, cap * sizeof *p);
        if (!p)
            return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing image files");
        l->rel = p;
        l->cap = cap;
    }
    l->rel[l->n] = strdup(rel);
    if (!l->rel[l->n])
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing image files");
    l->n++;
    return AGAVE_OK;
}

static agave_status walk(agave_context *ctx, const char *root, const char *rel, int depth,
                         file_list *l);

/* One directory entry: a subfolder to walk, an image to keep, or nothing. */
static agave_status visit(agave_context *ctx, const char *root, const char *rel, int depth,
                          file_list *l)
{
    char *path = join(root, rel);
    if (!path)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing image files");
    struct stat st;
    agave_status status = AGAVE_OK;
    if (stat(path, &st) != 0) {
        /* A dangling link or a file removed meanwhile: not an image we can read. */
    } else if (S_ISDIR(st.st_mode)) {
        if (depth < FOLDER_MAX_DEPTH)
            status = walk(ctx, root, rel, depth + 1, l);
    } else if (S_ISREG(st.st_mode)) {
        int kind = classify_name(rel);
        if (kind == 1)
            status = list_push(ctx, l, rel);
        else if (kind == 2 && !l->foreign && !(l->foreign = strdup(path)))
            status = ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing image files");
    }
    free(path);
    return status;
}

/* Lists root/rel (rel "" for root itself) and everything below it. */
static agave_status walk(agave_context *ctx, const char *root, const char *rel, int depth,
                         file_list *l)
{
    char *dir = *rel ? join(root, rel) : strdup(root);
    if (!dir)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing image files");
    char why[128];
    DIR *d = opendir(dir);
    if (!d) {
        agave_status st = ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot open directory: %s", dir,
                                    errno_text(errno, why, sizeof why));
        free(dir);
        return st;
    }
    agave_status st = AGAVE_OK;
    struct dirent *e;
    errno = 0;
    while (st == AGAVE_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;   /* ".", "..", and hidden files such as .DS_Store */
        char *child = *rel ? join(rel, e->d_name) : strdup(e->d_name);
        st = child ? visit(ctx, root, child, depth, l)
                   : ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing image files");
        free(child);
        errno = 0;
    }
    if (st == AGAVE_OK && errno != 0)
        st = ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot read directory: %s", dir,
                       errno_text(errno, why, sizeof why));
    closedir(d);
    free(dir);
    return st;
}

static int rel_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- the split rule ------------------------------------------------------------- */

int image_folder_is_test(const char *rel, int test_percent)
{
    uint64_t h = 0xcbf29ce484222325ULL;            /* FNV-1a 64 offset basis */
    for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;                     /* FNV-1a 64 prime */
    }
    return (int)(h % 100) < test_percent;
}

/* Keeps the files of one split (one folder only); the others are freed. */
static void keep_split(file_list *l, agave_data_split split, int test_percent)
{
    size_t kept = 0;
    for (size_t i = 0; i < l->n; i++) {
        int test = image_folder_is_test(l->rel[i], test_percent);
        if (test == (split == AGAVE_SPLIT_TEST))
            l->rel[kept++] = l->rel[i];
        else
            free(l->rel[i]);
    }
    l->n = kept;
}

/* ---- reading the images --------------------------------------------------------- */

/* The whole file at path, at most IMAGE_MAX_FILE_BYTES. */
static agave_status read_whole(agave_context *ctx, const char *path, uint8_t **bytes, size_t *len)
{
    byte_source s;
    *bytes = NULL;
    *len = 0;
    agave_status st = src_open_file(&s, ctx, path);
    if (st == AGAVE_OK && s.raw_size > IMAGE_MAX_FILE_BYTES)
        st = ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: %llu bytes, above the limit of %llu for one "
                       "image file", path, (ull)s.raw_size, (ull)IMAGE_MAX_FILE_BYTES);
    size_t cap = st == AGAVE_OK ? (size_t)s.raw_size + 1 : 0;
    if (st == AGAVE_OK && !(*bytes = malloc(cap)))
        st = ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for %llu bytes", path,
                       (ull)s.raw_size);
    size_t got = 0;
    if (st == AGAVE_OK)
        st = src_read(&s, *bytes, cap, &got);
    if (st == AGAVE_OK && got == cap)   /* the file grew, or is gzip that decodes larger */
        st = ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: more bytes than its size of %llu", path,
                       (ull)s.raw_size);
    src_close(&s);
    if (st != AGAVE_OK) {
        free(*bytes);
        *bytes = NULL;
        return st;
    }
    *len = got;
    return AGAVE_OK;
}

/* What the first image set, which every other must match. */
typedef struct folder_geometry {
    const char *first_name;  /* borrowed */
    int channels, height, width;
} folder_geometry;

static agave_status check_geometry(agave_context *ctx, folder_geometry *g, const char *name,
                                   int channels, int height, int width, int fitted)
{
    if (!g->first_name) {
        g->first_name = name;
        g->channels = channels, g->height = height, g->width = width;
        return AGAVE_OK;
    }
    if (channels != g->channels)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s is %s (%d channel%s) but %s, the first image, is %s (%d channel%s): "
                         "all images of a data set must be grey or all colour",
                         name, channels == 1 ? "grey" : "colour", channels,
                         channels == 1 ? "" : "s", g->first_name,
                         g->channels == 1 ? "grey" : "colour", g->channels,
                         g->channels == 1 ? "" : "s");
    if (height != g->height || width != g->width)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s is %dx%d pixels (HxW)%s but %s, the first image, is %dx%d: all "
                         "images must have one size; a resize or a crop makes them so "
                         "(--resize HxW, --crop HxW; docs/data.md)",
                         name, height, width, fitted ? " after the crop and resize" : "",
                         g->first_name, g->height, g->width);
    return AGAVE_OK;
}

/* Decodes one image, fits it, checks it against the first and appends it. */
static agave_status append_image(agave_context *ctx, const char *name, const uint8_t *bytes,
                                 size_t len, const image_fit *fit, uint64_t max_pixels,
                                 folder_geometry *g, pixel_buffer *pb)
{
    decoded_image im;
    agave_status st = image_decode(ctx, name, bytes, len, max_pixels, &im);
    if (st != AGAVE_OK)
        return st;
    int h = im.height, w = im.width;
    st = image_fit_size(ctx, name, fit, im.height, im.width, &h, &w);
    if (st == AGAVE_OK)
        st = check_geometry(ctx, g, name, im.channels, h, w, !image_fit_is_identity(fit));
    size_t out_bytes = (size_t)im.channels * (size_t)h * (size_t)w;
    if (st == AGAVE_OK)
        st = pixels_reserve(pb, ctx, name, out_bytes);
    if (st == AGAVE_OK)
        st = image_fit_apply(ctx, name, fit, im.pixels, im.channels, im.height, im.width,
                             pb->bytes + pb->len);
    if (st == AGAVE_OK)
        pb->len += out_bytes;
    image_free(&im);
    return st;
}

/* The names a data set reports: one block of strings. */
static agave_status make_names(agave_context *ctx, const char *prefix, const file_list *l,
                               agave_dataset *ds)
{
    size_t total = 0, pre = strlen(prefix);
    for (size_t i = 0; i < l->n; i++)
        total += pre + strlen(l->rel[i]) + 1;
    ds->name_block = malloc(total ? total : 1);
    ds->name_at = malloc(l->n * sizeof *ds->name_at);
    if (!ds->name_block || !ds->name_at)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory for the image names");
    size_t at = 0;
    for (size_t i = 0; i < l->n; i++) {
        ds->name_at[i] = at;
        memcpy(ds->name_block + at, prefix, pre);
        strcpy(ds->name_block + at + pre, l->rel[i]);
        at += pre + strlen(l->rel[i]) + 1;
    }
    return AGAVE_OK;
}

/* Reads every listed image of root into a new data set. */
static agave_status load_images(agave_context *ctx, const char *root, const char *prefix,
                                const file_list *l, const image_fit *fit, agave_dataset **out)
{
    pixel_buffer pb;
    pixels_init(&pb);
    folder_geometry g = {NULL, 0, 0, 0};
    char **paths = calloc(l->n, sizeof *paths);
    agave_status st = paths ? AGAVE_OK
                            : ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing images");
    for (size_t i = 0; i < l->n && st == AGAVE_OK; i++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (!(paths[i] = join(root, l->rel[i])))
            st = ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory listing images");
        if (st == AGAVE_OK)
            st = read_whole(ctx, paths[i], &bytes, &len);
        if (st == AGAVE_OK)
            st = append_image(ctx, paths[i], bytes, len, fit, IMAGE_MAX_PIXELS, &g, &pb);
        free(bytes);
    }
    image_geometry geo = {g.channels, g.height, g.width, l->n};
    if (st == AGAVE_OK)
        st = dataset_from_pixels(ctx, &pb, &geo, l->n, out);
    if (st == AGAVE_OK && (st = make_names(ctx, prefix, l, *out)) != AGAVE_OK) {
        agave_dataset_free(*out);
        *out = NULL;
    }
    for (size_t i = 0; paths && i < l->n; i++)
        free(paths[i]);
    free(paths);
    free(pb.bytes);
    return st;
}

/* ---- the layout ----------------------------------------------------------------- */

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Refuses an empty split or a folder with images of formats not read. */
static agave_status check_listing(agave_context *ctx, const char *what, const file_list *l,
                                  size_t before_split, agave_data_split split, int test_percent)
{
    if (l->foreign)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s: an image format that is not read (PNG, JPEG, BMP and binary "
                         "PGM/PPM are): convert it, or move it out of the folder",
                         l->foreign);
    if (l->n > 0)
        return AGAVE_OK;
    if (before_split == 0)
        return ctx_error(ctx, AGAVE_ERR_IO, "%s: no image files (.png, .jpg, .bmp, .pgm, .ppm)",
                         what);
    return ctx_error(ctx, AGAVE_ERR_IO,
                     "%s: none of its %llu images falls in the %s split by the name rule "
                     "(%d%% of the names go to the test split, docs/data.md); with this few "
                     "images make %s/train and %s/test folders",
                     what, (ull)before_split, split == AGAVE_SPLIT_TEST ? "test" : "training",
                     test_percent, what, what);
}

agave_status image_folder_open(agave_context *ctx, const char *dir, agave_data_split split,
                               const image_fit *fit, int test_percent, int *found,
                               agave_dataset **out)
{
    *found = 0;
    *out = NULL;
    const char *split_dir = split == AGAVE_SPLIT_TEST ? "test" : "train";
    char *train = join(dir, "train"), *test = join(dir, "test");
    char *root = join(dir, split_dir);
    file_list l;
    memset(&l, 0, sizeof l);
    agave_status st = train && test && root ? AGAVE_OK
                                            : ctx_error(ctx, AGAVE_ERR_NOMEM, "out of memory");
    int folders = st == AGAVE_OK && (is_dir(train) || is_dir(test));
    if (st == AGAVE_OK && folders && !is_dir(root))
        st = ctx_error(ctx, AGAVE_ERR_IO,
                       "%s: has a %s folder but no %s folder: an image folder holds either "
                       "train/ and test/, or images only",
                       dir, split == AGAVE_SPLIT_TEST ? "train" : "test", split_dir);
    if (st == AGAVE_OK)
        st = walk(ctx, folders ? root : dir, "", 0, &l);
    size_t listed = l.n;
    if (st == AGAVE_OK && !folders && l.n == 0 && !l.foreign) {
        list_free(&l);   /* nothing here: the caller explains what was expected */
        free(train), free(test), free(root);
        return AGAVE_OK;
    }
    *found = 1;
    if (st == AGAVE_OK && !folders)
        keep_split(&l, split, test_percent);
    if (st == AGAVE_OK)
        st = check_listing(ctx, folders ? root : dir, &l, listed, split, test_percent);
    if (st == AGAVE_OK) {
        qsort(l.rel, l.n, sizeof *l.rel, rel_cmp);
        char prefix[8];
        snprintf(prefix, sizeof prefix, "%s", folders ? (split == AGAVE_SPLIT_TEST ? "test/"
                                                                                    : "train/")
                                                      : "");
        st = load_images(ctx, folders ? root : dir, prefix, &l, fit, out);
    }
    list_free(&l);
    free(train), free(test), free(root);
    return st;
}

agave_status image_open_memory(agave_context *ctx, const char *name, const uint8_t *bytes,
                               size_t len, const image_fit *fit, uint64_t max_pixels,
                               agave_dataset **out)
{
    *out = NULL;
    pixel_buffer pb;
    pixels_init(&pb);
    folder_geometry g = {NULL, 0, 0, 0};
    agave_status st = append_image(ctx, name, bytes, len, fit, max_pixels, &g, &pb);
    image_geometry geo = {g.channels, g.height, g.width, 1};
    if (st == AGAVE_OK)
        st = dataset_from_pixels(ctx, &pb, &geo, 1, out);
    free(pb.bytes);
    return st;
}
