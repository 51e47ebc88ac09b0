/* The model handle: construction from a configuration (its layers, its
 * parameters gathered into one block), the configuration read back and
 * updated, and the accessors of parameters and counters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "config.h"
#include "model.h"

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

/* The field of m's networks that topology layer t fills. */
static agave_layer **slot_of(agave_model *m, const topo_layer *t)
{
    vae_net *v = &m->vae;
    pixelcnn_net *p = &m->pcnn;
    const int lv = t->level, i = t->index;
    switch (t->slot) {
    case TOPO_ENC_IN: return &v->enc_in;
    case TOPO_ENC_RES: return &v->enc_res[lv][i];
    case TOPO_ENC_DOWN: return &v->enc_down[lv];
    case TOPO_ENC_OUT: return &v->enc_out;
    case TOPO_IAF_IN: return &v->iaf_in[lv];
    case TOPO_IAF_CTX: return &v->iaf_ctx[lv];
    case TOPO_IAF_OUT: return &v->iaf_out[lv];
    case TOPO_DEC_IN: return &v->dec_in;
    case TOPO_DEC_UP: return &v->dec_up[lv];
    case TOPO_DEC_RES: return &v->dec_res[lv][i];
    case TOPO_DEC_OUT: return &v->dec_out;
    case TOPO_COND: return &p->cond;
    case TOPO_U_INIT: return &p->u_init;
    case TOPO_UL_INIT_A: return &p->ul_init_a;
    case TOPO_UL_INIT_B: return &p->ul_init_b;
    case TOPO_UP_U: return &p->up_u[lv][i];
    case TOPO_UP_UL: return &p->up_ul[lv][i];
    case TOPO_DOWN_U: return &p->down_u[lv];
    case TOPO_DOWN_UL: return &p->down_ul[lv];
    case TOPO_DN_U: return &p->dn_u[lv][i];
    case TOPO_DN_UL: return &p->dn_ul[lv][i];
    case TOPO_UPSAMPLE_U: return &p->upsample_u[lv];
    case TOPO_UPSAMPLE_UL: return &p->upsample_ul[lv];
    case TOPO_OUT: return &p->out;
    }
    return NULL;   /* unreachable: -Wswitch names a slot left out above */
}

/* Builds topology layer t into its field (topology_walk's visitor). */
static agave_status add_layer_at(void *user, const topo_layer *t)
{
    agave_model *m = user;
    return model_add_layer(m, t->kind, &t->opt, slot_of(m, t));
}

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

/* The model's two blocks for P parameters: param_block (P) and grad_block
 * (P + REDUCE_EXTRA), zero. */
static agave_status alloc_blocks(agave_model *m, size_t P)
{
    m->param_total = P;
    m->param_block = calloc(P ? P : 1, sizeof(float));
    m->grad_block = calloc(P + REDUCE_EXTRA, sizeof(float));
    if (!m->param_block || !m->grad_block)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM,
                         "cannot allocate the parameter block (%zu floats)", P);
    return AGAVE_OK;
}

/* 1 if the parameters already lie in the blocks in checkpoint order. */
static int params_in_blocks(const agave_model *m)
{
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        const agave_tensor *t = m->params[i];
        if (t->data != m->param_block + off || t->grad != m->grad_block + off)
            return 0;
        off += t->numel;
    }
    return off == m->param_total;
}

/* The layers were built into the blocks (ctx's parameter pool, sized by
 * config_param_count) and the parameter list follows them: the optimiser
 * gets the blocks as one span. A layer whose parameters the count leaves out,
 * or that lists them in another order than it makes them, is a defect of the
 * library, refused here rather than trained wrongly. */
static agave_status attach_optimizer(agave_model *m)
{
    if (!params_in_blocks(m))
        return ctx_error(m->ctx, AGAVE_ERR_CONFIG,
                         "agave_model_create: the layers' parameters do not fill the block "
                         "of %zu floats the configuration counts, in order (a defect of "
                         "libagave: please report it with the configuration)",
                         m->param_total);
    TRY(agave_optimizer_create(m->ctx, m->cfg.optimizer, m->cfg.lr, &m->opt));
    return optim_add_span(m->opt, m->param_block, m->grad_block, m->param_total);
}

/* The layers, the auxiliary log-scales and the parameter list, with the
 * parameters drawn from blocks of the configuration's size. */
static agave_status build(agave_model *m)
{
    agave_context *ctx = m->ctx;
    TRY(alloc_blocks(m, (size_t)config_param_count(&m->cfg)));
    ctx->pool = (param_pool){m->param_block, m->grad_block, m->param_total, 0};
    m->vae.n_up = topo_vae_upsamplings(&m->cfg);
    agave_status st = topology_walk(&m->cfg, add_layer_at, m);
    if (st == AGAVE_OK)
        st = tensor_new_param(ctx, 1, &m->cfg.C, &m->aux_log_scale);
    ctx->pool = (param_pool){0};
    if (st == AGAVE_OK)
        st = collect_params(m);
    if (st == AGAVE_OK)
        st = attach_optimizer(m);
    return st;
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
    agave_status st = build(m);
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
    model_replicas_free(m);
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
void model_set_dropout(agave_model *m, float p)
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
    model_set_dropout(m, cfg->dropout);
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
