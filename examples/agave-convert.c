/* agave-convert: a data set written as IDX files or as a folder of images,
 * so that image folders, MNIST-style IDX files and CIFAR-10 batches can be
 * turned into one another and inspected.
 *
 *   agave-convert --data PATH --to idx|png|bmp|ppm|pgm --out DIR [--split S]
 *
 * Reads PATH as every program does (agave_dataset_open_v2, with --resize,
 * --crop and --test-percent) and writes each split:
 *   idx:  DIR/train-images-idx3-ubyte and DIR/t10k-images-idx3-ubyte (grey;
 *         idx4 for colour: count, channels, rows, cols), and, for an image
 *         folder, DIR/train-names.txt and DIR/t10k-names.txt (one file name a
 *         line, in the data set's order);
 *   an image format: DIR/train/00000.png ..., DIR/test/00000.png ...
 * Either is a data set the library opens again, with the same images in the
 * same order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define PROG "agave-convert"

typedef struct convert_opts {
    const char *data, *out, *to, *split;
    int force;
    long long threads;
    data_opts images;
} convert_opts;

static int parse_options(int argc, char **argv, convert_opts *o, cli_program *prog)
{
    memset(o, 0, sizeof *o);
    data_opts_init(&o->images);
    o->threads = 1;
    cli_option opts[] = {
        {"data", CLI_STRING, &o->data, "PATH",
         "the data set: a directory (CIFAR-10 batches, IDX files or image files) or one file",
         NULL, 0, 0, 0},
        {"to", CLI_STRING, &o->to, "idx|png|bmp|ppm|pgm",
         "what to write: IDX files, or a folder of image files of that format", NULL, 0, 0, 0},
        {"out", CLI_STRING, &o->out, "DIR", "output directory, created (with its parents) if "
         "missing", NULL, 0, 0, 0},
        {"split", CLI_STRING, &o->split, "train|test|both",
         "which splits to write (one file given as --data is written as train)", "both", 0, 0,
         0},
        DATA_OPTIONS(&o->images),
        {"force", CLI_FLAG, &o->force, NULL, "replace files that are already there", NULL, 0,
         0, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --data PATH --to idx|png|bmp|ppm|pgm --out DIR [--split S] [options]";
    prog->summary =
        "Writes a data set as IDX files (MNIST's format; a 4-dimensional variant for colour)\n"
        "or as a folder of image files, train/ and test/, each a data set the library opens\n"
        "again with the same images in the same order. Image folders, IDX files and\n"
        "CIFAR-10 batches can so be turned into one another, and looked at.";
    prog->epilog = "files: DIR/train-images-idx3-ubyte, DIR/t10k-images-idx3-ubyte (idx4 for\n"
                   "colour), DIR/train-names.txt and DIR/t10k-names.txt (the file names of an\n"
                   "image folder); or DIR/train/00000.png ..., DIR/test/00000.png ...\n"
                   "exit status: 0 done, 2 error (one line on stderr).";
    prog->options = malloc(sizeof opts);
    prog->n_options = prog->options ? (int)(sizeof opts / sizeof opts[0]) : 0;
    if (!prog->options)
        return fail(PROG, "out of memory");
    memcpy(prog->options, opts, sizeof opts);
    int rc = cli_parse(prog, argc, argv);
    if (rc >= 0)
        return rc;
    if (!o->data || !o->to || !o->out)
        return fail(PROG, "--data PATH, --to FORMAT and --out DIR are required (see " PROG
                    " --help)");
    static const char *const formats[] = {"idx", "png", "bmp", "ppm", "pgm"};
    int known = 0;
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
        known |= strcmp(o->to, formats[i]) == 0;
    if (!known)
        return fail(PROG, "--to %s: expected idx, png, bmp, ppm or pgm", o->to);
    if (o->split && strcmp(o->split, "train") != 0 && strcmp(o->split, "test") != 0 &&
        strcmp(o->split, "both") != 0)
        return fail(PROG, "--split %s: expected train, test or both", o->split);
    return -1;
}

/* ---- IDX -------------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* "train" -> DIR/train-images-idx3-ubyte (idx4 for colour). */
static char *idx_path(const char *dir, const char *split, int channels)
{
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx%d-ubyte", strcmp(split, "test") == 0 ? "t10k"
                                                                                    : "train",
             channels == 1 ? 3 : 4);
    return path_join(dir, name);
}

