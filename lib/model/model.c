/* The model handle: construction from a configuration, parameters, the
 * forward pass of docs/model.md, data-dependent initialisation and training steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "config.h"
#include "model.h"

agave_layer_options conv_options(int in, int out, int kh, int kw, int stride, agave_shift shift,
                                 float init_scale)
{
    agave_layer_options o;
    agave_layer_options_init(&o);
    o.in_channels = in;
    o.out_channels = out;
    o.kernel_h = kh;
    o.kernel_w = kw;
    o.stride = stride;
    o.shift = shift;
    o.init_scale = init_scale;
    return o;
}

agave_status model_add_layer(agave_model *m, agave_layer_kind kind,
                             const agave_layer_options *o, agave_layer **out)
{
    if (m->n_layers == MODEL_MAX_LAYERS)
        return ctx_error(m->ctx, AGAVE_ERR_LIMIT, "the model has more than %d layers",
                         MODEL_MAX_LAYERS);
    TRY(layer_new(m->ctx, kind, o, out));
    m->layers[m->n_layers++] = *out;
    return AGAVE_OK;
}

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

/* ---- construction --------------------------------------------------------------- */
static agave_status collect_params(agave_model *m)
{
    int total = 1;   /* the auxiliary log-scales */
    for (int i = 0; i < m->n_layers; i++)
        total += m->layers[i]->n_params;
    m->params = calloc((size_t)total, sizeof *m->params);
    m->param_names = calloc((size_t)total, sizeof *m->param_names);
    if (!m->params || !m->param_names)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate the parameter list");
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i]->n_params; j++) {
            snprintf(m->param_names[m->n_params], sizeof m->param_names[0], "layer%03d.%s", i,
                     m->layers[i]->param_names[j]);
            m->params[m->n_params++] = m->layers[i]->params[j];
        }
    snprintf(m->param_names[m->n_params], sizeof m->param_names[0], "aux_log_scale");
    m->params[m->n_params++] = m->aux_log_scale;
    return AGAVE_OK;
}

/* Moves every parameter and its gradient into the model's two blocks:
 * param_block (P) and grad_block (P + REDUCE_EXTRA), P = param_total. */
static agave_status gather_params(agave_model *m)
{
    for (int i = 0; i < m->n_params; i++)
        m->param_total += m->params[i]->numel;
    m->param_block = malloc(m->param_total * sizeof(float));
    m->grad_block = calloc(m->param_total + REDUCE_EXTRA, sizeof(float));
    if (!m->param_block || !m->grad_block)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate the parameter block (%zu floats)",
                         m->param_total);
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        tensor_move_to_view(m->params[i], m->param_block + off, m->grad_block + off);
        off += m->params[i]->numel;
    }
    TRY(agave_optimizer_create(m->ctx, m->cfg.optimizer, m->cfg.lr, &m->opt));
    return optim_add_span(m->opt, m->param_block, m->grad_block, m->param_total);
}

agave_status agave_model_create(agave_context *ctx, const agave_config *cfg, agave_model **out)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!cfg || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_model_create: NULL configuration or out");
    *out = NULL;
    char msg[256];
    agave_config full;
    if (config_read(cfg, &full, msg, sizeof msg) != AGAVE_OK)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "invalid configuration: %s", msg);
    TRY(model_check_memory(ctx, &full, 1, "agave_model_create"));
    agave_model *m = calloc(1, sizeof *m);
    if (!m)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate a model");
    m->ctx = ctx;
    m->cfg = full;
    agave_status st = vae_build(m);
    if (st == AGAVE_OK)
        st = pixelcnn_build(m);
    if (st == AGAVE_OK)
        st = agave_tensor_create(ctx, 1, &m->cfg.C, &m->aux_log_scale);
    if (st == AGAVE_OK)
        st = agave_tensor_set_requires_grad(m->aux_log_scale, 1);
    if (st == AGAVE_OK)
        st = collect_params(m);
    if (st == AGAVE_OK)
        st = gather_params(m);
    if (st != AGAVE_OK) {
        agave_model_free(m);
        return st;
    }
    *out = m;
    return AGAVE_OK;
}

