/* agave-decompress: restores the images of an agave-compress file.
 *
 *   agave-decompress --checkpoint M.ckpt --out DIR F.agz      (DIR/000000.png, ...)
 *   agave-decompress --checkpoint M.ckpt --idx FILE F.agz     (one IDX file)
 *
 * Reads F.agz piece by piece through the library's decoder
 * (agave_codec_decoder_*), which checks every image before handing it out;
 * the thread count is the file's unless --threads says otherwise. Progress
 * goes to stderr, one summary line to stdout. docs/codec.md, docs/programs.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "common/textbuf.h"

#define PROG "agave-decompress"
#define READ_BATCH 256

typedef struct decompress_opts {
    const char *checkpoint, *out, *idx, *file, *weights;
    long long threads;
} decompress_opts;

static int parse_options(int argc, char **argv, decompress_opts *o, cli_program *prog)
{
    memset(o, 0, sizeof *o);
    cli_option opts[] = {
        {"checkpoint", CLI_STRING, &o->checkpoint, "FILE",
         "the model the file was compressed with", NULL, 0, 0, 0},
        {"out", CLI_STRING, &o->out, "DIR",
         "write the images as DIR/000000.png, DIR/000001.png, ... (DIR is created)", NULL, 0, 0,
         0},
        {"idx", CLI_STRING, &o->idx, "FILE",
         "write the images as one IDX file instead (3-D for grey images, as MNIST; 4-D n x C x "
         "H x W for colour), atomically", NULL, 0, 0, 0},
        {"weights", CLI_STRING, &o->weights, "average|raw",
         "the parameters the file was compressed with (agave-compress --weights)",
         "average when the checkpoint has it, else raw", 0, 0, 0},
        {"threads", CLI_INT, &o->threads, "T",
         "threads for the library's kernels; only the file's own count decodes it", "the file's",
         1, 1024, 0},
        {"F.agz", CLI_OPERAND, &o->file, NULL, "the compressed file (from agave-compress)", NULL,
         0, 0, 0},
    };
    prog->name = PROG;
    prog->usage = PROG " --checkpoint FILE (--out DIR | --idx FILE) F.agz [options]";
    prog->summary =
        "Restores the images of a file written by agave-compress, exactly, with the model it\n"
        "was compressed with. Decoding recomputes the model's probabilities, so it needs the\n"
        "same checkpoint, library build, kind of CPU and thread count as compressing; anything\n"
        "else, and any damage to the file, is refused with an error (docs/codec.md).";
    prog->epilog = "exit status: 0 done, 2 error (one line on stderr), 128+signal when stopped "
                   "by SIGINT/SIGTERM/SIGHUP.";
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
    if (!o->file)
        return fail(PROG, "the compressed file F.agz is required (see " PROG " --help)");
    if (!o->out == !o->idx)
        return fail(PROG, "give one of --out DIR and --idx FILE (see " PROG " --help)");
    char err[512];
    if (o->idx && !output_dir_ok(o->idx, err, sizeof err))
        return fail(PROG, "--idx %s", err);
    if (o->out && path_exists(o->out) && !is_directory(o->out))
        return fail(PROG, "--out %s exists and is not a directory", o->out);
    return -1;
}

static agave_status read_in(void *data, size_t len, size_t *got, void *user)
{
    FILE *f = user;
    *got = fread(data, 1, len, f);
    return ferror(f) ? AGAVE_ERR_IO : AGAVE_OK;
}

/* The thread count the file was written with, from its header. */
static int file_threads(agave_context *ctx, FILE *f, const char *path, int *threads)
{
    uint8_t head[1024];
    size_t n = fread(head, 1, sizeof head, f);
    agave_codec_info info = {.struct_size = sizeof info};
    if (ferror(f))
        return fail(PROG, "cannot read %s", path);
    if (agave_codec_peek(ctx, head, n, &info) != AGAVE_OK)
        return fail(PROG, "%s: %s", path, agave_context_last_error(ctx));
    rewind(f);
    *threads = info.threads;
    return EXIT_OK;
}

typedef struct watch {
    progress line;
    double started;
} watch;

