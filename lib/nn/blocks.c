/* Composite layers: the PixelCNN++ gated residual block, the VAE residual
 * block and the AGAVE conditioning stream, each built from linear layers. */
#include <string.h>

#include "../ops/fused.h"
#include "nn.h"

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

static int spec(layer_child_spec *out, int n, const char *name, agave_layer_kind kind,
                agave_layer_options o, gated_role role)
{
    out[n] = (layer_child_spec){name, kind, o, role};
    return n + 1;
}

/* Children, in the order their parameters are listed:
 * GATED_RESNET (F = in): conv1 2F->F, [nin_a 2*shortcut->F], conv2 2F->2F (init 0.1),
 *                        [nin_h cond->2F (init 0.1)]
 * RESNET (F = in):       conv1 F->F, conv2 F->F (init init_scale)
 * COND_STREAM:           g1 in->out, g2 out->out stride 2, g3 out->out stride 2 */
int blocks_children(agave_layer_kind kind, const agave_layer_options *p,
                    layer_child_spec out[LAYER_MAX_CHILDREN])
{
    int F = p->in_channels, n = 0;
    agave_layer_options o;
    switch (kind) {
    case AGAVE_LAYER_GATED_RESNET:
        n = spec(out, n, "conv1", AGAVE_LAYER_CONV, child_conv(p, 2 * F, F, 1.0f),
                 GATED_CONV1);
        if (p->shortcut_channels)
            n = spec(out, n, "nin_a", AGAVE_LAYER_NIN,
                     child_nin(2 * p->shortcut_channels, F, 1.0f), GATED_NIN_A);
        n = spec(out, n, "conv2", AGAVE_LAYER_CONV, child_conv(p, 2 * F, 2 * F, 0.1f),
                 GATED_CONV2);
        if (p->cond_channels)
            n = spec(out, n, "nin_h", AGAVE_LAYER_NIN,
                     child_nin(p->cond_channels, 2 * F, 0.1f), GATED_NIN_H);
        return n;
    case AGAVE_LAYER_RESNET:
        n = spec(out, n, "conv1", AGAVE_LAYER_CONV, child_conv(p, F, F, 1.0f), GATED_NONE);
        return spec(out, n, "conv2", AGAVE_LAYER_CONV, child_conv(p, F, F, p->init_scale),
                    GATED_NONE);
    case AGAVE_LAYER_COND_STREAM:
        o = child_conv(p, p->in_channels, p->out_channels, p->init_scale);
        o.shift = AGAVE_SHIFT_NONE;
        n = spec(out, n, "g1", AGAVE_LAYER_CONV, o, GATED_NONE);
        o.in_channels = p->out_channels;
        o.stride = 2;
        n = spec(out, n, "g2", AGAVE_LAYER_CONV, o, GATED_NONE);
        return spec(out, n, "g3", AGAVE_LAYER_CONV, o, GATED_NONE);
    default:
        return 0;
    }
}

/* The gated_parts field a child of this role fills (NULL: none). */
static agave_layer **gated_slot(gated_parts *g, gated_role role)
{
    switch (role) {
    case GATED_CONV1: return &g->conv1;
    case GATED_NIN_A: return &g->nin_a;
    case GATED_CONV2: return &g->conv2;
    case GATED_NIN_H: return &g->nin_h;
    default: return NULL;
    }
}

agave_status blocks_create_children(agave_layer *l)
{
    layer_child_spec specs[LAYER_MAX_CHILDREN];
    int n = blocks_children(l->kind, &l->opt, specs);
    if (l->kind != AGAVE_LAYER_COND_STREAM)
        l->opt.out_channels = l->opt.in_channels;
    for (int i = 0; i < n; i++) {
        agave_layer *c;
        TRY(layer_new(l->ctx, specs[i].kind, &specs[i].opt, &c));
        l->child[l->n_child] = c;
        l->child_name[l->n_child++] = specs[i].name;
        agave_layer **slot = gated_slot(&l->gated, specs[i].role);
        if (slot)
            *slot = c;
    }
    return AGAVE_OK;
}

agave_status layer_gated_parts(const agave_layer *l, gated_parts *p)
{
    if (!l || !p)
        return AGAVE_ERR_NULL;
    if (l->kind != AGAVE_LAYER_GATED_RESNET)
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG, "layer_gated_parts: not a gated_resnet");
    *p = l->gated;
    return AGAVE_OK;
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
    TRY(linear_forward_ce(l->gated.conv1, x, &c1));   /* conv1(concat_elu(x)) */
    if (a)   /* c1 + nin_a(concat_elu(a)), fused: neither term is stored */
        TRY(linear_forward_add(l->gated.nin_a, a, 1, c1, &c1));
    if (l->training && l->opt.dropout > 0)   /* fused: concat_elu's output is not kept */
        TRY(concat_elu_dropout(ctx, c1, l->opt.dropout, l->span, &c1));
    else
        TRY(agave_concat_elu(ctx, c1, &c1));
    TRY(linear_forward(l->gated.conv2, c1, &c2));
    if (h) {   /* c2 + nin_h(h): conv2's own output is read by nothing after the add */
        agave_tensor *conv2_out = c2;
        TRY(linear_forward_add(l->gated.nin_h, h, 0, c2, &c2));
        tensor_release_data(conv2_out);
    }
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