static int write_idx(const convert_opts *o, agave_context *ctx, const agave_dataset *ds,
                     const char *split, char **written)
{
    size_t n = agave_dataset_count(ds);
    int C = agave_dataset_channels(ds), H = agave_dataset_height(ds), W = agave_dataset_width(ds);
    size_t header = C == 1 ? 16 : 20, bytes = n * (size_t)C * H * W;
    uint8_t *file = malloc(header + bytes);
    if (!file)
        return fail(PROG, "out of memory for %zu images", n);
    put_be32(file, C == 1 ? 0x00000803u : 0x00000804u);
    put_be32(file + 4, (uint32_t)n);
    if (C != 1)
        put_be32(file + 8, (uint32_t)C);
    put_be32(file + header - 8, (uint32_t)H);
    put_be32(file + header - 4, (uint32_t)W);
    memcpy(file + header, agave_dataset_pixels(ds), bytes);
    *written = idx_path(o->out, split, C);
    char err[512];
    int rc = !*written ? fail(PROG, "out of memory")
             : write_file_atomic(ctx, *written, (const char *)file, header + bytes, err, sizeof err)
                 ? EXIT_OK
                 : fail(PROG, "%s", err);
    free(file);
    return rc;
}

/* DIR/train-names.txt: an image folder's file names, one a line. */
static int write_names(const convert_opts *o, agave_context *ctx, const agave_dataset *ds,
                       const char *split)
{
    size_t n = agave_dataset_count(ds), total = 0;
    if (!agave_dataset_image_name(ds, 0))
        return EXIT_OK;
    for (size_t i = 0; i < n; i++)
        total += strlen(agave_dataset_image_name(ds, i)) + 1;
    char *text = malloc(total + 1), name[64], err[512];
    if (!text)
        return fail(PROG, "out of memory for %zu names", n);
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        at += (size_t)sprintf(text + at, "%s\n", agave_dataset_image_name(ds, i));
    snprintf(name, sizeof name, "%s-names.txt", strcmp(split, "test") == 0 ? "t10k" : "train");
    char *path = path_join(o->out, name);
    int rc = !path                                                     ? fail(PROG, "out of memory")
             : write_file_atomic(ctx, path, text, at, err, sizeof err) ? EXIT_OK
                                                                       : fail(PROG, "%s", err);
    free(text);
    free(path);
    return rc;
}

/* ---- image folders ---------------------------------------------------------------- */

/* DIR/train/00000.png ...: one picture per image, gap 0, scale 1: the image itself. */
static int write_images(const convert_opts *o, agave_context *ctx, const agave_dataset *ds,
                        const char *split)
{
    size_t n = agave_dataset_count(ds);
    int C = agave_dataset_channels(ds), H = agave_dataset_height(ds), W = agave_dataset_width(ds);
    char err[512], *dir = path_join(o->out, split);
    if (!dir || !make_dirs(dir, err, sizeof err)) {
        free(dir);
        return fail(PROG, "%s", err);
    }
    int digits = 5;   /* 00000.png ...; more digits when there are more images */
    for (size_t m = n - 1; m >= 100000; m /= 10)
        digits++;
    agave_grid_options opt;
    agave_grid_options_init(&opt);
    opt.gap = 0;
    progress line;
    progress_init(&line, stderr);
    int rc = EXIT_OK;
    size_t D = (size_t)C * H * W;
    for (size_t i = 0; i < n && rc == EXIT_OK; i++) {
        char number[24], name[64];
        int len = snprintf(number, sizeof number, "%zu", i);
        snprintf(name, sizeof name, "%.*s%s.%s", digits > len ? digits - len : 0, "0000000000",
                 number, o->to);
        char *path = path_join(dir, name);
        if (!path)
            rc = fail(PROG, "out of memory");
        else if (!o->force && path_exists(path))
            rc = fail(PROG, "%s exists already (--force replaces it)", path);
        else if (agave_image_grid_write(ctx, path, agave_dataset_pixels(ds) + i * D, 1, C, H, W,
                                        1, &opt) != AGAVE_OK)
            rc = fail(PROG, "%s", agave_context_last_error(ctx));
        free(path);
        if (i % 256 == 255)
            progress_update(&line, 0, "%s: %zu/%zu images", split, i + 1, n);
    }
    progress_end(&line);
    free(dir);
    return rc;
}

