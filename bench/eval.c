/* Evaluation speed against training speed, same model, same run.
 *
 * usage: eval [--threads N] [--batch B] [--rounds R] [--samples K[,K...]] [--rows N]
 *             [--single] [--cpu-time] [config]
 *   config        a named configuration (default fashion), mode agave
 *   --threads N   context threads (default: the online CPUs)
 *   --batch B     training batch (default 16, agave-train's)
 *   --rounds R    measuring rounds (default 3)
 *   --samples K   importance samples per image to time (default 1,10,150)
 *   --rows N      image x sample rows per evaluation call (default 300): a
 *                 call takes max(1, N / K) images
 *   --single      also time the same images evaluated one per call: each
 *                 forward pass then holds one image's samples, as before
 *                 evaluation batched across images
 *   --cpu-time    time by process CPU time (one thread on a shared machine)
 *
 * The model is initialised on B pseudo-random images. Each round times, one
 * after the other, a training step (agave_model_train_step on B images) and
 * one agave_model_evaluate call for every K, after one untimed warm-up of
 * each; the figures are the median and range over the rounds, so that a busy
 * machine shifts both sides alike. Printed per K: images/s, its ratio to
 * the training images/s, the GFLOP/s of the GEMMs it ran (the context's
 * counter), the rows of its forward passes and the step arena's peak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"

#define MAX_K 8
#define MAX_ROUNDS 99

static int use_cpu_time;

static double seconds(void)
{
    struct timespec t;
    clock_gettime(use_cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double load_average(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A rate's median and range over the rounds (sorts v). */
typedef struct spread {
    double median, lo, hi;
} spread;

static spread spread_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    spread s = {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v[0], v[n - 1]};
    return s;
}

typedef struct bench {
    agave_context *ctx;
    agave_model *m;
    uint8_t *x;
    int batch, rows, single;
} bench;

/* Images/s of one training step on the batch. */
static int time_train(bench *b, double *rate)
{
    agave_step_stats st = {.struct_size = sizeof st};
    double t0 = seconds();
    if (agave_model_train_step(b->m, b->x, b->batch, &st) != AGAVE_OK)
        return 0;
    *rate = b->batch / (seconds() - t0);
    return 1;
}

static int images_for(const bench *b, int K)
{
    int n = b->rows / (K > 0 ? K : 1);
    return n < 1 ? 1 : n;
}

/* Images/s and GFLOP/s of evaluating images_for(K) images with K samples,
 * in one call, or (single) in one call per image. */
static int time_eval(bench *b, int K, int single, double *rate, double *gflops)
{
    agave_eval_stats st = {.struct_size = sizeof st};
    int n = images_for(b, K);
    size_t D = (size_t)b->m->cfg.C * b->m->cfg.H * b->m->cfg.W;
    b->ctx->gemm_flops = 0;
    double t0 = seconds();
    for (int i = 0; i < (single ? n : 1); i++)
        if (agave_model_evaluate(b->m, b->x + i * D, single ? 1 : n, K, &st) != AGAVE_OK)
            return 0;
    double dt = seconds() - t0;
    *rate = n / dt;
    *gflops = (double)b->ctx->gemm_flops / dt / 1e9;
    return 1;
}

static int parse_ks(const char *s, int *ks)
{
    int n = 0;
    for (char *end; *s && n < MAX_K; s = *end ? end + 1 : end) {
        long k = strtol(s, &end, 10);
        if (end == s || k < 0 || k > 100000 || (*end && *end != ','))
            return 0;
        ks[n++] = (int)k;
    }
    return *s ? 0 : n;
}

static int usage(void)
{
    fprintf(stderr, "usage: eval [--threads N] [--batch B] [--rounds R] [--samples K[,K...]] "
                    "[--rows N] [--single] [--cpu-time] [config]\n");
    return 2;
}

