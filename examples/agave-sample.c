/* agave-sample: picture grids of samples, reconstructions and latent-space
 * walks from a checkpoint, and the latent codes themselves.
 *
 *   agave-sample --checkpoint FILE [--count N] [--seed S] --out FILE.png
 *   agave-sample ... --reconstruct --data PATH          rows: x, f(z), sample; z ~ q(z|x)
 *   agave-sample ... --interpolate I,J --data PATH      along z_I .. z_J
 *   agave-sample ... --encode --data PATH --out Z.csv   posterior means of z
 *   agave-sample ... --decode Z.csv --out FILE.png      f(z) and samples of given z
 *
 * Samples: z ~ p(z), f(z), then the PixelCNN sample pixel by pixel; each
 * f(z) is shown beside its sample (the paper's Figure 1c). Reconstructions:
 * rows of test images, f(z) for z ~ q(z|x), and the PixelCNN sample given that
 * f(z) (Figure 3). Mode pixelcnn has no f(z): samples only; mode vae has no
 * PixelCNN: f(z) only. The library writes the picture atomically, in the
 * format its name says (PNG, BMP, PGM/PPM). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "common/textbuf.h"

#define PROG "agave-sample"
/* agave_model_sample draws at most this many images per call here, so that
 * progress can be shown; image i of chunk c uses seed + c, so a larger
 * --count extends a smaller one's grid with the same first images. */
#define CHUNK 16
#define INTERPOLATION_POINTS 8

typedef enum sample_task {
    TASK_SAMPLE, TASK_RECONSTRUCT, TASK_INTERPOLATE, TASK_ENCODE, TASK_DECODE
} sample_task;

typedef struct sample_opts {
    const char *checkpoint, *data, *out, *weights, *interpolate, *decode;
    long long count, seed, threads, cols, scale, first;
    int reconstruct, encode, caption;
    data_opts images;   /* --resize, --crop, --test-percent */
    sample_task task;
    long long from, to; /* --interpolate I,J */
} sample_opts;

typedef struct images {
    uint8_t *x, *fz, *input;   /* (n,C,H,W), (n,C,H/s,W/s), (n,C,H,W) or NULL */
    int n;
} images;

/* ---- options ------------------------------------------------------------------ */

/* "I,J": two different test image indices. */
static int parse_pair(const char *text, long long *i, long long *j)
{
    const char *comma = strchr(text, ',');
    char first[32];
    if (!comma || (size_t)(comma - text) >= sizeof first)
        return 0;
    memcpy(first, text, (size_t)(comma - text));
    first[comma - text] = '\0';
    return parse_ll(first, 0, 1LL << 40, i) && parse_ll(comma + 1, 0, 1LL << 40, j) && *i != *j;
}

/* Which of the tasks was asked for, and what it needs. */
static int check_task(sample_opts *o, const cli_program *prog)
{
    int tasks = o->reconstruct + o->encode + (o->interpolate != NULL) + (o->decode != NULL);
    if (tasks > 1)
        return fail(PROG, "--reconstruct, --interpolate, --encode and --decode exclude each "
                    "other; give one");
    o->task = o->reconstruct   ? TASK_RECONSTRUCT
              : o->interpolate ? TASK_INTERPOLATE
              : o->encode      ? TASK_ENCODE
              : o->decode      ? TASK_DECODE
                               : TASK_SAMPLE;
    int needs_data = o->task == TASK_RECONSTRUCT || o->task == TASK_INTERPOLATE ||
                     o->task == TASK_ENCODE;
    if (needs_data && !o->data)
        return fail(PROG, "--%s needs --data PATH (the test images to use)",
                    o->task == TASK_RECONSTRUCT ? "reconstruct"
                    : o->task == TASK_ENCODE    ? "encode"
                                                : "interpolate");
    if (!needs_data && o->data)
        return fail(PROG, "--data is only used with --reconstruct, --interpolate or --encode");
    if (o->task == TASK_INTERPOLATE) {
        if (!parse_pair(o->interpolate, &o->from, &o->to))
            return fail(PROG, "--interpolate %s: expected I,J, two different test image "
                        "indices (e.g. 3,7)", o->interpolate);
        if (!cli_find(prog, "count")->given)
            o->count = INTERPOLATION_POINTS;
        if (o->count < 2)
            return fail(PROG, "--interpolate needs --count of at least 2 (the points from z_I "
                        "to z_J)");
    }
    if (o->caption && o->task == TASK_ENCODE)
        return fail(PROG, "--caption is for pictures; --encode writes a CSV file");
    return EXIT_OK;
}

