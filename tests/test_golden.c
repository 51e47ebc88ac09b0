/* The golden test of the training step: for fixed seeds, a table of small
 * configurations (1 and 3 channels, T = 0 and 1, every mode, dropout, 1 and
 * 2 threads, both optimisers, clipping, the one-process step and the
 * data-parallel one with a reducer and a batch slice) runs a few training
 * steps, and every parameter, gradient, optimiser moment and average, the
 * step figures and the random stream's position are reduced to one text
 * line each (hashes of the exact bits, figures as hexadecimal floats). The
 * lines must equal the committed reference tests/data/golden/train_step.txt
 * exactly.
 *
 * What it is for: a refactor of the library's insides must not change a
 * single bit of training. A change that alters the numbers on purpose (a new
 * initialisation, another averaging rule, different fp32 arithmetic)
 * regenerates the reference in the same commit, with a message saying why:
 *
 *     sh scripts/golden.sh write          (rewrites the reference)
 *     sh scripts/golden.sh compare REV    (this tree against commit REV, A/B)
 *
 * Bits depend on the machine as well as the code: the products run on the
 * library's AVX-512 kernel or, without AVX-512F, on OpenBLAS, which picks its
 * kernels by CPU; the element-wise kernels pick their vector width. The
 * reference records the machine it was made on (the fp32 engine, OpenBLAS's
 * core name and the CPU's AVX-512/AVX2/FMA flags); on another machine the comparison is
 * skipped with a message (compare two commits there with `golden.sh compare`).
 *
 * Usage: test_golden [--write FILE | --print] [--tensors]
 *   (no argument)   compare with the reference (a cmocka test, run by make check)
 *   --write FILE    write the lines to FILE
 *   --print         write them to standard output
 *   --tensors       with --print: one hash per parameter tensor as well, to
 *                   find which tensor differs between two builds */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "support/support.h"

#define GOLDEN_FILE "tests/data/golden/train_step.txt"
#define STEPS 3
#define MAX_BATCH 8

/* How a case reaches its gradient: the one-process step; the data-parallel
 * step with a reducer that leaves the buffer as it is (one process); or that
 * reducer with the model on images [n, 2n) of a batch of 2n (the step must
 * skip the other half's random draws). */
typedef enum step_path { PATH_PLAIN, PATH_REDUCER, PATH_SLICE } step_path;

typedef struct golden_case {
    const char *name;
    int C, T, s, b;
    agave_mode mode;
    float dropout;
    int threads;
    step_path path;
    agave_optimizer_kind optimizer;
    float grad_clip;
} golden_case;

static const golden_case cases[] = {
    {.name = "c1-agave", .C = 1, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_AGAVE,
     .dropout = 0.5f, .threads = 1},
    {.name = "c1-agave-T0", .C = 1, .T = 0, .s = 1, .b = 256, .mode = AGAVE_MODE_AGAVE,
     .dropout = 0.5f, .threads = 1},
    {.name = "c1-vae", .C = 1, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_VAE,
     .dropout = 0.5f, .threads = 1},
    {.name = "c1-pixelcnn", .C = 1, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_PIXELCNN,
     .dropout = 0.5f, .threads = 1},
    {.name = "c1-naive", .C = 1, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_NAIVE,
     .dropout = 0.5f, .threads = 1},
    {.name = "c3-agave", .C = 3, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_AGAVE,
     .dropout = 0.5f, .threads = 1},
    {.name = "c3-agave-2threads", .C = 3, .T = 1, .s = 1, .b = 256,
     .mode = AGAVE_MODE_AGAVE, .dropout = 0.5f, .threads = 2},
    {.name = "c3-agave-s2-b32-2threads", .C = 3, .T = 1, .s = 2, .b = 32,
     .mode = AGAVE_MODE_AGAVE, .dropout = 0.5f, .threads = 2},
    {.name = "c1-adam-clip", .C = 1, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_AGAVE,
     .dropout = 0.5f, .threads = 1, .optimizer = AGAVE_OPTIM_ADAM, .grad_clip = 0.5f},
    {.name = "c1-agave-reducer", .C = 1, .T = 1, .s = 1, .b = 256,
     .mode = AGAVE_MODE_AGAVE, .dropout = 0.5f, .threads = 1, .path = PATH_REDUCER},
    {.name = "c3-agave-reducer-2threads", .C = 3, .T = 1, .s = 1, .b = 256,
     .mode = AGAVE_MODE_AGAVE, .dropout = 0.5f, .threads = 2, .path = PATH_REDUCER},
    {.name = "c1-agave-slice", .C = 1, .T = 1, .s = 1, .b = 256, .mode = AGAVE_MODE_AGAVE,
     .dropout = 0.5f, .threads = 1, .path = PATH_SLICE},
};

/* ---- the lines -------------------------------------------------------------------- */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void add_line(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(text *t, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && n < (int)sizeof line - 1);
    line[n++] = '\n';
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = 2 * (t->len + (size_t)n + 1);
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, line, (size_t)n);
    t->len += (size_t)n;
    t->p[t->len] = 0;
}