/* Runs the rounds and prints the table. */
static int measure(bench *b, const char *name, int threads, const int *ks, int n_k, int rounds)
{
    double train[MAX_ROUNDS], eval[MAX_K][MAX_ROUNDS], gf[MAX_K][MAX_ROUNDS], rate, g;
    double one[MAX_K][MAX_ROUNDS], gf_one[MAX_K][MAX_ROUNDS];
    size_t peak[MAX_K] = {0};
    int ok = time_train(b, &rate);   /* warm-ups: the arena grows to its size */
    for (int k = 0; ok && k < n_k; k++)
        ok = time_eval(b, ks[k], 0, &rate, &g);
    for (int r = 0; ok && r < rounds; r++) {
        ok = time_train(b, &train[r]);
        for (int k = 0; ok && k < n_k; k++) {
            b->ctx->arena.peak = 0;
            ok = time_eval(b, ks[k], 0, &eval[k][r], &gf[k][r]);
            peak[k] = b->ctx->arena.peak;
            if (ok && b->single)
                ok = time_eval(b, ks[k], 1, &one[k][r], &gf_one[k][r]);
        }
    }
    if (!ok) {
        fprintf(stderr, "eval: %s\n", agave_context_last_error(b->ctx));
        return 2;
    }
    spread t = spread_of(train, rounds);
    printf("%s, %d thread%s, %s time, load average %.2f, %d rounds (median [min, max]):\n",
           name, threads, threads == 1 ? "" : "s", use_cpu_time ? "CPU" : "wall",
           load_average(), rounds);
    printf("  training, batch %3d      %8.2f images/s [%.2f, %.2f]\n", b->batch, t.median, t.lo,
           t.hi);
    for (int k = 0; k < n_k; k++) {
        spread e = spread_of(eval[k], rounds), f = spread_of(gf[k], rounds);
        printf("  evaluation, K = %-3d      %8.2f images/s [%.2f, %.2f]  %.2fx training  "
               "%.1f GFLOP/s  %d images a call, %d rows a pass, arena peak %.0f MiB\n",
               ks[k], e.median, e.lo, e.hi, e.median / t.median, f.median, images_for(b, ks[k]),
               eval_chunk_rows(b->m), (double)peak[k] / 1048576.0);
        if (!b->single)
            continue;
        e = spread_of(one[k], rounds), f = spread_of(gf_one[k], rounds);
        printf("    one image a call         %8.2f images/s [%.2f, %.2f]  %.2fx training  "
               "%.1f GFLOP/s\n", e.median, e.lo, e.hi, e.median / t.median, f.median);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *name = "fashion";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), rounds = 3, ks[MAX_K] = {1, 10, 150},
        n_k = 3;
    bench b = {NULL, NULL, NULL, 16, 300, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v)
            threads = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v)
            b.batch = atoi(argv[++i]);
        else if (!strcmp(a, "--rounds") && v)
            rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--rows") && v)
            b.rows = atoi(argv[++i]);
        else if (!strcmp(a, "--samples") && v)
            n_k = parse_ks(argv[++i], ks);
        else if (!strcmp(a, "--cpu-time"))
            use_cpu_time = 1;
        else if (!strcmp(a, "--single"))
            b.single = 1;
        else if (a[0] != '-')
            name = a;
        else
            return usage();
    }
    agave_config cfg;
    if (agave_config_init(&cfg, name) != AGAVE_OK || threads < 1 || b.batch < 1 ||
        rounds < 1 || rounds > MAX_ROUNDS || b.rows < 1 || n_k < 1)
        return usage();
    if (agave_context_create(&b.ctx, 1) != AGAVE_OK ||
        agave_context_set_threads(b.ctx, threads) != AGAVE_OK ||
        agave_model_create(b.ctx, &cfg, &b.m) != AGAVE_OK) {
        fprintf(stderr, "eval: cannot create the model\n");
        return 2;
    }
    size_t D = (size_t)cfg.C * cfg.H * cfg.W, n = (size_t)(b.batch > b.rows ? b.batch : b.rows);
    b.x = malloc(n * D);
    for (size_t i = 0; b.x && i < n * D; i++)
        b.x[i] = (uint8_t)(i * 2654435761u >> 24);
    int rc = 2;
    if (!b.x || agave_model_init(b.m, b.x, b.batch) != AGAVE_OK)
        fprintf(stderr, "eval: %s\n", agave_context_last_error(b.ctx));
    else
        rc = measure(&b, name, threads, ks, n_k, rounds);
    free(b.x);
    agave_model_free(b.m);
    agave_context_free(b.ctx);
    return rc;
}
