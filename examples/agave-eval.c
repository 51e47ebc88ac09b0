/* agave-eval: test-set bounds of a trained AGAVE model.
 *
 *   agave-eval --checkpoint FILE --data PATH [--samples K] [--limit N] [--json]
 *              [--per-image FILE.csv]
 *
 * Evaluates the first N test images in batches with agave_model_evaluate_scores
 * (ELBO with its PixelCNN and KL terms, the VAE's bound on the auxiliary image,
 * IWAE with K samples) and the per-pixel histogram baseline on the same images,
 * then prints one summary line (or one JSON object with --json) on stdout;
 * --per-image also writes every image's own figures to a CSV file. Progress,
 * with an estimate of the running time measured on the first samples, goes to
 * stderr. A stop signal (Ctrl-C) ends the evaluation within one forward pass
 * and reports the images finished so far. docs/programs.md describes the
 * figures.
 *
 * Built with `make MPI=1` and run under mpirun, the ranks share every batch
 * (agave_model_set_batch_slice: each image gets the z samples it gets in one
 * process), the image-weighted sums and the per-image figures are added up
 * over the ranks at the end, and rank 0 alone prints and writes the files. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/textbuf.h"

#define PROG "agave-eval"

typedef struct eval_opts {
    const char *checkpoint, *data, *output, *per_image, *weights;
    long long samples, limit, batch, seed, threads;
    int json;
    data_opts images;   /* --resize, --crop, --test-percent */
} eval_opts;

/* Image-weighted sums of agave_eval_stats over batches. */
typedef struct totals {
    long long n;
    double elbo, recon, kl, aux, iwae;
} totals;

/* Every image's figures (bpd) and whether it was finished: a column of n
 * entries each, in this order. Only the finished flags without --per-image. */
