/* agave-train: trains an AGAVE model on a data set's training split.
 *
 *   agave-train --config NAME [--set key=value]... --data PATH [--steps N | --minutes M]
 *               [--batch B] [--seed S] --out DIR [--resume]
 *
 * Writes DIR/model.ckpt (every --checkpoint-every steps, at the end, and on
 * SIGINT/SIGTERM/SIGHUP), DIR/train.csv (one row every --log-every steps) and
 * the data order's position in the checkpoint (agave_model_set_run_state, so
 * that --resume sees exactly the batches an uninterrupted run would; a run
 * directory of an older version keeps it in DIR/train.state, which is read
 * on --resume and removed after the next checkpoint). The program
 * is argument handling and progress output around agave_model_train_step;
 * docs/programs.md describes the options, the files and the exit statuses.
 *
 * Built with `make MPI=1` (build-mpi/bin/agave-train) and run under mpirun,
 * the ranks share each batch of --batch images (dist.h): every rank reads the
 * same batch from the same data order and trains on its slice, one
 * MPI_Allreduce per step sums the gradients inside the library's step
 * (agave_model_set_grad_reducer), and rank 0 alone writes the files. The
 * files do not depend on the number of ranks, so a run resumes with any. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "common/legacy_state.h"

#define PROG "agave-train"
#define CSV_HEADER                                                                        \
    "step,images_per_s,train_bpd,pixelcnn_bpd,aux_bpd,kl_bpd,test_elbo_bpd,test_kl_bpd,"   \
    "test_aux_bpd,elapsed_s,epoch,lr,grad_norm"
/* The header of libagave 0.1's train.csv: a log that starts with it is
 * migrated on --resume (its rows get empty new columns). */
#define CSV_HEADER_V1 "step,images_per_s,train_bpd,pixelcnn_bpd,aux_bpd,kl_bpd"
#define CSV_NEW_COLUMNS 7
/* Images per agave_model_evaluate call of --eval-every, and the seed of its z
 * draws: agave-eval's defaults, so that its --samples 0 --limit N figures
 * are the same. */
#define EVAL_CHUNK 100
#define EVAL_SEED 1
#define SAMPLE_COUNT 16
#define DEFAULT_STEPS 1000

typedef struct train_opts {
    const char *config, *data, *out, *precision;
    cli_list sets;
    long long steps, batch, seed, threads, checkpoint_every, log_every;
    long long eval_every, eval_images, sample_every;
    double minutes, memory_limit;   /* memory_limit in MiB, 0: none */
    int resume, force;
    data_opts images;               /* --resize, --crop, --test-percent */
} train_opts;

/* Where the data order stood when a checkpoint was written. */
typedef struct position {
    long long step, rejected;   /* the model's counts at that checkpoint */
    uint64_t epoch, index;      /* agave_batcher_position */
} position;

/* Running sums over the current logging interval. */
typedef struct interval {
    int good;                  /* applied steps */
    long long images;          /* images of every step, rejected ones too */
    double seconds;            /* time in batches and steps */
    double loss, pixelcnn, aux, kl, grad_norm;
    double lr;                 /* the learning rate of the last applied step */
} interval;

/* Held-out figures of one --eval-every evaluation, in bpd. */
typedef struct heldout {
    double elbo, kl, aux;
} heldout;

typedef struct trainer {
    train_opts *o;
    agave_context *ctx;
    agave_dataset *ds;
    agave_batcher *batcher;
    agave_model *model;
    agave_config cfg;
    char *ckpt_path, *csv_path, *state_path;   /* state_path: a pre-1.0 run's train.state */
    int legacy_state;            /* train.state was read: remove it after the next save */
    FILE *csv;
    uint8_t *x;                  /* the whole batch (every rank reads it) */
    int batch;
    int first, last;             /* this rank's images [first, last) of each batch */
    long long target_steps;      /* 0: no step budget */
    double started, deadline;    /* deadline 0: no time budget */
    long long steps_this_run;     /* applied steps in this invocation, for the ETA */
    double train_seconds;
    interval iv;
    double shown[5];             /* the last logged averages: img/s, loss, pcnn, aux, kl */
    position saved;              /* the last checkpoint written or loaded */
    int have_saved;
    progress line;
    double step_mib;             /* agave_config_estimate_bytes at the batch, in MiB */
    int lock_fd;                 /* holds DIR/train.lock; -1 before open_csv */
    char settings_note[1024];    /* what DIR/settings.log gets for this invocation */
    double elapsed_before;       /* elapsed_s of the log's last row kept on --resume */
    uint8_t *eval_x;             /* the first --eval-images test images, or NULL */
    int eval_n;
    char *samples_dir;           /* DIR/samples, for --sample-every */
} trainer;

/* ---- options -------------------------------------------------------------------- */
/* The machine's CPUs, shared by the ranks that run on it. */
static int default_threads(void)
{
    int n = cpu_count() / dist_local_size();
    return n > 0 ? n : 1;
}

/* --help texts made at run time: the thread default, and the library's lists
 * of named configurations and keys. */
typedef struct help_texts {
    char threads[160], config[512], set[512];
} help_texts;

