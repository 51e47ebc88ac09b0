/* Fast sampling of the conditional PixelCNN++ with caches (Ramachandran et
 * al. 2017, "Fast Generation for Convolutional Autoregressive Models"): each
 * activation of the network is computed once per image, at the step where
 * every pixel it depends on has been drawn, instead of once per pixel.
 * Internal to the library; lib/model/sample.c routes agave_model_sample and
 * agave_model_reconstruct through it (model_sample_with in model.h). */
#ifndef AGAVE_SAMPLE_CACHED_H
#define AGAVE_SAMPLE_CACHED_H

#include "model.h"

typedef struct cached_sampler cached_sampler;

/* Caches for batches of up to n images of m's PixelCNN (set for n; smaller
 * batches by cached_sampler_set_batch), with its weight-normalised weights
 * computed now (so: after model_apply_average, in evaluation mode - dropout
 * is not applied). conditional: the gated blocks add the projections of the
 * conditioning stream (f is given to cached_sampler_begin), as
 * pixelcnn_forward does when f is not NULL. Uses the context's arena. */
agave_status cached_sampler_create(agave_model *m, int n, int conditional,
                                   cached_sampler **out);
void cached_sampler_free(cached_sampler *s);

/* From now on batches of n images, 1 <= n <= the n it was created with: the
 * caches are kept (the codec's batches grow from 1 to its batch size). The
 * lanes are those a sampler created for n would have. */
agave_status cached_sampler_set_batch(cached_sampler *s, int n);

/* Starts a batch of n images. f is f(z) (n,C,H/s,W/s) when conditional
 * (else NULL); it is read now. x (n,C,H,W) is where the pixels are: it is
 * read pixel by pixel, pixel (r,c) at the step after (r,c), so it may be
 * filled as the samples are drawn (or hold a whole image to replay). */
agave_status cached_sampler_begin(cached_sampler *s, const float *f, const uint8_t *x);

/* The mixture parameters of pixel (r,c) of every image: *params is (n,P),
 * image i's P numbers at *params + i*P, valid until the next call. Pixels
 * are stepped in raster order from (0,0); pixels before (r,c) in x must hold
 * their final values. Equals pixelcnn_forward's output at (r,c) up to
 * float rounding. */
agave_status cached_sampler_step(cached_sampler *s, int r, int c, const float **params);

/* ---- every pixel with a caller's hook (the codec, lib/codec) ---- */
/* Called by lane `lane`, which holds images [first, first + count) of the
 * batch, once pixel p's parameters are computed: params is (count, P), image
 * first + i's P numbers at params + i*P, valid during the call. Before it
 * returns, pixel p of those images must hold its final value in the x given to
 * cached_sampler_begin (the lane reads it at its next step). Lanes run on
 * their own threads at once: a hook may touch only what belongs to its lane.
 * A status other than AGAVE_OK stops that lane. */
typedef agave_status (*cached_pixel_hook)(void *user, int lane, int first, int count, int p,
                                          const float *params);

/* Runs every lane through all H*W pixels from (0,0), each lane on its own
 * thread, calling hook after each pixel; after cached_sampler_begin, in place
 * of cached_sampler_step. The arithmetic of a lane depends only on its
 * images, not on the other lanes nor on the order the lanes run in. Returns
 * the first failing lane's status. */
agave_status cached_sampler_run(cached_sampler *s, cached_pixel_hook hook, void *user);

/* ---- fixed products (the codec) ---- */
/* 1 if this CPU can fix the products (AVX-512F). */
int cached_sampler_fixed_products_available(void);

/* From now on every product of s runs on the library's AVX-512 kernel, in
 * which each element is summed in an order fixed by k alone
 * (lib/core/gemm_avx512.h): an activation's bits then do not depend on how
 * many positions are computed at once. AGAVE_ERR_STATE without AVX-512F. */
agave_status cached_sampler_fix_products(cached_sampler *s);

/* cached_sampler_run for an x that holds every pixel already (the encoder):
 * each image row's ul positions run as one product per layer, the hook is
 * called after each pixel as by cached_sampler_run, with the same bits
 * (fixed products required: AGAVE_ERR_STATE otherwise). The hook must not
 * change x. */
agave_status cached_sampler_run_known(cached_sampler *s, cached_pixel_hook hook, void *user);

/* How the batch is split: lanes (min(context threads, n)) and lane t's images. */
int cached_sampler_lanes(const cached_sampler *s);
void cached_sampler_lane_images(const cached_sampler *s, int t, int *first, int *count);

/* The naive sampler's loop with the caches: x (n,C,H,W) drawn pixel by pixel
 * with dmol_pixel_sample per image per pixel, in the same order, from the
 * context's generator. f is f(z) (n,C,H/s,W/s), or NULL (unconditional). */
agave_status sample_pixels_cached(agave_model *m, int n, const float *f, uint8_t *x);

#endif
