/* Bits-back coding of a batch of images with rANS (Townsend, Bird & Barber
 * 2019, "BB-ANS"), driven by an AGAVE model.
 *
 * Encoding one image x onto a stack, given its posterior q(z|x):
 *   1. pop z from the stack with q(z|x): the bits taken are "got back";
 *   2. push x with p(x|z), sub-pixel by sub-pixel (the PixelCNN's mixture
 *      conditioned on f(z));
 *   3. push z with the prior p(z).
 * The stack grows by -log p(x|z) - log p(z) + log q(z|x) bits: the negative
 * ELBO. Decoding runs the inverse steps in reverse order: pop z with p(z), pop
 * x with p(x|z) pixel by pixel (the PixelCNN is autoregressive: pixel p's
 * distribution needs pixels before p), then push z back with q(z|x), which
 * returns the stack to where the encoder found it before the image.
 *
 * Batches: the cached sampler (lib/model/sample_cached.c) splits a batch of n
 * images into lanes that run on their own threads; each lane has a stack of
 * its own here (a "chain"), so the lanes never wait for each other. A chain
 * codes its lane's images in order, every step for all of them at once:
 *   encoder: pop every image's z (images in order, dimensions in order); run
 *            the PixelCNN over the batch recording each sub-pixel's interval;
 *            push the sub-pixels last to first; push every z last to first.
 *   decoder: pop every z; run the PixelCNN, popping each pixel of each image
 *            as it comes (pixel, then image, then channel); push every z back
 *            with q, last to first.
 * Both sides compute every float the same way: the same batch through the
 * same networks (the VAE's encoder and decoder on the whole batch, the cached
 * sampler's lanes), on a machine and thread count the file's header has
 * checked. With fixed products (codec_fixed_products) the encoder, which
 * knows the images, runs the PixelCNN a row at a time: the same bits as the
 * decoder's pixel-by-pixel steps, in far fewer and larger products. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

agave_status codec_core_init(codec_core *k, agave_model *m, const codec_plan *plan)
{
    memset(k, 0, sizeof *k);
    k->m = m, k->ctx = m->ctx, k->plan = *plan;
    const size_t B = (size_t)plan->batch, HW = (size_t)plan->H * plan->W;
    const agave_config *c = &m->cfg;
    size_t f_count = (size_t)c->C * (c->H / c->s) * (c->W / c->s);
    k->chain = calloc((size_t)plan->chains, sizeof *k->chain);
    k->counts = calloc((size_t)plan->chains, sizeof *k->counts);
    k->fail = calloc((size_t)plan->chains, sizeof *k->fail);
    k->rec = malloc(B * HW * plan->C * 2 * sizeof *k->rec);
    k->x = malloc(B * plan->D);
    int ok = k->chain && k->counts && k->fail && k->rec && k->x;
    if (ok && plan->latent) {
        k->zidx = malloc(B * plan->latent * sizeof *k->zidx);
        k->qmu = malloc(B * plan->latent * sizeof *k->qmu);
        k->qls = malloc(B * plan->latent * sizeof *k->qls);
        k->f = malloc(B * f_count * sizeof *k->f);
        ok = k->zidx && k->qmu && k->qls && k->f && latent_grid_init(&k->grid, plan->latent_bits);
    }
    if (!ok) {
        codec_core_free(k);
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "codec: out of memory for a batch of %d",
                         plan->batch);
    }
    return AGAVE_OK;
}

void codec_core_free(codec_core *k)
{
    for (int t = 0; k->chain && t < k->plan.chains; t++)
        rans_free(&k->chain[t]);
    cached_sampler_free(k->sampler);
    latent_grid_free(&k->grid);
    free(k->chain), free(k->counts), free(k->fail), free(k->rec), free(k->x);
    free(k->zidx), free(k->qmu), free(k->qls), free(k->f);
    memset(k, 0, sizeof *k);
}

agave_status codec_core_start_chunk(codec_core *k, int64_t index)
{
    size_t max_words = codec_chain_max_words(&k->plan, k->plan.chunk);
    for (int t = 0; t < k->plan.chains; t++) {
        rans_free(&k->chain[t]);
        rans_init(&k->chain[t], codec_chain_seed(&k->plan, index, t), max_words);
    }
    return AGAVE_OK;
}

/* ---- the networks ------------------------------------------------------------------ */
/* The sampler, made once for the plan's batch, set for a batch of n. Its
 * lanes are the chains: never more of them than the plan has stacks. */