void agave_model_free(agave_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_layers; i++)
        agave_layer_free(m->layers[i]);
    agave_tensor_free(m->aux_log_scale);
    agave_optimizer_free(m->opt);
    average_free(&m->ema);
    free(m->param_block);
    free(m->grad_block);
    free(m->params);
    free(m->param_names);
    free(m);
}

agave_status agave_model_get_config_sized(const agave_model *m, agave_config *cfg,
                                          size_t struct_size)
{
    if (!m || !cfg)
        return AGAVE_ERR_NULL;
    if (struct_size < CONFIG_MIN_SIZE)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_model_get_config: struct_size %zu does not reach lambda (%zu)",
                         struct_size, (size_t)CONFIG_MIN_SIZE);
    struct_init(cfg, struct_size, &m->cfg, sizeof m->cfg);
    return AGAVE_OK;
}

/* Programs built against 0.1's agave.h call this symbol with that header's
 * struct, which ends with max_bad_steps. */
agave_status (agave_model_get_config)(const agave_model *m, agave_config *cfg)
{
    return agave_model_get_config_sized(m, cfg, config_size_0_1());
}

/* Gated blocks read their dropout from their options at every forward. */
static void set_dropout(agave_model *m, float p)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i]->kind == AGAVE_LAYER_GATED_RESNET)
            m->layers[i]->opt.dropout = p;
}

agave_status agave_model_update_config(agave_model *m, const agave_config *caller)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!caller)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_model_update_config: cfg is NULL");
    char msg[256];
    agave_config full;
    const agave_config *cfg = &full;
    if (config_read(caller, &full, msg, sizeof msg) != AGAVE_OK)
        return ctx_error(m->ctx, AGAVE_ERR_CONFIG, "invalid configuration: %s", msg);
    if (!config_equal(cfg, &m->cfg, 0, AGAVE_KEY_TRAINING)) {
        char names[256];
        config_key_names(AGAVE_KEY_TRAINING, names, sizeof names);
        return ctx_error(m->ctx, AGAVE_ERR_CONFIG,
                         "agave_model_update_config: only training settings can change (%s), "
                         "not the architecture or the optimizer kind", names);
    }
    if (cfg->ema > 0 && !(m->cfg.ema > 0) && m->initialized &&
        average_init(&m->ema, m->param_block, m->param_total) != AGAVE_OK)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate the parameter average");
    if (!(cfg->ema > 0))
        average_free(&m->ema);
    config_copy_keys(&m->cfg, cfg, AGAVE_KEY_TRAINING);
    m->opt->lr = cfg->lr;
    set_dropout(m, cfg->dropout);
    return AGAVE_OK;
}

size_t agave_model_param_numel(const agave_model *m) { return m ? m->param_total : 0; }

int agave_model_param_tensor_count(const agave_model *m) { return m ? m->n_params : 0; }

/* The names before 1.0, which did not say what they count. */
size_t agave_model_param_count(const agave_model *m) { return agave_model_param_numel(m); }
int agave_model_param_tensors(const agave_model *m) { return agave_model_param_tensor_count(m); }

agave_status agave_model_param(agave_model *m, int index, const char **name,
                               agave_tensor **param)
{
    if (!m)
        return AGAVE_ERR_NULL;
    if (index < 0 || index >= m->n_params)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "parameter index %d is out of range (the model has %d tensors)", index,
                         m->n_params);
    if (name)
        *name = m->param_names[index];
    if (param)
        *param = m->params[index];
    return AGAVE_OK;
}

int64_t agave_model_step_count(const agave_model *m) { return m ? m->step : 0; }
int agave_model_is_initialized(const agave_model *m) { return m ? m->initialized != 0 : 0; }
int64_t agave_model_rejected_count(const agave_model *m) { return m ? m->rejected : 0; }

void model_set_span(agave_model *m, rng_span span)
{
    m->span = span;
    for (int i = 0; i < m->n_layers; i++)
        layer_set_span(m->layers[i], span);
}

void model_set_training(agave_model *m, int training)
{
    for (int i = 0; i < m->n_layers; i++)
        agave_layer_set_training(m->layers[i], training);
}

/* ---- the forward pass ------------------------------------------------------------ */
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

