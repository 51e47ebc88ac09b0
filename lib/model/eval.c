/* Evaluation: the ELBO on x with its decomposition, the VAE's bound on y and
 * IWAE_K. Each image is encoded once; its K importance samples go through the
 * decoder and the PixelCNN together, in chunks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "model.h"

#define EVAL_CHUNK 32

/* Sums over images, in nats. */
typedef struct eval_sums {
    double recon, kl, aux_nll, iwae;
} eval_sums;

/* An encoding of one image kept outside the arena, so that the arena can be
 * reset between chunks of samples. */
typedef struct encoding {
    int dims[4];       /* (1,Z,h,w) */
    float *mean, *log_std, *context;   /* context NULL without IAF */
} encoding;

/* (k,Z,h,w) arena tensor holding k copies of one (Z,h,w) item. */
static agave_tensor *replicate(agave_context *ctx, const int dims[4], const float *src, int k)
{
    int rd[4] = {k, dims[1], dims[2], dims[3]};
    agave_tensor *r = tensor_new_arena(ctx, 4, rd);
    size_t item = (size_t)dims[1] * dims[2] * dims[3];
    for (int i = 0; r && i < k; i++)
        memcpy(r->data + (size_t)i * item, src, item * sizeof(float));
    return r;
}

/* k copies of image x (C,H,W), in the arena. */
static uint8_t *replicate_image(agave_model *m, const uint8_t *x, int k)
{
    size_t D = (size_t)m->cfg.C * m->cfg.H * m->cfg.W;
    uint8_t *r = arena_alloc(&m->ctx->arena, D * (size_t)k);
    for (int i = 0; r && i < k; i++)
        memcpy(r + (size_t)i * D, x, D);
    return r;
}

/* For k samples z ~ q(z|x) of one encoded image: the log-weights
 * log p(x|z) + log p(z) - log q(z|x) (log p(y|z) in mode vae), and the sums
 * over samples of the ELBO terms. */
static agave_status eval_samples(agave_model *m, const uint8_t *x, const encoding *e, int k,
                                 double *log_w, eval_sums *s)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    forward_plan plan = plan_for_mode(c->mode);
    agave_tensor *mk = replicate(ctx, e->dims, e->mean, k);
    agave_tensor *lk = replicate(ctx, e->dims, e->log_std, k);
    agave_tensor *ck = e->context ? replicate(ctx, e->dims, e->context, k) : NULL;
    uint8_t *xk = replicate_image(m, x, k);
    size_t Dy = (size_t)c->C * (c->H / c->s) * (c->W / c->s);
    uint8_t *y = arena_alloc(&ctx->arena, Dy * (size_t)k);
    if (!mk || !lk || (e->context && !ck) || !xk || !y)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "evaluation: out of arena memory");
    agave_tensor *z, *log_q, *log_p_z, *f, *nll_y, *nll_x = NULL, *kl = NULL, *params;
    MTRY(vae_posterior_sample(m, mk, lk, ck, &z, &log_q, &log_p_z));
    MTRY(vae_decode(m, z, &f));
    if (c->T == 0)
        MTRY(agave_gaussian_kl(ctx, mk, lk, &kl));
    MTRY(agave_image_pool(xk, k, c->C, c->H, c->W, c->s, y));
    MTRY(agave_dlogistic_nll(ctx, y, f, m->aux_log_scale, c->b, &nll_y));
    if (plan.pixelcnn) {
        agave_tensor *xt = image_tensor(ctx, xk, k, c->C, c->H, c->W);
        if (!xt)
            return AGAVE_ERR_NOMEM;
        MTRY(pixelcnn_forward(m, xt, plan.condition ? f : NULL, &params));
        MTRY(agave_dmol_nll(ctx, xk, c->C, params, c->M, &nll_x));
    }
    const agave_tensor *nll = nll_x ? nll_x : nll_y;   /* mode vae scores y */
    for (int i = 0; i < k; i++) {
        double kl_i = kl ? kl->data[i] : (double)log_q->data[i] - log_p_z->data[i];
        log_w[i] = -(double)nll->data[i] + log_p_z->data[i] - log_q->data[i];
        s->recon += nll->data[i];
        s->kl += kl_i;
        s->aux_nll += nll_y->data[i];
    }
    return AGAVE_OK;
}