static agave_status sampler_for(codec_core *k, int n)
{
    if (!k->sampler) {
        TRY(cached_sampler_create(k->m, k->plan.batch, k->plan.latent > 0, &k->sampler));
        if (codec_fixed_products())
            TRY(cached_sampler_fix_products(k->sampler));
    }
    TRY(cached_sampler_set_batch(k->sampler, n));
    if (cached_sampler_lanes(k->sampler) > k->plan.chains)
        return ctx_error(k->ctx, AGAVE_ERR_STATE, "codec: %d lanes for %d chains: the context's "
                         "thread count changed since the coder was made",
                         cached_sampler_lanes(k->sampler), k->plan.chains);
    return AGAVE_OK;
}

/* q(z|x) of the batch x (n,C,H,W): mean and log-std into k->qmu, k->qls. */
static agave_status posterior(codec_core *k, const uint8_t *x, int n)
{
    const codec_plan *p = &k->plan;
    agave_tensor *xt = image_tensor(k->ctx, x, n, p->C, p->H, p->W), *mean, *log_std, *context;
    if (!xt)
        return ctx_error(k->ctx, AGAVE_ERR_NOMEM, "codec: out of arena memory");
    TRY(vae_encode(k->m, xt, &mean, &log_std, &context));
    memcpy(k->qmu, mean->data, (size_t)n * p->latent * sizeof(float));
    memcpy(k->qls, log_std->data, (size_t)n * p->latent * sizeof(float));
    return AGAVE_OK;
}

/* f(z) of the batch's buckets (their centres) into k->f. */
static agave_status decode_latents(codec_core *k, int n)
{
    const agave_config *c = &k->m->cfg;
    int dims[4] = {n, c->Z, c->H / 4, c->W / 4};
    agave_tensor *z = tensor_new_arena(k->ctx, 4, dims), *f;
    if (!z)
        return ctx_error(k->ctx, AGAVE_ERR_NOMEM, "codec: out of arena memory");
    for (size_t i = 0; i < z->numel; i++)
        z->data[i] = k->grid.centre[k->zidx[i]];
    TRY(vae_decode(k->m, z, &f));
    memcpy(k->f, f->data, f->numel * sizeof(float));
    return AGAVE_OK;
}

/* ---- the latent code, one chain ------------------------------------------------- */
static double inv_sigma(float log_std) { return exp(-(double)log_std); }

/* Encoder, step 1: images [first, first + count) pop their buckets with q. */
static void pop_posterior(codec_core *k, int t, int first, int count)
{
    rans_stack *r = &k->chain[t];
    const size_t L = k->plan.latent;
    for (size_t i = (size_t)first * L; i < (size_t)(first + count) * L; i++) {
        uint32_t start, freq, slot = rans_peek(r, CODEC_LATENT_PREC);
        k->zidx[i] = latent_find(&k->grid, k->qmu[i], inv_sigma(k->qls[i]), slot, &start, &freq);
        rans_pop(r, start, freq, CODEC_LATENT_PREC);
        k->counts[t].posterior_bits += CODEC_LATENT_PREC - log2((double)freq);
    }
}

/* Encoder, step 3: the buckets with the prior (2^-bits each), last first. */
static void push_prior(codec_core *k, int t, int first, int count)
{
    rans_stack *r = &k->chain[t];
    const size_t L = k->plan.latent;
    for (size_t i = (size_t)(first + count) * L; i-- > (size_t)first * L;)
        rans_push(r, k->zidx[i], 1, k->grid.bits);
    k->counts[t].prior_bits += (double)count * L * k->grid.bits;
}

/* Decoder, first step: the buckets with the prior, first first. */
static void pop_prior(codec_core *k, int t, int first, int count)
{
    rans_stack *r = &k->chain[t];
    const size_t L = k->plan.latent;
    for (size_t i = (size_t)first * L; i < (size_t)(first + count) * L; i++) {
        k->zidx[i] = rans_peek(r, k->grid.bits);
        rans_pop(r, k->zidx[i], 1, k->grid.bits);
    }
}

/* Decoder, last step: the buckets back with q, last first. A bucket with no
 * interval under q (only a damaged stream gets here) stops the lane with
 * AGAVE_ERR_FORMAT in k->fail[t]. */