static int parse_options(int argc, char **argv, sample_opts *o, cli_program *prog,
                         char *threads_text, size_t len)
{
    static const double BIG = 9.3e18;
    snprintf(threads_text, len, "the number of online CPUs, %d here", cpu_count());
    memset(o, 0, sizeof *o);
    data_opts_init(&o->images);
    o->count = 16, o->seed = 1, o->threads = cpu_count();
    cli_option opts[] = {
        {"checkpoint", CLI_STRING, &o->checkpoint, "FILE", "the model to sample from", NULL, 0,
         0, 0},
        {"out", CLI_STRING, &o->out, "FILE",
         "the picture to write (atomically; .png, .bmp, .ppm or .pgm), or with --encode the "
         "CSV file", NULL, 0, 0, 0},
        {"count", CLI_INT, &o->count, "N",
         "samples, test images to reconstruct or encode, or points of --interpolate",
         "16; 8 for --interpolate", 1, 4096, 0},
        {"seed", CLI_INT, &o->seed, "S", "seed of z and of the PixelCNN's draws", "1", 0, BIG, 0},
        {"reconstruct", CLI_FLAG, &o->reconstruct, NULL,
         "reconstruct test images instead: rows of test image / f(z) / PixelCNN sample given "
         "f(z), z ~ q(z|x) (needs --data)", NULL, 0, 0, 0},
        {"interpolate", CLI_STRING, &o->interpolate, "I,J",
         "walk from test image I's latent code to J's: --count columns of z = (1 - t) z_I + "
         "t z_J, t from 0 to 1, each decoded to f(z) and a PixelCNN sample with the same seed; "
         "the two test images stand at the ends of the first row (needs --data)", NULL, 0, 0,
         0},
        {"encode", CLI_FLAG, &o->encode, NULL,
         "write the latent codes (posterior means of z) of --count test images from --first to "
         "--out as CSV: index, name, then the Z x H/4 x W/4 numbers (needs --data)", NULL, 0,
         0, 0},
        {"decode", CLI_STRING, &o->decode, "Z.csv",
         "draw f(z) and the PixelCNN sample of every z in a CSV file as --encode writes it (the "
         "last Z x H/4 x W/4 fields of each row; a first line starting with \"index\" is skipped)",
         NULL, 0, 0, 0},
        {"caption", CLI_FLAG, &o->caption, NULL,
         "write a caption above the picture saying what its rows and columns show", NULL, 0, 0,
         0},
        {"data", CLI_STRING, &o->data, "PATH",
         "data set directory or one file whose test split --reconstruct, --interpolate and "
         "--encode use", NULL, 0, 0, 0},
        DATA_OPTIONS(&o->images),
        {"first", CLI_INT, &o->first, "I", "--reconstruct and --encode start at test image I",
         "0", 0, BIG, 0},
        {"cols", CLI_INT, &o->cols, "N", "images (pairs for samples) per row of the grid",
         "8 pairs, 8 for reconstructions, --count for --interpolate", 1, 4096, 0},
        {"scale", CLI_INT, &o->scale, "N", "each pixel becomes N x N pixels",
         "2 for images up to 32 pixels, else 1", 1, 64, 0},
        {"weights", CLI_STRING, &o->weights, "average|raw",
         "the averaged parameters or the raw ones of the last training step",
         "average when the checkpoint has it, else raw", 0, 0, 0},
        {"threads", CLI_INT, &o->threads, "T", "threads for the library's kernels", threads_text,
         1, 1024, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --checkpoint FILE [--count N] [--seed S] --out FILE.png [options]\n"
                       "       " PROG " ... --reconstruct --data PATH\n"
                       "       " PROG " ... --interpolate I,J --data PATH\n"
                       "       " PROG " ... --encode --data PATH --out Z.csv\n"
                       "       " PROG " ... --decode Z.csv --out FILE.png";
    prog->summary =
        "Writes a picture grid of samples from a trained model: each f(z) (the VAE decoder's\n"
        "image, z ~ p(z)) beside the PixelCNN sample drawn given it (the paper's Figure 1c).\n"
        "With --reconstruct: rows of test images, f(z) for z ~ q(z|x) and the PixelCNN sample\n"
        "given f(z) (Figure 3). With --interpolate: a walk in latent space between two test\n"
        "images. --encode writes test images' latent codes to a CSV file and --decode draws\n"
        "the codes of such a file. The PixelCNN draws pixel by pixel but reuses what it\n"
        "computed for the pixels before, so an image costs about one network pass, as much\n"
        "as evaluating it with one sample of z.";
    prog->epilog = "exit status: 0 done, 2 error (one line on stderr).";
    prog->options = malloc(sizeof opts);
    prog->n_options = prog->options ? (int)(sizeof opts / sizeof opts[0]) : 0;
    if (!prog->options)
        return fail(PROG, "out of memory");
    memcpy(prog->options, opts, sizeof opts);
    int rc = cli_parse(prog, argc, argv);
    if (rc >= 0)
        return rc;
    if (!o->checkpoint)
        return fail(PROG, "--checkpoint FILE is required (see " PROG " --help)");
    if (!o->out)
        return fail(PROG, "--out FILE is required (see " PROG " --help)");
    if (check_task(o, prog) != EXIT_OK)
        return EXIT_ERROR;
    char err[512];
    if (!output_dir_ok(o->out, err, sizeof err))
        return fail(PROG, "--out %s", err);
    return -1;
}

/* Once every input is read and checked: what is about to be drawn. */
static void print_header(const sample_opts *o, agave_context *ctx, const agave_model *m,
                         const agave_config *cfg, int n)
{
    static const char *const verbs[] = {"sampling", "reconstructing", "interpolating",
                                        "encoding", "decoding"};
    fprintf(stderr, PROG ": %s, step %lld, mode %s, %s weights: %s %d %s%s, seed %lld, %d "
                    "thread%s\n",
            o->checkpoint, (long long)agave_model_step_count(m), agave_mode_name(cfg->mode),
            weights_name(m), verbs[o->task], n,
            o->task == TASK_INTERPOLATE ? "point" : o->task == TASK_DECODE ? "code" : "image",
            plural(n), o->seed, agave_context_threads(ctx), plural(agave_context_threads(ctx)));
}

/* ---- inputs ----------------------------------------------------------------------- */

/* The test split, checked against the model's image size. */
static int open_test(const sample_opts *o, agave_context *ctx, const agave_config *cfg,
                     agave_dataset **test)
{
    int rc = open_dataset(PROG, ctx, o->data, AGAVE_SPLIT_TEST, &o->images, test);
    if (rc == EXIT_OK)
        rc = check_image_shape(PROG, cfg, *test, o->data);
    return rc;
}

/* --count test images from --first. */
static int take_range(const sample_opts *o, const agave_dataset *test, uint8_t *dst)
{
    size_t have = agave_dataset_count(test);
    if ((size_t)o->first >= have || (size_t)o->count > have - (size_t)o->first)
        return fail(PROG, "--first %lld --count %lld: %s has only %zu test image%s", o->first,
                    o->count, o->data, have, plural((double)have));
    agave_dataset_copy_images(test, (size_t)o->first, (size_t)o->count, dst);
    return EXIT_OK;
}

/* ---- sampling and reconstruction ---------------------------------------------------- */

/* Draws everything, CHUNK images per library call, with progress; z (n rows
 * of latent codes) decodes given codes, input reconstructs, else samples. */
static int draw(const sample_opts *o, agave_context *ctx, agave_model *m,
                const agave_config *cfg, images *im, const float *z)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W, Dy = D / (size_t)(cfg->s * cfg->s);
    size_t Dz = (size_t)cfg->Z * (size_t)(cfg->H / 4) * (size_t)(cfg->W / 4);
    int n = im->n, want_x = cfg->mode != AGAVE_MODE_VAE;
    int want_fz = cfg->mode != AGAVE_MODE_PIXELCNN;
    progress line;
    progress_init(&line, stderr);
    double started = clock_seconds();
    for (int first = 0, c = 0; first < n; first += CHUNK, c++) {
        int k = n - first < CHUNK ? n - first : CHUNK;
        uint64_t seed = (uint64_t)o->seed + (uint64_t)c;
        uint8_t *x = want_x ? im->x + (size_t)first * D : NULL;
        uint8_t *fz = want_fz ? im->fz + (size_t)first * Dy : NULL;
        agave_status st =
            z           ? agave_model_decode(m, z + (size_t)first * Dz, k, seed, fz, x)
            : im->input ? agave_model_reconstruct(m, im->input + (size_t)first * D, k, seed, fz, x)
                        : agave_model_sample(m, k, seed, fz, x);
        if (st != AGAVE_OK) {
            progress_end(&line);
            return fail(PROG, "%s", agave_context_last_error(ctx));
        }
        double elapsed = clock_seconds() - started;
        char eta[32];
        format_duration(elapsed / (first + k) * (n - first - k), eta, sizeof eta);
        progress_update(&line, 1, "drew %d/%d images  %.2f img/s  ETA %s", first + k, n,
                        (first + k) / (elapsed > 0 ? elapsed : 1), eta);
    }
    progress_end(&line);
    return EXIT_OK;
}

static int alloc_images(int n, const agave_config *cfg, int with_input, images *im)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W;
    im->n = n;
    im->x = calloc((size_t)n, D);
    im->fz = calloc((size_t)n, D);   /* f(z) is at most as large as x */
    im->input = with_input ? calloc((size_t)n, D) : NULL;
    if (!im->x || !im->fz || (with_input && !im->input))
        return fail(PROG, "cannot allocate %d images", n);
    return EXIT_OK;
}

