/* Composite layers: the PixelCNN++ gated residual block, the VAE residual
 * block and the AGAVE conditioning stream, each built from linear layers. */
#include <string.h>

#include "../ops/fused.h"
#include "nn.h"

static agave_status add_child(agave_layer *l, const char *name, agave_layer_kind kind,
                              const agave_layer_options *o)
{
    agave_layer *c;
    TRY(layer_new(l->ctx, kind, o, &c));
    l->child[l->n_child] = c;
    l->child_name[l->n_child++] = name;
    return AGAVE_OK;
}

/* Options of a child conv: the parent's kernel, shift and stride 1. */
static agave_layer_options child_conv(const agave_layer_options *p, int in, int out,
                                      float init_scale)
{
    agave_layer_options o;
    agave_layer_options_init(&o);
    o.in_channels = in;
    o.out_channels = out;
    o.kernel_h = p->kernel_h;
    o.kernel_w = p->kernel_w;
    o.shift = p->shift;
    o.init_scale = init_scale;
    return o;
}

static agave_layer_options child_nin(int in, int out, float init_scale)
{
    agave_layer_options o;
    agave_layer_options_init(&o);
    o.in_channels = in;
    o.out_channels = out;
    o.kernel_h = o.kernel_w = 1;
    o.init_scale = init_scale;
    return o;
}

/* Children, in the order their parameters are listed:
 * GATED_RESNET (F = in): conv1 2F->F, [nin_a 2*shortcut->F], conv2 2F->2F (init 0.1),
 *                        [nin_h cond->2F (init 0.1)]
 * RESNET (F = in):       conv1 F->F, conv2 F->F (init init_scale)
 * COND_STREAM:           g1 in->out, g2 out->out stride 2, g3 out->out stride 2 */
agave_status blocks_create_children(agave_layer *l)
{
    const agave_layer_options *p = &l->opt;
    int F = p->in_channels;
    agave_layer_options o;
    switch (l->kind) {
    case AGAVE_LAYER_GATED_RESNET:
        l->opt.out_channels = F;
        o = child_conv(p, 2 * F, F, 1.0f);
        TRY(add_child(l, "conv1", AGAVE_LAYER_CONV, &o));
        if (p->shortcut_channels) {
            o = child_nin(2 * p->shortcut_channels, F, 1.0f);
            TRY(add_child(l, "nin_a", AGAVE_LAYER_NIN, &o));
        }
        o = child_conv(p, 2 * F, 2 * F, 0.1f);
        TRY(add_child(l, "conv2", AGAVE_LAYER_CONV, &o));
        if (p->cond_channels) {
            o = child_nin(p->cond_channels, 2 * F, 0.1f);
            TRY(add_child(l, "nin_h", AGAVE_LAYER_NIN, &o));
        }
        return AGAVE_OK;
    case AGAVE_LAYER_RESNET:
        l->opt.out_channels = F;
        o = child_conv(p, F, F, 1.0f);
        TRY(add_child(l, "conv1", AGAVE_LAYER_CONV, &o));
        o = child_conv(p, F, F, p->init_scale);
        return add_child(l, "conv2", AGAVE_LAYER_CONV, &o);
    default: /* COND_STREAM */
        o = child_conv(p, p->in_channels, p->out_channels, p->init_scale);
        o.shift = AGAVE_SHIFT_NONE;
        TRY(add_child(l, "g1", AGAVE_LAYER_CONV, &o));
        o.in_channels = p->out_channels;
        o.stride = 2;
        TRY(add_child(l, "g2", AGAVE_LAYER_CONV, &o));
        return add_child(l, "g3", AGAVE_LAYER_CONV, &o);
    }
}

static agave_layer *child_named(agave_layer *l, const char *name)
{
    for (int i = 0; i < l->n_child; i++)
        if (strcmp(l->child_name[i], name) == 0)
            return l->child[i];
    return NULL;
}

static agave_status check_extra(agave_layer *l, const agave_tensor *t, int channels,
                                const agave_tensor *x, const char *what)
{
    char sx[SHAPE_BUF], st[SHAPE_BUF];
    if (!channels && t)
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG,
                         "gated_resnet: got %s but the layer was created with 0 %s channels",
                         what, what);
    if (channels && !t && what[0] == 'a')
        return ctx_error(l->ctx, AGAVE_ERR_NULL,
                         "gated_resnet: the layer expects a with %d channels, got NULL", channels);
    if (t && (t->ndim != 4 || tC(t) != channels || tN(t) != tN(x) || tH(t) != tH(x) ||
              tW(t) != tW(x)))
        return ctx_error(l->ctx, AGAVE_ERR_SHAPE,
                         "gated_resnet: %s %s must be (N,%d,H,W) with x %s", what,
                         shape_str(t, st, sizeof st), channels, shape_str(x, sx, sizeof sx));
    return AGAVE_OK;
}

/* x is (N,F,H,W); a is (N,shortcut,H,W) or NULL; h is (N,cond,H,W) or NULL. */
agave_status gated_forward(agave_layer *l, agave_tensor *x, agave_tensor *a, agave_tensor *h,
                           agave_tensor **out)
{
    agave_context *ctx = l->ctx;
    const int F = l->opt.in_channels;
    if (x->ndim != 4 || tC(x) != F) {
        char s[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE, "gated_resnet: x %s must be (N,%d,H,W)",
                         shape_str(x, s, sizeof s), F);
    }
    TRY(check_extra(l, a, l->opt.shortcut_channels, x, "a"));
    TRY(check_extra(l, h, l->opt.cond_channels, x, "h"));
    agave_tensor *c1, *c2;
    TRY(linear_forward_ce(child_named(l, "conv1"), x, &c1));   /* conv1(concat_elu(x)) */
    if (a)   /* c1 + nin_a(concat_elu(a)), fused: neither term is stored */
        TRY(linear_forward_add(child_named(l, "nin_a"), a, 1, c1, &c1));
    if (l->training && l->opt.dropout > 0)   /* fused: concat_elu's output is not kept */
        TRY(concat_elu_dropout(ctx, c1, l->opt.dropout, l->span, &c1));
    else
        TRY(agave_concat_elu(ctx, c1, &c1));
    TRY(linear_forward(child_named(l, "conv2"), c1, &c2));
    if (h)
        TRY(linear_forward_add(child_named(l, "nin_h"), h, 0, c2, &c2));
    return agave_gate(ctx, x, c2, out);
}

/* out = x + conv2(elu(conv1(elu(x)))); x is (N,F,H,W). */
agave_status resnet_forward(agave_layer *l, agave_tensor *x, agave_tensor **out)
{
    agave_context *ctx = l->ctx;
    agave_tensor *t;
    TRY(agave_elu(ctx, x, &t));
    TRY(linear_forward(l->child[0], t, &t));
    TRY(agave_elu(ctx, t, &t));
    TRY(linear_forward(l->child[1], t, &t));
    return agave_add(ctx, x, t, out);
}

/* f is (N,in,H,W): g1 = conv(f), g2 = conv_s2(elu(g1)), g3 = conv_s2(elu(g2));
 * out[l] = elu(g_l), the form every gated block projects. */
agave_status cond_forward(agave_layer *l, agave_tensor *f, agave_tensor *out[3])
{
    agave_context *ctx = l->ctx;
    agave_tensor *t = f;
    for (int i = 0; i < 3; i++) {
        TRY(linear_forward(l->child[i], t, &t));
        TRY(agave_elu(ctx, t, &t));
        out[i] = t;
    }
    return AGAVE_OK;
}
