/* The model behind the codec's fuzz harness (fuzz/fuzz_codec.c) and its seeds
 * (fuzz/make_corpus.c): the same every time (a seeded context, initialised on
 * fixed images), and small (1x8x8 images, widths of 2, a 4-dimensional latent
 * code), so that decoding an input takes a millisecond or so. */
#ifndef AGAVE_FUZZ_CODEC_MODEL_H
#define AGAVE_FUZZ_CODEC_MODEL_H

#include <string.h>

#include "agave.h"

#define FUZZ_CODEC_MAX_IMAGES 64

/* n fixed images (n,1,8,8): a gradient, black, white and a pattern. */
static inline void fuzz_codec_images(uint8_t *x, int n)
{
    for (int i = 0; i < n * 64; i++) {
        int k = i / 64, p = i % 64;
        x[i] = (uint8_t)(k % 4 == 0 ? p * 4 : k % 4 == 1 ? 0 : k % 4 == 2 ? 255 : (p * 37 + k) % 251);
    }
}

/* NULL if the model cannot be made (out of memory). */
static inline agave_model *fuzz_codec_model(agave_context *ctx)
{
    agave_config cfg;
    agave_config_init(&cfg, "tiny");
    static const char *const kv[][2] = {{"F", "2"}, {"R", "0"}, {"M", "2"}, {"Fv", "2"},
                                        {"Rv", "0"}, {"Z", "1"}, {"T", "0"}};
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        agave_config_set(&cfg, kv[i][0], kv[i][1]);
    agave_model *m = NULL;
    uint8_t x[8 * 64];
    fuzz_codec_images(x, 8);
    agave_context_seed(ctx, 5);
    if (agave_model_create(ctx, &cfg, &m) != AGAVE_OK || agave_model_init(m, x, 8) != AGAVE_OK) {
        agave_model_free(m);
        return NULL;
    }
    return m;
}

#endif
