/* The forward pass of docs/model.md over a batch: the image scaled to
 * [-1, 1], the VAE, the auxiliary likelihood and the PixelCNN++, as the
 * mode's plan asks, giving the per-image terms. */
#include <string.h>

#include "model.h"

forward_plan plan_for_mode(agave_mode mode)
{
    forward_plan p = {1, 1, 1, 1};
    switch (mode) {
    case AGAVE_MODE_VAE:
        p.pixelcnn = p.condition = 0;
        break;
    case AGAVE_MODE_PIXELCNN:
        p.vae = p.aux = p.condition = 0;
        break;
    case AGAVE_MODE_NAIVE:
        p.aux = 0;
        break;
    default:
        break;
    }
    return p;
}

agave_tensor *image_tensor(agave_context *ctx, const uint8_t *x, int n, int c, int h, int w)
{
    int dims[4] = {n, c, h, w};
    agave_tensor *t = tensor_new_arena(ctx, 4, dims);
    if (t)
        for (size_t i = 0; i < t->numel; i++)
            t->data[i] = (float)x[i] / 127.5f - 1.0f;
    return t;
}

static agave_status aux_nll(agave_model *m, const uint8_t *x, int n, agave_tensor *f,
                            agave_tensor **nll)
{
    const agave_config *c = &m->cfg;
    size_t count = (size_t)n * c->C * (c->H / c->s) * (c->W / c->s);
    uint8_t *y = arena_alloc(&m->ctx->arena, count);
    if (!y)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate the auxiliary image");
    TRY(agave_image_pool(x, n, c->C, c->H, c->W, c->s, y));
    return agave_dlogistic_nll(m->ctx, y, f, m->aux_log_scale, c->b, nll);
}

agave_status model_forward(agave_model *m, const uint8_t *x, int n, forward_plan plan,
                           model_terms *t)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    memset(t, 0, sizeof *t);
    agave_tensor *xt = image_tensor(ctx, x, n, c->C, c->H, c->W);
    if (!xt)
        return AGAVE_ERR_NOMEM;
    if (plan.vae) {
        agave_tensor *mean, *log_std, *context, *z;
        TRY(vae_encode(m, xt, &mean, &log_std, &context));
        TRY(vae_posterior_sample(m, mean, log_std, context, &z, &t->log_q, &t->log_p_z));
        if (c->T == 0)
            TRY(agave_gaussian_kl(ctx, mean, log_std, &t->kl));
        else
            TRY(agave_sub(ctx, t->log_q, t->log_p_z, &t->kl));
        TRY(vae_decode(m, z, &t->f));
    }
    if (plan.aux)
        TRY(aux_nll(m, x, n, t->f, &t->nll_y));
    if (plan.pixelcnn) {
        agave_tensor *params;
        TRY(pixelcnn_forward(m, xt, plan.condition ? t->f : NULL, &params));
        TRY(agave_dmol_nll(ctx, x, c->C, params, c->M, &t->nll_x));
    }
    return AGAVE_OK;
}