static void push_posterior(codec_core *k, int t, int first, int count)
{
    rans_stack *r = &k->chain[t];
    const size_t L = k->plan.latent;
    for (size_t i = (size_t)(first + count) * L; i-- > (size_t)first * L;) {
        double mu = k->qmu[i], inv = inv_sigma(k->qls[i]);
        uint32_t start = latent_cdf(&k->grid, mu, inv, k->zidx[i]);
        uint32_t end = latent_cdf(&k->grid, mu, inv, k->zidx[i] + 1);
        if (end <= start) {
            k->fail[t].status = AGAVE_ERR_FORMAT;
            return;
        }
        rans_push(r, start, end - start, CODEC_LATENT_PREC);
    }
}

/* Runs step for every lane's images, the lanes on threads of their own as in
 * the cached sampler: a step touches only its lane's chain, counts and
 * images, so the stacks come out the same on any number of threads. */
typedef void lane_step(codec_core *k, int t, int first, int count);
static void each_lane(codec_core *k, lane_step *step)
{
    const int lanes = cached_sampler_lanes(k->sampler);
#pragma omp parallel for num_threads(lanes) schedule(static, 1) if (lanes > 1)
    for (int t = 0; t < lanes; t++) {
        int first, count;
        cached_sampler_lane_images(k->sampler, t, &first, &count);
        step(k, t, first, count);
    }
}

/* ---- the pixels, one lane at a time (cached_sampler_run's hooks) ------------------ */
static agave_status lane_failed(codec_core *k, int t, agave_status st, int image, int p, int c)
{
    k->fail[t] = (lane_failure){st, image, p, c};
    return st;
}

/* Encoder: records each sub-pixel's interval (pushed later, in reverse). */
static agave_status encode_pixel(void *user, int t, int first, int count, int p,
                                 const float *params)
{
    codec_core *k = user;
    const codec_plan *pl = &k->plan;
    const size_t HW = (size_t)pl->H * pl->W;
    const int P = dmol_param_count(pl->C, k->m->cfg.M);
    for (int i = 0; i < count; i++) {
        const uint8_t *x = k->x_enc + (size_t)(first + i) * pl->D + p;
        uint32_t *rec = k->rec + ((size_t)(first + i) * HW + p) * pl->C * 2;
        pixel_model pm;
        pixel_model_begin(&pm, params + (size_t)i * P, pl->C, k->m->cfg.M);
        for (int c = 0; c < pl->C; c++) {
            int v = x[c * HW];
            if (!pixel_interval(&pm, v, &rec[2 * c], &rec[2 * c + 1]))
                return lane_failed(k, t, AGAVE_ERR_NUMERIC, first + i, p, c);
            k->counts[t].pixel_bits += CODEC_PIXEL_PREC - log2((double)rec[2 * c + 1]);
            k->counts[t].pixel_model_bits -= log2(pixel_model_take(&pm, v));
        }
    }
    return AGAVE_OK;
}

/* Decoder: pops each sub-pixel into k->x as soon as its distribution is known. */
static agave_status decode_pixel(void *user, int t, int first, int count, int p,
                                 const float *params)
{
    codec_core *k = user;
    const codec_plan *pl = &k->plan;
    const size_t HW = (size_t)pl->H * pl->W;
    const int P = dmol_param_count(pl->C, k->m->cfg.M);
    rans_stack *r = &k->chain[t];
    for (int i = 0; i < count; i++) {
        uint8_t *x = k->x + (size_t)(first + i) * pl->D + p;
        pixel_model pm;
        pixel_model_begin(&pm, params + (size_t)i * P, pl->C, k->m->cfg.M);
        for (int c = 0; c < pl->C; c++) {
            uint32_t start, freq, slot = rans_peek(r, CODEC_PIXEL_PREC);
            int v = pixel_find(&pm, slot, &start, &freq);
            rans_pop(r, start, freq, CODEC_PIXEL_PREC);
            x[c * HW] = (uint8_t)v;
            pixel_model_next(&pm, v);
        }
        if (r->error)
            return lane_failed(k, t, AGAVE_ERR_FORMAT, first + i, p, 0);
    }
    return AGAVE_OK;
}