static void free_images(images *im)
{
    free(im->x);
    free(im->fz);
    free(im->input);
}

/* ---- latent codes: --encode and --decode ------------------------------------------ */

/* The CSV --encode writes: a header, then per image its index, its file name
 * (empty outside image folders; quoted as agave-eval's --per-image does) and z. */
static int write_codes(const sample_opts *o, agave_context *ctx, const agave_dataset *test,
                       const float *z, int n, size_t Dz)
{
    textbuf b = {0};
    textbuf_printf(&b, "index,name");
    for (size_t k = 0; k < Dz; k++)
        textbuf_printf(&b, ",z%zu", k);
    textbuf_printf(&b, "\n");
    for (int i = 0; i < n; i++) {
        size_t index = (size_t)o->first + (size_t)i;
        textbuf_printf(&b, "%zu,", index);
        textbuf_csv_field(&b, agave_dataset_image_name(test, index));
        for (size_t k = 0; k < Dz; k++)
            textbuf_printf(&b, ",%.9g", (double)z[(size_t)i * Dz + k]);
        textbuf_printf(&b, "\n");
    }
    char err[512];
    int ok = !b.failed && write_file_atomic(ctx, o->out, b.data, b.len, err, sizeof err);
    textbuf_free(&b);
    return ok ? EXIT_OK : fail(PROG, "%s", b.failed ? "out of memory" : err);
}

