/* train_step: speed and memory of full training steps (forward, objective,
 * backward, Adamax update, averaging) in mode agave.
 *
 * For each configuration and batch size, in a child process of its own (so
 * that peak RSS is that run's): the reference GEMMs, data-dependent init, 3
 * warm-up steps, then the median of `repeats` timed steps. Prints images/s,
 * forward FLOPs per image (counted from the GEMMs one forward runs with
 * every convolution by im2col: the model's multiply-adds, also where the
 * step runs some by Winograd with fewer), the
 * achieved GFLOP/s counted as 3 x forward FLOPs per image x images/s (the
 * convention PyTorch comparisons use), its ratio to the library's own GEMM
 * peak in the step's precision and engine (fp32: the library's fp32 kernel,
 * the default where the CPU has AVX-512F, or OpenBLAS's sgemm with --engine
 * openblas; bf16: the library's bf16 kernel), and peak RSS. The reference
 * GEMMs (1024^3 on the same threads, timed in the same child just before):
 * OpenBLAS's sgemm, the library's own fp32 kernel and its bf16 kernel (0
 * where the CPU has no AVX-512 BF16).
 * Threads: OpenMP's only (OpenBLAS is kept at one thread per caller).
 *
 * Nothing multi-threaded runs in the parent: libgomp does not survive fork,
 * and a child forked after the parent's parallel region hung in its first one
 * on 2 threads.
 *
 * usage: train_step [--threads T] [--repeats R] [--cpu-time] [--precision fp32|bf16]
 *                   [--engine auto|openblas|own] [--conv auto|im2col]
 *                   [--steps replicas|ops] [config:batch ...]
 *        default: fashion:16 fashion:32 fashion:64 cifar-small:16 cifar-small:32
 *                 cifar-small:64
 * --cpu-time times the steps by process CPU time instead of wall time: with
 * one thread on a machine shared with other work, it counts the step's own
 * work, not the time the scheduler gave to others (the references are timed
 * the same way). --engine openblas multiplies with OpenBLAS only (bf16
 * too: 1.0.0's fp32 products), for comparisons in the same run; --engine own
 * is the default's kernel (auto, where the CPU has AVX-512F). --conv im2col
 * runs every convolution by im2col, none by Winograd (the A/B for
 * lib/ops/conv2d_winograd.c); the mode column then ends in "-im2col".
 * --steps ops runs a step on T threads op by op, each op split over the
 * threads, instead of on replicas (the A/B for lib/model/replicas.c); the
 * mode column then ends in "-ops". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"

static int use_cpu_time;
static agave_precision precision = AGAVE_PRECISION_FP32;
static int engine = GEMM_AUTO;
static int conv_plain;   /* --conv im2col: no convolution by Winograd */
static int op_by_op;     /* --steps ops: no replicas */

