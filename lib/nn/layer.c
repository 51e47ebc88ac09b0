/* Layer handles: options, creation with validation, parameters, modes.
 * The forward passes live in linear.c (weight-normalised maps) and blocks.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "nn.h"

static void options_defaults(agave_layer_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->kernel_h = opt->kernel_w = 3;
    opt->stride = 1;
    opt->shift = AGAVE_SHIFT_NONE;
    opt->init_scale = 1.0f;
}

agave_status agave_layer_options_init_sized(agave_layer_options *opt, size_t struct_size)
{
    if (!opt)
        return AGAVE_ERR_NULL;
    if (struct_size < sizeof opt->struct_size)
        return AGAVE_ERR_INVALID_ARG;
    agave_layer_options d;
    options_defaults(&d);
    struct_init(opt, struct_size, &d, sizeof d);
    return AGAVE_OK;
}

/* Programs built against 0.1's agave.h call this symbol with that header's
 * struct, which ends with mask_reverse. */
agave_status (agave_layer_options_init)(agave_layer_options *opt)
{
    return agave_layer_options_init_sized(opt, STRUCT_SIZE(agave_layer_options, mask_reverse));
}

static const char *kind_name(agave_layer_kind k)
{
    static const char *names[] = {"conv", "deconv", "nin", "dense", "gated_resnet", "resnet",
                                  "cond_stream"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

/* Every check a user's options can fail, with the field named. */
static agave_status validate_options(agave_context *ctx, agave_layer_kind kind,
                                     const agave_layer_options *o)
{
    const char *k = kind_name(kind);
    if ((unsigned)kind > AGAVE_LAYER_COND_STREAM)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "layer kind %d is unknown", (int)kind);
    int composite = kind == AGAVE_LAYER_GATED_RESNET || kind == AGAVE_LAYER_RESNET;
    if (o->in_channels < 1 || o->in_channels > 65536)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: in_channels %d is out of 1..65536", k,
                         o->in_channels);
    if (!composite && (o->out_channels < 1 || o->out_channels > 65536))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: out_channels %d is out of 1..65536",
                         k, o->out_channels);
    if (o->kernel_h < 1 || o->kernel_w < 1 || o->kernel_h > 15 || o->kernel_w > 15)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: kernel %dx%d is out of 1..15", k,
                         o->kernel_h, o->kernel_w);
    if (o->stride < 1 || o->stride > 8 || (kind == AGAVE_LAYER_DECONV && o->stride > 2))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: stride %d is not supported", k,
                         o->stride);
    if ((unsigned)o->shift > AGAVE_SHIFT_DOWN_RIGHT)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: shift %d is unknown", k, (int)o->shift);
    if (!(o->init_scale > 0) || !isfinite(o->init_scale))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: init_scale %g must be > 0", k,
                         (double)o->init_scale);
    if (!(o->dropout >= 0 && o->dropout < 1))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: dropout %g is out of [0, 1)", k,
                         (double)o->dropout);
    if (o->shortcut_channels < 0 || o->shortcut_channels > 65536 || o->cond_channels < 0 ||
        o->cond_channels > 65536)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: shortcut_channels %d / cond_channels %d out of 0..65536", k,
                         o->shortcut_channels, o->cond_channels);
    if (o->mask_degrees < 0 || (o->mask_degrees > 0 && kind != AGAVE_LAYER_CONV))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: mask_degrees %d: only CONV layers can be masked", k,
                         o->mask_degrees);
    return AGAVE_OK;
}

agave_status agave_layer_create(agave_context *ctx, agave_layer_kind kind,
                                const agave_layer_options *opt, agave_layer **out)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!opt || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_layer_create: NULL options or out");
    *out = NULL;
    agave_layer_options o;
    char msg[256];
    options_defaults(&o);
    if (!struct_read(&o, sizeof o, opt, sizeof o.struct_size, "agave_layer_options", msg,
                     sizeof msg))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s", msg);
    TRY(validate_options(ctx, kind, &o));
    return layer_new(ctx, kind, &o, out);
}

/* The shape of a linear layer's v: (out,in,KH,KW) for CONV/DECONV, (out,in)
 * for NIN/DENSE; returns its ndim. */
static int linear_v_dims(agave_layer_kind kind, const agave_layer_options *o, int vd[4])
{
    int spatial = kind == AGAVE_LAYER_CONV || kind == AGAVE_LAYER_DECONV;
    vd[0] = o->out_channels, vd[1] = o->in_channels, vd[2] = o->kernel_h, vd[3] = o->kernel_w;
    return spatial ? 4 : 2;
}

