/* Speed of the lossless codec (docs/codec.md, "Speed"): images/s of
 * agave_codec_encode and agave_codec_decode on the first N test images of a
 * data set, with a batch size and a thread count, repeated R times (the
 * range is printed) after one untimed round (the first touches every
 * buffer, which made it the slow end of every range); each decode is
 * checked against the images. Last on the line: the range of each run's
 * encoding speed over its decoding speed (a ratio within one run, which the
 * machine's drift disturbs less than the two ranges).
 *
 *   make bench
 *   ./build/bench/codec_speed CHECKPOINT DATA [N=256] [BATCH=64] [THREADS=1] [R=3]
 *
 * The figures in docs/codec.md come from bench/codec.sh, which runs this
 * under flock /work/coord/bench.lock for 1 and 2 threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agave.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int die(agave_context *ctx, const char *what)
{
    fprintf(stderr, "codec_speed: %s: %s\n", what, ctx ? agave_context_last_error(ctx) : "");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: codec_speed CHECKPOINT DATA [N] [BATCH] [THREADS] [REPEATS]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 256, batch = argc > 4 ? atoi(argv[4]) : 64;
    int threads = argc > 5 ? atoi(argv[5]) : 1, repeats = argc > 6 ? atoi(argv[6]) : 3;
    agave_context *ctx;
    agave_model *m;
    agave_dataset *ds;
    if (agave_context_create(&ctx, 1) != AGAVE_OK)
        return die(NULL, "context");
    if (agave_context_set_threads(ctx, threads) != AGAVE_OK)
        return die(ctx, "threads");
    if (agave_model_load(ctx, argv[1], NULL, &m) != AGAVE_OK)
        return die(ctx, argv[1]);
    if (agave_dataset_open(ctx, argv[2], AGAVE_SPLIT_TEST, &ds) != AGAVE_OK)
        return die(ctx, argv[2]);
    if ((size_t)n > agave_dataset_count(ds))
        n = (int)agave_dataset_count(ds);
    size_t D = (size_t)agave_dataset_channels(ds) * agave_dataset_height(ds) *
               agave_dataset_width(ds);
    const uint8_t *x = agave_dataset_pixels(ds);
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.batch = batch;
    size_t cap, size = 0;
    if (agave_codec_bound(m, &opt, n, &cap) != AGAVE_OK)
        return die(ctx, "bound");
    uint8_t *file = malloc(cap), *y = malloc((size_t)n * D);
    double enc_lo = 1e30, enc_hi = 0, dec_lo = 1e30, dec_hi = 0, ratio_lo = 1e30, ratio_hi = 0;
    for (int r = -1; r < repeats; r++) {   /* r = -1: untimed warm-up (first touch) */
        double t0 = now();
        if (agave_codec_encode(m, &opt, x, n, file, cap, &size) != AGAVE_OK)
            return die(ctx, "encode");
        double t1 = now();
        int64_t got;
        if (agave_codec_decode(m, file, size, y, n, &got) != AGAVE_OK)
            return die(ctx, "decode");
        double t2 = now();
        if (got != n || memcmp(x, y, (size_t)n * D) != 0)
            return die(NULL, "the decoded images differ");
        if (r < 0)
            continue;
        double e = n / (t1 - t0), d = n / (t2 - t1);
        enc_lo = e < enc_lo ? e : enc_lo, enc_hi = e > enc_hi ? e : enc_hi;
        dec_lo = d < dec_lo ? d : dec_lo, dec_hi = d > dec_hi ? d : dec_hi;
        ratio_lo = e / d < ratio_lo ? e / d : ratio_lo, ratio_hi = e / d > ratio_hi ? e / d : ratio_hi;
    }
    printf("%d images, batch %d, %d thread%s: encode %.1f-%.1f images/s, decode %.1f-%.1f "
           "images/s (%d runs), %.4f bits/dim, encode/decode %.2f-%.2f\n",
           n, batch, threads, threads == 1 ? "" : "s", enc_lo, enc_hi, dec_lo, dec_hi, repeats,
           8.0 * (double)size / ((double)n * (double)D), ratio_lo, ratio_hi);
    free(file), free(y);
    agave_dataset_free(ds);
    agave_model_free(m);
    agave_context_free(ctx);
    return 0;
}