static cli_option *train_options(train_opts *o, help_texts *h, int *n)
{
    if (dist_local_size() > 1)
        snprintf(h->threads, sizeof h->threads, "the online CPUs shared by the %d ranks on this "
                 "machine, %d here; on --resume, the run's", dist_local_size(), default_threads());
    else
        snprintf(h->threads, sizeof h->threads, "the number of online CPUs, %d here; on --resume, "
                 "the run's", cpu_count());
    char list[256];
    list_presets(list, sizeof list);
    snprintf(h->config, sizeof h->config, "named configuration: %s (docs/model.md); optional "
             "with --resume", list);
    list_keys(list, sizeof list);
    snprintf(h->set, sizeof h->set, "set one configuration key (%.300s; docs/model.md); "
             "repeatable; on --resume only the training keys (mode among agave, vae and naive)",
             list);
    static const double BIG = 9.3e18;
    cli_option opts[] = {
        {"config", CLI_STRING, &o->config, "NAME", h->config, NULL, 0, 0, 0},
        {"set", CLI_LIST, &o->sets, "KEY=VALUE", h->set, NULL, 0, 0, 0},
        {"data", CLI_STRING, &o->data, "PATH",
         "data set directory (CIFAR-10 batches, IDX files or image files) or one file; its "
         "training split is used", NULL, 0, 0, 0},
        DATA_OPTIONS(&o->images),
        {"out", CLI_STRING, &o->out, "DIR",
         "output directory, created if missing: model.ckpt, train.csv, settings.log", NULL, 0, 0,
         0},
        {"steps", CLI_INT, &o->steps, "N",
         "train until the model has made N steps in total (a resumed run continues to N)",
         "1000 unless --minutes is given", 1, BIG, 0},
        {"minutes", CLI_DOUBLE, &o->minutes, "M",
         "stop after M minutes of training in this run (with --steps: whichever comes first)",
         "no time limit", 1e-3, 1e7, 0},
        {"memory-limit", CLI_DOUBLE, &o->memory_limit, "MIB",
         "refuse, before allocating, a model or batch whose training step would need more than "
         "MIB mebibytes (the library's estimate, printed at start)", "no limit", 1, 1e9, 0},
        {"batch", CLI_INT, &o->batch, "B",
         "images per training step (under mpirun: in all, shared by the ranks)",
         "16; on --resume, the run's", 1, AGAVE_RUN_BATCH_MAX, 0},
        {"seed", CLI_INT, &o->seed, "S",
         "seed of the data order, the initial weights, dropout and z samples",
         "1; on --resume, the run's", 0, BIG, 0},
        {"threads", CLI_INT, &o->threads, "T",
         "threads for the library's kernels; results are reproducible for a given seed and "
         "thread count", h->threads, 1, AGAVE_RUN_THREADS_MAX, 0},
        {"precision", CLI_STRING, &o->precision, "P",
         "arithmetic of the matrix products: fp32, or bf16 (bfloat16 factors, float32 sums "
         "and weights; faster on CPUs with AVX-512 BF16, refused on others; docs/performance.md "
         "says what it changes)", "fp32", 0, 0, 0},
        {"checkpoint-every", CLI_INT, &o->checkpoint_every, "N",
         "also write the checkpoint every N steps (0: only at the end and when stopped)", "500",
         0, BIG, 0},
        {"log-every", CLI_INT, &o->log_every, "N",
         "one train.csv row (and, when stderr is not a terminal, one progress line) every N "
         "steps", "10", 1, BIG, 0},
        {"eval-every", CLI_INT, &o->eval_every, "N",
         "every N steps (and at the end), evaluate the held-out ELBO, KL and auxiliary bound "
         "on the first --eval-images test images with the averaged parameters, in train.csv's "
         "test_* columns (0: never)", "0", 0, BIG, 0},
        {"eval-images", CLI_INT, &o->eval_images, "N",
         "test images of each --eval-every evaluation (the data set's test split)", "500", 1,
         1 << 20, 0},
        {"sample-every", CLI_INT, &o->sample_every, "N",
         "every N steps, write DIR/samples/step-NNNNNN.png: 16 samples, f(z) beside the "
         "PixelCNN sample, the same z and seed each time (0: never)", "0", 0, BIG, 0},
        {"resume", CLI_FLAG, &o->resume, NULL,
         "continue the run in DIR: its checkpoint, configuration, data order and log", NULL, 0, 0,
         0},
        {"force", CLI_FLAG, &o->force, NULL,
         "start a new run even if DIR already holds a checkpoint (it is overwritten)", NULL, 0, 0,
         0},
    };
    cli_option *copy = malloc(sizeof opts);
    if (copy)
        memcpy(copy, opts, sizeof opts);
    *n = copy ? (int)(sizeof opts / sizeof opts[0]) : 0;
    return copy;
}

/* --precision: fp32 (also when not given) or bf16. */
static int set_precision(agave_context *ctx, const char *name)
{
    agave_precision p = AGAVE_PRECISION_FP32;
    if (name && !strcmp(name, "bf16"))
        p = AGAVE_PRECISION_BF16;
    else if (name && strcmp(name, "fp32"))
        return fail(PROG, "--precision %s: expected fp32 or bf16", name);
    if (agave_context_set_precision(ctx, p) != AGAVE_OK)
        return fail(PROG, "--precision %s: %s", name, agave_context_last_error(ctx));
    return EXIT_OK;
}

static int parse_options(int argc, char **argv, train_opts *o, cli_program *prog,
                         help_texts *h)
{
    memset(o, 0, sizeof *o);
    data_opts_init(&o->images);
    o->steps = DEFAULT_STEPS, o->batch = 16, o->seed = 1, o->threads = default_threads();
    o->checkpoint_every = 500, o->log_every = 10, o->eval_images = 500;
    prog->name = PROG;
    prog->usage = PROG " --config NAME [--set key=value]... --data PATH [--steps N | --minutes M]\n"
                       "                   [--batch B] [--seed S] --out DIR [--resume] [options]";
    prog->summary =
        "Trains an AGAVE model (VAE + conditional PixelCNN++, Lucas & Verbeek 2018) on the\n"
        "training split of a data set. Progress goes to stderr: step, images/s, ETA and the\n"
        "running train bits per dimension with its PixelCNN, auxiliary and KL terms.";
    prog->epilog =
        "files: DIR/model.ckpt (checkpoint, with the data order's position for --resume),\n"
        "       DIR/train.csv (header " CSV_HEADER "),\n"
        "       DIR/settings.log (the settings and what each --resume changed),\n"
        "       DIR/samples/ (--sample-every).\n"
        "SIGINT, SIGTERM and SIGHUP stop training after the current step: the checkpoint is\n"
        "written and the program exits with 128 + the signal number (130 for Ctrl-C);\n"
        "a second signal quits at once, leaving the previous checkpoint. A signal ignored at\n"
        "start (nohup's SIGHUP) stays ignored. One agave-train per DIR (DIR/train.lock).\n"
        "exit status: 0 budget reached, 2 error (one line on stderr), 3 training diverged\n"
        "(too many non-finite steps in a row; the last checkpoint is kept), 130/143/129 stopped.";
    prog->options = train_options(o, h, &prog->n_options);
    if (!prog->options)
        return fail(PROG, "out of memory");
    int rc = cli_parse(prog, argc, argv);
    if (rc >= 0)
        return rc;
    if (!o->data)
        return fail(PROG, "--data PATH is required (see " PROG " --help)");
    if (!o->out)
        return fail(PROG, "--out DIR is required (see " PROG " --help)");
    if (!o->config && !o->resume) {
        char presets[256];
        list_presets(presets, sizeof presets);
        return fail(PROG, "--config NAME is required (%s)", presets);
    }
    if (o->resume && o->force)
        return fail(PROG, "--resume and --force contradict each other");
    if (cli_find(prog, "minutes")->given && !cli_find(prog, "steps")->given)
        o->steps = 0;   /* a time budget alone: no step limit */
    return -1;
}

static int given(const cli_program *prog, const char *name)
{
    const cli_option *opt = cli_find(prog, name);
    return opt && opt->given;
}

/* ---- the run state -------------------------------------------------------------- */
/* The stored run state of a resumed run: the checkpoint's, else (a run
 * directory of libagave before 1.0) DIR/train.state's, which the library then
 * holds to the command line's limits (agave_model_set_run_state). *found 0:
 * neither has one; *have_position 0: no data position for this checkpoint. */
static int stored_run_state(trainer *t, agave_run_state *s, int *found, int *have_position)
{
    *found = *have_position = 0;
    s->struct_size = sizeof *s;
    if (agave_model_run_state(t->model, s) == AGAVE_OK) {
        *found = *have_position = 1;
        return EXIT_OK;
    }
    char err[512];
    int have_settings;
    int rc = legacy_state_read(t->state_path, agave_model_step_count(t->model),
                               agave_model_rejected_count(t->model), s, &have_settings, err,
                               sizeof err);
    if (rc < 0)
        return fail(PROG, "%s is damaged (%s); delete it to derive the data position from the "
                    "step count", t->state_path, err);
    if (!have_settings)
        return EXIT_OK;
    if (agave_model_set_run_state(t->model, s) != AGAVE_OK)
        return fail(PROG, "%s holds an impossible run state (%s); delete it to derive the data "
                    "position from the step count", t->state_path,
                    agave_context_last_error(t->ctx));
    t->legacy_state = 1;
    *found = 1;
    *have_position = rc == 1;
    return EXIT_OK;
}