uint64_t layer_param_numel(agave_layer_kind kind, const agave_layer_options *o)
{
    if (kind <= AGAVE_LAYER_DENSE) {   /* v, then g and b (out) */
        int vd[4], ndim = linear_v_dims(kind, o, vd);
        uint64_t v = 1;
        for (int d = 0; d < ndim; d++)
            v *= (uint64_t)vd[d];
        return v + 2 * (uint64_t)o->out_channels;
    }
    layer_child_spec specs[LAYER_MAX_CHILDREN];
    int n = blocks_children(kind, o, specs);
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += layer_param_numel(specs[i].kind, &specs[i].opt);
    return total;
}

/* v ~ N(0, 0.05^2), g = 1, b = 0 (PixelCNN++'s initial values before the data pass). */
static agave_status linear_params(agave_layer *l)
{
    const agave_layer_options *o = &l->opt;
    int vd[4], ndim = linear_v_dims(l->kind, o, vd);
    TRY(tensor_new_param(l->ctx, ndim, vd, &l->v));
    TRY(tensor_new_param(l->ctx, 1, &o->out_channels, &l->g));
    TRY(tensor_new_param(l->ctx, 1, &o->out_channels, &l->b));
    TRY(agave_tensor_fill_normal(l->v, 0.0f, 0.05f));
    TRY(agave_tensor_fill(l->g, 1.0f));
    if (o->mask_degrees > 0) {
        TRY(agave_tensor_create(l->ctx, 4, vd, &l->mask));
        int D = o->mask_degrees;
        size_t plane = (size_t)o->kernel_h * o->kernel_w;
        for (int oc = 0; oc < o->out_channels; oc++)
            for (int ic = 0; ic < o->in_channels; ic++) {
                int di = o->mask_reverse ? D - 1 - ic % D : ic % D;
                int dout = o->mask_reverse ? D - 1 - oc % D : oc % D;
                int allowed = o->mask_inclusive ? di <= dout : di < dout;
                float *m = l->mask->data + ((size_t)oc * o->in_channels + ic) * plane;
                for (size_t k = 0; k < plane; k++)
                    m[k] = allowed ? 1.0f : 0.0f;
            }
    }
    return AGAVE_OK;
}

agave_status layer_new(agave_context *ctx, agave_layer_kind kind, const agave_layer_options *o,
                       agave_layer **out)
{
    agave_layer *l = calloc(1, sizeof *l);
    if (!l)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate a layer");
    l->ctx = ctx;
    l->kind = kind;
    l->opt = *o;
    l->opt.struct_size = sizeof l->opt;
    l->training = 1;
    agave_status st;
    if (kind <= AGAVE_LAYER_DENSE)
        st = linear_params(l);
    else
        st = blocks_create_children(l);
    if (st == AGAVE_OK)
        st = layer_collect_params(l);
    if (st != AGAVE_OK) {
        agave_layer_free(l);
        return st;
    }
    *out = l;
    return AGAVE_OK;
}

void agave_layer_free(agave_layer *l)
{
    if (!l)
        return;
    agave_tensor_free(l->v);
    agave_tensor_free(l->g);
    agave_tensor_free(l->b);
    agave_tensor_free(l->mask);
    for (int i = 0; i < l->n_child; i++)
        agave_layer_free(l->child[i]);
    free(l->params);
    free(l->param_names);
    free(l);
}

static agave_status push_param(agave_layer *l, const char *prefix, const char *name,
                               agave_tensor *t)
{
    agave_tensor **p = realloc(l->params, (size_t)(l->n_params + 1) * sizeof *p);
    if (!p)
        return ctx_error(l->ctx, AGAVE_ERR_NOMEM, "cannot grow a parameter list");
    l->params = p;
    char(*n)[LAYER_NAME_LEN] = realloc(l->param_names, (size_t)(l->n_params + 1) * sizeof *n);
    if (!n)
        return ctx_error(l->ctx, AGAVE_ERR_NOMEM, "cannot grow a parameter list");
    l->param_names = n;
    snprintf(n[l->n_params], LAYER_NAME_LEN, "%s%s%s", prefix, *prefix ? "." : "", name);
    p[l->n_params++] = t;
    return AGAVE_OK;
}

agave_status layer_collect_params(agave_layer *l)
{
    if (l->v) {
        TRY(push_param(l, "", "v", l->v));
        TRY(push_param(l, "", "g", l->g));
        TRY(push_param(l, "", "b", l->b));
    }
    for (int c = 0; c < l->n_child; c++)
        for (int i = 0; i < l->child[c]->n_params; i++)
            TRY(push_param(l, l->child_name[c], l->child[c]->param_names[i],
                           l->child[c]->params[i]));
    return AGAVE_OK;
}