static double now(void)
{
    struct timespec t;
    clock_gettime(use_cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *map_floats(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unmap_floats(float *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

/* GFLOP/s of C = A B on 1024^3 through the library's gemm() on `threads`
 * threads with engine `which` (enum gemm_engine) in precision `prec`. Best
 * of 5. */
static double gemm_gflops(int threads, int which, agave_precision prec)
{
    const int n = 1024;
    agave_context *ctx;
    agave_context_create(&ctx, 1);
    agave_context_set_threads(ctx, threads);
    ctx->gemm_engine = which;
    if (agave_context_set_precision(ctx, prec) != AGAVE_OK) {
        agave_context_free(ctx);
        return 0;
    }
    /* mapped, not malloc'ed: freeing 4 MiB malloc blocks would raise glibc's
     * dynamic mmap threshold, and the step's later allocations below it would
     * stay resident in the heap: 6-10 MiB of cifar-small's peak RSS that are
     * this benchmark's, not the step's */
    const size_t bytes = sizeof(float) * n * n;
    float *a = map_floats(bytes), *b = map_floats(bytes), *c = map_floats(bytes);
    if (!a || !b || !c) {
        unmap_floats(a, bytes), unmap_floats(b, bytes), unmap_floats(c, bytes);
        agave_context_free(ctx);
        return 0;
    }
    for (int i = 0; i < n * n; i++)
        a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        gemm(ctx, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    unmap_floats(a, bytes), unmap_floats(b, bytes), unmap_floats(c, bytes);
    agave_context_free(ctx);
    return 2.0 * n * n * n / best / 1e9;
}

static int run(const char *name, int batch, int threads, int repeats)
{
    double blas = gemm_gflops(threads, GEMM_OPENBLAS, AGAVE_PRECISION_FP32);
    double own32 = gemm_gflops(threads, GEMM_OWN, AGAVE_PRECISION_FP32);
    double own16 = gemm_gflops(threads, GEMM_AUTO, AGAVE_PRECISION_BF16);
    double peak = engine == GEMM_OPENBLAS ? blas
                  : precision == AGAVE_PRECISION_BF16 ? own16
                  : own32 > 0 ? own32 : blas;
    printf("GEMM 1024^3 on %d thread(s), GFLOP/s: OpenBLAS sgemm %.1f, agave own fp32 %.1f, "
           "agave bf16 %.1f; %s time\n", threads, blas, own32, own16,
           use_cpu_time ? "process CPU" : "wall");
    agave_context *ctx;
    agave_config cfg;
    agave_model *m;
    if (agave_config_init(&cfg, name) != AGAVE_OK)
        return fprintf(stderr, "train_step: unknown configuration %s\n", name), 2;
    agave_context_create(&ctx, 1);
    agave_context_set_threads(ctx, threads);
    if (agave_context_set_precision(ctx, precision) != AGAVE_OK)
        return fprintf(stderr, "train_step: %s\n", agave_context_last_error(ctx)), 2;
    ctx->gemm_engine = engine;
    ctx->conv_plain = conv_plain;
    ctx->replica_steps_off = op_by_op;
    if (agave_model_create(ctx, &cfg, &m) != AGAVE_OK)
        return fprintf(stderr, "train_step: %s\n", agave_context_last_error(ctx)), 2;
    size_t D = (size_t)cfg.C * cfg.H * cfg.W;
    uint8_t *x = malloc((size_t)batch * D);
    for (size_t i = 0; i < (size_t)batch * D; i++)
        x[i] = (uint8_t)((i * 2654435761u) >> 24);
    agave_model_init(m, x, batch);
    /* forward FLOPs per image, counted with every conv by im2col: the model's
     * multiply-adds, whatever the step runs (Winograd does fewer) */
    model_terms t;
    agave_tape_set_recording(ctx, 0);
    agave_tape_reset(ctx);
    ctx->gemm_flops = 0;
    ctx->conv_plain = 1;
    model_forward(m, x, batch, plan_for_mode(cfg.mode), &t);
    ctx->conv_plain = conv_plain;
    double fwd = (double)ctx->gemm_flops / batch;
    agave_tape_set_recording(ctx, 1);
    agave_tape_reset(ctx);
    agave_step_stats st = {sizeof st, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < 3; i++)
        agave_model_train_step(m, x, batch, &st);
    double *dt = malloc(sizeof(double) * (size_t)repeats);
    struct rusage ru0;
    getrusage(RUSAGE_SELF, &ru0);
    for (int i = 0; i < repeats; i++) {
        double t0 = now();
        if (agave_model_train_step(m, x, batch, &st) != AGAVE_OK)
            return fprintf(stderr, "train_step: %s\n", agave_context_last_error(ctx)), 2;
        dt[i] = now() - t0;
    }
    qsort(dt, (size_t)repeats, sizeof *dt, cmp_double);
    double med = dt[repeats / 2], ips = batch / med, gflops = 3.0 * fwd * ips / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double faults = (double)(ru.ru_minflt - ru0.ru_minflt) / repeats;
    char mode[32];
    snprintf(mode, sizeof mode, "%s%s", engine == GEMM_OPENBLAS ? "openblas"
             : agave_context_precision(ctx) == AGAVE_PRECISION_BF16 ? "bf16"
             : engine == GEMM_OWN ? (conv_plain ? "fp32own-im2col" : "fp32own")
             : conv_plain ? "fp32-im2col" : "fp32", op_by_op ? "-ops" : "");
    printf("%-12s batch %3d threads %d %s | %7.1f images/s | %6.3f s/step | fwd %.3f GFLOP/img | "
           "%6.1f GFLOP/s | %.2f of GEMM peak | peak RSS %6.0f MiB | %.0f page faults/step\n",
           name, batch, threads, mode, ips, med, fwd / 1e9, gflops, peak > 0 ? gflops / peak : 0, ru.ru_maxrss / 1024.0, faults);
    free(dt);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = 2, repeats = 11, first = 1;
    for (; first < argc && argv[first][0] == '-'; first += 2) {
        if (!strcmp(argv[first], "--cpu-time")) {
            use_cpu_time = 1;
            first--;
            continue;
        }
        if (first + 1 >= argc)
            return fprintf(stderr, "train_step: %s needs a value\n", argv[first]), 2;
        if (!strcmp(argv[first], "--threads"))
            threads = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--repeats"))
            repeats = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--precision") && !strcmp(argv[first + 1], "fp32"))
            precision = AGAVE_PRECISION_FP32;
        else if (!strcmp(argv[first], "--precision") && !strcmp(argv[first + 1], "bf16"))
            precision = AGAVE_PRECISION_BF16;
        else if (!strcmp(argv[first], "--engine") && !strcmp(argv[first + 1], "openblas"))
            engine = GEMM_OPENBLAS;
        else if (!strcmp(argv[first], "--engine") && !strcmp(argv[first + 1], "auto"))
            engine = GEMM_AUTO;
        else if (!strcmp(argv[first], "--engine") && !strcmp(argv[first + 1], "own"))
            engine = GEMM_OWN;
        else if (!strcmp(argv[first], "--conv") && !strcmp(argv[first + 1], "im2col"))
            conv_plain = 1;
        else if (!strcmp(argv[first], "--conv") && !strcmp(argv[first + 1], "auto"))
            conv_plain = 0;
        else if (!strcmp(argv[first], "--steps") && !strcmp(argv[first + 1], "ops"))
            op_by_op = 1;
        else if (!strcmp(argv[first], "--steps") && !strcmp(argv[first + 1], "replicas"))
            op_by_op = 0;
        else
            return fprintf(stderr, "train_step: unknown option or value %s %s\n", argv[first], argv[first + 1]), 2;
    }
    if (threads < 1 || repeats < 1)
        return fprintf(stderr, "train_step: --threads and --repeats must be >= 1\n"), 2;
    const char *defaults[] = {"fashion:16",     "fashion:32",     "fashion:64",
                              "cifar-small:16", "cifar-small:32", "cifar-small:64"};
    int n_runs = argc > first ? argc - first : 6;
    int rc = 0;
    for (int r = 0; r < n_runs; r++) {
        const char *spec = argc > first ? argv[first + r] : defaults[r];
        char name[64];
        int batch = 16;
        const char *colon = strchr(spec, ':');
        snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec),
                 spec);
        if (colon)
            batch = atoi(colon + 1);
        pid_t pid = fork();
        if (pid == 0) {
            int status = run(name, batch, threads, repeats);
            fflush(stdout);   /* _exit does not flush stdio */
            _exit(status);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        rc |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        fflush(stdout);
    }
    return rc;
}