static agave_status encode_one(agave_model *m, const uint8_t *x, encoding *e)
{
    const agave_config *c = &m->cfg;
    agave_tensor *mean, *log_std, *context;
    agave_tensor *xt = image_tensor(m->ctx, x, 1, c->C, c->H, c->W);
    if (!xt)
        return AGAVE_ERR_NOMEM;
    MTRY(vae_encode(m, xt, &mean, &log_std, &context));
    memcpy(e->dims, mean->dims, sizeof e->dims);
    memcpy(e->mean, mean->data, mean->numel * sizeof(float));
    memcpy(e->log_std, log_std->data, log_std->numel * sizeof(float));
    if (context)
        memcpy(e->context, context->data, context->numel * sizeof(float));
    else
        e->context = NULL;
    return AGAVE_OK;
}

/* Each image is encoded once and scored with max(K, 1) samples, in chunks. */
static agave_status eval_vae(agave_model *m, const uint8_t *x, int n, int K, double *log_w,
                             eval_sums *s)
{
    const agave_config *c = &m->cfg;
    size_t D = (size_t)c->C * c->H * c->W, latent = (size_t)c->Z * (c->H / 4) * (c->W / 4);
    int k_total = K > 0 ? K : 1;
    float *buf = malloc(3 * latent * sizeof(float));
    if (!buf)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "evaluation: cannot allocate the encoding");
    agave_status st = AGAVE_OK;
    for (int i = 0; i < n && st == AGAVE_OK; i++) {
        encoding e = {{0}, buf, buf + latent, buf + 2 * latent};
        agave_tape_reset(m->ctx);
        st = encode_one(m, x + (size_t)i * D, &e);
        for (int done = 0; done < k_total && st == AGAVE_OK; done += EVAL_CHUNK) {
            int k = k_total - done < EVAL_CHUNK ? k_total - done : EVAL_CHUNK;
            agave_tape_reset(m->ctx);
            st = eval_samples(m, x + (size_t)i * D, &e, k, log_w + done, s);
        }
        double iwae = 0;
        if (st == AGAVE_OK)
            st = agave_iwae_from_log_weights(log_w, 1, k_total, &iwae);
        s->iwae += iwae;
    }
    free(buf);
    return st;
}

static agave_status eval_pixelcnn(agave_model *m, const uint8_t *x, int n, eval_sums *s)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    size_t D = (size_t)c->C * c->H * c->W;
    for (int start = 0; start < n; start += EVAL_CHUNK) {
        int k = n - start < EVAL_CHUNK ? n - start : EVAL_CHUNK;
        agave_tape_reset(ctx);
        const uint8_t *xs = x + (size_t)start * D;
        agave_tensor *params, *nll;
        MTRY(pixelcnn_forward(m, image_tensor(ctx, xs, k, c->C, c->H, c->W), NULL, &params));
        MTRY(agave_dmol_nll(ctx, xs, c->C, params, c->M, &nll));
        for (int i = 0; i < k; i++) {
            s->recon += nll->data[i];
            s->iwae -= nll->data[i];
        }
    }
    return AGAVE_OK;
}

