/* Sampling: z ~ p(z) (or q(z|x) for reconstructions), f(z), then x pixel by
 * pixel from the conditional PixelCNN, by the cached sampler
 * (lib/model/sample_cached.c) by default or by the naive one here: one full
 * network forward per pixel, the reference that the cached sampler must match. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../loss/loss.h"
#include "model.h"
#include "sample_cached.h"

#define SAMPLE_CHUNK 16

/* Network-scale means -> 0..255, rounded to the nearest level and clipped. */
static void means_to_image(const float *f, size_t count, uint8_t *out)
{
    for (size_t i = 0; i < count; i++)
        out[i] = loss_net_to_pixel(f[i]);
}

/* Nearest-neighbour upsampling of (n,C,h,w) by s into (n,C,h*s,w*s). */
static void upsample_image(const uint8_t *src, int n, int C, int h, int w, int s, uint8_t *dst)
{
    for (int p = 0; p < n * C; p++)
        for (int r = 0; r < h * s; r++)
            for (int c = 0; c < w * s; c++)
                dst[((size_t)p * h * s + r) * w * s + c] = src[((size_t)p * h + r / s) * w + c / s];
}

/* x (n,C,H,W) uint8, drawn pixel by pixel; f_saved is f(z) (or NULL), kept
 * outside the arena because the arena is reset before every forward. */
static agave_status sample_pixels(agave_model *m, int n, const float *f_saved, uint8_t *x)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    int dims_f[4] = {n, c->C, c->H / c->s, c->W / c->s};
    size_t plane = (size_t)c->H * c->W, P = (size_t)dmol_param_count(c->C, c->M);
    memset(x, 0, (size_t)n * c->C * plane);
    for (int r = 0; r < c->H; r++)
        for (int col = 0; col < c->W; col++) {
            agave_tape_reset(ctx);
            agave_tensor *f = NULL, *params;
            if (f_saved) {
                f = tensor_new_arena(ctx, 4, dims_f);
                if (!f)
                    return AGAVE_ERR_NOMEM;
                memcpy(f->data, f_saved, f->numel * sizeof(float));
            }
            agave_tensor *xt = image_tensor(ctx, x, n, c->C, c->H, c->W);
            if (!xt)
                return AGAVE_ERR_NOMEM;
            TRY(pixelcnn_forward(m, xt, f, &params));
            for (int i = 0; i < n; i++) {
                size_t at = (size_t)r * c->W + col;
                dmol_pixel_sample(params->data + (size_t)i * P * plane + at, plane, c->C, c->M,
                                  &ctx->rng, x + (size_t)i * c->C * plane + at, plane);
            }
        }
    return AGAVE_OK;
}

/* Samples one chunk of n images from z (arena tensor) or from the prior. */
static agave_status sample_chunk(agave_model *m, model_sampler sampler, int n, agave_tensor *z,
                                 uint8_t *fz, uint8_t *x)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    float *f_saved = NULL;
    size_t f_count = (size_t)n * c->C * (c->H / c->s) * (c->W / c->s);
    if (m->cfg.mode != AGAVE_MODE_PIXELCNN) {
        agave_tensor *f;
        TRY(vae_decode(m, z, &f));
        f_saved = malloc(f_count * sizeof(float));
        if (!f_saved)
            return ctx_error(ctx, AGAVE_ERR_NOMEM, "sampling: cannot keep f(z)");
        memcpy(f_saved, f->data, f_count * sizeof(float));
        if (fz)
            means_to_image(f->data, f->numel, fz);
    }
    agave_status st = AGAVE_OK;
    if (x && m->cfg.mode == AGAVE_MODE_VAE) {
        uint8_t *small = malloc(f_count);
        if (!small)
            st = ctx_error(ctx, AGAVE_ERR_NOMEM, "sampling: out of memory");
        else {
            means_to_image(f_saved, f_count, small);
            upsample_image(small, n, c->C, c->H / c->s, c->W / c->s, c->s, x);
            free(small);
        }
    } else if (x) {
        const float *f = m->cfg.mode == AGAVE_MODE_PIXELCNN ? NULL : f_saved;
        st = sampler == MODEL_SAMPLER_NAIVE ? sample_pixels(m, n, f, x)
                                            : sample_pixels_cached(m, n, f, x);
    }
    free(f_saved);
    return st;
}

/* The common frame: checks, a private random stream from the seed (the
 * context's own stream is restored afterwards, so sampling in the middle of
 * training does not change the run), averaged parameters, evaluation mode. */