/* ---- configuration ---------------------------------------------------------------- */
/* Applies one "key=value" to cfg. */
static int apply_set(agave_config *cfg, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return fail(PROG, "--set '%s': expected KEY=VALUE, e.g. --set lr=0.001", kv);
    char key[64], keys[384];
    size_t n = (size_t)(eq - kv);
    if (n >= sizeof key)
        n = sizeof key - 1;   /* too long for any key: refused as unknown below */
    memcpy(key, kv, n);
    key[n] = '\0';
    agave_status st = agave_config_set(cfg, key, eq + 1);
    if (st == AGAVE_OK)
        return EXIT_OK;
    if (st == AGAVE_ERR_UNKNOWN_KEY) {
        list_keys(keys, sizeof keys);
        return fail(PROG, "--set %s: unknown key '%s' (keys: %s)", kv, key, keys);
    }
    agave_config_key k = {.struct_size = sizeof k};
    agave_config_key_info(agave_config_key_index(key), &k);
    return fail(PROG, "--set %s: '%s' is not a valid value for %s (%s: %s)", kv, eq + 1, key,
                k.description ? k.description : key, k.range ? k.range : "?");
}

/* The named configuration, the image shape of the data (unless --set C/H/W
 * says otherwise), then the overrides in order. */
static int requested_config(const train_opts *o, const agave_dataset *ds, agave_config *cfg)
{
    if (agave_config_init(cfg, o->config) != AGAVE_OK) {
        char presets[256];
        list_presets(presets, sizeof presets);
        return fail(PROG, "--config %s: unknown configuration (%s)", o->config, presets);
    }
    cfg->C = agave_dataset_channels(ds);
    cfg->H = agave_dataset_height(ds);
    cfg->W = agave_dataset_width(ds);
    for (int i = 0; i < o->sets.n; i++)
        if (apply_set(cfg, o->sets.items[i]) != EXIT_OK)
            return EXIT_ERROR;
    char msg[256];
    if (agave_config_validate(cfg, msg, sizeof msg) != AGAVE_OK)
        return fail(PROG, "invalid configuration: %s", msg);
    return check_image_shape(PROG, cfg, ds, o->data);
}

/* Appends ", " (unless first) and one formatted item to buf. */
static void append_item(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append_item(char *buf, size_t len, const char *fmt, ...)
{
    size_t n = strlen(buf);
    if (n && n + 2 < len)
        memcpy(buf + n, ", ", 3), n += 2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, len - n, fmt, ap);
    va_end(ap);
}

/* "key old -> new, ..." for the training keys whose values differ between a
 * and b (what agave_model_update_config changes); "" if none. */
static void settings_changes(const agave_config *a, const agave_config *b, char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; i < agave_config_key_count(); i++) {
        agave_config_key k = {.struct_size = sizeof k};
        char va[AGAVE_CONFIG_VALUE_MAX], vb[AGAVE_CONFIG_VALUE_MAX];
        if (agave_config_key_info(i, &k) != AGAVE_OK || !(k.flags & AGAVE_KEY_TRAINING) ||
            agave_config_get(a, k.name, va, sizeof va) != AGAVE_OK ||
            agave_config_get(b, k.name, vb, sizeof vb) != AGAVE_OK || strcmp(va, vb) == 0)
            continue;
        append_item(buf, len, "%s %s -> %s", k.name, va, vb);
    }
}

/* One --set on a resumed run: it may change the training keys, not what the
 * parameters' shapes or the optimiser's state depend on. */
static int check_resume_set(const char *kv, const agave_config *before, const agave_config *after)
{
    if (!agave_config_equal(after, before, AGAVE_KEY_ARCHITECTURE))
        return fail(PROG, "--set %s would change the architecture of the checkpoint being "
                    "resumed (the parameters' shapes); start a new run in another --out "
                    "directory", kv);
    if (after->optimizer != before->optimizer)
        return fail(PROG, "--set %s: the optimizer kind cannot change on --resume (its moments "
                    "do not carry over); start a new run in another --out directory", kv);
    if (after->mode != before->mode &&
        (after->mode == AGAVE_MODE_PIXELCNN || before->mode == AGAVE_MODE_PIXELCNN))
        return fail(PROG, "--set %s: a resumed run may switch among the modes agave, vae and "
                    "naive (the paper's pretrain-then-joint schedule), not to or from pixelcnn "
                    "(%s here); start a new run in another --out directory", kv,
                    agave_mode_name(before->mode));
    return EXIT_OK;
}

/* On --resume the checkpoint's configuration is the starting point: --config
 * NAME (with --set) must describe the same architecture, and each --set may
 * change a training key (check_resume_set). *changed receives the
 * configuration to continue with. */
static int check_resume_config(const train_opts *o, const agave_dataset *ds,
                               const agave_config *stored, agave_config *changed)
{
    char want[256], have[256];
    *changed = *stored;
    for (int i = 0; i < o->sets.n; i++) {
        agave_config c = *changed;
        if (apply_set(changed, o->sets.items[i]) != EXIT_OK ||
            check_resume_set(o->sets.items[i], &c, changed) != EXIT_OK)
            return EXIT_ERROR;
    }
    char msg[256];
    if (agave_config_validate(changed, msg, sizeof msg) != AGAVE_OK)
        return fail(PROG, "invalid configuration: %s", msg);
    if (!o->config)
        return EXIT_OK;
    agave_config req;
    if (requested_config(o, ds, &req) != EXIT_OK)
        return EXIT_ERROR;
    if (agave_config_equal(&req, stored, AGAVE_KEY_ARCHITECTURE))
        return EXIT_OK;
    describe_config(&req, AGAVE_KEY_ARCHITECTURE, want, sizeof want);
    describe_config(stored, AGAVE_KEY_ARCHITECTURE, have, sizeof have);
    return fail(PROG, "--config %s asks for %s but the checkpoint in %s has %s; drop --config to "
                "resume it", o->config, want, o->out, have);
}

/* ---- setting up ------------------------------------------------------------------- */
static int prepare_paths(trainer *t)
{
    const train_opts *o = t->o;
    t->ckpt_path = path_join(o->out, "model.ckpt");
    t->csv_path = path_join(o->out, "train.csv");
    t->state_path = path_join(o->out, "train.state");
    if (!t->ckpt_path || !t->csv_path || !t->state_path)
        return fail(PROG, "out of memory");
    struct stat st;
    if (o->resume && lstat(t->ckpt_path, &st) != 0)
        return fail(PROG, "--resume: %s does not exist (nothing to resume)", t->ckpt_path);
    if (o->resume && S_ISLNK(st.st_mode))
        return fail(PROG, "--resume: %s is a symbolic link; a run directory's files must be "
                    "its own (replace the link by the file)", t->ckpt_path);
    /* Only rank 0 writes there (and other machines may not see the directory). */
    if (!o->resume && !o->force && dist_rank() == 0 && path_exists(t->ckpt_path))
        return fail(PROG, "%s already exists: add --resume to continue that run or --force to "
                    "start again and overwrite it", t->ckpt_path);
    return EXIT_OK;
}

