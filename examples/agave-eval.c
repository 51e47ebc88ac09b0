/* agave-eval: test-set bounds of a trained AGAVE model.
 *
 *   agave-eval --checkpoint FILE --data PATH [--samples K] [--limit N] [--json]
 *
 * Evaluates the first N test images in batches with agave_model_evaluate
 * (ELBO with its PixelCNN and KL terms, the VAE's bound on the auxiliary image,
 * IWAE with K samples) and the per-pixel histogram baseline on the same images,
 * then prints one summary line (or one JSON object with --json) on stdout.
 * Progress goes to stderr. docs/programs.md describes the figures.
 *
 * Built with `make MPI=1` and run under mpirun, the ranks share every batch
 * (agave_model_set_batch_slice: each image gets the z samples it gets in one
 * process), the image-weighted sums are added up over the ranks at the end,
 * and rank 0 alone prints and writes --output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define PROG "agave-eval"

typedef struct eval_opts {
    const char *checkpoint, *data, *output, *weights;
    long long samples, limit, batch, seed, threads;
    int json;
} eval_opts;

/* Image-weighted sums of agave_eval_stats over batches. */
typedef struct totals {
    long long n;
    double elbo, recon, kl, aux, iwae;
} totals;

static int parse_options(int argc, char **argv, eval_opts *o, cli_program *prog,
                         char *threads_text, size_t len)
{
    static const double BIG = 9.3e18;
    if (dist_local_size() > 1)
        snprintf(threads_text, len, "the online CPUs shared by the %d ranks on this machine",
                 dist_local_size());
    else
        snprintf(threads_text, len, "the number of online CPUs, %d here", cpu_count());
    memset(o, 0, sizeof *o);
    o->samples = 150, o->limit = 0, o->batch = 100, o->seed = 1;
    o->threads = cpu_count() / dist_local_size() > 0 ? cpu_count() / dist_local_size() : 1;
    cli_option opts[] = {
        {"checkpoint", CLI_STRING, &o->checkpoint, "FILE", "the model to evaluate (model.ckpt)",
         NULL, 0, 0, 0},
        {"data", CLI_STRING, &o->data, "PATH",
         "data set directory or one file; its test split is evaluated", NULL, 0, 0, 0},
        {"samples", CLI_INT, &o->samples, "K",
         "importance samples per image for the IWAE bound, as in the paper (0: no IWAE; the "
         "ELBO then uses one sample)", "150", 0, 100000, 0},
        {"limit", CLI_INT, &o->limit, "N", "evaluate only the first N test images (0: all)",
         "all", 0, BIG, 0},
        {"json", CLI_FLAG, &o->json, NULL,
         "print one JSON object instead of the summary line: n_images, elbo_bpd, recon_bpd, "
         "kl_bpd, aux_bpd, iwae_bpd, iwae_samples, baseline_bpd", NULL, 0, 0, 0},
        {"output", CLI_STRING, &o->output, "FILE",
         "also write the JSON object to FILE (atomically)", NULL, 0, 0, 0},
        {"batch", CLI_INT, &o->batch, "B",
         "images per evaluation call (only the progress granularity; under mpirun shared by "
         "the ranks)", "100", 1, 1 << 20, 0},
        {"seed", CLI_INT, &o->seed, "S", "seed of the z samples", "1", 0, BIG, 0},
        {"weights", CLI_STRING, &o->weights, "average|raw",
         "the averaged parameters or the raw ones of the last training step",
         "average when the checkpoint has it, else raw", 0, 0, 0},
        {"threads", CLI_INT, &o->threads, "T", "threads for the library's kernels", threads_text,
         1, 1024, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --checkpoint FILE --data PATH [--samples K] [--limit N] [--json] "
                       "[options]";
    prog->summary =
        "Evaluates a trained model on the test split of a data set: the ELBO in bits per\n"
        "dimension with its PixelCNN reconstruction and KL terms, the VAE's bound on the\n"
        "auxiliary image, the IWAE bound with K samples, and the per-pixel histogram baseline\n"
        "(fitted on the training split) on the same images. Progress goes to stderr.";
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
    if (!o->data)
        return fail(PROG, "--data PATH is required (see " PROG " --help)");
    char err[512];
    /* Rank 0 writes it (other machines may not see the directory). */
    if (o->output && dist_rank() == 0 && !output_dir_ok(o->output, err, sizeof err))
        return fail(PROG, "--output %s", err);
    return -1;
}

/* The histogram baseline: fitted on the training split of the same data set;
 * if there is none (one file, or a directory with only test files), on the
 * evaluated split itself, which *source says. */
static int baseline(agave_context *ctx, const eval_opts *o, const agave_dataset *test, size_t n,
                    double *bpd, const char **source)
{
    agave_dataset *train = NULL;
    const uint8_t *pixels = agave_dataset_pixels(test);
    size_t n_train = agave_dataset_count(test);
    *source = "the evaluated file itself (no separate training split)";
    if (is_directory(o->data)) {
        if (agave_dataset_open(ctx, o->data, AGAVE_SPLIT_TRAIN, &train) == AGAVE_OK &&
            agave_dataset_channels(train) == agave_dataset_channels(test) &&
            agave_dataset_height(train) == agave_dataset_height(test) &&
            agave_dataset_width(train) == agave_dataset_width(test)) {
            pixels = agave_dataset_pixels(train);
            n_train = agave_dataset_count(train);
            *source = "the training split";
        } else {
            *source = "the test split (no usable training split in the directory)";
        }
    }
    agave_status st = agave_marginal_baseline_bpd(
        ctx, pixels, n_train, agave_dataset_pixels(test), n, agave_dataset_channels(test),
        agave_dataset_height(test), agave_dataset_width(test), bpd);
    agave_dataset_free(train);
    if (st != AGAVE_OK)
        return fail(PROG, "baseline: %s", agave_context_last_error(ctx));
    return EXIT_OK;
}

static void add_batch(totals *t, const agave_eval_stats *s)
{
    double n = s->n_images;
    t->n += s->n_images;
    t->elbo += n * s->elbo_bpd;
    t->recon += n * s->recon_bpd;
    t->kl += n * s->kl_bpd;
    t->aux += n * s->aux_bpd;
    t->iwae += n * s->iwae_bpd;
}

/* done: images evaluated by all ranks together; the ELBO shown is that of
 * this rank's share (all of them in one process). */
static void show_progress(progress *line, const totals *t, size_t done, size_t n,
                          double started, int K)
{
    if (dist_rank() > 0 || t->n == 0)
        return;
    double elapsed = clock_seconds() - started, rate = (double)done / (elapsed > 0 ? elapsed : 1);
    char eta[32];
    format_duration(rate > 0 ? (double)(n - done) / rate : -1, eta, sizeof eta);
    progress_update(line, 1, "evaluated %zu/%zu images  %.1f img/s  ETA %s  ELBO %.4f bpd%s",
                    done, n, rate, eta, t->elbo / t->n, K ? "" : " (1 sample)");
}

static int evaluate(agave_model *m, agave_context *ctx, const agave_dataset *test, size_t n,
                    const eval_opts *o, totals *t)
{
    const uint8_t *pixels = agave_dataset_pixels(test);
    size_t D = (size_t)agave_dataset_channels(test) * agave_dataset_height(test) *
               agave_dataset_width(test);
    progress line;
    progress_init(&line, stderr);
    double started = clock_seconds();
    memset(t, 0, sizeof *t);
    for (size_t first = 0; first < n; first += (size_t)o->batch) {
        size_t k = n - first < (size_t)o->batch ? n - first : (size_t)o->batch;
        int lo, hi;   /* this rank's images [lo, hi) of the batch */
        dist_slice((int)k, &lo, &hi);
        agave_eval_stats s;
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        if ((dist_size() > 1 && agave_model_set_batch_slice(m, lo, (int64_t)k) != AGAVE_OK) ||
            agave_model_evaluate(m, pixels + (first + (size_t)lo) * D, hi - lo, (int)o->samples,
                                 &s) != AGAVE_OK) {
            progress_end(&line);
            return fail(PROG, "%s", agave_context_last_error(ctx));
        }
        add_batch(t, &s);
        show_progress(&line, t, first + k, n, started, (int)o->samples);
    }
    progress_end(&line);
    /* The ranks' image-weighted sums make the whole test set's. */
    double sums[6] = {(double)t->n, t->elbo, t->recon, t->kl, t->aux, t->iwae};
    dist_sum_doubles(sums, 6);
    t->n = (long long)sums[0];
    t->elbo = sums[1], t->recon = sums[2], t->kl = sums[3], t->aux = sums[4], t->iwae = sums[5];
    return EXIT_OK;
}

/* A JSON number, or null for what JSON cannot hold (NaN, infinities). */
static void json_number(char *buf, size_t len, double v)
{
    if (isfinite(v))
        snprintf(buf, len, "%.6f", v);
    else
        snprintf(buf, len, "null");
}

static int format_json(char *buf, size_t len, const totals *t, int K, double base)
{
    char v[6][40];
    json_number(v[0], sizeof v[0], t->elbo / t->n);
    json_number(v[1], sizeof v[1], t->recon / t->n);
    json_number(v[2], sizeof v[2], t->kl / t->n);
    json_number(v[3], sizeof v[3], t->aux / t->n);
    json_number(v[4], sizeof v[4], t->iwae / t->n);
    json_number(v[5], sizeof v[5], base);
    return snprintf(buf, len,
                    "{\"n_images\": %lld, \"elbo_bpd\": %s, \"recon_bpd\": %s, \"kl_bpd\": %s, "
                    "\"aux_bpd\": %s, \"iwae_bpd\": %s, \"iwae_samples\": %d, "
                    "\"baseline_bpd\": %s}\n",
                    t->n, v[0], v[1], v[2], v[3], v[4], K, v[5]);
}

static void print_summary(FILE *f, const totals *t, int K, double base, agave_mode mode)
{
    double n = (double)t->n;
    fprintf(f, "%lld test images: ELBO %.4f bpd (%s %.4f + KL %.4f)", t->n, t->elbo / n,
            mode == AGAVE_MODE_VAE ? "reconstruction of y" : "PixelCNN", t->recon / n, t->kl / n);
    if (mode == AGAVE_MODE_PIXELCNN)
        fprintf(f, " [mode pixelcnn: exact NLL, no latent]");
    if (mode == AGAVE_MODE_VAE)
        fprintf(f, " [mode vae: bounds on the auxiliary image]");
    if (K)
        fprintf(f, ", IWAE_%d %.4f bpd", K, t->iwae / n);
    if (mode != AGAVE_MODE_PIXELCNN)
        fprintf(f, ", VAE bound on y %.4f bpd", t->aux / n);
    fprintf(f, "; histogram baseline %.4f bpd\n", base);
    fflush(f);
}

static int report(const eval_opts *o, const totals *t, double base, agave_mode mode)
{
    char json[1024];
    int len = format_json(json, sizeof json, t, (int)o->samples, base);
    if (o->output) {
        char err[512];
        if (!write_file_atomic(o->output, json, (size_t)len, err, sizeof err))
            return fail(PROG, "--output: %s", err);
    }
    if (o->json) {
        fputs(json, stdout);
        fflush(stdout);
        print_summary(stderr, t, (int)o->samples, base, mode);
    } else {
        print_summary(stdout, t, (int)o->samples, base, mode);
    }
    return ferror(stdout) ? fail(PROG, "cannot write to stdout") : EXIT_OK;
}

static int run(const eval_opts *o, agave_context *ctx)
{
    agave_model *m = NULL;
    agave_dataset *test = NULL;
    agave_config cfg;
    totals t;
    double base = 0;
    const char *source = "";
    int rc = load_checkpoint(PROG, ctx, o->checkpoint, &m);
    /* Loading restores the training run's random state; --seed decides here. */
    if (rc == EXIT_OK)
        agave_context_seed(ctx, (uint64_t)o->seed);
    if (rc == EXIT_OK)
        rc = choose_weights(PROG, m, o->weights, o->checkpoint);
    if (rc == EXIT_OK)
        rc = open_dataset(PROG, ctx, o->data, AGAVE_SPLIT_TEST, &test);
    if (rc == EXIT_OK) {
        agave_model_get_config(m, &cfg);
        rc = check_image_shape(PROG, &cfg, test, o->data);
    }
    size_t n = test ? agave_dataset_count(test) : 0;
    if (o->limit > 0 && (size_t)o->limit < n)
        n = (size_t)o->limit;
    int root = dist_rank() == 0;
    if (rc == EXIT_OK && root)   /* only rank 0 reports it */
        rc = baseline(ctx, o, test, n, &base, &source);
    rc = dist_agree(rc);   /* every rank has its model and data, or all stop */
    if (rc == EXIT_OK && root) {
        fprintf(stderr, PROG ": %s, step %lld, mode %s, %s weights; %zu of %zu test images "
                         "from %s; IWAE K = %lld; %d thread%s\n",
                o->checkpoint, (long long)agave_model_step_count(m), agave_mode_name(cfg.mode),
                weights_name(m), n,
                agave_dataset_count(test), o->data, o->samples, agave_context_threads(ctx),
                agave_context_threads(ctx) == 1 ? "" : "s");
        if (dist_size() > 1)
            fprintf(stderr, PROG ": %d %s ranks share each batch of %lld images\n", dist_size(),
                    dist_kind(), o->batch);
        fprintf(stderr, PROG ": histogram baseline %.4f bpd, fitted on %s\n", base, source);
    }
    if (rc == EXIT_OK && (rc = evaluate(m, ctx, test, n, o, &t)) != EXIT_OK)
        rc = dist_abort(rc);   /* the other ranks may be waiting for this one's sums */
    /* Without importance samples there is no IWAE figure: report the ELBO,
     * which is IWAE with one sample (docs/programs.md). */
    if (rc == EXIT_OK && o->samples == 0)
        t.iwae = t.elbo;
    if (rc == EXIT_OK && root)
        rc = report(o, &t, base, cfg.mode);
    agave_dataset_free(test);
    agave_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    eval_opts o;
    cli_program prog;
    char threads_text[96];
    if (dist_init(&argc, &argv) != EXIT_OK)
        return EXIT_ERROR;
    int rc = parse_options(argc, argv, &o, &prog, threads_text, sizeof threads_text);
    if (rc < 0) {
        agave_context *ctx = NULL;
        rc = dist_agree(open_context(PROG, (uint64_t)o.seed, (int)o.threads, &ctx));
        if (rc == EXIT_OK)
            rc = run(&o, ctx);
        agave_context_free(ctx);
    }
    cli_free(&prog);
    free(prog.options);
    dist_finalize();
    return rc;
}
