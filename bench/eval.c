/* Evaluation speed: agave_model_evaluate with K importance samples (IWAE, the
 * paper's K = 150), in images per second, with the forward FLOPs it runs.
 *
 * usage: eval [--threads N] [--samples K] [--images N] [--cpu-time] [config]
 *   config        a named configuration (default fashion), mode agave
 *   --threads N   context threads (default: the online CPUs)
 *   --samples K   importance samples per image (default 150)
 *   --images N    images per evaluation call (default 8)
 *   --cpu-time    time by process CPU time (one thread on a shared machine)
 *
 * Each image is encoded once and its K samples go through the decoder and the
 * PixelCNN together, in chunks of 32 (lib/model/eval.c): the cost is about
 * K forward passes of the decoder and PixelCNN per image. The model is
 * initialised on 16 random images; one untimed call warms the arena, then
 * the best of three timed calls is reported, with the GFLOP/s of the GEMMs it
 * ran (the context's counter) and the load average, since a shared machine
 * skews wall-clock figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"

static double seconds(int cpu)
{
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
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

int main(int argc, char **argv)
{
    const char *name = "fashion";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), K = 150, n = 8, cpu = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
            K = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--images") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-time"))
            cpu = 1;
        else if (argv[i][0] != '-')
            name = argv[i];
        else {
            fprintf(stderr, "usage: eval [--threads N] [--samples K] [--images N] [--cpu-time] "
                            "[config]\n");
            return 2;
        }
    }
    agave_config cfg;
    agave_context *ctx;
    agave_model *m;
    if (agave_config_init(&cfg, name) != AGAVE_OK || threads < 1 || K < 0 || n < 1) {
        fprintf(stderr, "eval: bad configuration or option\n");
        return 2;
    }
    if (agave_context_create(&ctx, 1) != AGAVE_OK ||
        agave_context_set_threads(ctx, threads) != AGAVE_OK ||
        agave_model_create(ctx, &cfg, &m) != AGAVE_OK) {
        fprintf(stderr, "eval: cannot create the model\n");
        return 2;
    }
    size_t D = (size_t)cfg.C * cfg.H * cfg.W, count = (size_t)(n > 16 ? n : 16) * D;
    uint8_t *x = malloc(count);
    for (size_t i = 0; x && i < count; i++)
        x[i] = (uint8_t)(i * 2654435761u >> 24);
    agave_eval_stats st = {.struct_size = sizeof st};
    if (!x || agave_model_init(m, x, 16) != AGAVE_OK ||
        agave_model_evaluate(m, x, n, K, &st) != AGAVE_OK) {
        fprintf(stderr, "eval: %s\n", agave_context_last_error(ctx));
        return 2;
    }
    double best = 1e30, flops = 0;
    for (int r = 0; r < 3; r++) {
        ctx->gemm_flops = 0;
        double t0 = seconds(cpu);
        agave_model_evaluate(m, x, n, K, &st);
        double dt = seconds(cpu) - t0;
        if (dt < best)
            best = dt, flops = (double)ctx->gemm_flops;
    }
    printf("eval %s: K = %d, %d images a call, %d thread%s: %.3f s a call, %.2f images/s, "
           "%.1f GFLOP/s (%s time, load average %.2f)\n",
           name, K, n, threads, threads == 1 ? "" : "s", best, n / best, flops / best / 1e9,
           cpu ? "CPU" : "wall", load_average());
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
    return 0;
}