/* The evaluation itself; stats is the library's own struct. */
static agave_status evaluate(agave_model *m, const uint8_t *x, int n, int iwae_samples,
                             agave_eval_stats *stats)
{
    agave_context *ctx = m->ctx;
    int n_min = m->slice_total > 0 ? 0 : 1;   /* a process may have no image of a batch */
    if (n < n_min || n > 1 << 24 || iwae_samples < 0 || iwae_samples > 100000)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "agave_model_evaluate: n = %d (%d..2^24) or K = %d (0..100000) out of "
                         "range", n, n_min, iwae_samples);
    MTRY(model_check_slice(m, n, "agave_model_evaluate"));
    if (!m->initialized)
        return ctx_error(ctx, AGAVE_ERR_STATE,
                         "agave_model_evaluate: the model is not initialised: train it, call "
                         "agave_model_init, or load a checkpoint");
    int k_total = iwae_samples > 0 ? iwae_samples : 1;
    /* Under a batch slice, the draws of the images before and after this
     * process's are skipped: each image is scored with the z samples it gets
     * when one process evaluates the whole batch. Only the z samples draw
     * (k_total latent tensors per image); mode pixelcnn draws nothing. */
    const agave_config *cf = &m->cfg;
    uint64_t per_image = cf->mode == AGAVE_MODE_PIXELCNN
                             ? 0
                             : (uint64_t)k_total * (uint64_t)cf->Z * (uint64_t)(cf->H / 4) *
                                   (uint64_t)(cf->W / 4) * RNG_NORMAL_DRAWS;
    if (m->slice_total > 0)
        rng_skip(&ctx->rng, (uint64_t)m->slice_offset * per_image);
    if (n == 0) {
        rng_skip(&ctx->rng, (uint64_t)(m->slice_total - m->slice_offset) * per_image);
        size_t size = stats->struct_size;
        memset(stats, 0, sizeof *stats);
        stats->struct_size = size;
        stats->iwae_samples = iwae_samples;
        return AGAVE_OK;
    }
    double *log_w = malloc((size_t)k_total * sizeof *log_w);
    if (!log_w)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate %d log-weights", k_total);
    int was_recording = agave_tape_recording(ctx);
    agave_tape_set_recording(ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    eval_sums s = {0, 0, 0, 0};
    agave_status st = m->cfg.mode == AGAVE_MODE_PIXELCNN
                          ? eval_pixelcnn(m, x, n, &s)
                          : eval_vae(m, x, n, iwae_samples, log_w, &s);
    if (st == AGAVE_OK && m->slice_total > 0)
        rng_skip(&ctx->rng, (uint64_t)(m->slice_total - m->slice_offset - n) * per_image);
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(ctx, was_recording);
    agave_tape_reset(ctx);
    free(log_w);
    if (st != AGAVE_OK)
        return st;
    const agave_config *c = &m->cfg;
    double D = (double)c->C * c->H * c->W, Dy = D / (c->s * c->s);
    double Dx = m->cfg.mode == AGAVE_MODE_VAE ? Dy : D;   /* mode vae bounds y */
    size_t size = stats->struct_size;
    memset(stats, 0, sizeof *stats);
    stats->struct_size = size;
    stats->n_images = n;
    stats->iwae_samples = iwae_samples;
    /* Sample sums are over n * k_total samples; IWAE sums are per image. */
    double samples = (double)n * (m->cfg.mode == AGAVE_MODE_PIXELCNN ? 1 : k_total);
    stats->recon_bpd = agave_nats_to_bpd(s.recon / samples, Dx);
    stats->kl_bpd = agave_nats_to_bpd(s.kl / samples, Dx);
    stats->elbo_bpd = stats->recon_bpd + stats->kl_bpd;
    stats->aux_bpd = agave_nats_to_bpd((s.aux_nll + s.kl) / samples, Dy);
    /* K = 0 asks for no importance sampling: report the ELBO itself (with T = 0
     * it uses the analytic KL, which one log-weight would only estimate). */
    stats->iwae_bpd = iwae_samples > 0 ? agave_nats_to_bpd(-s.iwae / n, Dx) : stats->elbo_bpd;
    return AGAVE_OK;
}

agave_status agave_model_evaluate(agave_model *m, const uint8_t *x, int n, int iwae_samples,
                                  agave_eval_stats *stats)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!x || !stats)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_model_evaluate: NULL images or stats");
    agave_eval_stats full;
    memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    char msg[256];
    if (!struct_write(stats, &full, sizeof full, sizeof full.struct_size, "agave_eval_stats",
                      msg, sizeof msg))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "agave_model_evaluate: %s", msg);
    agave_status st = evaluate(m, x, n, iwae_samples, &full);
    struct_write(stats, &full, sizeof full, 0, NULL, NULL, 0);
    return st;
}