/* FNV-1a over the bytes of n floats, continuing from h. */
static uint64_t fnv(uint64_t h, const float *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_START 0xcbf29ce484222325ull

/* The machine's line: what decides the bits besides the code. */
static void machine_line(text *t)
{
    __builtin_cpu_init();
    add_line(t, "machine gemm=%s openblas=%s avx512f=%d avx2=%d fma=%d", gemm_fp32_engine_name(),
             openblas_get_corename(), __builtin_cpu_supports("avx512f") != 0,
             __builtin_cpu_supports("avx2") != 0, __builtin_cpu_supports("fma") != 0);
}

/* ---- the state of a model ------------------------------------------------------- */
/* The one function that reads the model's insides: the optimiser's moments
 * and the parameter average, each a flat array in checkpoint order. */
typedef struct flat {
    const float *p;
    size_t n;
    int64_t t;
} flat;

static void optimiser_state(const agave_model *m, flat *first, flat *second)
{
    first->p = m->opt->m, second->p = m->opt->u;
    first->n = second->n = m->opt->m ? m->opt->total : 0;
    first->t = second->t = m->opt->t;
}

static flat average_state(const agave_model *m)
{
    flat a = {m->ema.avg, m->ema.avg ? m->ema.total : 0, m->ema.t};
    return a;
}

static uint64_t params_hash(agave_model *m)
{
    uint64_t h = FNV_START;
    for (int i = 0; i < agave_model_param_tensor_count(m); i++) {
        agave_tensor *t;
        assert_int_equal(agave_model_param(m, i, NULL, &t), AGAVE_OK);
        h = fnv(h, agave_tensor_data(t), agave_tensor_numel(t));
    }
    return h;
}

static void tensor_lines(text *out, const char *name, agave_model *m)
{
    for (int i = 0; i < agave_model_param_tensor_count(m); i++) {
        agave_tensor *t;
        const char *pname;
        assert_int_equal(agave_model_param(m, i, &pname, &t), AGAVE_OK);
        add_line(out, "%s tensor %s %016llx", name, pname,
                 (unsigned long long)fnv(FNV_START, agave_tensor_data(t), agave_tensor_numel(t)));
    }
}

static void state_lines(text *out, const char *name, const char *when, agave_model *m)
{
    flat m1, m2;
    optimiser_state(m, &m1, &m2);
    flat avg = average_state(m);
    add_line(out, "%s %s params %016llx", name, when, (unsigned long long)params_hash(m));
    add_line(out, "%s %s moments t=%lld %016llx %016llx", name, when, (long long)m1.t,
             (unsigned long long)fnv(FNV_START, m1.p, m1.n),
             (unsigned long long)fnv(FNV_START, m2.p, m2.n));
    add_line(out, "%s %s average t=%lld %016llx", name, when, (long long)avg.t,
             (unsigned long long)fnv(FNV_START, avg.p, avg.n));
}

static void stats_line(text *out, const char *name, int step, const agave_step_stats *s)
{
    add_line(out,
             "%s step%d stats loss_bpd=%a pixelcnn_nll=%a aux_nll=%a kl=%a pixelcnn_bpd=%a "
             "aux_bpd=%a kl_bpd=%a grad_norm=%a rejected=%d",
             name, step, s->loss_bpd, s->pixelcnn_nll, s->aux_nll, s->kl, s->pixelcnn_bpd,
             s->aux_bpd, s->kl_bpd, s->grad_norm, s->rejected);
}

/* The reducer of one process: leaves the sums as they are and hashes them
 * (every gradient, then the step's sums over images). */
typedef struct grad_probe {
    uint64_t hash;
    size_t n;
} grad_probe;

static agave_status probe_reduce(float *buf, size_t n, void *user)
{
    grad_probe *g = user;
    g->hash = fnv(FNV_START, buf, n);
    g->n = n;
    return AGAVE_OK;
}

/* ---- one case ------------------------------------------------------------------- */
/* Images of a fixed pattern that differs between steps and channels. */
static void make_images(uint8_t *x, size_t count, unsigned seed)
{
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < count; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (uint8_t)((i % 64) * 3 + (s >> 16) % 64);
    }
}

