/* agave-compress: lossless compression of images with a trained model.
 *
 *   agave-compress --checkpoint M.ckpt --data PATH [--limit N] --out F.agz
 *
 * Streams the test split of a data set (or one data file) through the
 * library's bits-back encoder (agave_codec_encoder_*) into memory, then
 * writes F.agz whole with the library's atomic writer (a compressed file is
 * a few hundred bytes an image). Progress goes to stderr,
 * one summary line to stdout. docs/codec.md describes the method and the
 * file; docs/programs.md the program. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "common/textbuf.h"

#define PROG "agave-compress"

typedef struct compress_opts {
    const char *checkpoint, *data, *out, *weights;
    long long limit, batch, chunk, latent_bits, threads;
    int no_image_crc;
} compress_opts;

static int parse_options(int argc, char **argv, compress_opts *o, cli_program *prog,
                         char *threads_text, size_t len)
{
    static const double BIG = 9.3e18;
    snprintf(threads_text, len, "the number of online CPUs, %d here", cpu_count());
    agave_codec_options defaults;
    agave_codec_options_init(&defaults);
    memset(o, 0, sizeof *o);
    o->batch = defaults.batch, o->chunk = defaults.chunk, o->latent_bits = defaults.latent_bits;
    o->threads = cpu_count();
    static char batch_text[16], chunk_text[16], bits_text[16];
    snprintf(batch_text, sizeof batch_text, "%d", defaults.batch);
    snprintf(chunk_text, sizeof chunk_text, "%d", defaults.chunk);
    snprintf(bits_text, sizeof bits_text, "%d", defaults.latent_bits);
    cli_option opts[] = {
        {"checkpoint", CLI_STRING, &o->checkpoint, "FILE",
         "the model (model.ckpt); decompressing needs the same one", NULL, 0, 0, 0},
        {"data", CLI_STRING, &o->data, "PATH",
         "data set directory (its test split is compressed) or one data file", NULL, 0, 0, 0},
        {"out", CLI_STRING, &o->out, "FILE", "the compressed file (F.agz), written atomically",
         NULL, 0, 0, 0},
        {"limit", CLI_INT, &o->limit, "N", "compress only the first N images (0: all)", "all",
         0, BIG, 0},
        {"batch", CLI_INT, &o->batch, "B", "images coded at once", batch_text, 1, 4096, 0},
        {"chunk", CLI_INT, &o->chunk, "N",
         "images per independently coded chunk: what memory is bounded by", chunk_text, 1,
         1 << 20, 0},
        {"latent-bits", CLI_INT, &o->latent_bits, "K",
         "each latent dimension in 2^K buckets of equal prior mass", bits_text, 2, 16, 0},
        {"no-image-crc", CLI_FLAG, &o->no_image_crc, NULL,
         "one CRC-32 per chunk instead of one per image (4 bytes less per image)", NULL, 0, 0, 0},
        {"weights", CLI_STRING, &o->weights, "average|raw",
         "the averaged parameters or the raw ones of the last training step; decompressing "
         "needs the same", "average when the checkpoint has it, else raw", 0, 0, 0},
        {"threads", CLI_INT, &o->threads, "T",
         "threads for the library's kernels; decompressing needs the same number", threads_text,
         1, 1024, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --checkpoint FILE --data PATH [--limit N] --out F.agz [options]";
    prog->summary =
        "Compresses images losslessly with a trained model: bits-back coding with rANS, each\n"
        "image costing about the model's negative ELBO. The images are the test split of a\n"
        "data set directory, or a data file. agave-decompress restores them exactly with\n"
        "the same checkpoint, library build, kind of CPU and thread count (docs/codec.md).";
    prog->epilog = "exit status: 0 done, 2 error (one line on stderr), 128+signal when stopped "
                   "by SIGINT/SIGTERM/SIGHUP (no file is left).";
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
    if (!o->out)
        return fail(PROG, "--out FILE is required (see " PROG " --help)");
    if (o->chunk < o->batch)
        return fail(PROG, "--chunk %lld is smaller than --batch %lld", o->chunk, o->batch);
    char err[512];
    if (!output_dir_ok(o->out, err, sizeof err))
        return fail(PROG, "--out %s", err);
    return -1;
}

/* The encoder's output is gathered in memory. */
static agave_status write_out(const void *data, size_t len, void *user)
{
    textbuf *b = user;
    textbuf_append(b, data, len);
    return b->failed ? AGAVE_ERR_NOMEM : AGAVE_OK;
}

typedef struct watch {
    progress line;
    double started;
    double dims;                         /* dimensions of one image */
    const agave_codec_encoder *const *enc;
} watch;

/* Progress after every batch, with the code length so far; a stop signal
 * ends the work. */
