/* Sampling speed: the cached sampler (the default of agave_model_sample)
 * against the naive one (a full PixelCNN forward per pixel).
 *
 * usage: sample [--threads N] [--naive-pixels K] [--full-naive B] [--cpu-time] [config]
 *   config          a named configuration (default fashion), mode agave
 *   --threads N     context threads (default: the online CPUs)
 *   --naive-pixels  pixels of the naive sampler timed per batch size (default
 *                   28, one row of a 28x28 image); its time for a whole image
 *                   is extrapolated from them (every pixel costs one full
 *                   forward of the same size, so the cost per pixel is flat)
 *   --full-naive B  run the naive sampler whole at batch sizes <= B instead
 *                   (to check the extrapolation; at batch 64 that takes long:
 *                   3136 forward passes of batch 16)
 *   --cpu-time      time by process CPU time instead of wall time: with one
 *                   thread, a figure that other processes on a shared machine
 *                   barely disturb (with more threads it adds the threads up)
 *
 * The model is initialised data-dependently on 16 random images. For batch
 * sizes 1, 16 and 64, the cached sampler is timed through model_sample_with
 * (what agave_model_sample runs: z from the prior, f(z), pixels), the best
 * of a few runs; the naive sampler either the same way (--full-naive) or by
 * timing its per-pixel loop body exactly as lib/model/sample.c runs it
 * (tape reset, f(z) and the image as tensors, pixelcnn_forward,
 * dmol_pixel_sample per image) on K pixels after one untimed pixel.
 * Both samplers sample a batch in chunks of at most 16 images (SAMPLE_CHUNK
 * in lib/model/sample.c): batch 64 is four chunks. The cached sampler on one
 * chunk of 64 (sample_pixels_cached, not reachable through the API) is
 * printed too. Times are wall clock (CLOCK_MONOTONIC) unless --cpu-time; the
 * machine's load average is printed because a shared machine skews every
 * wall-clock figure. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loss/loss.h"
#include "model/model.h"
#include "model/sample_cached.h"

#define CHUNK 16   /* SAMPLE_CHUNK of lib/model/sample.c */