/* Encoder, step 2 (after the PixelCNN ran): the lane's sub-pixels, last first. */
static void push_pixels(codec_core *k, int t, int first, int count)
{
    const codec_plan *pl = &k->plan;
    const size_t HW = (size_t)pl->H * pl->W;
    rans_stack *r = &k->chain[t];
    for (size_t p = HW; p-- > 0;)
        for (int i = first + count; i-- > first;)
            for (int c = pl->C; c-- > 0;) {
                const uint32_t *rec = k->rec + (((size_t)i * HW + p) * pl->C + c) * 2;
                rans_push(r, rec[0], rec[1], CODEC_PIXEL_PREC);
            }
}

/* Encoder, steps 2 and 3 of a lane: its sub-pixels, then its buckets. */
static void push_image(codec_core *k, int t, int first, int count)
{
    push_pixels(k, t, first, count);
    if (k->plan.latent)
        push_prior(k, t, first, count);
}

/* ---- batches ------------------------------------------------------------------------ */
static agave_status stack_status(codec_core *k, const char *what)
{
    for (int t = 0; t < k->plan.chains; t++) {
        rans_error e = k->chain[t].error;
        if (e == RANS_ERR_NOMEM)
            return ctx_error(k->ctx, AGAVE_ERR_NOMEM, "codec: out of memory for the stream");
        if (e == RANS_ERR_LIMIT)
            return ctx_error(k->ctx, AGAVE_ERR_FORMAT, "%s: a stream grew beyond its bound "
                             "(%zu words): the data is damaged", what, k->chain[t].max_words);
        if (e == RANS_ERR_EMPTY)
            return ctx_error(k->ctx, AGAVE_ERR_FORMAT, "%s: a stream ended early: the data is "
                             "truncated or damaged", what);
    }
    return AGAVE_OK;
}

static agave_status run_failed(codec_core *k, agave_status st, const char *what)
{
    for (int t = 0; t < k->plan.chains; t++) {
        const lane_failure *f = &k->fail[t];
        if (f->status == AGAVE_ERR_NUMERIC)
            return ctx_error(k->ctx, st, "%s: image %d of the batch, pixel %d, channel %d: the "
                             "model's distribution is not monotone there, so the decoder could "
                             "not find the value again", what, f->image, f->pixel, f->channel);
        if (f->status != AGAVE_OK)
            return stack_status(k, what);
    }
    return st;
}

agave_status codec_encode_batch(codec_core *k, const uint8_t *x, int n)
{
    agave_tape_reset(k->ctx);
    TRY(sampler_for(k, n));
    if (k->plan.latent) {
        TRY(posterior(k, x, n));
        each_lane(k, pop_posterior);
        TRY(decode_latents(k, n));
    }
    memset(k->fail, 0, (size_t)k->plan.chains * sizeof *k->fail);
    k->x_enc = x;
    TRY(cached_sampler_begin(k->sampler, k->plan.latent ? k->f : NULL, x));
    agave_status st = codec_fixed_products()
                          ? cached_sampler_run_known(k->sampler, encode_pixel, k)
                          : cached_sampler_run(k->sampler, encode_pixel, k);
    if (st != AGAVE_OK)
        return run_failed(k, st, "codec: encoding");
    each_lane(k, push_image);
    return stack_status(k, "codec: encoding");
}

agave_status codec_decode_batch(codec_core *k, int n)
{
    agave_tape_reset(k->ctx);
    TRY(sampler_for(k, n));
    if (k->plan.latent) {
        each_lane(k, pop_prior);
        TRY(decode_latents(k, n));
    }
    memset(k->fail, 0, (size_t)k->plan.chains * sizeof *k->fail);
    memset(k->x, 0, (size_t)n * k->plan.D);
    TRY(cached_sampler_begin(k->sampler, k->plan.latent ? k->f : NULL, k->x));
    agave_status st = cached_sampler_run(k->sampler, decode_pixel, k);
    if (st != AGAVE_OK)
        return run_failed(k, st, "codec: decoding");
    if (k->plan.latent) {
        agave_tape_reset(k->ctx);
        TRY(posterior(k, k->x, n));
        each_lane(k, push_posterior);
        for (int t = 0; t < cached_sampler_lanes(k->sampler); t++)
            if (k->fail[t].status != AGAVE_OK)
                return ctx_error(k->ctx, AGAVE_ERR_FORMAT, "codec: decoding: a latent code "
                                 "the posterior rules out: the data is damaged or was "
                                 "written by a machine that computes differently");
    }
    return stack_status(k, "codec: decoding");
}