static int encode_task(const sample_opts *o, agave_context *ctx, agave_model *m,
                       const agave_config *cfg)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W;
    size_t Dz = (size_t)cfg->Z * (size_t)(cfg->H / 4) * (size_t)(cfg->W / 4);
    agave_dataset *test = NULL;
    uint8_t *x = malloc((size_t)o->count * D);
    float *z = malloc((size_t)o->count * Dz * sizeof *z);
    int rc = x && z ? open_test(o, ctx, cfg, &test) : fail(PROG, "out of memory");
    if (rc == EXIT_OK)
        rc = take_range(o, test, x);
    if (rc == EXIT_OK)
        print_header(o, ctx, m, cfg, (int)o->count);
    if (rc == EXIT_OK && agave_model_encode(m, x, (int)o->count, z) != AGAVE_OK)
        rc = fail(PROG, "%s", agave_context_last_error(ctx));
    if (rc == EXIT_OK)
        rc = write_codes(o, ctx, test, z, (int)o->count, Dz);
    if (rc == EXIT_OK)
        printf("wrote %s: the latent codes of %lld test image%s (%d x %d x %d numbers each)\n",
               o->out, o->count, plural((double)o->count), cfg->Z, cfg->H / 4, cfg->W / 4);
    agave_dataset_free(test);
    free(x);
    free(z);
    return rc;
}