static clockid_t clock_used = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec t;
    clock_gettime(clock_used, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(agave_context *ctx, agave_status st, const char *what)
{
    if (st == AGAVE_OK)
        return;
    fprintf(stderr, "sample: %s: %s\n", what, agave_context_last_error(ctx));
    exit(1);
}

/* Best wall time of `runs` runs of the cached sampler on n images. */
static double time_cached(agave_model *m, int n, int runs, uint8_t *x)
{
    double best = 1e30;
    for (int r = 0; r < runs; r++) {
        double t = now();
        check(m->ctx, model_sample_with(m, MODEL_SAMPLER_CACHED, NULL, n, 1 + r, NULL, x),
              "cached sampler");
        t = now() - t;
        best = t < best ? t : best;
    }
    return best;
}

/* The cached sampler on one chunk of n images, f(z) random (its values do
 * not change the work), in evaluation mode as the sampling frame runs it. */
static double time_cached_one_chunk(agave_model *m, int n, uint8_t *x)
{
    const agave_config *c = &m->cfg;
    size_t count = (size_t)n * c->C * (c->H / c->s) * (c->W / c->s);
    float *f = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++)
        f[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    model_set_training(m, 0);
    agave_tape_set_recording(m->ctx, 0);
    agave_tape_reset(m->ctx);
    double t = now();
    check(m->ctx, sample_pixels_cached(m, n, f, x), "cached sampler (one chunk)");
    t = now() - t;
    agave_tape_set_recording(m->ctx, 1);
    model_set_training(m, 1);
    free(f);
    return t;
}

/* Seconds per pixel of the naive sampler's loop on a chunk of n images:
 * pixels 1..k timed after pixel 0 (untimed: first-use costs). */
static double naive_seconds_per_pixel(agave_model *m, int n, int k, uint8_t *x)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    int dims_f[4] = {n, c->C, c->H / c->s, c->W / c->s};
    size_t plane = (size_t)c->H * c->W, P = (size_t)dmol_param_count(c->C, c->M);
    size_t f_count = (size_t)n * c->C * (c->H / c->s) * (c->W / c->s);
    float *f_saved = malloc(f_count * sizeof(float));
    for (size_t i = 0; i < f_count; i++)
        f_saved[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    memset(x, 0, (size_t)n * c->C * plane);
    model_set_training(m, 0);
    agave_tape_set_recording(ctx, 0);
    double t0 = 0;
    for (int p = 0; p <= k && p < (int)plane; p++) {
        if (p == 1)
            t0 = now();
        agave_tape_reset(ctx);
        agave_tensor *f = tensor_new_arena(ctx, 4, dims_f), *params;
        memcpy(f->data, f_saved, f->numel * sizeof(float));
        agave_tensor *xt = image_tensor(ctx, x, n, c->C, c->H, c->W);
        check(ctx, pixelcnn_forward(m, xt, f, &params), "naive forward");
        for (int i = 0; i < n; i++)
            dmol_pixel_sample(params->data + (size_t)i * P * plane + p, plane, c->C, c->M,
                              &ctx->rng, x + (size_t)i * c->C * plane + p, plane);
    }
    double per_pixel = (now() - t0) / k;
    agave_tape_reset(ctx);
    agave_tape_set_recording(ctx, 1);
    model_set_training(m, 1);
    free(f_saved);
    return per_pixel;
}

static double time_naive_full(agave_model *m, int n, uint8_t *x)
{
    double t = now();
    check(m->ctx, model_sample_with(m, MODEL_SAMPLER_NAIVE, NULL, n, 1, NULL, x),
          "naive sampler");
    return now() - t;
}

int main(int argc, char **argv)
{
    const char *name = "fashion";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), k = 28, full = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--naive-pixels") && i + 1 < argc)
            k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full-naive") && i + 1 < argc)
            full = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-time"))
            clock_used = CLOCK_PROCESS_CPUTIME_ID;
        else if (argv[i][0] != '-')
            name = argv[i];
        else {
            fprintf(stderr, "usage: sample [--threads N] [--naive-pixels K] [--full-naive B] "
                            "[--cpu-time] [config]\n");
            return 2;
        }
    }
    agave_context *ctx;
    agave_config cfg;
    agave_model *m;
    agave_context_create(&ctx, 1);
    check(ctx, agave_context_set_threads(ctx, threads < 1 ? 1 : threads), "threads");
    check(ctx, agave_config_init(&cfg, name), name);
    check(ctx, agave_model_create(ctx, &cfg, &m), "model");
    size_t D = (size_t)cfg.C * cfg.H * cfg.W;
    uint8_t *x = malloc(64 * D);
    for (size_t i = 0; i < 16 * D; i++)
        x[i] = (uint8_t)(i * 2654435761u >> 24);
    check(ctx, agave_model_init(m, x, 16), "init");
    int pixels = cfg.H * cfg.W;
    if (k < 1 || k >= pixels)
        k = pixels - 1;
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    printf("configuration %s (%dx%dx%d, F = %d, R = %d, M = %d), mode agave\n", name, cfg.C,
           cfg.H, cfg.W, cfg.F, cfg.R, cfg.M);
    printf("context threads %d; OpenBLAS threads %d after the library's GEMMs (%s, core %s); "
           "load average %.2f\n",
           agave_context_threads(ctx), openblas_get_num_threads(), openblas_get_config(),
           openblas_get_corename(), load[0]);
    printf("cached sampler: min(threads, images) lanes per chunk; naive sampler: %d of %d "
           "pixels timed per chunk and extrapolated%s; %s\n",
           k, pixels, full ? " (whole runs where marked)" : "",
           clock_used == CLOCK_MONOTONIC ? "wall time" : "process CPU time");
    printf("| batch | cached images/s | naive images/s | cached / naive |\n|---|---|---|---|\n");
    const int batches[3] = {1, 16, 64};
    for (int b = 0; b < 3; b++) {
        int n = batches[b], chunks = (n + CHUNK - 1) / CHUNK, chunk = n < CHUNK ? n : CHUNK;
        double cached = time_cached(m, n, n == 1 ? 5 : n == 16 ? 3 : 2, x);
        int whole = n <= full;
        double naive = whole ? time_naive_full(m, n, x)
                             : chunks * pixels * naive_seconds_per_pixel(m, chunk, k, x);
        printf("| %d | %.2f | %.4f (%s) | %.0f |\n", n, n / cached, n / naive,
               whole ? "whole run" : "extrapolated", naive / cached);
        fflush(stdout);
    }
    double one = time_cached_one_chunk(m, 64, x);
    printf("cached sampler on one chunk of 64 images (sample_pixels_cached): %.2f images/s\n",
           64 / one);
    getloadavg(load, 3);
    printf("load average at the end %.2f\n", load[0]);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
    return 0;
}
