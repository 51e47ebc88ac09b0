/* agave-sample: PNG grids of samples or reconstructions from a checkpoint.
 *
 *   agave-sample --checkpoint FILE [--count N] [--seed S] [--reconstruct --data PATH]
 *                --out FILE.png
 *
 * Samples: z ~ p(z), f(z), then the PixelCNN sample pixel by pixel; each
 * f(z) is shown beside its sample (the paper's Figure 1c). Reconstructions:
 * rows of test images, f(z) for z ~ q(z|x), and the PixelCNN sample given that
 * f(z) (Figure 3). Mode pixelcnn has no f(z): samples only; mode vae has no
 * PixelCNN: f(z) only. The library writes the PNG atomically. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define PROG "agave-sample"
/* agave_model_sample draws at most this many images per call here, so that
 * progress can be shown; image i of chunk c uses seed + c, so a larger
 * --count extends a smaller one's grid with the same first images. */
#define CHUNK 16

typedef struct sample_opts {
    const char *checkpoint, *data, *out, *weights;
    long long count, seed, threads, cols, scale, first;
    int reconstruct;
} sample_opts;

typedef struct images {
    uint8_t *x, *fz, *input;   /* (n,C,H,W), (n,C,H/s,W/s), (n,C,H,W) or NULL */
} images;