/* A file the user named, whole, NUL-terminated (at most 64 MiB); NULL after
 * printing why. */
static char *read_user_file(const char *path)
{
    char err[512];
    int fd = open_input_file(path, err, sizeof err);
    if (fd < 0) {
        fail(PROG, "--decode %s", err);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    size_t cap = 1 << 16, len = 0;
    char *text = f ? malloc(cap) : NULL;
    while (text) {
        size_t got = fread(text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0 || len > ((size_t)64 << 20))
            break;
        if (cap - len - 1 == 0) {
            char *grown = realloc(text, cap * 2);
            if (!grown) {
                free(text);
                text = NULL;
                break;
            }
            text = grown, cap *= 2;
        }
    }
    int bad = !text || (f && ferror(f)) || len > ((size_t)64 << 20);
    if (f)
        fclose(f);
    else
        close(fd);
    if (bad) {
        free(text);
        fail(PROG, "--decode %s: cannot read it (or it is larger than 64 MiB)", path);
        return NULL;
    }
    text[len] = '\0';
    return text;
}

/* The codes of a CSV file: the last Dz fields of each row (at most 4096 rows;
 * a first line starting with "index" is a header). */
static int read_codes(const char *path, size_t Dz, float **z, int *n)
{
    char *text = read_user_file(path);
    if (!text)
        return EXIT_ERROR;
    *z = NULL;
    *n = 0;
    int rc = EXIT_OK, line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && rc == EXIT_OK;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        if ((line_no == 1 && strncmp(line, "index", 5) == 0) || line[strspn(line, " \r")] == '\0')
            continue;
        if (*n == 4096) {
            rc = fail(PROG, "--decode %s: more than 4096 codes", path);
            break;
        }
        float *grown = realloc(*z, ((size_t)*n + 1) * Dz * sizeof **z);
        if (!grown) {
            rc = fail(PROG, "out of memory reading %s", path);
            break;
        }
        *z = grown;
        /* The last Dz comma-separated fields. */
        size_t fields = 1;
        for (char *p = line; *p; p++)
            fields += *p == ',';
        if (fields < Dz) {
            rc = fail(PROG, "--decode %s: line %d has %zu fields, the model's codes have %zu "
                      "numbers", path, line_no, fields, Dz);
            break;
        }
        char *field = line;
        for (size_t skip = fields - Dz; skip > 0; skip--)
            field = strchr(field, ',') + 1;
        for (size_t k = 0; k < Dz && rc == EXIT_OK; k++) {
            char *end = strchr(field, ',');
            if (end)
                *end = '\0';
            size_t l = strlen(field);
            if (l > 0 && field[l - 1] == '\r')
                field[l - 1] = '\0';
            double v;
            if (!parse_double(field, -1e30, 1e30, &v))
                rc = fail(PROG, "--decode %s: line %d, number %zu: '%s' is not a number", path,
                          line_no, k + 1, field);
            (*z)[(size_t)*n * Dz + k] = (float)v;
            field = end ? end + 1 : field + l;
        }
        (*n)++;
    }
    free(text);
    if (rc == EXIT_OK && *n == 0)
        rc = fail(PROG, "--decode %s: no codes in the file", path);
    return rc;
}