enum { COL_DONE, COL_ELBO, COL_RECON, COL_KL, COL_AUX, COL_IWAE, COLUMNS };
typedef struct image_table {
    double *col[COLUMNS];   /* col[c][i]: image i; NULL for the figures when not wanted */
    size_t n;
} image_table;

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
    data_opts_init(&o->images);
    o->samples = 150, o->limit = 0, o->batch = 100, o->seed = 1;
    o->threads = cpu_count() / dist_local_size() > 0 ? cpu_count() / dist_local_size() : 1;
    cli_option opts[] = {
        {"checkpoint", CLI_STRING, &o->checkpoint, "FILE", "the model to evaluate (model.ckpt)",
         NULL, 0, 0, 0},
        {"data", CLI_STRING, &o->data, "PATH",
         "data set directory or one file; its test split is evaluated", NULL, 0, 0, 0},
        DATA_OPTIONS(&o->images),
        {"samples", CLI_INT, &o->samples, "K",
         "importance samples per image for the IWAE bound, as in the paper (0: no IWAE; the "
         "ELBO then uses one sample)", "150", 0, 100000, 0},
        {"limit", CLI_INT, &o->limit, "N", "evaluate only the first N test images (0: all)",
         "all", 0, BIG, 0},
        {"json", CLI_FLAG, &o->json, NULL,
         "print one JSON object instead of the summary line: n_images, elbo_bpd, recon_bpd, "
         "kl_bpd, aux_bpd, iwae_bpd, iwae_samples, baseline_bpd, checkpoint, step, seed, data, "
         "images_requested, complete, weights", NULL, 0, 0, 0},
        {"output", CLI_STRING, &o->output, "FILE",
         "also write the JSON object to FILE (atomically)", NULL, 0, 0, 0},
        {"per-image", CLI_STRING, &o->per_image, "FILE.csv",
         "also write every image's figures to FILE.csv (atomically): index, name, elbo_bpd, "
         "recon_bpd, kl_bpd, aux_bpd, iwae_bpd", NULL, 0, 0, 0},
        {"batch", CLI_INT, &o->batch, "B",
         "images per evaluation call (under mpirun shared by the ranks); the figures do not "
         "depend on it", "100", 1, 1 << 20, 0},
        {"seed", CLI_INT, &o->seed, "S", "seed of the z samples", "1", 0, BIG, 0},
        {"weights", CLI_STRING, &o->weights, "average|raw",
         "the averaged parameters or the raw ones of the last training step",
         "average when the checkpoint has it, else raw", 0, 0, 0},
        {"threads", CLI_INT, &o->threads, "T", "threads for the library's kernels", threads_text,
         1, 1024, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --checkpoint FILE --data PATH [--samples K] [--limit N] [--json] "
                       "[--per-image FILE.csv] [options]";
    prog->summary =
        "Evaluates a trained model on the test split of a data set: the ELBO in bits per\n"
        "dimension with its PixelCNN reconstruction and KL terms, the VAE's bound on the\n"
        "auxiliary image, the IWAE bound with K samples, and the per-pixel histogram baseline\n"
        "(fitted on the training split) on the same images. Progress goes to stderr, with an\n"
        "estimate of the running time once the first samples are scored. SIGINT (Ctrl-C),\n"
        "SIGTERM or SIGHUP stop the evaluation within a few seconds and report the images\n"
        "finished so far; a second signal quits at once.";
    prog->epilog = "exit status: 0 done, 2 error (one line on stderr), 128 + the signal number "
                   "when stopped by a signal (130 for Ctrl-C) after reporting.";
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
    /* Rank 0 writes them (other machines may not see the directories). */
    if (o->output && dist_rank() == 0 && !output_dir_ok(o->output, err, sizeof err))
        return fail(PROG, "--output %s", err);
    if (o->per_image && dist_rank() == 0 && !output_dir_ok(o->per_image, err, sizeof err))
        return fail(PROG, "--per-image %s", err);
    return -1;
}

/* The histogram baseline of n images (pixels): fitted on the training split
 * of the same data set; if there is none (one file, or a directory with only
 * test files), on the evaluated split itself, which *source says. */
static int baseline(agave_context *ctx, const eval_opts *o, const agave_dataset *test,
                    const uint8_t *scored, size_t n, double *bpd, const char **source)
{
    agave_dataset *train = NULL;
    const uint8_t *pixels = agave_dataset_pixels(test);
    size_t n_train = agave_dataset_count(test);
    *source = "the evaluated file itself (no separate training split)";
    agave_dataset_options same;
    if (is_directory(o->data) && data_opts_make(PROG, &o->images, &same) == EXIT_OK) {
        if (agave_dataset_open_v2(ctx, o->data, AGAVE_SPLIT_TRAIN, &same, &train) == AGAVE_OK &&
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
        ctx, pixels, n_train, scored, n, agave_dataset_channels(test),
        agave_dataset_height(test), agave_dataset_width(test), bpd);
    agave_dataset_free(train);
    if (st != AGAVE_OK)
        return fail(PROG, "baseline: %s", agave_context_last_error(ctx));
    return EXIT_OK;
}

/* ---- the per-image table ------------------------------------------------------------ */
static int table_create(image_table *t, size_t n, int figures)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    for (int c = 0; c < COLUMNS && (c == COL_DONE || figures); c++)
        if (!(t->col[c] = calloc(n > 0 ? n : 1, sizeof(double))))
            return fail(PROG, "out of memory for the figures of %zu images", n);
    return EXIT_OK;
}

static void table_free(image_table *t)
{
    for (int c = 0; c < COLUMNS; c++)
        free(t->col[c]);
}

/* Marks images [at, at + done) finished and zeroes the figures of [at + done,
 * at + k), which the library left NaN: the ranks' tables are added up. */
static void table_mark(image_table *t, size_t at, int done, int k)
{
    for (int j = 0; j < k; j++) {
        t->col[COL_DONE][at + (size_t)j] = j < done;
        for (int c = COL_ELBO; j >= done && c < COLUMNS && t->col[c]; c++)
            t->col[c][at + (size_t)j] = 0;
    }
}

/* The table as CSV, one row per finished image. */
static int write_table(agave_context *ctx, const image_table *t, const char *path,
                       const agave_dataset *test)
{
    textbuf b = {0};
    textbuf_printf(&b, "index,name,elbo_bpd,recon_bpd,kl_bpd,aux_bpd,iwae_bpd\n");
    for (size_t i = 0; i < t->n; i++) {
        if (!(t->col[COL_DONE][i] > 0))
            continue;
        textbuf_printf(&b, "%zu,", i);
        textbuf_csv_field(&b, agave_dataset_image_name(test, i));
        for (int c = COL_ELBO; c < COLUMNS; c++) {
            double v = t->col[c][i];
            if (isfinite(v))
                textbuf_printf(&b, ",%.6f", v);
            else
                textbuf_printf(&b, ",");   /* NaN or infinite: an empty field */
        }
        textbuf_printf(&b, "\n");
    }
    char err[512];
    int ok = !b.failed && write_file_atomic(ctx, path, b.data, b.len, err, sizeof err);
    textbuf_free(&b);
    if (!ok)
        return fail(PROG, "--per-image: %s", b.failed ? "out of memory" : err);
    return EXIT_OK;
}

/* ---- progress ----------------------------------------------------------------------- */
/* What the progress function sees of the run. */
typedef struct watch {
    progress line;
    const totals *t;
    size_t first, k, n;      /* the current call covers batch images [first, first + k) of n */
    int K;
    double started, last_line;
    double samples_before;   /* this rank's samples scored by the calls before this one */
    double calib_time, calib_samples;   /* at the first forward pass */
    int passes, estimated;
} watch;

/* The running time from this rank's rate (maybe_estimate); the ranks take
 * equal shares of each batch. */
static void print_estimate(watch *w, const agave_eval_progress *p, double samples)
{
    double now = clock_seconds();
    double per_image = (double)p->samples / (p->images > 0 ? p->images : 1);
    double rate = (samples - w->calib_samples) / (now - w->calib_time);
    double total = (double)w->n * per_image / dist_size();
    char all[32], left[32];
    format_duration(now - w->started + (total - samples) / rate, all, sizeof all);
    format_duration((total - samples) / rate, left, sizeof left);
    progress_end(&w->line);
    fprintf(stderr, PROG ": about %s in all, %s left, for %zu image%s x %.0f sample%s (%.1f "
                    "samples/s%s); Ctrl-C stops and reports the images finished so far\n",
            all, left, w->n, w->n == 1 ? "" : "s", per_image, per_image == 1 ? "" : "s", rate,
            dist_size() > 1 ? " on rank 0" : "");
    w->estimated = 1;
}

/* The rate is timed from the end of the second forward pass (the first two
 * also pay for the arena's growth), over two more passes or one second. */
static void maybe_estimate(watch *w, const agave_eval_progress *p)
{
    double now = clock_seconds(), samples = w->samples_before + (double)p->samples_done;
    if (w->estimated || dist_rank() > 0)
        return;
    if (++w->passes == 2) {
        w->calib_time = now, w->calib_samples = samples;
        return;
    }
    if (w->passes > 2 &&
        samples < (double)w->n * ((double)p->samples / p->images) / dist_size() &&
        (w->passes >= 4 || now - w->calib_time >= 1))
        print_estimate(w, p, samples);
}

/* fraction: of the current call. In a terminal the line is rewritten in
 * place; in a log a line every 30 s and after each call. */
static void show_progress(watch *w, double fraction, int call_done)
{
    if (dist_rank() > 0)
        return;
    double now = clock_seconds(), elapsed = now - w->started;
    double done = (double)w->first + fraction * (double)w->k;
    double rate = done / (elapsed > 0 ? elapsed : 1e-9);
    char eta[32], elbo[48] = "";
    format_duration(rate > 0 ? ((double)w->n - done) / rate : -1, eta, sizeof eta);
    if (w->t->n > 0)
        snprintf(elbo, sizeof elbo, "  ELBO %.4f bpd%s", w->t->elbo / (double)w->t->n,
                 w->K ? "" : " (1 sample)");
    int milestone = call_done || now - w->last_line >= 30;
    if (milestone)
        w->last_line = now;
    progress_update(&w->line, milestone, "evaluated %.0f/%zu images  %.2f img/s  ETA %s%s",
                    floor(done), w->n, rate, eta, elbo);
}

static int on_progress(const agave_eval_progress *p, void *user)
{
    watch *w = user;
    maybe_estimate(w, p);
    show_progress(w, p->samples > 0 ? (double)p->samples_done / (double)p->samples : 1, 0);
    return stop_signal_received() != 0;
}

/* ---- evaluation ----------------------------------------------------------------------- */
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

/* Options pointing the per-image figures at images [at, ...) of the table. */
static void options_for(agave_eval_options *eo, image_table *tab, size_t at, watch *w)
{
    agave_eval_options_init(eo);
    double **dst[COLUMNS] = {NULL, &eo->elbo_bpd, &eo->recon_bpd, &eo->kl_bpd, &eo->aux_bpd,
                             &eo->iwae_bpd};
    for (int c = COL_ELBO; c < COLUMNS; c++)
        *dst[c] = tab->col[c] ? tab->col[c] + at : NULL;
    eo->progress = on_progress;
    eo->progress_user = w;
}

/* Batch by batch until the end or a stop signal (in any rank); then the sums
 * and the table over the ranks. */
static int evaluate(agave_model *m, agave_context *ctx, const agave_dataset *test, size_t n,
                    const eval_opts *o, totals *t, image_table *tab)
{
    const uint8_t *pixels = agave_dataset_pixels(test);
    size_t D = (size_t)agave_dataset_channels(test) * agave_dataset_height(test) *
               agave_dataset_width(test);
    watch w;
    memset(&w, 0, sizeof w);
    progress_init(&w.line, stderr);
    w.t = t, w.n = n, w.K = (int)o->samples;
    w.started = w.last_line = clock_seconds();
    memset(t, 0, sizeof *t);
    for (size_t first = 0; first < n && !dist_any(stop_signal_received());
         first += (size_t)o->batch) {
        size_t k = n - first < (size_t)o->batch ? n - first : (size_t)o->batch;
        int lo, hi;   /* this rank's images [lo, hi) of the batch */
        dist_slice((int)k, &lo, &hi);
        w.first = first, w.k = k;
        agave_eval_options eo;
        options_for(&eo, tab, first + (size_t)lo, &w);
        agave_eval_stats s;
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        if ((dist_size() > 1 && agave_model_set_batch_slice(m, lo, (int64_t)k) != AGAVE_OK) ||
            agave_model_evaluate_scores(m, pixels + (first + (size_t)lo) * D, hi - lo,
                                        (int)o->samples, &eo, &s) != AGAVE_OK) {
            progress_end(&w.line);
            return fail(PROG, "%s", agave_context_last_error(ctx));
        }
        add_batch(t, &s);
        table_mark(tab, first + (size_t)lo, s.n_images, hi - lo);
        w.samples_before += (double)(hi - lo) * (o->samples > 0 ? (double)o->samples : 1);
        if (s.n_images == hi - lo)   /* else stopped: the stop's report follows */
            show_progress(&w, 1, 1);
    }
    progress_end(&w.line);
    /* The ranks' image-weighted sums make the whole test set's. */
    double sums[6] = {(double)t->n, t->elbo, t->recon, t->kl, t->aux, t->iwae};
    dist_sum_doubles(sums, 6);
    t->n = (long long)sums[0];
    t->elbo = sums[1], t->recon = sums[2], t->kl = sums[3], t->aux = sums[4], t->iwae = sums[5];
    for (int c = 0; c < COLUMNS; c++)
        if (tab->col[c] && n > 0)
            dist_sum_doubles(tab->col[c], (int)n);
    return EXIT_OK;
}

/* ---- reports -------------------------------------------------------------------------- */
/* What the JSON object and the summary line say besides the sums. */
typedef struct report_info {
    const eval_opts *o;
    agave_mode mode;
    long long step;
    size_t requested;
    double base;
    int complete;
    const char *weights;   /* "average" or "raw" */
} report_info;

static void format_json(textbuf *b, const totals *t, const report_info *r)
{
    const double n = (double)t->n;
    textbuf_printf(b, "{\"n_images\": %lld, \"elbo_bpd\": ", t->n);
    textbuf_json_number(b, t->elbo / n);
    textbuf_printf(b, ", \"recon_bpd\": ");
    textbuf_json_number(b, t->recon / n);
    textbuf_printf(b, ", \"kl_bpd\": ");
    textbuf_json_number(b, t->kl / n);
    textbuf_printf(b, ", \"aux_bpd\": ");
    textbuf_json_number(b, t->aux / n);
    textbuf_printf(b, ", \"iwae_bpd\": ");
    textbuf_json_number(b, t->iwae / n);
    textbuf_printf(b, ", \"iwae_samples\": %lld, \"baseline_bpd\": ", r->o->samples);
    textbuf_json_number(b, r->base);
    textbuf_printf(b, ", \"checkpoint\": ");
    textbuf_json_string(b, r->o->checkpoint);
    textbuf_printf(b, ", \"step\": %lld, \"seed\": %lld, \"data\": ", r->step, r->o->seed);
    textbuf_json_string(b, r->o->data);
    textbuf_printf(b, ", \"images_requested\": %zu, \"complete\": %s, \"weights\": ",
                   r->requested, r->complete ? "true" : "false");
    textbuf_json_string(b, r->weights);
    textbuf_printf(b, "}\n");
}

static void print_summary(FILE *f, const totals *t, const report_info *r)
{
    double n = (double)t->n;
    int K = (int)r->o->samples;
    fprintf(f, "%lld test images: ELBO %.4f bpd (%s %.4f + KL %.4f)", t->n, t->elbo / n,
            r->mode == AGAVE_MODE_VAE ? "reconstruction of y" : "PixelCNN", t->recon / n,
            t->kl / n);
    if (r->mode == AGAVE_MODE_PIXELCNN)
        fprintf(f, " [mode pixelcnn: exact NLL, no latent]");
    if (r->mode == AGAVE_MODE_VAE)
        fprintf(f, " [mode vae: bounds on the auxiliary image]");
    if (K)
        fprintf(f, ", IWAE_%d %.4f bpd", K, t->iwae / n);
    if (r->mode != AGAVE_MODE_PIXELCNN)
        fprintf(f, ", VAE bound on y %.4f bpd", t->aux / n);
    fprintf(f, "; histogram baseline %.4f bpd\n", r->base);
    fflush(f);
}

static int report(agave_context *ctx, const totals *t, const report_info *r,
                  const image_table *tab, const agave_dataset *test)
{
    const eval_opts *o = r->o;
    textbuf json = {0};
    format_json(&json, t, r);
    if (json.failed) {
        textbuf_free(&json);
        return fail(PROG, "out of memory");
    }
    int rc = EXIT_OK;
    char err[512];
    if (o->output && !write_file_atomic(ctx, o->output, json.data, json.len, err, sizeof err))
        rc = fail(PROG, "--output: %s", err);
    if (rc == EXIT_OK && o->per_image)
        rc = write_table(ctx, tab, o->per_image, test);
    if (rc == EXIT_OK && o->json) {
        fputs(json.data, stdout);
        fflush(stdout);
        print_summary(stderr, t, r);
    } else if (rc == EXIT_OK) {
        print_summary(stdout, t, r);
    }
    textbuf_free(&json);
    if (rc == EXIT_OK && ferror(stdout))
        rc = fail(PROG, "cannot write to stdout");
    return rc;
}

/* ---- the run -------------------------------------------------------------------------- */
static void print_header(const eval_opts *o, agave_context *ctx, agave_model *m,
                         const agave_config *cfg, const agave_dataset *test, size_t n,
                         double base, const char *source)
{
    fprintf(stderr, PROG ": %s, step %lld, mode %s, %s weights; %zu of %zu test images "
                     "from %s; IWAE K = %lld; %d thread%s\n",
            o->checkpoint, (long long)agave_model_step_count(m), agave_mode_name(cfg->mode),
            weights_name(m), n, agave_dataset_count(test), o->data, o->samples,
            agave_context_threads(ctx), agave_context_threads(ctx) == 1 ? "" : "s");
    if (dist_size() > 1)
        fprintf(stderr, PROG ": %d %s ranks share each batch of %lld images\n", dist_size(),
                dist_kind(), o->batch);
    fprintf(stderr, PROG ": histogram baseline %.4f bpd, fitted on %s\n", base, source);
}

/* The signal that stopped the run: this process's, or, when only another
 * rank was signalled, SIGTERM (what mpirun passes on to every rank). */
static int stopping_signal(void)
{
    return stop_signal_received() ? stop_signal_received() : SIGTERM;
}

/* After a stop signal: what was finished, and the baseline of those images.
 * *nothing is set when no image was. */
static int report_stopped(agave_context *ctx, const eval_opts *o, const agave_dataset *test,
                          size_t n, const image_table *tab, const totals *t, double *base,
                          int *nothing)
{
    const char *by = stop_signal_received() ? stop_signal_name(stop_signal_received())
                                            : "a signal to another rank";
    *nothing = t->n == 0;
    if (*nothing) {
        fprintf(stderr, PROG ": stopped by %s before any image was finished; nothing to "
                        "report\n", by);
        return EXIT_OK;
    }
    fprintf(stderr, PROG ": stopped by %s after %lld of %zu images; the figures are those of "
                    "the %lld finished images\n", by, t->n, n, t->n);
    size_t D = (size_t)agave_dataset_channels(test) * agave_dataset_height(test) *
               agave_dataset_width(test), m = 0;
    const uint8_t *pixels = agave_dataset_pixels(test);
    uint8_t *finished = malloc((size_t)t->n * D);   /* their pixels, gathered */
    if (!finished)
        return fail(PROG, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (tab->col[COL_DONE][i] > 0 && m < (size_t)t->n)
            memcpy(finished + D * m++, pixels + D * i, D);
    const char *source;
    int rc = baseline(ctx, o, test, finished, m, base, &source);
    free(finished);
    return rc;
}

static int run(const eval_opts *o, agave_context *ctx)
{
    agave_model *m = NULL;
    agave_dataset *test = NULL;
    agave_config cfg;
    totals t;
    image_table tab;
    memset(&tab, 0, sizeof tab);
    double base = 0;
    const char *source = "";
    int rc = load_checkpoint(PROG, ctx, o->checkpoint, &m);
    /* Loading restores the training run's random state; --seed decides here. */
    if (rc == EXIT_OK)
        agave_context_seed(ctx, (uint64_t)o->seed);
    if (rc == EXIT_OK)
        rc = choose_weights(PROG, m, o->weights, o->checkpoint);
    if (rc == EXIT_OK)
        rc = open_dataset(PROG, ctx, o->data, AGAVE_SPLIT_TEST, &o->images, &test);
    if (rc == EXIT_OK) {
        agave_model_get_config(m, &cfg);
        rc = check_image_shape(PROG, &cfg, test, o->data);
    }
    size_t n = test ? agave_dataset_count(test) : 0;
    if (o->limit > 0 && (size_t)o->limit < n)
        n = (size_t)o->limit;
    int root = dist_rank() == 0;
    if (rc == EXIT_OK)
        rc = table_create(&tab, n, o->per_image != NULL);
    if (rc == EXIT_OK && root)   /* only rank 0 reports it */
        rc = baseline(ctx, o, test, agave_dataset_pixels(test), n, &base, &source);
    rc = dist_agree(rc);   /* every rank has its model and data, or all stop */
    if (rc == EXIT_OK && root) {
        print_header(o, ctx, m, &cfg, test, n, base, source);
        stop_signals_set_message("\n" PROG ": stopping after this forward pass and reporting "
                                 "the images finished so far (signal again to quit at once)\n");
    }
    if (rc == EXIT_OK && (rc = evaluate(m, ctx, test, n, o, &t, &tab)) != EXIT_OK)
        rc = dist_abort(rc);   /* the other ranks may be waiting for this one's sums */
    /* Only a stop signal leaves images unfinished without an error. */
    int stopped = rc == EXIT_OK && t.n < (long long)n, nothing = 0;
    /* Without importance samples there is no IWAE figure: report the ELBO,
     * which is IWAE with one sample (docs/programs.md). */
    if (rc == EXIT_OK && o->samples == 0)
        t.iwae = t.elbo;
    if (rc == EXIT_OK && root && stopped)
        rc = report_stopped(ctx, o, test, n, &tab, &t, &base, &nothing);
    if (rc == EXIT_OK && root && !nothing) {
        report_info info = {o, cfg.mode, (long long)agave_model_step_count(m), n, base,
                            !stopped, weights_name(m)};
        rc = report(ctx, &t, &info, &tab, test);
    }
    if (rc == EXIT_OK && stopped)
        rc = 128 + stopping_signal();
    table_free(&tab);
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
        /* From here a stop signal is a request: heard while loading, it
         * stops before the evaluation; during it, after a forward pass. */
        stop_signals_install(NULL);
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
