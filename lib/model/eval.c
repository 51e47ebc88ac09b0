/* Evaluation: the ELBO on x with its decomposition, the VAE's bound on y and
 * IWAE_K, per image and averaged over the images.
 *
 * Rows. The K importance samples of image i are rows i*K .. i*K + K - 1 of
 * one stream over all n images (K = 1 without IWAE, and in mode pixelcnn,
 * which has no latent). The stream goes through the decoder and the PixelCNN
 * in chunks of eval_chunk_rows rows whatever K is: a chunk holds many images
 * when K is small and part of one or two images' samples when K is large, so
 * that the GEMMs always see a full chunk. Each image is encoded once, when
 * the first chunk that needs it comes; its encoding and its K log-weights
 * wait in a slot until its last row is scored.
 *
 * The z samples of a chunk are drawn in row order, that is image by image,
 * so every image gets the draws it would get if it were evaluated alone
 * after the images before it: the chunking changes no random number, and a
 * batch slice still skips whole images' draws. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "model.h"

/* An image waiting for its rows: its encoding and what its rows add up to. */
typedef struct image_slot {
    float *mean, *log_std, *context;   /* (Z,h,w) each; context NULL without IAF */
    double *log_w;                     /* (K) log p(x|z) + log p(z) - log q(z|x) */
    double recon, kl, aux_nll;         /* sums over its rows, nats */
} image_slot;

/* Sums over rows, in nats, and over images for IWAE. */
typedef struct eval_sums {
    double recon, kl, aux_nll, iwae;
} eval_sums;

typedef struct eval_run {
    agave_model *m;
    forward_plan plan;
    const uint8_t *x;
    int n, K;                  /* images; rows per image */
    int with_iwae;             /* K > 0 asked: iwae is IWAE_K, else the ELBO */
    int chunk_rows;
    const model_eval_out *out;
    size_t latent;             /* Z*(H/4)*(W/4) */
    int latent_dims[4];        /* (1,Z,H/4,W/4) */
    image_slot *slots;         /* image i in slots[i % n_slots] */
    int n_slots;
    int encoded;               /* images [0, encoded) have been encoded */
    int done;                  /* images [0, done) are finished */
    eval_sums sums;
    float *slot_floats;
    double *slot_doubles;
} eval_run;

/* Rows per chunk: as many as a forward pass of the decoder and the PixelCNN
 * can take within EVAL_ARENA_BYTES of activations (or the context's memory
 * limit, less the model's own parameters), at most EVAL_MAX_ROWS: past that
 * the GEMMs are wide enough and more rows only cost memory. */
#define EVAL_MAX_ROWS 64
#define EVAL_ARENA_BYTES ((double)(256 << 20))

int eval_chunk_rows(const agave_model *m)
{
    double budget = EVAL_ARENA_BYTES, limit = (double)m->ctx->memory_limit;
    if (limit > 0) {
        double left = limit - config_model_bytes(&m->cfg);
        budget = left < budget ? left : budget;
    }
    double per_row = config_forward_bytes_per_image(&m->cfg);
    double rows = budget / per_row;
    return rows >= EVAL_MAX_ROWS ? EVAL_MAX_ROWS : rows >= 1 ? (int)rows : 1;
}

/* ---- slots -------------------------------------------------------------------- */
static agave_status slots_create(eval_run *r)
{
    const agave_config *c = &r->m->cfg;
    /* A chunk spans at most chunk_rows / K + 2 images. */
    r->n_slots = r->chunk_rows / r->K + 2;
    size_t nf = r->plan.vae ? 3 * r->latent : 0;
    r->slots = calloc((size_t)r->n_slots, sizeof *r->slots);
    r->slot_floats = malloc(((size_t)r->n_slots * nf + 1) * sizeof(float));
    r->slot_doubles = malloc((size_t)r->n_slots * (size_t)r->K * sizeof(double));
    if (!r->slots || !r->slot_floats || !r->slot_doubles)
        return ctx_error(r->m->ctx, AGAVE_ERR_NOMEM,
                         "evaluation: cannot allocate %d image slots of %d samples", r->n_slots,
                         r->K);
    for (int s = 0; s < r->n_slots; s++) {
        image_slot *sl = &r->slots[s];
        float *f = r->slot_floats + (size_t)s * nf;
        sl->mean = f, sl->log_std = f + r->latent;
        sl->context = c->T > 0 ? f + 2 * r->latent : NULL;
        sl->log_w = r->slot_doubles + (size_t)s * (size_t)r->K;
    }
    return AGAVE_OK;
}