/* ---- --interpolate ----------------------------------------------------------------- */

/* Test images I and J, their codes, and --count points between them, each
 * decoded with the same seed so that the columns differ by z alone. */
static int interpolate_task(const sample_opts *o, agave_context *ctx, agave_model *m,
                            const agave_config *cfg, images *im)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W, Dy = D / (size_t)(cfg->s * cfg->s);
    size_t Dz = (size_t)cfg->Z * (size_t)(cfg->H / 4) * (size_t)(cfg->W / 4);
    int n = (int)o->count, want_x = cfg->mode != AGAVE_MODE_VAE;
    agave_dataset *test = NULL;
    uint8_t ends[2 * 3 * 256 * 256];
    float *z = malloc((2 + (size_t)n) * Dz * sizeof *z);
    int rc = z && D <= sizeof ends / 2 ? open_test(o, ctx, cfg, &test)
                                       : fail(PROG, "out of memory for the codes");
    size_t have = test ? agave_dataset_count(test) : 0;
    if (rc == EXIT_OK && ((size_t)o->from >= have || (size_t)o->to >= have))
        rc = fail(PROG, "--interpolate %lld,%lld: %s has %zu test image%s", o->from, o->to,
                  o->data, have, plural((double)have));
    if (rc == EXIT_OK) {
        agave_dataset_copy_images(test, (size_t)o->from, 1, ends);
        agave_dataset_copy_images(test, (size_t)o->to, 1, ends + D);
        print_header(o, ctx, m, cfg, n);
        if (agave_model_encode(m, ends, 2, z) != AGAVE_OK)
            rc = fail(PROG, "%s", agave_context_last_error(ctx));
    }
    if (rc == EXIT_OK)
        rc = alloc_images(n, cfg, 1, im);
    for (int k = 0; rc == EXIT_OK && k < n; k++) {
        float t = (float)k / (float)(n - 1), *zk = z + (2 + (size_t)k) * Dz;
        for (size_t i = 0; i < Dz; i++)
            zk[i] = (1.0f - t) * z[i] + t * z[Dz + i];
        if (agave_model_decode(m, zk, 1, (uint64_t)o->seed, im->fz + (size_t)k * Dy,
                               want_x ? im->x + (size_t)k * D : NULL) != AGAVE_OK)
            rc = fail(PROG, "%s", agave_context_last_error(ctx));
    }
    if (rc == EXIT_OK) {
        /* The first row: the two test images at its ends, blank cells between. */
        memset(im->input, 255, (size_t)n * D);
        memcpy(im->input, ends, D);
        memcpy(im->input + (size_t)(n - 1) * D, ends + D, D);
    }
    agave_dataset_free(test);
    free(z);
    return rc;
}

/* ---- the picture -------------------------------------------------------------------- */

