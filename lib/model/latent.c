/* Latent codes: images to the posterior mean of z, and a given z to f(z)
 * and a PixelCNN sample (the decoding runs through the sampler of
 * lib/model/sample.c). Both use the weights agave_model_weights names and
 * leave the training state (the context's generator, the tape, dropout) as
 * they found it. */
#include <math.h>
#include <string.h>

#include "model.h"

#define LATENT_CHUNK 16

agave_status agave_model_latent_shape(const agave_model *m, int *channels, int *height, int *width)
{
    if (!m || !channels || !height || !width)
        return ctx_error(m ? m->ctx : NULL, AGAVE_ERR_NULL, "agave_model_latent_shape: NULL argument");
    int none = m->cfg.mode == AGAVE_MODE_PIXELCNN;
    *channels = none ? 0 : m->cfg.Z;
    *height = none ? 0 : m->cfg.H / 4;
    *width = none ? 0 : m->cfg.W / 4;
    return AGAVE_OK;
}

static agave_status check_latent_call(agave_model *m, int n, const void *in, const char *fn)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!in)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "%s: NULL argument", fn);
    if (n < 1 || n > 4096)
        return ctx_error(m->ctx, AGAVE_ERR_LIMIT, "%s: n = %d is out of 1..4096", fn, n);
    if (m->cfg.mode == AGAVE_MODE_PIXELCNN)
        return ctx_error(m->ctx, AGAVE_ERR_STATE, "%s: a mode pixelcnn model has no latent code",
                         fn);
    if (!m->initialized)
        return ctx_error(m->ctx, AGAVE_ERR_STATE, "%s: the model is not initialised", fn);
    return AGAVE_OK;
}

/* z (k,Z,H/4,W/4) of k images at x, into out. */
static agave_status encode_chunk(agave_model *m, const uint8_t *x, int k, float *out)
{
    const agave_config *c = &m->cfg;
    agave_tape_reset(m->ctx);
    agave_tensor *xt = image_tensor(m->ctx, x, k, c->C, c->H, c->W);
    if (!xt)
        return AGAVE_ERR_NOMEM;
    agave_tensor *mean, *log_std, *context, *z;
    TRY(vae_encode(m, xt, &mean, &log_std, &context));
    TRY(vae_posterior_mean(m, mean, context, &z));
    memcpy(out, z->data, z->numel * sizeof(float));
    return AGAVE_OK;
}

agave_status agave_model_encode(agave_model *m, const uint8_t *x, int n, float *z)
{
    agave_status st = check_latent_call(m, n, x, "agave_model_encode");
    if (st == AGAVE_OK && !z)
        st = ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_model_encode: z is NULL");
    if (st != AGAVE_OK)
        return st;
    const agave_config *c = &m->cfg;
    size_t D = (size_t)c->C * c->H * c->W, Dz = (size_t)c->Z * (c->H / 4) * (c->W / 4);
    int was_recording = agave_tape_recording(m->ctx);
    agave_tape_set_recording(m->ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    for (int start = 0; start < n && st == AGAVE_OK; start += LATENT_CHUNK) {
        int k = n - start < LATENT_CHUNK ? n - start : LATENT_CHUNK;
        st = encode_chunk(m, x + (size_t)start * D, k, z + (size_t)start * Dz);
    }
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(m->ctx, was_recording);
    agave_tape_reset(m->ctx);
    if (st == AGAVE_ERR_NOMEM && !agave_context_last_error(m->ctx)[0])
        ctx_error(m->ctx, st, "agave_model_encode: out of memory");
    return st;
}

agave_status agave_model_decode(agave_model *m, const float *z, int n, uint64_t seed, uint8_t *fz,
                                uint8_t *x)
{
    agave_status st = check_latent_call(m, n, z, "agave_model_decode");
    if (st != AGAVE_OK)
        return st;
    size_t count = (size_t)n * m->cfg.Z * (m->cfg.H / 4) * (m->cfg.W / 4);
    for (size_t i = 0; i < count; i++)
        if (!isfinite(z[i]))
            return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                             "agave_model_decode: z[%zu] = %g is not a finite number", i,
                             (double)z[i]);
    return model_sample_from_z(m, z, n, seed, fz, x);
}