static void slots_free(eval_run *r)
{
    free(r->slots);
    free(r->slot_floats);
    free(r->slot_doubles);
}

static image_slot *slot_of(const eval_run *r, int image) { return &r->slots[image % r->n_slots]; }

/* Encodes images [r->encoded, last] and as many after them as free slots
 * allow, in one batch, into their slots. */
static agave_status encode_through(eval_run *r, int last)
{
    agave_model *m = r->m;
    const agave_config *c = &m->cfg;
    size_t D = (size_t)c->C * c->H * c->W;
    int first = r->encoded, end = r->done + r->n_slots;
    end = end < r->n ? end : r->n;
    if (last >= end)   /* cannot happen: a chunk spans at most n_slots images */
        return ctx_error(m->ctx, AGAVE_ERR_STATE, "evaluation: image %d has no free slot", last);
    agave_tape_reset(m->ctx);
    agave_tensor *xt = image_tensor(m->ctx, r->x + (size_t)first * D, end - first, c->C, c->H,
                                    c->W);
    agave_tensor *mean, *log_std, *context;
    if (!xt)
        return AGAVE_ERR_NOMEM;
    TRY(vae_encode(m, xt, &mean, &log_std, &context));
    memcpy(r->latent_dims, mean->dims, sizeof r->latent_dims);
    r->latent_dims[0] = 1;
    for (int i = first; i < end; i++) {
        image_slot *s = slot_of(r, i);
        size_t at = (size_t)(i - first) * r->latent;
        memcpy(s->mean, mean->data + at, r->latent * sizeof(float));
        memcpy(s->log_std, log_std->data + at, r->latent * sizeof(float));
        if (context)
            memcpy(s->context, context->data + at, r->latent * sizeof(float));
    }
    r->encoded = end;
    return AGAVE_OK;
}

/* ---- one chunk of rows ---------------------------------------------------------- */
/* (k,Z,h,w) arena tensor: row j holds the slot field of image (row0 + j) / K. */
static agave_tensor *gather_latent(eval_run *r, int64_t row0, int k, size_t field)
{
    int dims[4] = {k, r->latent_dims[1], r->latent_dims[2], r->latent_dims[3]};
    agave_tensor *t = tensor_new_arena(r->m->ctx, 4, dims);
    for (int j = 0; t && j < k; j++) {
        const image_slot *s = slot_of(r, (int)((row0 + j) / r->K));
        const float *src = field == 0 ? s->mean : field == 1 ? s->log_std : s->context;
        memcpy(t->data + (size_t)j * r->latent, src, r->latent * sizeof(float));
    }
    return t;
}

/* k images (C,H,W) in the arena: row j holds image (row0 + j) / K. */
static uint8_t *gather_images(eval_run *r, int64_t row0, int k)
{
    const agave_config *c = &r->m->cfg;
    size_t D = (size_t)c->C * c->H * c->W;
    uint8_t *x = arena_alloc(&r->m->ctx->arena, D * (size_t)k);
    for (int j = 0; x && j < k; j++)
        memcpy(x + (size_t)j * D, r->x + (size_t)((row0 + j) / r->K) * D, D);
    return x;
}

/* The per-row terms of rows [row0, row0 + k): -log p(x|z) (or -log p(y|z) in
 * mode vae), -log p(y|z), the KL and the log-weight, each (k) in the arena. */
typedef struct row_terms {
    const agave_tensor *nll, *nll_y, *kl, *log_q, *log_p_z;
} row_terms;