/* What the rows and columns show, for the caption (NULL without --caption). */
static const char *caption_text(const sample_opts *o, const agave_config *cfg, int n, char *buf,
                                size_t len)
{
    if (!o->caption)
        return NULL;
    int vae = cfg->mode == AGAVE_MODE_VAE, pcnn = cfg->mode == AGAVE_MODE_PIXELCNN;
    const char *sample = vae ? "" : ", the PixelCNN sample given f(z)";
    switch (o->task) {
    case TASK_RECONSTRUCT:
        snprintf(buf, len, "rows: test images %lld to %lld, f(z) for z ~ q(z|x)%s", o->first,
                 o->first + n - 1, sample);
        break;
    case TASK_INTERPOLATE:
        snprintf(buf, len, "columns: z = (1-t) z%lld + t z%lld, t = 0 to 1 in %d steps (z: "
                 "posterior means); rows: test images %lld and %lld, f(z)%s (seed %lld in every "
                 "column)", o->from, o->to, n, o->from, o->to, sample, o->seed);
        break;
    case TASK_DECODE:
        snprintf(buf, len, "f(z) for the %d codes of %s%s", n, o->decode,
                 vae ? "" : ", each beside the PixelCNN sample given f(z)");
        break;
    default:
        snprintf(buf, len, pcnn ? "PixelCNN samples, seed %lld" : vae ? "f(z) for z ~ p(z), "
                 "seed %lld" : "pairs: f(z) for z ~ p(z), then the PixelCNN sample given f(z); "
                 "seed %lld", o->seed);
    }
    return buf;
}

/* The interpolation's grid: the ends row, f(z) and the samples, one column a point. */
static int write_interpolation(const sample_opts *o, agave_context *ctx, const agave_config *cfg,
                               const images *im, const char *caption)
{
    const uint8_t *sets[3] = {im->input, im->fz, im->x};
    int heights[3] = {cfg->H, cfg->H / cfg->s, cfg->H}, widths[3] = {cfg->W, cfg->W / cfg->s,
                                                                     cfg->W};
    agave_grid_options opt;
    sample_grid_options(cfg, (int)o->scale, caption, &opt);
    int n_sets = cfg->mode == AGAVE_MODE_VAE ? 2 : 3;
    if (agave_image_grid_write_sets(ctx, o->out, sets, n_sets, im->n, cfg->C, heights, widths,
                                    o->cols ? (int)o->cols : im->n, AGAVE_GRID_SETS_AS_ROWS,
                                    &opt) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(ctx));
    return EXIT_OK;
}

/* What the picture shows, for the closing line: "1 sample (...)", "16 samples (...)". */
static void picture_text(const sample_opts *o, const agave_config *cfg, int n, char *buf,
                         size_t len)
{
    const char *s = plural((double)n);
    if (o->task == TASK_INTERPOLATE)
        snprintf(buf, len, "%d point%s from test image %lld to %lld in latent space", n, s,
                 o->from, o->to);
    else if (o->task == TASK_RECONSTRUCT)
        snprintf(buf, len, "%d reconstruction%s (rows: test image, f(z)%s)", n, s,
                 cfg->mode == AGAVE_MODE_VAE ? "" : ", PixelCNN sample");
    else if (cfg->mode == AGAVE_MODE_PIXELCNN)
        snprintf(buf, len, "%d PixelCNN sample%s", n, s);
    else if (cfg->mode == AGAVE_MODE_VAE)
        snprintf(buf, len, "%d VAE mean%s f(z)", n, s);
    else
        snprintf(buf, len, "%d %s%s (f(z) beside the PixelCNN sample)", n,
                 o->task == TASK_DECODE ? "decoded code" : "sample", s);
}

/* ---- the run -------------------------------------------------------------------------- */