int agave_layer_param_tensor_count(const agave_layer *l) { return l ? l->n_params : 0; }
/* The name before 1.0, which did not say that it counts tensors. */
int agave_layer_param_count(const agave_layer *l) { return agave_layer_param_tensor_count(l); }

agave_status agave_layer_param(agave_layer *l, int index, const char **name,
                               agave_tensor **param)
{
    if (!l)
        return AGAVE_ERR_NULL;
    if (index < 0 || index >= l->n_params)
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG,
                         "parameter index %d is out of range (the layer has %d)", index,
                         l->n_params);
    if (name)
        *name = l->param_names[index];
    if (param)
        *param = l->params[index];
    return AGAVE_OK;
}

void layer_set_span(agave_layer *l, rng_span span)
{
    l->span = span;
    for (int i = 0; i < l->n_child; i++)
        layer_set_span(l->child[i], span);
}

agave_status agave_layer_set_training(agave_layer *l, int training)
{
    if (!l)
        return AGAVE_ERR_NULL;
    l->training = training != 0;
    for (int i = 0; i < l->n_child; i++)
        agave_layer_set_training(l->child[i], training);
    return AGAVE_OK;
}

static int all_initialized(const agave_layer *l)
{
    if (l->v)
        return l->initialized;
    for (int i = 0; i < l->n_child; i++)
        if (!all_initialized(l->child[i]))
            return 0;
    return 1;
}

int agave_layer_initialized(const agave_layer *l) { return l ? all_initialized(l) : 0; }

agave_status agave_layer_skip_init(agave_layer *l)
{
    if (!l)
        return AGAVE_ERR_NULL;
    l->initialized = 1;
    for (int i = 0; i < l->n_child; i++)
        agave_layer_skip_init(l->child[i]);
    return AGAVE_OK;
}

/* ---- public forwards: check the handle and inputs, then dispatch ---------------- */
static agave_status forward_entry(agave_layer *l, agave_tensor **out, const char *fn)
{
    if (!l)
        return AGAVE_ERR_NULL;
    ctx_clear_error(l->ctx);
    if (!out)
        return ctx_error(l->ctx, AGAVE_ERR_NULL, "%s: out is NULL", fn);
    return AGAVE_OK;
}

agave_status agave_layer_forward(agave_layer *l, agave_tensor *x, agave_tensor **out)
{
    TRY(forward_entry(l, out, "agave_layer_forward"));
    *out = NULL;
    TRY(check_tensor(l->ctx, x, "agave_layer_forward", "x"));
    switch (l->kind) {
    case AGAVE_LAYER_GATED_RESNET:
        return gated_forward(l, x, NULL, NULL, out);
    case AGAVE_LAYER_RESNET:
        return resnet_forward(l, x, out);
    case AGAVE_LAYER_COND_STREAM:
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_layer_forward: a cond_stream layer has three outputs: use "
                         "agave_layer_forward_cond");
    default:
        return linear_forward(l, x, out);
    }
}

agave_status agave_layer_forward_gated(agave_layer *l, agave_tensor *x, agave_tensor *a,
                                       agave_tensor *h, agave_tensor **out)
{
    TRY(forward_entry(l, out, "agave_layer_forward_gated"));
    *out = NULL;
    if (l->kind != AGAVE_LAYER_GATED_RESNET)
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_layer_forward_gated: the layer is a %s, not a gated_resnet",
                         kind_name(l->kind));
    TRY(check_tensor(l->ctx, x, "agave_layer_forward_gated", "x"));
    TRY(check_tensor_opt(l->ctx, a, "agave_layer_forward_gated", "a"));
    TRY(check_tensor_opt(l->ctx, h, "agave_layer_forward_gated", "h"));
    return gated_forward(l, x, a, h, out);
}

agave_status agave_layer_forward_cond(agave_layer *l, agave_tensor *f, agave_tensor *out[3])
{
    if (!l)
        return AGAVE_ERR_NULL;
    ctx_clear_error(l->ctx);
    if (!out)
        return ctx_error(l->ctx, AGAVE_ERR_NULL, "agave_layer_forward_cond: out is NULL");
    out[0] = out[1] = out[2] = NULL;
    if (l->kind != AGAVE_LAYER_COND_STREAM)
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_layer_forward_cond: the layer is a %s, not a cond_stream",
                         kind_name(l->kind));
    TRY(check_tensor(l->ctx, f, "agave_layer_forward_cond", "f"));
    return cond_forward(l, f, out);
}