static agave_status score_rows(eval_run *r, int64_t row0, int k, row_terms *t)
{
    agave_model *m = r->m;
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    memset(t, 0, sizeof *t);
    uint8_t *xk = gather_images(r, row0, k);
    if (!xk)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "evaluation: out of arena memory");
    agave_tensor *f = NULL, *params, *nll_x = NULL, *nll_y = NULL;
    if (r->plan.vae) {
        agave_tensor *mk = gather_latent(r, row0, k, 0), *lk = gather_latent(r, row0, k, 1);
        agave_tensor *ck = c->T > 0 ? gather_latent(r, row0, k, 2) : NULL;
        size_t Dy = (size_t)c->C * (c->H / c->s) * (c->W / c->s);
        uint8_t *y = arena_alloc(&ctx->arena, Dy * (size_t)k);
        if (!mk || !lk || (c->T > 0 && !ck) || !y)
            return ctx_error(ctx, AGAVE_ERR_NOMEM, "evaluation: out of arena memory");
        agave_tensor *z, *log_q, *log_p_z, *kl = NULL;
        TRY(vae_posterior_sample(m, mk, lk, ck, &z, &log_q, &log_p_z));
        TRY(vae_decode(m, z, &f));
        if (c->T == 0)
            TRY(agave_gaussian_kl(ctx, mk, lk, &kl));
        TRY(agave_image_pool(xk, k, c->C, c->H, c->W, c->s, y));
        TRY(agave_dlogistic_nll(ctx, y, f, m->aux_log_scale, c->b, &nll_y));
        t->kl = kl, t->log_q = log_q, t->log_p_z = log_p_z, t->nll_y = nll_y;
    }
    if (r->plan.pixelcnn) {
        agave_tensor *xt = image_tensor(ctx, xk, k, c->C, c->H, c->W);
        if (!xt)
            return AGAVE_ERR_NOMEM;
        TRY(pixelcnn_forward(m, xt, r->plan.condition ? f : NULL, &params));
        TRY(agave_dmol_nll(ctx, xk, c->C, params, c->M, &nll_x));
    }
    t->nll = nll_x ? nll_x : nll_y;   /* mode vae scores y */
    return AGAVE_OK;
}

/* ---- per image ------------------------------------------------------------------ */
static void write_figure(double *dst, int i, double v)
{
    if (dst)
        dst[i] = v;
}

/* Image i has all its rows: its IWAE term, and its figures in bpd. */
static agave_status finish_image(eval_run *r, int i)
{
    image_slot *s = slot_of(r, i);
    double iwae = 0;
    TRY(agave_iwae_from_log_weights(s->log_w, 1, r->K, &iwae));
    r->sums.iwae += iwae;
    r->done = i + 1;
    const model_eval_out *o = r->out;
    if (!o)
        return AGAVE_OK;
    const agave_config *c = &r->m->cfg;
    double D = (double)c->C * c->H * c->W, Dy = D / (c->s * c->s);
    double Dx = c->mode == AGAVE_MODE_VAE ? Dy : D, K = r->K;
    double recon = agave_nats_to_bpd(s->recon / K, Dx), kl = agave_nats_to_bpd(s->kl / K, Dx);
    write_figure(o->recon_bpd, i, recon);
    write_figure(o->kl_bpd, i, kl);
    write_figure(o->elbo_bpd, i, recon + kl);
    write_figure(o->aux_bpd, i, agave_nats_to_bpd((s->aux_nll + s->kl) / K, Dy));
    write_figure(o->iwae_bpd, i, r->with_iwae ? agave_nats_to_bpd(-iwae, Dx) : recon + kl);
    return AGAVE_OK;
}

/* Adds the scored rows [row0, row0 + k) to their images and the sums. */
static agave_status add_rows(eval_run *r, int64_t row0, int k, const row_terms *t)
{
    for (int j = 0; j < k; j++) {
        int i = (int)((row0 + j) / r->K), sample = (int)((row0 + j) % r->K);
        image_slot *s = slot_of(r, i);
        if (sample == 0)
            s->recon = s->kl = s->aux_nll = 0;
        double nll = t->nll->data[j], nll_y = t->nll_y ? t->nll_y->data[j] : 0;
        double kl = t->kl ? t->kl->data[j]
                    : t->log_q ? (double)t->log_q->data[j] - t->log_p_z->data[j] : 0;
        s->log_w[sample] =
            t->log_q ? -nll + t->log_p_z->data[j] - t->log_q->data[j] : -nll;
        s->recon += nll, s->kl += kl, s->aux_nll += nll_y;
        r->sums.recon += nll, r->sums.kl += kl, r->sums.aux_nll += nll_y;
        if (sample == r->K - 1)
            TRY(finish_image(r, i));
    }
    return AGAVE_OK;
}