/* The checkpoint, its weights, and the checks that need its configuration. */
static int load_model(const sample_opts *o, agave_context *ctx, agave_model **m,
                      agave_config *cfg)
{
    int rc = load_checkpoint(PROG, ctx, o->checkpoint, m);
    if (rc == EXIT_OK)
        rc = choose_weights(PROG, *m, o->weights, o->checkpoint);
    if (rc != EXIT_OK)
        return rc;
    agave_model_get_config(*m, cfg);
    if (o->task != TASK_SAMPLE && cfg->mode == AGAVE_MODE_PIXELCNN)
        return fail(PROG, "%s is a mode pixelcnn model: it has no latent code, so there is "
                    "nothing to %s", o->checkpoint,
                    o->task == TASK_RECONSTRUCT ? "reconstruct"
                    : o->task == TASK_ENCODE    ? "encode"
                    : o->task == TASK_DECODE    ? "decode"
                                                : "interpolate");
    /* A picture's name is checked before any work: .jpg and the like are refused. */
    if (o->task != TASK_ENCODE &&
        agave_image_grid_check_name(ctx, o->out, cfg->C == 1 ? 1 : 3) != AGAVE_OK)
        return fail(PROG, "--out %s", agave_context_last_error(ctx));
    return EXIT_OK;
}


/* Sampling, reconstruction or decoding: draw, then the grid. */
static int grid_task(const sample_opts *o, agave_context *ctx, agave_model *m,
                     const agave_config *cfg, images *im, const char **caption, char *buf,
                     size_t len)
{
    float *z = NULL;
    int n = (int)o->count;
    int rc = EXIT_OK;
    if (o->task == TASK_DECODE)
        rc = read_codes(o->decode, (size_t)cfg->Z * (cfg->H / 4) * (cfg->W / 4), &z, &n);
    if (rc == EXIT_OK)
        rc = alloc_images(n, cfg, o->task == TASK_RECONSTRUCT, im);
    if (rc == EXIT_OK && o->task == TASK_RECONSTRUCT) {
        agave_dataset *test = NULL;
        rc = open_test(o, ctx, cfg, &test);
        if (rc == EXIT_OK)
            rc = take_range(o, test, im->input);
        agave_dataset_free(test);
    }
    if (rc == EXIT_OK) {
        print_header(o, ctx, m, cfg, n);
        rc = draw(o, ctx, m, cfg, im, z);
    }
    *caption = caption_text(o, cfg, n, buf, len);
    if (rc == EXIT_OK)
        rc = write_sample_grid(PROG, ctx, o->out, cfg, im->input, im->fz, im->x, n,
                               (int)o->cols, (int)o->scale, *caption);
    free(z);
    return rc;
}

static int run(const sample_opts *o, agave_context *ctx)
{
    agave_model *m = NULL;
    agave_config cfg;
    images im = {NULL, NULL, NULL, 0};
    char caption[512], what[160];
    const char *cap = NULL;
    int rc = load_model(o, ctx, &m, &cfg);
    if (rc == EXIT_OK && o->task == TASK_ENCODE) {
        rc = encode_task(o, ctx, m, &cfg);
    } else if (rc == EXIT_OK && o->task == TASK_INTERPOLATE) {
        rc = interpolate_task(o, ctx, m, &cfg, &im);
        cap = caption_text(o, &cfg, im.n, caption, sizeof caption);
        if (rc == EXIT_OK)
            rc = write_interpolation(o, ctx, &cfg, &im, cap);
    } else if (rc == EXIT_OK) {
        rc = grid_task(o, ctx, m, &cfg, &im, &cap, caption, sizeof caption);
    }
    if (rc == EXIT_OK && o->task != TASK_ENCODE) {
        picture_text(o, &cfg, im.n, what, sizeof what);
        printf("wrote %s: %s\n", o->out, what);
    }
    free_images(&im);
    agave_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    sample_opts o;
    cli_program prog;
    char threads_text[64];
    int rc = parse_options(argc, argv, &o, &prog, threads_text, sizeof threads_text);
    if (rc < 0) {
        agave_context *ctx = NULL;
        rc = open_context(PROG, (uint64_t)o.seed, (int)o.threads, &ctx);
        if (rc == EXIT_OK)
            rc = run(&o, ctx);
        agave_context_free(ctx);
    }
    cli_free(&prog);
    free(prog.options);
    return rc;
}