static int parse_options(int argc, char **argv, sample_opts *o, cli_program *prog,
                         char *threads_text, size_t len)
{
    static const double BIG = 9.3e18;
    snprintf(threads_text, len, "the number of online CPUs, %d here", cpu_count());
    memset(o, 0, sizeof *o);
    o->count = 16, o->seed = 1, o->threads = cpu_count();
    cli_option opts[] = {
        {"checkpoint", CLI_STRING, &o->checkpoint, "FILE", "the model to sample from", NULL, 0,
         0, 0},
        {"out", CLI_STRING, &o->out, "FILE.png", "the PNG to write (atomically)", NULL, 0, 0, 0},
        {"count", CLI_INT, &o->count, "N", "samples, or test images to reconstruct", "16", 1,
         4096, 0},
        {"seed", CLI_INT, &o->seed, "S", "seed of z and of the PixelCNN's draws", "1", 0, BIG, 0},
        {"reconstruct", CLI_FLAG, &o->reconstruct, NULL,
         "reconstruct test images instead: rows of test image / f(z) / PixelCNN sample given "
         "f(z), z ~ q(z|x) (needs --data)", NULL, 0, 0, 0},
        {"data", CLI_STRING, &o->data, "PATH",
         "data set directory or one file whose test split --reconstruct uses", NULL, 0, 0, 0},
        {"first", CLI_INT, &o->first, "I", "--reconstruct starts at test image I", "0", 0, BIG,
         0},
        {"cols", CLI_INT, &o->cols, "N",
         "images (pairs for samples) per row of the grid", "8 pairs, 8 for reconstructions",
         1, 4096, 0},
        {"scale", CLI_INT, &o->scale, "N", "each pixel becomes N x N pixels",
         "2 for images up to 32 pixels, else 1", 1, 64, 0},
        {"weights", CLI_STRING, &o->weights, "average|raw",
         "the averaged parameters or the raw ones of the last training step",
         "average when the checkpoint has it, else raw", 0, 0, 0},
        {"threads", CLI_INT, &o->threads, "T", "threads for the library's kernels", threads_text,
         1, 1024, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --checkpoint FILE [--count N] [--seed S] [--reconstruct --data PATH]\n"
                       "                    --out FILE.png [options]";
    prog->summary =
        "Writes a PNG grid of samples from a trained model: each f(z) (the VAE decoder's\n"
        "image, z ~ p(z)) beside the PixelCNN sample drawn given it (the paper's Figure 1c).\n"
        "With --reconstruct: rows of test images, f(z) for z ~ q(z|x) and the PixelCNN sample\n"
        "given f(z) (Figure 3). The PixelCNN draws pixel by pixel, so sampling an image\n"
        "costs far more than evaluating one.";
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
        return fail(PROG, "--out FILE.png is required (see " PROG " --help)");
    if (o->reconstruct && !o->data)
        return fail(PROG, "--reconstruct needs --data PATH (the test images to reconstruct)");
    if (!o->reconstruct && o->data)
        return fail(PROG, "--data is only used with --reconstruct");
    char err[512];
    if (!output_dir_ok(o->out, err, sizeof err))
        return fail(PROG, "--out %s", err);
    return -1;
}

/* The test images to reconstruct: --count images from --first. */
static int load_inputs(const sample_opts *o, agave_context *ctx, const agave_config *cfg,
                       uint8_t *dst)
{
    agave_dataset *test = NULL;
    int rc = open_dataset(PROG, ctx, o->data, AGAVE_SPLIT_TEST, &test);
    if (rc == EXIT_OK)
        rc = check_image_shape(PROG, cfg, test, o->data);
    size_t have = test ? agave_dataset_count(test) : 0;
    if (rc == EXIT_OK && ((size_t)o->first >= have || (size_t)o->count > have - (size_t)o->first))
        rc = fail(PROG, "--first %lld --count %lld: %s has only %zu test images", o->first,
                  o->count, o->data, have);
    if (rc == EXIT_OK)
        agave_dataset_copy_images(test, (size_t)o->first, (size_t)o->count, dst);
    agave_dataset_free(test);
    return rc;
}

/* Draws everything, CHUNK images per library call, with progress. */
static int draw(const sample_opts *o, agave_context *ctx, agave_model *m,
                const agave_config *cfg, images *im)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W, Dy = D / (size_t)(cfg->s * cfg->s);
    int n = (int)o->count, want_x = cfg->mode != AGAVE_MODE_VAE;
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
            im->input ? agave_model_reconstruct(m, im->input + (size_t)first * D, k, seed, fz, x)
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

static int write_grid(const sample_opts *o, agave_context *ctx, const agave_config *cfg,
                      const images *im)
{
    return write_sample_grid(PROG, ctx, o->out, cfg, im->input, im->fz, im->x, (int)o->count,
                             (int)o->cols, (int)o->scale);
}

static int alloc_images(const sample_opts *o, const agave_config *cfg, images *im)
{
    size_t D = (size_t)cfg->C * cfg->H * cfg->W, n = (size_t)o->count;
    im->x = malloc(n * D);
    im->fz = malloc(n * D);   /* f(z) is at most as large as x */
    im->input = o->reconstruct ? malloc(n * D) : NULL;
    if (!im->x || !im->fz || (o->reconstruct && !im->input))
        return fail(PROG, "cannot allocate %zu images", n);
    return EXIT_OK;
}

/* What the picture shows, for the closing line. */
static const char *picture_text(const sample_opts *o, const agave_config *cfg)
{
    if (o->reconstruct)
        return cfg->mode == AGAVE_MODE_VAE ? "reconstructions (rows: test image, f(z))"
                                           : "reconstructions (rows: test image, f(z), "
                                             "PixelCNN sample)";
    if (cfg->mode == AGAVE_MODE_PIXELCNN)
        return "PixelCNN samples";
    if (cfg->mode == AGAVE_MODE_VAE)
        return "VAE means f(z)";
    return "samples (f(z) beside the PixelCNN sample)";
}

static int run(const sample_opts *o, agave_context *ctx)
{
    agave_model *m = NULL;
    agave_config cfg;
    images im = {NULL, NULL, NULL};
    int rc = load_checkpoint(PROG, ctx, o->checkpoint, &m);
    if (rc == EXIT_OK)
        rc = choose_weights(PROG, m, o->weights, o->checkpoint);
    if (rc == EXIT_OK) {
        agave_model_get_config(m, &cfg);
        if (o->reconstruct && cfg.mode == AGAVE_MODE_PIXELCNN)
            rc = fail(PROG, "%s is a mode pixelcnn model: it has no latent code, so there is "
                      "nothing to reconstruct", o->checkpoint);
    }
    if (rc == EXIT_OK)
        rc = alloc_images(o, &cfg, &im);
    if (rc == EXIT_OK && o->reconstruct)
        rc = load_inputs(o, ctx, &cfg, im.input);
    if (rc == EXIT_OK) {
        fprintf(stderr, PROG ": %s, step %lld, mode %s, %s weights: %s %lld image%s, seed %lld, "
                         "%d thread%s\n",
                o->checkpoint, (long long)agave_model_step_count(m), agave_mode_name(cfg.mode),
                weights_name(m),
                o->reconstruct ? "reconstructing" : "sampling", o->count,
                o->count == 1 ? "" : "s", o->seed, agave_context_threads(ctx),
                agave_context_threads(ctx) == 1 ? "" : "s");
        rc = draw(o, ctx, m, &cfg, &im);
    }
    if (rc == EXIT_OK)
        rc = write_grid(o, ctx, &cfg, &im);
    if (rc == EXIT_OK)
        printf("wrote %s: %lld %s\n", o->out, o->count, picture_text(o, &cfg));
    free(im.x);
    free(im.fz);
    free(im.input);
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