/* ---- initialisation and training -------------------------------------------------- */
static agave_status check_batch(agave_model *m, const uint8_t *x, int n, const char *fn)
{
    if (!x)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "%s: the image buffer is NULL", fn);
    if (n < 1 || n > 1 << 20)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "%s: batch size %d is out of 1..2^20",
                         fn, n);
    return AGAVE_OK;
}

agave_status agave_model_init(agave_model *m, const uint8_t *x, int n)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    TRY(check_batch(m, x, n, "agave_model_init"));
    TRY(model_check_memory(m->ctx, &m->cfg, n, "agave_model_init"));
    /* Every part runs once, whatever the mode, so that all layers get initialised. */
    agave_context *ctx = m->ctx;
    agave_tape_reset(ctx);
    int was_recording = agave_tape_recording(ctx);
    agave_tape_set_recording(ctx, 0);
    model_set_training(m, 1);
    model_terms t;
    forward_plan all = {1, 1, 1, 1};
    agave_status st = model_forward(m, x, n, all, &t);
    agave_tape_set_recording(ctx, was_recording);
    agave_tape_reset(ctx);
    if (st != AGAVE_OK)
        return st;
    average_free(&m->ema);
    if (m->cfg.ema > 0 && average_init(&m->ema, m->param_block, m->param_total) != AGAVE_OK)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate the parameter average");
    m->initialized = 1;
    return AGAVE_OK;
}

static agave_status add_term(agave_context *ctx, agave_tensor **sum, agave_tensor *term)
{
    if (!*sum) {
        *sum = term;
        return AGAVE_OK;
    }
    return agave_add(ctx, *sum, term, sum);
}

/* Per image: nll_x + nll_y + lambda * kl, over the terms the mode has. */
static agave_status per_image_objective(agave_model *m, const model_terms *t, agave_tensor **sum)
{
    agave_context *ctx = m->ctx;
    agave_tensor *weighted_kl;
    *sum = NULL;
    if (t->nll_x)
        TRY(add_term(ctx, sum, t->nll_x));
    if (t->nll_y)
        TRY(add_term(ctx, sum, t->nll_y));
    if (t->kl) {
        TRY(agave_scale(ctx, t->kl, m->cfg.lambda, &weighted_kl));
        TRY(add_term(ctx, sum, weighted_kl));
    }
    return AGAVE_OK;
}

/* loss = mean over images of the per-image objective. */
agave_status model_objective(agave_model *m, const model_terms *t, agave_tensor **loss)
{
    agave_tensor *sum;
    TRY(per_image_objective(m, t, &sum));
    return agave_mean(m->ctx, sum, loss);
}

/* loss = (sum over this slice's images of the per-image objective) / total:
 * this process's share of the mean over a batch of total images. */
static agave_status slice_objective(agave_model *m, const model_terms *t, int64_t total,
                                    agave_tensor **loss)
{
    agave_tensor *sum;
    TRY(per_image_objective(m, t, &sum));
    TRY(agave_sum(m->ctx, sum, &sum));
    return agave_scale(m->ctx, sum, (float)(1.0 / (double)total), loss);
}

static agave_status reject_step(agave_model *m, agave_step_stats *stats, const char *why)
{
    optim_zero_grads(m->opt);
    agave_tape_reset(m->ctx);
    m->bad_steps++;
    m->rejected++;
    if (stats)
        stats->rejected = 1;
    if (m->bad_steps >= m->cfg.max_bad_steps)
        return ctx_error(m->ctx, AGAVE_ERR_NUMERIC,
                         "%d consecutive training steps had a non-finite %s: stop training and "
                         "resume from the last good checkpoint with a lower learning rate or "
                         "gradient clipping", m->bad_steps, why);
    ctx_error(m->ctx, AGAVE_OK, "step rejected: non-finite %s (%d in a row)", why, m->bad_steps);
    return AGAVE_OK;
}

/* ---- data parallelism ------------------------------------------------------------ */
#define SLICE_MAX_TOTAL ((int64_t)1 << 40)

agave_status agave_model_set_batch_slice(agave_model *m, int64_t offset, int64_t total)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (total < 0 || total > SLICE_MAX_TOTAL || offset < 0 || offset > total)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_model_set_batch_slice: offset %lld, total %lld: need "
                         "0 <= offset <= total <= 2^40 (total 0: no slice)",
                         (long long)offset, (long long)total);
    m->slice = (rng_span){offset, total};
    return AGAVE_OK;
}