/* 1 if the caller's progress function asks to stop. */
static int report_progress(const eval_run *r, int64_t rows_done)
{
    const model_eval_out *o = r->out;
    if (!o || !o->progress)
        return 0;
    agave_eval_progress p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.images_done = r->done;
    p.images = r->n;
    p.samples_done = rows_done;
    p.samples = (int64_t)r->n * r->K;
    return o->progress(&p, o->progress_user) != 0;
}

/* Every row of the stream, chunk by chunk. */
static agave_status eval_rows(eval_run *r)
{
    int64_t total = (int64_t)r->n * r->K;
    for (int64_t row0 = 0; row0 < total;) {
        int k = total - row0 < r->chunk_rows ? (int)(total - row0) : r->chunk_rows;
        int last = (int)((row0 + k - 1) / r->K);
        if (r->plan.vae && last >= r->encoded)
            TRY(encode_through(r, last));
        agave_tape_reset(r->m->ctx);
        row_terms t;
        TRY(score_rows(r, row0, k, &t));
        TRY(add_rows(r, row0, k, &t));
        row0 += k;
        if (report_progress(r, row0))
            break;
    }
    return AGAVE_OK;
}

/* ---- the call ------------------------------------------------------------------- */
static void fill_stats(const eval_run *r, int iwae_samples, agave_eval_stats *stats)
{
    const agave_config *c = &r->m->cfg;
    double D = (double)c->C * c->H * c->W, Dy = D / (c->s * c->s);
    double Dx = c->mode == AGAVE_MODE_VAE ? Dy : D;   /* mode vae bounds y */
    stats->n_images = r->done;
    stats->iwae_samples = iwae_samples;
    if (r->done == 0)
        return;
    double samples = (double)r->done * r->K;
    stats->recon_bpd = agave_nats_to_bpd(r->sums.recon / samples, Dx);
    stats->kl_bpd = agave_nats_to_bpd(r->sums.kl / samples, Dx);
    stats->elbo_bpd = stats->recon_bpd + stats->kl_bpd;
    stats->aux_bpd = agave_nats_to_bpd((r->sums.aux_nll + r->sums.kl) / samples, Dy);
    /* K = 0 asks for no importance sampling: report the ELBO itself (with T = 0
     * it uses the analytic KL, which one log-weight would only estimate). */
    stats->iwae_bpd =
        iwae_samples > 0 ? agave_nats_to_bpd(-r->sums.iwae / r->done, Dx) : stats->elbo_bpd;
}

/* NaN in every requested per-image figure: what an image left unfinished shows. */
static void clear_outputs(const model_eval_out *o, int n)
{
    double *arrays[5] = {o->elbo_bpd, o->recon_bpd, o->kl_bpd, o->aux_bpd, o->iwae_bpd};
    for (int a = 0; a < 5; a++)
        for (int i = 0; arrays[a] && i < n; i++)
            arrays[a][i] = NAN;
}

static agave_status check_call(agave_model *m, int n, int iwae_samples)
{
    agave_context *ctx = m->ctx;
    int n_min = m->slice.total > 0 ? 0 : 1;   /* a process may have no image of a batch */
    if (n < n_min || n > 1 << 24 || iwae_samples < 0 || iwae_samples > 100000)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "agave_model_evaluate: n = %d (%d..2^24) or K = %d (0..100000) out of "
                         "range", n, n_min, iwae_samples);
    TRY(model_check_slice(m, n, "agave_model_evaluate"));
    if (!m->initialized)
        return ctx_error(ctx, AGAVE_ERR_STATE,
                         "agave_model_evaluate: the model is not initialised: train it, call "
                         "agave_model_init, or load a checkpoint");
    return AGAVE_OK;
}