static int on_progress(int64_t done, int64_t total, void *user)
{
    watch *w = user;
    double elapsed = clock_seconds() - w->started, rate = (double)done / (elapsed > 0 ? elapsed : 1);
    char eta[32];
    format_duration(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    agave_codec_stats s = {.struct_size = sizeof s};
    double bpd = 0;
    if (*w->enc && agave_codec_encoder_stats(*w->enc, &s) == AGAVE_OK && done > 0)
        bpd = (s.pixel_bits + s.latent_prior_bits - s.latent_posterior_bits + s.initial_bits) /
              ((double)done * w->dims);
    progress_update(&w->line, done == total,
                    "compressed %lld/%lld images  %.1f img/s  ETA %s  %.4f bits/dim",
                    (long long)done, (long long)total, rate, eta, bpd);
    return stop_signal_received() != 0;
}

static void print_summary(const agave_codec_stats *s, size_t n, size_t D, const char *out)
{
    double dims = (double)n * (double)D;
    double net = s->pixel_bits + s->latent_prior_bits - s->latent_posterior_bits;
    printf("%zu images into %s: %llu bytes, %.4f bits/dim (pixels %.4f [%.4f unquantised] + "
           "latent prior %.4f - bits back %.4f = %.4f, initial bits %.4f, container %.4f)\n",
           n, out, (unsigned long long)s->bytes, 8.0 * (double)s->bytes / dims,
           s->pixel_bits / dims, s->pixel_model_bits / dims, s->latent_prior_bits / dims,
           s->latent_posterior_bits / dims,
           net / dims, s->initial_bits / dims,
           (8.0 * (double)s->bytes - net - s->initial_bits) / dims);
    fflush(stdout);
}

static int compress(agave_model *m, agave_context *ctx, const agave_dataset *ds, size_t n,
                    const compress_opts *o)
{
    const size_t D = (size_t)agave_dataset_channels(ds) * agave_dataset_height(ds) *
                     agave_dataset_width(ds);
    char err[512];
    textbuf file = {0};
    agave_codec_encoder *enc = NULL;
    watch w = {.started = clock_seconds(), .dims = (double)D, .enc = (const agave_codec_encoder *const *)&enc};
    progress_init(&w.line, stderr);
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.batch = (int)o->batch, opt.chunk = (int)o->chunk, opt.latent_bits = (int)o->latent_bits;
    opt.image_crc = !o->no_image_crc;
    opt.progress = on_progress, opt.progress_user = &w;
    agave_status st = agave_codec_encoder_create(m, &opt, (int64_t)n, write_out, &file, &enc);
    const uint8_t *pixels = agave_dataset_pixels(ds);
    for (size_t at = 0; st == AGAVE_OK && at < n; at += 4096) {
        int k = n - at < 4096 ? (int)(n - at) : 4096;
        st = agave_codec_encoder_add(enc, pixels + at * D, k);
    }
    if (st == AGAVE_OK)
        st = agave_codec_encoder_finish(enc);
    progress_end(&w.line);
    agave_codec_stats s = {.struct_size = sizeof s};
    if (st == AGAVE_OK)
        st = agave_codec_encoder_stats(enc, &s);
    int rc = EXIT_OK;
    if (st == AGAVE_ERR_INTERRUPTED && stop_signal_received())
        rc = 128 + stop_signal_received();
    else if (st != AGAVE_OK)
        rc = fail(PROG, "%s", file.failed ? "out of memory for the compressed file"
                                          : agave_context_last_error(ctx));
    agave_codec_encoder_free(enc);
    if (rc == EXIT_OK && !write_file_atomic(ctx, o->out, file.data, file.len, err, sizeof err))
        rc = fail(PROG, "%s", err);
    textbuf_free(&file);
    if (rc == EXIT_OK)
        print_summary(&s, n, D, o->out);
    return rc;
}

static int run(const compress_opts *o, agave_context *ctx)
{
    agave_model *m = NULL;
    agave_dataset *ds = NULL;
    agave_config cfg;
    int rc = load_checkpoint(PROG, ctx, o->checkpoint, &m);
    if (rc == EXIT_OK)
        rc = choose_weights(PROG, m, o->weights, o->checkpoint);
    if (rc == EXIT_OK)
        rc = open_dataset(PROG, ctx, o->data, AGAVE_SPLIT_TEST, NULL, &ds);
    if (rc == EXIT_OK) {
        agave_model_get_config(m, &cfg);
        rc = check_image_shape(PROG, &cfg, ds, o->data);
    }
    size_t n = ds ? agave_dataset_count(ds) : 0;
    if (o->limit > 0 && (size_t)o->limit < n)
        n = (size_t)o->limit;
    if (rc == EXIT_OK) {
        fprintf(stderr, PROG ": %s, step %lld, mode %s, %s weights; %zu of %zu images from %s; "
                        "batch %lld, %d thread%s\n",
                o->checkpoint, (long long)agave_model_step_count(m), agave_mode_name(cfg.mode),
                weights_name(m), n,
                agave_dataset_count(ds), o->data, o->batch, agave_context_threads(ctx),
                agave_context_threads(ctx) == 1 ? "" : "s");
        stop_signals_set_message(PROG ": stopping; no file will be written");
        rc = compress(m, ctx, ds, n, o);
    }
    agave_dataset_free(ds);
    agave_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    compress_opts o;
    cli_program prog;
    char threads_text[96];
    stop_signals_install(NULL);
    int rc = parse_options(argc, argv, &o, &prog, threads_text, sizeof threads_text);
    if (rc < 0) {
        agave_context *ctx = NULL;
        rc = open_context(PROG, 1, (int)o.threads, &ctx);
        if (rc == EXIT_OK)
            rc = run(&o, ctx);
        agave_context_free(ctx);
    }
    cli_free(&prog);
    free(prog.options);
    if (rc == EXIT_OK && stop_signal_received())
        rc = 128 + stop_signal_received();
    return rc;
}