agave_status model_check_slice(agave_model *m, int n, const char *fn)
{
    if (m->slice.total > 0 && m->slice.first + n > m->slice.total)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: %d images from offset %lld overrun the batch slice's total of "
                         "%lld images (agave_model_set_batch_slice)",
                         fn, n, (long long)m->slice.first, (long long)m->slice.total);
    return AGAVE_OK;
}

agave_status agave_model_set_grad_reducer(agave_model *m, agave_grad_reduce_fn fn, void *user)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    m->reduce_fn = fn;
    m->reduce_user = fn ? user : NULL;
    return AGAVE_OK;
}

/* Has the reducer sum the gradient block and this process's sums, which
 * follow it, over the processes; the sums cross as floats. */
static agave_status reduce_step(agave_model *m, double sums[REDUCE_EXTRA])
{
    float *buf = m->grad_block, *extra = m->grad_block + m->param_total;
    for (int k = 0; k < REDUCE_EXTRA; k++)
        extra[k] = (float)sums[k];
    agave_status st = m->reduce_fn(buf, m->param_total + REDUCE_EXTRA, m->reduce_user);
    if (st != AGAVE_OK)
        return ctx_error(m->ctx, st,
                         "the gradient reducer failed (%s); the step was not applied",
                         agave_status_string(st));
    for (int k = 0; k < REDUCE_EXTRA; k++)
        sums[k] = extra[k];
    return AGAVE_OK;
}

static double sum_of(const agave_tensor *t)
{
    double s = 0;
    for (size_t i = 0; t && i < t->numel; i++)
        s += t->data[i];
    return s;
}

/* This process's sums over its n images, in the reducer's layout; with a
 * slice or a reducer, rounded to the floats that the processes exchange. */
static void local_sums(const agave_model *m, const model_terms *t, int n, int bad_loss,
                       double sums[REDUCE_EXTRA])
{
    sums[REDUCE_NLL_X] = sum_of(t->nll_x);
    sums[REDUCE_NLL_Y] = sum_of(t->nll_y);
    sums[REDUCE_KL] = sum_of(t->kl);
    sums[REDUCE_IMAGES] = n;
    sums[REDUCE_BAD_LOSS] = bad_loss;
    if (m->reduce_fn || m->slice.total > 0)
        for (int k = 0; k < REDUCE_EXTRA; k++)
            sums[k] = (float)sums[k];
}

/* The step figures from the batch's sums. loss_bpd is the objective's own
 * value when this process saw the whole batch, else it is rebuilt from the
 * sums as the objective defines it. */
static void step_stats(const agave_model *m, const double sums[REDUCE_EXTRA], double loss,
                       double grad_norm, agave_step_stats *s)
{
    const agave_config *c = &m->cfg;
    double D = (double)c->C * c->H * c->W, Dy = D / (c->s * c->s);
    double images = sums[REDUCE_IMAGES];
    s->pixelcnn_nll = sums[REDUCE_NLL_X] / images;
    s->aux_nll = sums[REDUCE_NLL_Y] / images;
    s->kl = sums[REDUCE_KL] / images;
    if (m->reduce_fn || m->slice.total > 0)
        loss = s->pixelcnn_nll + s->aux_nll + c->lambda * s->kl;
    s->loss_bpd = agave_nats_to_bpd(loss, D);
    s->pixelcnn_bpd = agave_nats_to_bpd(s->pixelcnn_nll, D);
    s->aux_bpd = agave_nats_to_bpd(s->aux_nll, Dy);
    s->kl_bpd = agave_nats_to_bpd(s->kl, D);
    s->grad_norm = grad_norm;
}

/* The end of every training step, once the gradient is complete (and, with
 * several processes, summed): reject a non-finite one, else update the
 * parameters, the average and the counts. */