static agave_status sample_frame(agave_model *m, model_sampler sampler, const uint8_t *x_in,
                                 const float *z_in, int n, uint64_t seed, uint8_t *fz, uint8_t *x,
                                 const char *fn)
{
    if (!m)
        return AGAVE_ERR_NULL;
    agave_context *ctx = m->ctx;
    ctx_clear_error(ctx);
    if (n < 1 || n > 4096)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: n = %d is out of 1..4096", fn, n);
    if (!m->initialized)
        return ctx_error(ctx, AGAVE_ERR_STATE, "%s: the model is not initialised", fn);
    const agave_config *c = &m->cfg;
    size_t D = (size_t)c->C * c->H * c->W, Dy = D / (size_t)(c->s * c->s);
    agave_rng saved = ctx->rng;
    rng_seed(&ctx->rng, seed);
    int was_recording = agave_tape_recording(ctx);
    agave_tape_set_recording(ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    agave_status st = AGAVE_OK;
    int zd[4] = {0, c->Z, c->H / 4, c->W / 4};
    for (int start = 0; start < n && st == AGAVE_OK; start += SAMPLE_CHUNK) {
        int k = n - start < SAMPLE_CHUNK ? n - start : SAMPLE_CHUNK;
        agave_tape_reset(ctx);
        agave_tensor *z = NULL;
        zd[0] = k;
        if (c->mode != AGAVE_MODE_PIXELCNN && z_in) {
            z = tensor_new_arena(ctx, 4, zd);
            if (z)
                memcpy(z->data, z_in + (size_t)start * z->numel / (size_t)k,
                       z->numel * sizeof(float));
            st = z ? AGAVE_OK : AGAVE_ERR_NOMEM;
        } else if (c->mode != AGAVE_MODE_PIXELCNN && x_in) {
            agave_tensor *mean, *log_std, *context, *log_q, *log_p;
            agave_tensor *xt = image_tensor(ctx, x_in + start * D, k, c->C, c->H, c->W);
            st = xt ? vae_encode(m, xt, &mean, &log_std, &context) : AGAVE_ERR_NOMEM;
            if (st == AGAVE_OK)
                st = vae_posterior_sample(m, mean, log_std, context, &z, &log_q, &log_p);
        } else if (c->mode != AGAVE_MODE_PIXELCNN) {
            z = tensor_new_arena(ctx, 4, zd);
            st = z ? agave_tensor_fill_normal(z, 0.0f, 1.0f) : AGAVE_ERR_NOMEM;
        }
        if (st == AGAVE_OK)
            st = sample_chunk(m, sampler, k, z, fz ? fz + start * Dy : NULL,
                              x ? x + start * D : NULL);
    }
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(ctx, was_recording);
    agave_tape_reset(ctx);
    ctx->rng = saved;
    return st;
}

agave_status model_sample_with(agave_model *m, model_sampler sampler, const uint8_t *x_in, int n,
                               uint64_t seed, uint8_t *fz, uint8_t *x)
{
    if (!x_in)
        return sample_frame(m, sampler, NULL, NULL, n, seed, fz, x, "agave_model_sample");
    if (m && m->cfg.mode == AGAVE_MODE_PIXELCNN)
        return ctx_error(m->ctx, AGAVE_ERR_STATE,
                         "agave_model_reconstruct: a mode pixelcnn model has no latent code");
    return sample_frame(m, sampler, x_in, NULL, n, seed, fz, x, "agave_model_reconstruct");
}

agave_status model_sample_from_z(agave_model *m, const float *z, int n, uint64_t seed, uint8_t *fz,
                                 uint8_t *x)
{
    return sample_frame(m, MODEL_SAMPLER_CACHED, NULL, z, n, seed, fz, x, "agave_model_decode");
}

/* The cached sampler is the default; the naive one stays as the reference. */
agave_status agave_model_sample(agave_model *m, int n, uint64_t seed, uint8_t *fz, uint8_t *x)
{
    return model_sample_with(m, MODEL_SAMPLER_CACHED, NULL, n, seed, fz, x);
}

agave_status agave_model_reconstruct(agave_model *m, const uint8_t *x_in, int n, uint64_t seed,
                                     uint8_t *fz, uint8_t *x)
{
    if (m && !x_in)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_model_reconstruct: x_in is NULL");
    return model_sample_with(m, MODEL_SAMPLER_CACHED, x_in, n, seed, fz, x);
}