static agave_status run_rows(eval_run *r)
{
    agave_model *m = r->m;
    agave_context *ctx = m->ctx;
    agave_status st = slots_create(r);
    if (st != AGAVE_OK) {
        slots_free(r);
        return st;
    }
    int was_recording = agave_tape_recording(ctx);
    agave_tape_set_recording(ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    st = eval_rows(r);
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(ctx, was_recording);
    agave_tape_reset(ctx);
    slots_free(r);
    return st;
}

agave_status model_evaluate(agave_model *m, const uint8_t *x, int n, int iwae_samples,
                            const model_eval_out *out, agave_eval_stats *stats)
{
    agave_context *ctx = m->ctx;
    TRY(check_call(m, n, iwae_samples));
    if (out)
        clear_outputs(out, n);
    const agave_config *c = &m->cfg;
    eval_run r;
    memset(&r, 0, sizeof r);
    r.m = m;
    r.plan = plan_for_mode(c->mode);
    r.x = x;
    r.n = n;
    r.K = r.plan.vae && iwae_samples > 0 ? iwae_samples : 1;
    r.with_iwae = iwae_samples > 0;
    r.chunk_rows = eval_chunk_rows(m);
    r.out = out;
    r.latent = (size_t)c->Z * (c->H / 4) * (c->W / 4);
    /* Under a batch slice, the draws of the images before and after this
     * process's are skipped: each image is scored with the z samples it gets
     * when one process evaluates the whole batch. Only the z samples draw
     * (K latent tensors per image); mode pixelcnn draws nothing. */
    uint64_t per_image = r.plan.vae ? (uint64_t)r.K * r.latent * RNG_NORMAL_DRAWS : 0;
    rng_span_skip_before(&ctx->rng, m->slice, per_image);
    agave_status st = n > 0 ? run_rows(&r) : AGAVE_OK;
    if (st != AGAVE_OK)
        return st;
    if (r.done == n)
        rng_span_skip_after(&ctx->rng, m->slice, n, per_image);
    fill_stats(&r, iwae_samples, stats);
    return AGAVE_OK;
}

static void options_defaults(agave_eval_options *o)
{
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
}

void agave_eval_options_init_sized(agave_eval_options *o, size_t struct_size)
{
    if (!o)
        return;
    agave_eval_options d;
    options_defaults(&d);
    struct_init(o, struct_size, &d, sizeof d);
}

/* Both public calls: the caller's structs through the struct_size rule (the
 * options read over the defaults, the statistics written as far as the
 * caller's struct reaches), the evaluation on the library's own. */
static agave_status evaluate_public(agave_model *m, const uint8_t *x, int n, int iwae_samples,
                                    const agave_eval_options *options, agave_eval_stats *stats,
                                    const char *fn)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!x || !stats)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "%s: NULL images or stats", fn);
    char msg[256];
    agave_eval_stats full;
    memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    if (!struct_write(stats, &full, sizeof full, sizeof full.struct_size, "agave_eval_stats",
                      msg, sizeof msg))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "%s: %s", fn, msg);
    agave_eval_options o;
    options_defaults(&o);
    if (options && !struct_read(&o, sizeof o, options, sizeof o.struct_size,
                                "agave_eval_options", msg, sizeof msg))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "%s: %s", fn, msg);
    model_eval_out out = {o.elbo_bpd, o.recon_bpd, o.kl_bpd, o.aux_bpd, o.iwae_bpd,
                          o.progress, o.progress_user};
    agave_status st = model_evaluate(m, x, n, iwae_samples, options ? &out : NULL, &full);
    struct_write(stats, &full, sizeof full, 0, NULL, NULL, 0);
    return st;
}

agave_status agave_model_evaluate(agave_model *m, const uint8_t *x, int n, int iwae_samples,
                                  agave_eval_stats *stats)
{
    return evaluate_public(m, x, n, iwae_samples, NULL, stats, "agave_model_evaluate");
}

agave_status agave_model_evaluate_scores(agave_model *m, const uint8_t *x, int n,
                                         int iwae_samples, const agave_eval_options *options,
                                         agave_eval_stats *stats)
{
    return evaluate_public(m, x, n, iwae_samples, options, stats,
                           "agave_model_evaluate_scores");
}
