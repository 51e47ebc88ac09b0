/* The VAE of docs/model.md: q(z|x) with an optional inverse autoregressive flow,
 * and the decoder f(z) that the auxiliary loss and the PixelCNN both see. Its
 * layers are built from the topology (topology.c). */
#include "model.h"

/* ---- q(z|x) ------------------------------------------------------------------- */
/* x~ (N,C,H,W) -> mean, log_std (N,Z,H/4,W/4) and the IAF context (or NULL). */
agave_status vae_encode(agave_model *m, agave_tensor *x, agave_tensor **mean,
                        agave_tensor **log_std, agave_tensor **context)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    vae_net *v = &m->vae;
    agave_tensor *h;
    TRY(agave_layer_forward(v->enc_in, x, &h));
    for (int s = 0; s < 2; s++) {
        for (int r = 0; r < c->Rv; r++)
            TRY(agave_layer_forward(v->enc_res[s][r], h, &h));
        TRY(agave_layer_forward(v->enc_down[s], h, &h));
    }
    TRY(agave_elu(ctx, h, &h));
    TRY(agave_layer_forward(v->enc_out, h, &h));
    TRY(agave_split(ctx, h, 0, c->Z, mean));
    TRY(agave_split(ctx, h, c->Z, c->Z, log_std));
    *context = NULL;
    if (c->T > 0)
        TRY(agave_split(ctx, h, 2 * c->Z, c->Z, context));
    return AGAVE_OK;
}

/* s + IAF_FORGET_BIAS, the gate's constant bias: s starts with mean 0 on the
 * init batch, so each step starts near the identity. s is (N,Z,h,w). */
static agave_status add_forget_bias(agave_context *ctx, agave_tensor *s, agave_tensor **out)
{
    int dims[1] = {tC(s)};
    agave_tensor *bias = tensor_new_arena(ctx, 1, dims);
    if (!bias)
        return AGAVE_ERR_NOMEM;
    agave_tensor_fill(bias, IAF_FORGET_BIAS);
    return agave_bias_add(ctx, s, bias, out);
}

/* One IAF step: [m, s] = AR(z, h); sigma = sigmoid(s + IAF_FORGET_BIAS);
 * z' = m + sigma (z - m); log q decreases by sum log sigma = -sum softplus(-s). */
static agave_status iaf_step(agave_model *m, int t, agave_tensor *context, agave_tensor **z,
                             agave_tensor **log_q)
{
    agave_context *ctx = m->ctx;
    vae_net *v = &m->vae;
    int Z = m->cfg.Z;
    agave_tensor *a, *b, *hid, *ms, *mu, *s, *sigma, *t1, *lsig;
    TRY(agave_layer_forward(v->iaf_in[t], *z, &a));
    TRY(agave_layer_forward(v->iaf_ctx[t], context, &b));
    TRY(agave_add(ctx, a, b, &hid));
    TRY(agave_elu(ctx, hid, &hid));
    TRY(agave_layer_forward(v->iaf_out[t], hid, &ms));
    TRY(agave_split(ctx, ms, 0, Z, &mu));
    TRY(agave_split(ctx, ms, Z, Z, &s));
    TRY(add_forget_bias(ctx, s, &s));
    TRY(agave_sigmoid(ctx, s, &sigma));
    TRY(agave_sub(ctx, *z, mu, &t1));
    TRY(agave_mul(ctx, sigma, t1, &t1));
    TRY(agave_add(ctx, mu, t1, z));
    TRY(agave_scale(ctx, s, -1.0f, &lsig));
    TRY(agave_softplus(ctx, lsig, &lsig));     /* -log sigma */
    TRY(agave_sum_items(ctx, lsig, &lsig));
    return agave_add(ctx, *log_q, lsig, log_q);
}

agave_status vae_posterior_sample(agave_model *m, agave_tensor *mean, agave_tensor *log_std,
                                  agave_tensor *context, agave_tensor **z,
                                  agave_tensor **log_q, agave_tensor **log_p_z)
{
    agave_context *ctx = m->ctx;
    TRY(gaussian_sample_span(ctx, mean, log_std, m->span, z));
    TRY(agave_gaussian_logprob(ctx, *z, mean, log_std, log_q));
    for (int t = 0; t < m->cfg.T; t++)
        TRY(iaf_step(m, t, context, z, log_q));
    /* log p(z) under N(0, I): the Gaussian log-density with zero mean and log-std. */
    int dims[4] = {tN(*z), tC(*z), tH(*z), tW(*z)};
    agave_tensor *zero = tensor_new_arena(ctx, 4, dims);
    if (!zero)
        return AGAVE_ERR_NOMEM;
    agave_tensor_fill(zero, 0.0f);
    return agave_gaussian_logprob(ctx, *z, zero, zero, log_p_z);
}

/* z at the Gaussian's mean (noise 0), pushed through the IAF steps: the
 * latent agave_model_encode reports. */
agave_status vae_posterior_mean(agave_model *m, agave_tensor *mean, agave_tensor *context,
                                agave_tensor **z)
{
    int dims[1] = {tN(mean)};
    agave_tensor *log_q = tensor_new_arena(m->ctx, 1, dims);   /* not used: the density */
    if (!log_q)
        return AGAVE_ERR_NOMEM;
    agave_tensor_fill(log_q, 0.0f);
    *z = mean;
    for (int t = 0; t < m->cfg.T; t++)
        TRY(iaf_step(m, t, context, z, &log_q));
    return AGAVE_OK;
}

/* ---- f(z) ---------------------------------------------------------------------- */
/* z (N,Z,H/4,W/4) -> f (N,C,H/s,W/s), the per-pixel logistic means. */
agave_status vae_decode(agave_model *m, agave_tensor *z, agave_tensor **f)
{
    agave_context *ctx = m->ctx;
    vae_net *v = &m->vae;
    agave_tensor *h;
    TRY(agave_layer_forward(v->dec_in, z, &h));
    for (int s = 0; s < v->n_up; s++) {
        TRY(agave_upsample2x(ctx, h, &h));
        TRY(agave_layer_forward(v->dec_up[s], h, &h));
        for (int r = 0; r < m->cfg.Rv; r++)
            TRY(agave_layer_forward(v->dec_res[s][r], h, &h));
    }
    TRY(agave_elu(ctx, h, &h));
    return agave_layer_forward(v->dec_out, h, f);
}