/* ---- the run ---------------------------------------------------------------------- */

/* 1 when --to pgm/ppm would not give back the data set's channels: a PPM of
 * grey images reads back as colour, and a PGM cannot hold colour. */
static int netpbm_mismatch(const char *to, int channels)
{
    return (strcmp(to, "pgm") == 0 && channels != 1) || (strcmp(to, "ppm") == 0 && channels != 3);
}

static int convert_split(const convert_opts *o, agave_context *ctx, agave_data_split split,
                         const char *name, char *report, size_t len)
{
    agave_dataset *ds = NULL;
    int rc = open_dataset(PROG, ctx, o->data, split, &o->images, &ds);
    char *written = NULL;
    if (rc == EXIT_OK && strcmp(o->to, "idx") == 0) {
        char *target = idx_path(o->out, name, agave_dataset_channels(ds));
        if (target && !o->force && path_exists(target))
            rc = fail(PROG, "%s exists already (--force replaces it)", target);
        free(target);
        if (rc == EXIT_OK)
            rc = write_idx(o, ctx, ds, name, &written);
        if (rc == EXIT_OK)
            rc = write_names(o, ctx, ds, name);
    } else if (rc == EXIT_OK && netpbm_mismatch(o->to, agave_dataset_channels(ds))) {
        rc = fail(PROG, "--to %s: the images are %s; netpbm keeps them as they are only as %s",
                  o->to, agave_dataset_channels(ds) == 1 ? "grey" : "colour",
                  agave_dataset_channels(ds) == 1 ? "PGM (--to pgm)" : "PPM (--to ppm)");
    } else if (rc == EXIT_OK) {
        rc = write_images(o, ctx, ds, name);
    }
    if (rc == EXIT_OK) {
        size_t n = agave_dataset_count(ds);
        snprintf(report + strlen(report), len - strlen(report), "%s%zu %s image%s of %dx%dx%d",
                 *report ? ", " : "", n, name, plural((double)n), agave_dataset_channels(ds),
                 agave_dataset_height(ds), agave_dataset_width(ds));
    }
    free(written);
    agave_dataset_free(ds);
    return rc;
}

static int run(const convert_opts *o, agave_context *ctx)
{
    char err[512], report[512] = "";
    if (!make_dirs(o->out, err, sizeof err))
        return fail(PROG, "--out %s", err);
    const char *split = o->split ? o->split : "both";
    int one_file = !is_directory(o->data);
    int rc = EXIT_OK;
    if (one_file || strcmp(split, "test") != 0)
        rc = convert_split(o, ctx, AGAVE_SPLIT_TRAIN, "train", report, sizeof report);
    if (rc == EXIT_OK && !one_file && strcmp(split, "train") != 0)
        rc = convert_split(o, ctx, AGAVE_SPLIT_TEST, "test", report, sizeof report);
    if (rc == EXIT_OK)
        printf("wrote %s: %s, as %s\n", o->out, report,
               strcmp(o->to, "idx") == 0 ? "IDX files" : o->to);
    return rc;
}

int main(int argc, char **argv)
{
    convert_opts o;
    cli_program prog;
    int rc = parse_options(argc, argv, &o, &prog);
    if (rc < 0) {
        agave_context *ctx = NULL;
        rc = open_context(PROG, 1, 1, &ctx);
        if (rc == EXIT_OK)
            rc = run(&o, ctx);
        agave_context_free(ctx);
    }
    cli_free(&prog);
    free(prog.options);
    return rc;
}