static agave_status apply_update(agave_model *m, double grad_norm, agave_step_stats *stats)
{
    if (!isfinite(grad_norm))
        return reject_step(m, stats, "gradient");
    m->opt->lr = (float)agave_model_learning_rate(m);
    agave_status st = agave_optimizer_step(m->opt, m->cfg.grad_clip);
    agave_tape_reset(m->ctx);
    if (st != AGAVE_OK)
        return st;
    if (m->ema.avg)
        average_update(&m->ema, m->param_block, m->cfg.ema);
    m->step++;
    m->bad_steps = 0;
    return AGAVE_OK;
}

/* The step's checks before any work: the batch, the memory limit, and with
 * a batch slice an initialised model (every process must start from the
 * same parameters) and images that fit the slice. */
static agave_status check_step(agave_model *m, const uint8_t *x, int n)
{
    const char *fn = "agave_model_train_step";
    TRY(check_batch(m, x, n, fn));
    TRY(model_check_memory(m->ctx, &m->cfg, n, fn));
    if (m->slice.total > 0 && !m->initialized)
        return ctx_error(m->ctx, AGAVE_ERR_STATE,
                         "agave_model_train_step: with a batch slice set, first initialise the "
                         "model with agave_model_init on the whole batch, in every process, so "
                         "that all start from the same parameters");
    return model_check_slice(m, n, fn);
}

/* Forward over this process's images (the slice's place in the random
 * stream), the objective (this process's share of the batch mean with a
 * slice), the sums, and backward unless the loss is not finite. Backward
 * gives each activation's memory back once it has been consumed, so the
 * sums are read before it. */
static agave_status forward_backward(agave_model *m, const uint8_t *x, int n,
                                     double sums[REDUCE_EXTRA], double *loss_value)
{
    agave_context *ctx = m->ctx;
    agave_tape_reset(ctx);
    agave_tape_set_recording(ctx, 1);
    model_set_training(m, 1);
    model_terms t;
    agave_tensor *loss;
    model_set_span(m, m->slice);
    agave_status st = model_forward(m, x, n, plan_for_mode(m->cfg.mode), &t);
    model_set_span(m, RNG_WHOLE_BATCH);
    if (st == AGAVE_OK)
        st = m->slice.total > 0 ? slice_objective(m, &t, m->slice.total, &loss)
                                : model_objective(m, &t, &loss);
    if (st != AGAVE_OK)
        return st;
    *loss_value = loss->data[0];
    int bad_loss = !isfinite(*loss_value);
    local_sums(m, &t, n, bad_loss, sums);
    return bad_loss ? AGAVE_OK : tape_backward(ctx, loss, 1);
}

/* One training step, in one process or as one of several (agave.h,
 * data-parallel training): with a reducer, every process calls it exactly
 * once, whatever its own loss, so that the processes stay in step and decide
 * alike. stats, when not NULL, is the library's own struct, zeroed. */
static agave_status train_step(agave_model *m, const uint8_t *x, int n, agave_step_stats *stats)
{
    TRY(check_step(m, x, n));
    if (!m->initialized)
        TRY(agave_model_init(m, x, n));
    double sums[REDUCE_EXTRA], loss;
    agave_status st = forward_backward(m, x, n, sums, &loss);
    if (st == AGAVE_OK && m->reduce_fn && (st = reduce_step(m, sums)) != AGAVE_OK)
        optim_zero_grads(m->opt);
    if (st != AGAVE_OK) {
        agave_tape_reset(m->ctx);
        return st;
    }
    if (!(sums[REDUCE_BAD_LOSS] == 0))
        return reject_step(m, stats, m->reduce_fn ? "loss (in at least one process)" : "loss");
    double grad_norm = optim_grad_norm(m->opt);
    if (stats)
        step_stats(m, sums, loss, grad_norm, stats);
    return apply_update(m, grad_norm, stats);
}

agave_status agave_model_train_step(agave_model *m, const uint8_t *x, int n,
                                    agave_step_stats *stats)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    agave_step_stats full;
    memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    char msg[256];
    if (stats && !struct_write(stats, &full, sizeof full, sizeof full.struct_size,
                               "agave_step_stats", msg, sizeof msg))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "agave_model_train_step: %s", msg);
    agave_status st = train_step(m, x, n, stats ? &full : NULL);
    if (stats)
        struct_write(stats, &full, sizeof full, 0, NULL, NULL, 0);
    return st;
}
