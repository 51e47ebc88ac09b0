/* The per-pixel marginal-histogram baseline: each of the D = C*H*W
 * dimensions gets its own 256-bin histogram over the training images, with
 * add-one smoothing, and pixels are scored independently. It ignores every
 * dependency between pixels, so any image model worth training beats it. */
#include <math.h>
#include <stdlib.h>

#include "data.h"

#define BASELINE_MAX_TABLE ((uint64_t)1 << 30)   /* bytes of counts */
#define LOG_CACHE 65536                           /* log2(k + 1) for small counts */

typedef unsigned long long ull;

static agave_status baseline_check(agave_context *ctx, const uint8_t *train, size_t n_train,
                                   const uint8_t *test, size_t n_test, int channels, int height,
                                   int width, const double *bpd, uint64_t *dims)
{
    if (!test || !bpd || (n_train > 0 && !train))
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_marginal_baseline_bpd: NULL argument");
    if (channels < 1 || height < 1 || width < 1 || n_test < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_marginal_baseline_bpd: %llu test images of %dx%dx%d, expected "
                         "at least 1 image with every size >= 1",
                         (ull)n_test, channels, height, width);
    /* Each factor is below 2^31 and the limit below 2^31: no product overflows. */
    const uint64_t max_dims = BASELINE_MAX_TABLE / (256 * sizeof(uint32_t));
    uint64_t plane = (uint64_t)channels * (uint64_t)height;
    *dims = plane > max_dims ? max_dims + 1 : plane * (uint64_t)width;
    if (*dims > max_dims)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "agave_marginal_baseline_bpd: %dx%dx%d images need more than %llu "
                         "bytes of histograms (256 counts per dimension)",
                         channels, height, width, (ull)BASELINE_MAX_TABLE);
    if ((uint64_t)n_train > UINT32_MAX - 256)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "agave_marginal_baseline_bpd: %llu training images, at most %llu",
                         (ull)n_train, (ull)(UINT32_MAX - 256));
    return AGAVE_OK;
}

/* counts is (D,256): counts[d*256 + v] = images whose dimension d is v. */
static void count_values(const uint8_t *train, size_t n_train, size_t dims, uint32_t *counts)
{
    for (size_t i = 0; i < n_train; i++) {
        const uint8_t *x = train + i * dims;
        for (size_t d = 0; d < dims; d++)
            counts[d * 256 + x[d]]++;
    }
}

/* Sum over test pixels of -log2 p = log2(n_train + 256) - log2(count + 1). */
static double total_bits(const uint8_t *test, size_t n_test, size_t dims, size_t n_train,
                         const uint32_t *counts, const double *log_cache)
{
    double denominator = log2((double)n_train + 256.0);
    double bits = 0.0;
    for (size_t i = 0; i < n_test; i++) {
        const uint8_t *x = test + i * dims;
        double image_bits = 0.0;   /* per image first: keeps the long sum accurate */
        for (size_t d = 0; d < dims; d++) {
            uint32_t c = counts[d * 256 + x[d]];
            image_bits += denominator - (c < LOG_CACHE ? log_cache[c] : log2((double)c + 1.0));
        }
        bits += image_bits;
    }
    return bits;
}

agave_status agave_marginal_baseline_bpd(agave_context *ctx, const uint8_t *train,
                                         size_t n_train, const uint8_t *test, size_t n_test,
                                         int channels, int height, int width, double *bpd)
{
    uint64_t dims = 0;
    agave_status st =
        baseline_check(ctx, train, n_train, test, n_test, channels, height, width, bpd, &dims);
    if (st != AGAVE_OK)
        return st;
    uint32_t *counts = calloc((size_t)dims * 256, sizeof *counts);
    double *log_cache = malloc(LOG_CACHE * sizeof *log_cache);
    if (!counts || !log_cache) {
        free(counts);
        free(log_cache);
        return ctx_error(ctx, AGAVE_ERR_NOMEM,
                         "agave_marginal_baseline_bpd: out of memory for the histograms");
    }
    for (int k = 0; k < LOG_CACHE; k++)
        log_cache[k] = log2((double)k + 1.0);
    count_values(train, n_train, (size_t)dims, counts);
    double bits = total_bits(test, n_test, (size_t)dims, n_train, counts, log_cache);
    *bpd = bits / ((double)n_test * (double)dims);
    free(counts);
    free(log_cache);
    return AGAVE_OK;
}