/* Settings of a resumed run default to the stored ones (s, NULL: none);
 * explicit options win. */
static int resume_defaults(trainer *t, const cli_program *prog, const agave_run_state *s)
{
    train_opts *o = t->o;
    if (!s)
        return EXIT_OK;
    if (!given(prog, "batch"))
        o->batch = s->batch;
    if (!given(prog, "threads") && o->threads != s->threads) {
        o->threads = s->threads;
        if (agave_context_set_threads(t->ctx, (int)o->threads) != AGAVE_OK)
            return fail(PROG, "the run's %lld threads: %s", o->threads,
                        agave_context_last_error(t->ctx));
    }
    if (given(prog, "seed") && (uint64_t)o->seed != s->seed)
        note(PROG, "--seed %lld ignored: the resumed run's data order uses seed %" PRIu64
             " and the checkpoint holds its random state", o->seed, s->seed);
    o->seed = (long long)s->seed;
    return EXIT_OK;
}

static int create_model(trainer *t)
{
    agave_config cfg;
    if (requested_config(t->o, t->ds, &cfg) != EXIT_OK)
        return EXIT_ERROR;
    if (agave_model_create(t->ctx, &cfg, &t->model) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    t->cfg = cfg;
    char text[768];
    describe_config(&cfg, 0, text, sizeof text);
    snprintf(t->settings_note, sizeof t->settings_note, "step 0: new run: %s\n", text);
    return EXIT_OK;
}

/* DIR/settings.log: one line per invocation, the configuration a run started
 * with and what each --resume changed, so that a run's schedule can be read
 * back (train.csv's lr column shows its effect). Rank 0, under the lock. */
static int log_settings(trainer *t)
{
    char *path = path_join(t->o->out, "settings.log");
    FILE *f = path ? fopen(path, t->o->resume ? "a" : "w") : NULL;
    int ok = f && fputs(t->settings_note, f) >= 0;
    if (f && fclose(f) != 0)
        ok = 0;
    int rc = ok ? EXIT_OK : fail(PROG, "cannot write %s", path ? path : "settings.log");
    free(path);
    return rc;
}

static int load_model(trainer *t)
{
    if (agave_model_load(t->ctx, t->ckpt_path, NULL, &t->model) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    agave_config stored, changed;
    agave_model_get_config(t->model, &stored);
    if (check_image_shape(PROG, &stored, t->ds, t->o->data) != EXIT_OK ||
        check_resume_config(t->o, t->ds, &stored, &changed) != EXIT_OK)
        return EXIT_ERROR;
    char what[768];
    settings_changes(&stored, &changed, what, sizeof what);
    if (what[0] && agave_model_update_config(t->model, &changed) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    agave_model_get_config(t->model, &t->cfg);
    snprintf(t->settings_note, sizeof t->settings_note, "step %lld: resumed%s%s\n",
             (long long)agave_model_step_count(t->model), what[0] ? " with " : " unchanged",
             what);
    if (what[0] && dist_rank() == 0)
        fprintf(stderr, PROG ": --resume changes the training settings: %s\n", what);
    return EXIT_OK;
}

/* The batcher position for the loaded checkpoint: the stored one (s, with
 * have_position), else derived from the step counts (exact when the whole run
 * used this batch size and seed). */
static int restore_position(trainer *t, const agave_run_state *s, int have_position)
{
    long long step = agave_model_step_count(t->model);
    long long rejected = agave_model_rejected_count(t->model);
    if (s && s->images != (long long)agave_dataset_count(t->ds))
        return fail(PROG, "%s holds %zu training images but the run in %s was trained on %lld; "
                    "resume with the same data", t->o->data, agave_dataset_count(t->ds),
                    t->o->out, (long long)s->images);
    position p = {step, rejected, 0, 0};
    if (s && have_position) {
        p.epoch = s->epoch;
        p.index = s->index;
    } else {
        uint64_t seen = (uint64_t)(step + rejected) * (uint64_t)t->batch;
        p.epoch = seen / agave_dataset_count(t->ds);
        p.index = seen % agave_dataset_count(t->ds);
        note(PROG, "%s holds no data position for step %lld: assuming the whole run used "
             "--batch %d and --seed %lld (epoch %" PRIu64 ", image %" PRIu64 ")",
             t->legacy_state ? t->state_path : "the checkpoint", step, t->batch, t->o->seed,
             p.epoch, p.index);
    }
    if (agave_batcher_set_position(t->batcher, p.epoch, p.index, (uint64_t)t->o->seed) !=
        AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    t->saved = p;
    t->have_saved = 1;
    return EXIT_OK;
}

/* ---- train.csv ------------------------------------------------------------------- */
/* libagave 0.1's log (header CSV_HEADER_V1) as this version writes it: the
 * same rows with the new columns empty; a last line cut short is dropped.
 * Returns the new text (malloc'd, *len its length) or NULL. */
static char *migrate_csv_v1(const char *text, size_t n, size_t *len)
{
    size_t rows = 0, hl = strlen(CSV_HEADER_V1) + 1;
    for (size_t i = hl; i < n; i++)
        rows += text[i] == '\n';
    char *out = malloc(strlen(CSV_HEADER) + 1 + (n - hl) + rows * CSV_NEW_COLUMNS + 1);
    if (!out)
        return NULL;
    size_t k = (size_t)sprintf(out, "%s\n", CSV_HEADER);
    for (size_t at = hl; at < n;) {
        const char *nl = memchr(text + at, '\n', n - at);
        if (!nl)
            break;
        size_t line = (size_t)(nl - (text + at));
        memcpy(out + k, text + at, line);
        k += line;
        memset(out + k, ',', CSV_NEW_COLUMNS);
        k += CSV_NEW_COLUMNS;
        out[k++] = '\n';
        at += line + 1;
    }
    *len = k;
    return out;
}

/* The elapsed_s field (the tenth) of the row at line; 0 when it is empty (a
 * migrated row). */
static double row_elapsed(const char *line, const char *end)
{
    for (int field = 1; field < 10; field++) {
        line = memchr(line, ',', (size_t)(end - line));
        if (!line)
            return 0;
        line++;
    }
    return strtod(line, NULL);
}

/* On resume, rows written after the checkpoint (by a run that died without
 * saving) are dropped, so that the resumed rows continue the log exactly; a
 * log with libagave 0.1's header is first migrated to the new columns (the
 * program says so). t->elapsed_before gets the last kept row's elapsed_s.
 * *missing is set when there is no log yet. */
static int trim_csv(trainer *t, long long step, int *missing)
{
    size_t n;
    char err[512];
    char *text = read_text_file(t->csv_path, &n, missing, err, sizeof err);
    if (!text)
        return *missing ? EXIT_OK : fail(PROG, "%s", err);
    int migrated = 0;
    if (n >= strlen(CSV_HEADER_V1) + 1 && strncmp(text, CSV_HEADER_V1 "\n",
                                                  strlen(CSV_HEADER_V1) + 1) == 0) {
        char *v2 = migrate_csv_v1(text, n, &n);
        free(text);
        if (!(text = v2))
            return fail(PROG, "out of memory migrating %s", t->csv_path);
        migrated = 1;
        note(PROG, "%s had libagave 0.1's six columns; rewritten with the columns "
             "test_elbo_bpd,test_kl_bpd,test_aux_bpd,elapsed_s,epoch,lr,grad_norm added "
             "(empty on its old rows)", t->csv_path);
    }
    size_t hl = strlen(CSV_HEADER);
    if (n < hl + 1 || strncmp(text, CSV_HEADER "\n", hl + 1) != 0) {
        free(text);
        return fail(PROG, "%s does not start with the header " CSV_HEADER
                    "; move it away to resume", t->csv_path);
    }
    size_t keep = hl + 1, at = keep;
    while (at < n) {
        char *nl = memchr(text + at, '\n', n - at);
        if (!nl || strtoll(text + at, NULL, 10) > step)
            break;   /* a later row, or a last line cut short */
        t->elapsed_before = row_elapsed(text + at, nl);
        at = keep = (size_t)(nl - text) + 1;
    }
    int rc = EXIT_OK;
    if ((keep != n || migrated) &&
        !write_file_atomic(t->ctx, t->csv_path, text, keep, err, sizeof err))
        rc = fail(PROG, "%s", err);
    free(text);
    return rc;
}

/* The output directory is made only now, after every input has been checked,
 * so that a refused command leaves nothing behind. */
static int open_csv(trainer *t)
{
    char err[512];
    int fresh = 1;
    if (dist_rank() > 0)
        return EXIT_OK;   /* rank 0 writes the files */
    if (!t->o->resume && !make_dirs(t->o->out, err, sizeof err))
        return fail(PROG, "--out %s: %s", t->o->out, err);
    /* One trainer per directory: two would overwrite each other's
     * checkpoints. The lock also makes removing temporaries safe. */
    t->lock_fd = lock_file(t->o->out, "train.lock", err, sizeof err);
    if (t->lock_fd < 0)
        return fail(PROG, "--out %s: %s", t->o->out, err);
    int stale = remove_stale_temporaries(t->o->out, "model.ckpt") +
                remove_stale_temporaries(t->o->out, "train.state") +
                remove_stale_temporaries(t->o->out, "train.csv");
    if (stale)
        note(PROG, "removed %d temporary file%s left in %s by an interrupted write", stale,
             stale == 1 ? "" : "s", t->o->out);
    if (t->o->resume && trim_csv(t, t->saved.step, &fresh) != EXIT_OK)
        return EXIT_ERROR;
    if (fresh && !write_file_atomic(t->ctx, t->csv_path, CSV_HEADER "\n", strlen(CSV_HEADER) + 1,
                                    err, sizeof err))
        return fail(PROG, "%s", err);
    int fd = open_run_file(t->csv_path, O_WRONLY | O_APPEND, err, sizeof err);
    if (fd < 0)
        return fail(PROG, "%s", err);
    t->csv = fdopen(fd, "a");
    if (!t->csv) {
        close(fd);
        return fail(PROG, "cannot open %s for appending", t->csv_path);
    }
    return log_settings(t);
}

/* The step's memory at the global batch (every rank initialises on all of
 * it), refused here, before the output directory exists, when over
 * --memory-limit; the library would refuse the first step anyway. */
static int check_memory(trainer *t)
{
    size_t need = 0, limit = agave_context_memory_limit(t->ctx);
    if (agave_config_estimate_bytes(&t->cfg, t->batch, &need) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    t->step_mib = (double)need / 1048576.0;
    if (!limit || need <= limit)
        return EXIT_OK;
    int fits = 0;
    for (int b = t->batch - 1; b >= 1 && !fits; b--) {
        size_t n = 0;
        if (agave_config_estimate_bytes(&t->cfg, b, &n) == AGAVE_OK && n <= limit)
            fits = b;
    }
    if (!fits)
        return fail(PROG, "--memory-limit %.0f: a training step of this model needs about %.0f "
                    "MiB even at batch 1", t->o->memory_limit, t->step_mib);
    return fail(PROG, "--memory-limit %.0f: a training step at --batch %d needs about %.0f MiB; "
                "batches up to %d fit", t->o->memory_limit, t->batch, t->step_mib, fits);
}

/* Under mpirun: this rank's slice of every batch, and the reducer that sums
 * the slices' gradients. One rank trains exactly as the plain build. */
static int setup_ranks(trainer *t)
{
    int P = dist_size();
    dist_slice(t->batch, &t->first, &t->last);
    if (P == 1)
        return EXIT_OK;
    if (t->batch < P)
        return fail(PROG, "--batch %d is smaller than the %d MPI ranks: each rank needs at least "
                    "one image of every batch", t->batch, P);
    if (agave_model_set_batch_slice(t->model, t->first, t->batch) != AGAVE_OK ||
        agave_model_set_grad_reducer(t->model, dist_reduce, NULL) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    return EXIT_OK;
}

/* --eval-every: the first --eval-images images of the data's test split,
 * held in memory for the run; --sample-every: the samples directory. */
static int load_eval_images(trainer *t)
{
    const train_opts *o = t->o;
    if (o->sample_every && !(t->samples_dir = path_join(o->out, "samples")))
        return fail(PROG, "out of memory");
    if (!o->eval_every)
        return EXIT_OK;
    agave_dataset *test = NULL;
    if (agave_dataset_open(t->ctx, o->data, AGAVE_SPLIT_TEST, &test) != AGAVE_OK)
        return fail(PROG, "--eval-every needs the test split of --data %s: %s", o->data,
                    agave_context_last_error(t->ctx));
    int rc = check_image_shape(PROG, &t->cfg, test, o->data);
    size_t n = agave_dataset_count(test), D = (size_t)t->cfg.C * t->cfg.H * t->cfg.W;
    t->eval_n = (int)((size_t)o->eval_images < n ? (size_t)o->eval_images : n);
    if (rc == EXIT_OK && !(t->eval_x = malloc((size_t)t->eval_n * D)))
        rc = fail(PROG, "cannot allocate %d test images for --eval-every", t->eval_n);
    if (rc == EXIT_OK)
        agave_dataset_copy_images(test, 0, (size_t)t->eval_n, t->eval_x);
    agave_dataset_free(test);
    return rc;
}

static int setup(trainer *t, const cli_program *prog)
{
    train_opts *o = t->o;
    agave_run_state stored;
    int have_state = 0, have_position = 0;
    if (prepare_paths(t) != EXIT_OK)
        return EXIT_ERROR;
    if (open_context(PROG, (uint64_t)o->seed, (int)o->threads, &t->ctx) != EXIT_OK ||
        open_dataset(PROG, t->ctx, o->data, AGAVE_SPLIT_TRAIN, &o->images, &t->ds) != EXIT_OK)
        return EXIT_ERROR;
    if (o->memory_limit > 0)
        agave_context_set_memory_limit(t->ctx, (size_t)(o->memory_limit * 1048576.0));
    if (set_precision(t->ctx, o->precision) != EXIT_OK)
        return EXIT_ERROR;
    if ((o->resume ? load_model(t) : create_model(t)) != EXIT_OK)
        return EXIT_ERROR;
    if (o->resume &&
        (stored_run_state(t, &stored, &have_state, &have_position) != EXIT_OK ||
         resume_defaults(t, prog, have_state ? &stored : NULL) != EXIT_OK))
        return EXIT_ERROR;
    t->batch = (int)o->batch;
    if (check_memory(t) != EXIT_OK)
        return EXIT_ERROR;
    if (agave_batcher_create(t->ctx, t->ds, t->batch, (uint64_t)o->seed, 0, AGAVE_SUBSET_FIRST,
                             &t->batcher) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    if (o->resume && restore_position(t, have_state ? &stored : NULL, have_position) != EXIT_OK)
        return EXIT_ERROR;
    size_t D = (size_t)t->cfg.C * t->cfg.H * t->cfg.W;
    t->x = malloc((size_t)t->batch * D);
    if (!t->x)
        return fail(PROG, "cannot allocate a batch of %d images", t->batch);
    if (setup_ranks(t) != EXIT_OK || load_eval_images(t) != EXIT_OK)
        return EXIT_ERROR;
    return open_csv(t);
}

static void teardown(trainer *t)
{
    free(t->eval_x);
    free(t->samples_dir);
    if (t->csv)
        fclose(t->csv);
    if (t->lock_fd >= 0)
        close(t->lock_fd);
    free(t->x);
    agave_batcher_free(t->batcher);
    agave_model_free(t->model);
    agave_dataset_free(t->ds);
    agave_context_free(t->ctx);
    free(t->ckpt_path);
    free(t->csv_path);
    free(t->state_path);
}

/* ---- checkpoints ------------------------------------------------------------------ */
/* FNV-1a over the bytes of every parameter: equal in every rank, or a bug. */
static uint64_t params_hash(agave_model *m)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < agave_model_param_tensor_count(m); i++) {
        agave_tensor *p;
        if (agave_model_param(m, i, NULL, &p) != AGAVE_OK)
            return 0;
        const unsigned char *b = (const unsigned char *)agave_tensor_data(p);
        for (size_t j = 0; j < agave_tensor_numel(p) * sizeof(float); j++)
            h = (h ^ b[j]) * 0x100000001b3ull;
    }
    return h;
}

/* The checkpoint, with the run state (settings and data position) inside it:
 * whichever checkpoint survives a crash holds its own position. */
static int save_checkpoint(trainer *t)
{
    position p = {agave_model_step_count(t->model), agave_model_rejected_count(t->model), 0, 0};
    if (t->have_saved && p.step == t->saved.step && p.rejected == t->saved.rejected)
        return EXIT_OK;   /* nothing changed since the last save */
    agave_batcher_position(t->batcher, &p.epoch, &p.index, NULL);
    /* Every rank must hold the parameters that rank 0 saves. */
    if (dist_size() > 1 && !dist_all_equal(params_hash(t->model)))
        return fail(PROG, "the MPI ranks' parameters differ at step %lld (their gradient sums "
                    "disagree); the checkpoint was not written", p.step);
    agave_run_state run = {.struct_size = sizeof run, .seed = (uint64_t)t->o->seed,
                           .epoch = p.epoch, .index = p.index, .batch = t->batch,
                           .threads = t->o->threads,
                           .images = (int64_t)agave_dataset_count(t->ds)};
    if (agave_model_set_run_state(t->model, &run) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    if (dist_rank() == 0 && agave_model_save(t->model, t->ckpt_path) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    /* The checkpoint now holds what a pre-1.0 train.state said. */
    if (dist_rank() == 0 && t->legacy_state && unlink(t->state_path) == 0)
        t->legacy_state = 0;
    t->saved = p;
    t->have_saved = 1;
    return EXIT_OK;
}

/* ---- progress and the log --------------------------------------------------------- */
static void averages(const trainer *t, double v[5])
{
    const interval *iv = &t->iv;
    if (iv->good == 0) {
        memcpy(v, t->shown, sizeof t->shown);
        return;
    }
    v[0] = iv->seconds > 0 ? (double)iv->images / iv->seconds : 0;
    v[1] = iv->loss / iv->good;
    v[2] = iv->pixelcnn / iv->good;
    v[3] = iv->aux / iv->good;
    v[4] = iv->kl / iv->good;
}

static double eta_seconds(const trainer *t, long long step)
{
    double left = -1;
    if (t->target_steps && t->steps_this_run > 0)
        left = (double)(t->target_steps - step) * t->train_seconds / (double)t->steps_this_run;
    if (t->deadline > 0) {
        double by_time = t->deadline - clock_seconds();
        left = left < 0 || by_time < left ? by_time : left;
    }
    return left < 0 ? 0 : left;
}

static void show_progress(trainer *t, int milestone)
{
    if (dist_rank() > 0)
        return;
    /* After a stop signal the handler's message stands below the status
     * line and the summary follows with the same figures: drawing the line
     * again would show them twice. */
    if (stop_signal_received()) {
        progress_forget(&t->line);
        return;
    }
    long long step = agave_model_step_count(t->model);
    double v[5];
    char eta[32], target[32] = "", rejected[48] = "";
    averages(t, v);
    format_duration(eta_seconds(t, step), eta, sizeof eta);
    if (t->target_steps)
        snprintf(target, sizeof target, "/%lld", t->target_steps);
    long long total_rejected = agave_model_rejected_count(t->model);
    if (total_rejected)
        snprintf(rejected, sizeof rejected, " | rejected %lld", total_rejected);
    progress_update(&t->line, milestone,
                    "step %lld%s %.1f img/s ETA %s | bpd %.3f pixelcnn %.3f aux %.3f kl %.3f%s",
                    step, target, v[0], eta, v[1], v[2], v[3], v[4], rejected);
}

/* ---- watching a run: held-out figures and samples ----------------------------------- */
/* The held-out ELBO, KL and auxiliary bound of the weights evaluation uses
 * (the average by default) on the first --eval-images test images, in
 * chunks with agave-eval's seed, so that `agave-eval --samples 0 --limit N`
 * gives the same figures. Rank 0 evaluates (its batch slice lifted for it);
 * then every rank reseeds its generator from the run's seed and the step:
 * the seeding for the evaluation would otherwise restart the training
 * stream from the same state after every evaluation. */
static int evaluate_heldout(trainer *t, heldout *h)
{
    long long step = agave_model_step_count(t->model);
    size_t D = (size_t)t->cfg.C * t->cfg.H * t->cfg.W;
    int rc = EXIT_OK;
    if (dist_rank() == 0) {
        double sums[3] = {0, 0, 0};
        agave_context_seed(t->ctx, EVAL_SEED);
        if (dist_size() > 1)
            agave_model_set_batch_slice(t->model, 0, 0);
        for (int first = 0; first < t->eval_n && rc == EXIT_OK; first += EVAL_CHUNK) {
            int k = t->eval_n - first < EVAL_CHUNK ? t->eval_n - first : EVAL_CHUNK;
            agave_eval_stats es;
            memset(&es, 0, sizeof es);
            es.struct_size = sizeof es;
            if (agave_model_evaluate(t->model, t->eval_x + (size_t)first * D, k, 0, &es) !=
                AGAVE_OK)
                rc = fail(PROG, "--eval-every: %s", agave_context_last_error(t->ctx));
            sums[0] += k * es.elbo_bpd, sums[1] += k * es.kl_bpd, sums[2] += k * es.aux_bpd;
        }
        if (dist_size() > 1 && rc == EXIT_OK &&
            agave_model_set_batch_slice(t->model, t->first, t->batch) != AGAVE_OK)
            rc = fail(PROG, "%s", agave_context_last_error(t->ctx));
        h->elbo = sums[0] / t->eval_n, h->kl = sums[1] / t->eval_n, h->aux = sums[2] / t->eval_n;
    }
    agave_context_seed(t->ctx, (uint64_t)t->o->seed ^ ((uint64_t)step * 0x9e3779b97f4a7c15ull));
    return rc;
}

/* --sample-every: DIR/samples/step-NNNNNN.png, SAMPLE_COUNT samples drawn
 * with the same seed each time (agave_model_sample leaves the training run's
 * generator as it was), so the pictures show the model change. Rank 0. */
static int write_samples(trainer *t)
{
    if (dist_rank() > 0)
        return EXIT_OK;
    char err[512], name[48];
    if (!make_dirs(t->samples_dir, err, sizeof err))
        return fail(PROG, "%s: %s", t->samples_dir, err);
    snprintf(name, sizeof name, "step-%06lld.png", (long long)agave_model_step_count(t->model));
    size_t D = (size_t)t->cfg.C * t->cfg.H * t->cfg.W;
    uint8_t *fz = malloc(SAMPLE_COUNT * D), *x = malloc(SAMPLE_COUNT * D);
    char *path = path_join(t->samples_dir, name);
    int rc = EXIT_OK;
    if (!fz || !x || !path)
        rc = fail(PROG, "out of memory drawing samples");
    else if (agave_model_sample(t->model, SAMPLE_COUNT, (uint64_t)t->o->seed, fz, x) != AGAVE_OK)
        rc = fail(PROG, "--sample-every: %s", agave_context_last_error(t->ctx));
    else
        rc = write_sample_grid(PROG, t->ctx, path, &t->cfg, NULL, fz, x, SAMPLE_COUNT, 8, 0,
                               NULL);
    free(fz), free(x), free(path);
    return rc;
}

/* The data order's position after the last step, in epochs (1.5: half-way
 * through the second pass). */
static double epochs_done(const trainer *t)
{
    uint64_t epoch = 0, index = 0;
    agave_batcher_position(t->batcher, &epoch, &index, NULL);
    return (double)epoch + (double)index / (double)agave_dataset_count(t->ds);
}

/* One CSV row with the interval's averages (and, with eval, the held-out
 * figures); the interval starts again. */
static int log_row(trainer *t, int eval)
{
    double v[5];
    heldout h = {0, 0, 0};
    if (t->iv.good == 0)
        return EXIT_OK;
    if (eval && evaluate_heldout(t, &h) != EXIT_OK)
        return EXIT_ERROR;
    averages(t, v);
    memcpy(t->shown, v, sizeof v);
    if (t->csv) {   /* rank 0 */
        char test[96] = ",,";
        if (eval)
            snprintf(test, sizeof test, "%.6f,%.6f,%.6f", h.elbo, h.kl, h.aux);
        fprintf(t->csv, "%lld,%.2f,%.6f,%.6f,%.6f,%.6f,%s,%.3f,%.4f,%.6g,%.6g\n",
                (long long)agave_model_step_count(t->model), v[0], v[1], v[2], v[3], v[4], test,
                t->elapsed_before + clock_seconds() - t->started, epochs_done(t), t->iv.lr,
                t->iv.grad_norm / t->iv.good);
        if (fflush(t->csv) != 0 || ferror(t->csv))
            return fail(PROG, "cannot write %s (disk full?)", t->csv_path);
    }
    show_progress(t, 1);
    if (eval && dist_rank() == 0) {
        progress_end(&t->line);
        fprintf(stderr, PROG ": step %lld held-out (%d test images): ELBO %.4f bpd, KL %.4f, "
                        "aux %.4f\n", (long long)agave_model_step_count(t->model), t->eval_n,
                h.elbo, h.kl, h.aux);
    }
    memset(&t->iv, 0, sizeof t->iv);
    return EXIT_OK;
}

/* ---- the loop --------------------------------------------------------------------- */
static int budget_left(const trainer *t)
{
    if (t->target_steps && agave_model_step_count(t->model) >= t->target_steps)
        return 0;
    return !(t->deadline > 0 && clock_seconds() >= t->deadline);
}

static void account(trainer *t, const agave_step_stats *s, double seconds)
{
    t->iv.images += t->batch;
    t->iv.seconds += seconds;
    t->train_seconds += seconds;
    if (s->rejected) {
        progress_end(&t->line);
        note(PROG, "step %lld rejected: %s", (long long)agave_model_step_count(t->model) + 1,
             agave_context_last_error(t->ctx));
        return;
    }
    t->steps_this_run++;
    t->iv.good++;
    t->iv.loss += s->loss_bpd;
    t->iv.pixelcnn += s->pixelcnn_bpd;
    t->iv.aux += s->aux_bpd;
    t->iv.kl += s->kl_bpd;
    t->iv.grad_norm += s->grad_norm;
}

/* Whether the run stops after this step: the budget or a signal, decided by
 * all ranks together (a time budget or a signal seen by one rank stops all
 * of them after the same step). */
static int stop_now(const trainer *t)
{
    return dist_any(!budget_left(t) || stop_signal_received());
}

/* One step; after an applied step, a log row (with the held-out figures
 * every --eval-every steps and at the end of the budget), samples and a
 * checkpoint when due. *stop says whether the run ends after it. */
static int train_one(trainer *t, int *stop)
{
    agave_step_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    double t0 = clock_seconds();
    if (agave_batcher_next(t->batcher, t->x, NULL) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    /* The data-dependent initialisation sees the whole first batch in every
     * rank, so all start from the same parameters (in one process this is
     * what the first step does by itself). */
    if (!agave_model_is_initialized(t->model) &&
        agave_model_init(t->model, t->x, t->batch) != AGAVE_OK)
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    size_t D = (size_t)t->cfg.C * t->cfg.H * t->cfg.W;
    double lr = agave_model_learning_rate(t->model);
    agave_status st = agave_model_train_step(t->model, t->x + (size_t)t->first * D,
                                             t->last - t->first, &s);
    if (st == AGAVE_ERR_NUMERIC) {
        progress_end(&t->line);
        if (t->have_saved)
            fail(PROG, "%s; the last checkpoint (step %lld) is kept in %s",
                 agave_context_last_error(t->ctx), t->saved.step, t->ckpt_path);
        else
            fail(PROG, "%s; no checkpoint was written", agave_context_last_error(t->ctx));
        return EXIT_DIVERGED;
    }
    if (st != AGAVE_OK) {
        progress_end(&t->line);
        return fail(PROG, "%s", agave_context_last_error(t->ctx));
    }
    account(t, &s, clock_seconds() - t0);
    *stop = stop_now(t);
    if (s.rejected)
        return EXIT_OK;
    t->iv.lr = lr;
    long long step = agave_model_step_count(t->model);
    const train_opts *o = t->o;
    int eval = o->eval_every && (step % o->eval_every == 0 ||
                                 (*stop && !dist_any(stop_signal_received())));
    if ((step % o->log_every == 0 || eval || *stop) && log_row(t, eval) != EXIT_OK)
        return EXIT_ERROR;
    if (o->sample_every && step % o->sample_every == 0 && write_samples(t) != EXIT_OK)
        return EXIT_ERROR;
    show_progress(t, 0);
    if (o->checkpoint_every && step % o->checkpoint_every == 0)
        return save_checkpoint(t);
    return EXIT_OK;
}

static void print_header(trainer *t)
{
    char cfg[1024], budget[96] = "", every[64] = "";
    describe_config(&t->cfg, 0, cfg, sizeof cfg);
    fprintf(stderr, PROG ": configuration %s: %s\n",
            t->o->resume ? "(from the checkpoint)" : t->o->config, cfg);
    size_t images = agave_dataset_count(t->ds);
    fprintf(stderr, PROG ": %zu parameters, about %.0f MiB a training step; %zu training image%s "
                    "(%dx%dx%d) from %s\n",
            agave_model_param_numel(t->model), t->step_mib, images, plural((double)images),
            agave_dataset_channels(t->ds), agave_dataset_height(t->ds),
            agave_dataset_width(t->ds), t->o->data);
    if (t->target_steps)
        snprintf(budget, sizeof budget, "until step %lld", t->target_steps);
    if (t->o->minutes > 0)
        snprintf(budget + strlen(budget), sizeof budget - strlen(budget), "%sfor %g minute%s",
                 t->target_steps ? " or " : "", t->o->minutes, plural(t->o->minutes));
    if (t->o->checkpoint_every)
        snprintf(every, sizeof every, "every %lld step%s, ", t->o->checkpoint_every,
                 plural((double)t->o->checkpoint_every));
    fprintf(stderr,
            PROG ": batch %d, seed %lld, %lld thread%s; training %s; checkpoint %sat the end "
                 "and on Ctrl-C to %s\n",
            t->batch, t->o->seed, t->o->threads, t->o->threads == 1 ? "" : "s", budget, every,
            t->ckpt_path);
    if (dist_size() > 1) {
        int P = dist_size(), least = t->batch / P, most = (t->batch + P - 1) / P;
        char share[48];
        if (least == most)
            snprintf(share, sizeof share, "%d image%s each", least, plural(least));
        else
            snprintf(share, sizeof share, "%d or %d images each", least, most);
        fprintf(stderr, PROG ": %d %s ranks share each batch: %s, %lld thread%s per rank; one "
                        "allreduce of %zu gradients per step\n",
                P, dist_kind(), share, t->o->threads, t->o->threads == 1 ? "" : "s",
                agave_model_param_numel(t->model));
    }
    if (t->o->eval_every)
        fprintf(stderr, PROG ": held-out ELBO, KL and aux bound every %lld steps and at the end, "
                        "on the first %d test images (%s parameters)\n",
                t->o->eval_every, t->eval_n, t->cfg.ema > 0 ? "averaged" : "raw");
    if (t->o->sample_every)
        fprintf(stderr, PROG ": %d samples every %lld steps in %s\n", SAMPLE_COUNT,
                t->o->sample_every, t->samples_dir);
    if (t->o->resume)
        fprintf(stderr, PROG ": resuming at step %lld (epoch %" PRIu64 ", image %" PRIu64
                        " of the data order)\n",
                t->saved.step, t->saved.epoch, t->saved.index);
}

static void print_summary(trainer *t, int stopped_by)
{
    double v[5];
    averages(t, v);
    progress_end(&t->line);
    long long step = agave_model_step_count(t->model);
    if (stopped_by)
        fprintf(stderr, PROG ": stopped by %s at step %lld; the checkpoint is saved: run the "
                        "same command with --resume to continue\n", stop_signal_name(stopped_by), step);
    long long rejected = (long long)agave_model_rejected_count(t->model);
    printf("step %lld: train %.4f bpd (pixelcnn %.4f, aux %.4f, kl %.4f), %.1f images/s, %lld "
           "rejected step%s; checkpoint %s\n",
           step, v[1], v[2], v[3], v[4], v[0], rejected, plural((double)rejected), t->ckpt_path);
    if (dist_size() > 1 && t->steps_this_run > 0)
        fprintf(stderr, PROG ": %d ranks; gradient allreduce %.1f ms per step (rank 0), %.1f%% "
                        "of the training time\n", dist_size(),
                1e3 * dist_reduce_seconds() / (double)t->steps_this_run,
                t->train_seconds > 0 ? 100 * dist_reduce_seconds() / t->train_seconds : 0);
    fflush(stdout);
}

static int run(trainer *t)
{
    long long step = agave_model_step_count(t->model);
    if (t->target_steps && step >= t->target_steps) {
        printf("step %lld: the model in %s has already reached --steps %lld; nothing to do\n",
               step, t->o->out, t->target_steps);
        return EXIT_OK;
    }
    int root = dist_rank() == 0;
    if (root) {
        print_header(t);
        stop_signals_set_message("\n" PROG ": stopping after this step and saving the checkpoint "
                                 "(signal again to quit at once without saving)\n");
    }
    progress_init(&t->line, stderr);
    t->started = clock_seconds();
    if (t->o->minutes > 0)
        t->deadline = t->started + t->o->minutes * 60.0;
    int rc = EXIT_OK, stop = stop_now(t);
    while (rc == EXIT_OK && !stop)
        rc = train_one(t, &stop);
    if (rc == EXIT_ERROR)
        return dist_abort(rc);   /* the other ranks may be waiting for this one */
    if (rc != EXIT_OK)
        return rc;               /* diverged: every rank saw the same steps */
    if ((rc = log_row(t, 0)) != EXIT_OK || (rc = save_checkpoint(t)) != EXIT_OK)
        return dist_abort(rc);
    int sig = stop_signal_received();
    if (root)
        print_summary(t, sig);
    return sig ? 128 + sig : EXIT_OK;
}

int main(int argc, char **argv)
{
    train_opts o;
    cli_program prog;
    help_texts help;
    if (dist_init(&argc, &argv) != EXIT_OK)
        return EXIT_ERROR;
    int rc = parse_options(argc, argv, &o, &prog, &help);
    if (rc >= 0) {
        cli_free(&prog);
        free(prog.options);
        dist_finalize();
        return rc;
    }
    /* Before setup: a stop signal while the data and model load is heard
     * (setup is not interrupted; training then does not start). */
    stop_signals_install(NULL);
    trainer t;
    memset(&t, 0, sizeof t);
    t.lock_fd = -1;
    t.o = &o;
    rc = dist_agree(setup(&t, &prog));
    if (rc == EXIT_OK && dist_any(stop_signal_received() != 0)) {
        /* (under MPI every rank stops when any of them was signalled) */
        int sig = stop_signal_received();
        if (dist_rank() == 0)
            fprintf(stderr, PROG ": stopped by %s before training began; no checkpoint was "
                            "written\n", stop_signal_name(sig));
        rc = sig ? 128 + sig : EXIT_OK;
    } else if (rc == EXIT_OK) {
        t.target_steps = o.steps;
        rc = run(&t);
    }
    teardown(&t);
    cli_free(&prog);
    free(prog.options);
    dist_finalize();
    return rc;
}