static void run_case(const golden_case *gc, text *out, int tensors)
{
    agave_config cfg = support_tiny_config(gc->C, gc->T, gc->s, gc->b, gc->mode);
    cfg.dropout = gc->dropout;
    cfg.optimizer = gc->optimizer;
    cfg.grad_clip = gc->grad_clip;
    agave_context *ctx;
    agave_model *m;
    assert_int_equal(agave_context_create(&ctx, 1234), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, gc->threads), AGAVE_OK);
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    int n = gc->path == PATH_SLICE ? MAX_BATCH / 2 : MAX_BATCH;
    size_t image = (size_t)cfg.C * cfg.H * cfg.W;
    uint8_t *x = malloc((size_t)(STEPS + 1) * MAX_BATCH * image);
    assert_non_null(x);
    make_images(x, (size_t)(STEPS + 1) * MAX_BATCH * image, (unsigned)gc->C);
    /* The first batch, whole, initialises the model (every process alike). */
    assert_int_equal(agave_model_init(m, x, MAX_BATCH), AGAVE_OK);
    state_lines(out, gc->name, "init", m);
    grad_probe probe = {0};
    if (gc->path != PATH_PLAIN)
        assert_int_equal(agave_model_set_grad_reducer(m, probe_reduce, &probe), AGAVE_OK);
    if (gc->path == PATH_SLICE)
        assert_int_equal(agave_model_set_batch_slice(m, n, 2 * n), AGAVE_OK);
    for (int step = 1; step <= STEPS; step++) {
        const uint8_t *batch = x + (size_t)step * MAX_BATCH * image;
        if (gc->path == PATH_SLICE)
            batch += (size_t)n * image;
        agave_step_stats st = {.struct_size = sizeof st};
        assert_int_equal(agave_model_train_step(m, batch, n, &st), AGAVE_OK);
        char when[16];
        snprintf(when, sizeof when, "step%d", step);
        stats_line(out, gc->name, step, &st);
        if (gc->path != PATH_PLAIN)
            add_line(out, "%s %s gradients n=%zu %016llx", gc->name, when, probe.n,
                     (unsigned long long)probe.hash);
        state_lines(out, gc->name, when, m);
    }
    /* Where the random stream stands: the next draws of the context. */
    int dims[1] = {8};
    agave_tensor *r;
    assert_int_equal(agave_tensor_create(ctx, 1, dims, &r), AGAVE_OK);
    assert_int_equal(agave_tensor_fill_normal(r, 0, 1), AGAVE_OK);
    add_line(out, "%s end steps=%lld rng %016llx", gc->name,
             (long long)agave_model_step_count(m),
             (unsigned long long)fnv(FNV_START, agave_tensor_data(r), 8));
    if (tensors)
        tensor_lines(out, gc->name, m);
    agave_tensor_free(r);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void all_lines(text *out, int tensors)
{
    add_line(out, "# The training step's golden values (tests/test_golden.c); regenerate with "
                  "sh scripts/golden.sh write");
    machine_line(out);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], out, tensors);
}

/* ---- the comparison --------------------------------------------------------------- */
static char *next_line(char **p)
{
    if (!*p || !**p)
        return NULL;
    char *line = *p, *nl = strchr(line, '\n');
    if (nl) {
        *nl = 0;
        *p = nl + 1;
    } else {
        *p = line + strlen(line);
    }
    return line;
}

static void test_training_step_is_golden(void **state)
{
    (void)state;
    char *ref = support_read_text(GOLDEN_FILE);
    text now = {0};
    machine_line(&now);
    char *machine = strstr(ref, "\nmachine ");
    size_t mlen = strlen(now.p) - 1;
    if (!machine || strncmp(machine + 1, now.p, mlen) != 0) {
        char *end = machine ? strchr(machine + 1, '\n') : NULL;
        printf("skipped: the reference was made on another machine (%.*s); this one is %.*s. "
               "Compare two commits here with: sh scripts/golden.sh compare REV\n",
               machine && end ? (int)(end - machine - 1) : 4, machine ? machine + 1 : "none",
               (int)mlen, now.p);
        free(ref);
        free(now.p);
        skip();
    }
    now.len = 0;
    all_lines(&now, 0);
    char *a = ref, *b = now.p, *la, *lb;
    int lineno = 0, differ = 0;
    do {
        la = next_line(&a), lb = next_line(&b);
        lineno++;
        if ((la || lb) && (!la || !lb || strcmp(la, lb) != 0)) {
            if (differ++ < 10)
                printf("line %d differs:\n  reference: %s\n  now:       %s\n", lineno,
                       la ? la : "(end of file)", lb ? lb : "(end of output)");
        }
    } while (la || lb);
    if (differ)
        fail_msg("%d of %d lines differ from %s: the training step's numbers changed. If on "
                 "purpose, regenerate it (sh scripts/golden.sh write) and say why in the commit",
                 differ, lineno - 1, GOLDEN_FILE);
    free(ref);
    free(now.p);
}

int main(int argc, char **argv)
{
    int tensors = argc > 2 && strcmp(argv[argc - 1], "--tensors") == 0;
    if (argc > 1 && strcmp(argv[1], "--print") == 0) {
        text out = {0};
        all_lines(&out, tensors);
        fputs(out.p, stdout);
        free(out.p);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "--write") == 0) {
        text out = {0};
        all_lines(&out, 0);
        FILE *f = fopen(argv[2], "w");
        if (!f || fputs(out.p, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "test_golden: cannot write %s\n", argv[2]);
            return 1;
        }
        free(out.p);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_step_is_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