static int on_progress(int64_t done, int64_t total, void *user)
{
    watch *w = user;
    double elapsed = clock_seconds() - w->started, rate = (double)done / (elapsed > 0 ? elapsed : 1);
    char eta[32];
    format_duration(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    progress_update(&w->line, done == total, "decompressed %lld/%lld images  %.1f img/s  ETA %s",
                    (long long)done, (long long)total, rate, eta);
    return stop_signal_received() != 0;
}

/* Where the images go: PNG files in a directory, or one IDX file. */
typedef struct sink {
    const decompress_opts *o;
    agave_context *ctx;
    agave_codec_info info;
    textbuf idx;             /* the IDX file, written whole at the end */
    long long written;
} sink;

/* An IDX file is gathered in memory and written by the library's atomic
 * writer once every image is checked; a directory is made only when the
 * first checked images arrive. Either way a file refused at its first chunk
 * leaves nothing behind. */
static int sink_open(sink *s)
{
    if (s->o->out)
        return EXIT_OK;
    /* IDX: magic 0x0000080D (unsigned bytes, D dimensions), then each size, big-endian */
    const agave_codec_info *i = &s->info;
    uint32_t dims[4] = {(uint32_t)i->n_images, (uint32_t)i->C, (uint32_t)i->H, (uint32_t)i->W};
    int nd = i->C == 1 ? 3 : 4;
    if (nd == 3)
        dims[1] = dims[2], dims[2] = dims[3];
    uint8_t head[20] = {0, 0, 8, (uint8_t)nd};
    for (int d = 0; d < nd; d++)
        for (int b = 0; b < 4; b++)
            head[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    textbuf_append(&s->idx, head, 4 + 4 * (size_t)nd);
    return s->idx.failed ? fail(PROG, "out of memory") : EXIT_OK;
}

static int sink_put(sink *s, const uint8_t *x, int n)
{
    const agave_codec_info *i = &s->info;
    size_t D = (size_t)i->C * i->H * i->W;
    if (s->o->idx) {
        textbuf_append(&s->idx, x, (size_t)n * D);
        if (s->idx.failed)
            return fail(PROG, "out of memory for %s", s->o->idx);
        s->written += n;
        return EXIT_OK;
    }
    char err[512];
    if (s->written == 0 && n > 0 && !make_dirs(s->o->out, err, sizeof err))
        return fail(PROG, "--out %s", err);
    agave_grid_options g;
    agave_grid_options_init(&g);
    g.gap = 0;
    for (int k = 0; k < n; k++, s->written++) {
        char name[32];
        snprintf(name, sizeof name, "%06lld.png", s->written);
        char *path = path_join(s->o->out, name);
        agave_status st = path ? agave_image_grid_write(s->ctx, path, x + (size_t)k * D, 1, i->C,
                                                        i->H, i->W, 1, &g)
                               : AGAVE_ERR_NOMEM;
        free(path);
        if (st != AGAVE_OK)
            return fail(PROG, "%s", agave_context_last_error(s->ctx));
    }
    return EXIT_OK;
}

static int decompress(agave_model *m, agave_context *ctx, FILE *f, const decompress_opts *o)
{
    watch w = {.started = clock_seconds()};
    progress_init(&w.line, stderr);
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.progress = on_progress, opt.progress_user = &w;
    agave_codec_decoder *dec = NULL;
    sink s = {.o = o, .ctx = ctx, .info = {.struct_size = sizeof s.info}};
    if (agave_codec_decoder_create(m, &opt, read_in, f, &dec) != AGAVE_OK)
        return fail(PROG, "%s: %s", o->file, agave_context_last_error(ctx));
    agave_codec_decoder_info(dec, &s.info);
    size_t D = (size_t)s.info.C * s.info.H * s.info.W;
    uint8_t *x = malloc(READ_BATCH * D);
    int rc = x ? sink_open(&s) : fail(PROG, "out of memory");
    int got = 1;
    while (rc == EXIT_OK && got > 0) {
        agave_status st = agave_codec_decoder_read(dec, x, READ_BATCH, &got);
        if (st == AGAVE_ERR_INTERRUPTED && stop_signal_received())
            rc = 128 + stop_signal_received();
        else if (st != AGAVE_OK)
            rc = fail(PROG, "%s: %s (%lld images written)", o->file, agave_context_last_error(ctx),
                      s.written);
        else
            rc = sink_put(&s, x, got);
    }
    progress_end(&w.line);
    char err[512];
    if (o->out && rc == EXIT_OK && s.written == 0 && !make_dirs(o->out, err, sizeof err))
        rc = fail(PROG, "--out %s", err);   /* a file of no images: an empty directory */
    if (o->idx && rc == EXIT_OK &&
        !write_file_atomic(ctx, o->idx, s.idx.data, s.idx.len, err, sizeof err))
        rc = fail(PROG, "%s", err);
    textbuf_free(&s.idx);
    if (rc == EXIT_OK)
        printf("%lld images (%dx%dx%d) from %s into %s\n", s.written, s.info.C, s.info.H,
               s.info.W, o->file, o->out ? o->out : o->idx);
    free(x);
    agave_codec_decoder_free(dec);
    return rc;
}

static int run(const decompress_opts *o)
{
    char err[512];
    int fd = open_input_file(o->file, err, sizeof err);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        if (fd >= 0)
            close(fd);
        return fail(PROG, "%s", fd < 0 ? err : "out of memory");
    }
    agave_context *ctx = NULL;
    agave_model *m = NULL;
    int threads = (int)o->threads;
    int rc = open_context(PROG, 1, 1, &ctx);
    if (rc == EXIT_OK && !o->threads)
        rc = file_threads(ctx, f, o->file, &threads);
    if (rc == EXIT_OK && agave_context_set_threads(ctx, threads) != AGAVE_OK)
        rc = fail(PROG, "%d threads: %s", threads, agave_context_last_error(ctx));
    if (rc == EXIT_OK)
        rc = load_checkpoint(PROG, ctx, o->checkpoint, &m);
    if (rc == EXIT_OK)
        rc = choose_weights(PROG, m, o->weights, o->checkpoint);
    if (rc == EXIT_OK) {
        stop_signals_set_message(PROG ": stopping");
        rc = decompress(m, ctx, f, o);
    }
    agave_model_free(m);
    agave_context_free(ctx);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    decompress_opts o;
    cli_program prog;
    stop_signals_install(NULL);
    int rc = parse_options(argc, argv, &o, &prog);
    if (rc < 0)
        rc = run(&o);
    cli_free(&prog);
    free(prog.options);
    if (rc == EXIT_OK && stop_signal_received())
        rc = 128 + stop_signal_received();
    return rc;
}
