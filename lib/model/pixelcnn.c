/* The conditional PixelCNN++ of docs/model.md (Salimans et al. 2017, as in
 * openai/pixel-cnn), with AGAVE's conditioning stream feeding every gated block. */
#include "model.h"

/* Gated block of the u stream (down-shifted 2x3) or ul stream (down-right 2x2). */
static agave_status add_gated(agave_model *m, int ul, int shortcut, agave_layer **l)
{
    const agave_config *c = &m->cfg;
    agave_layer_options o = conv_options(c->F, c->F, 2, ul ? 2 : 3, 1,
                                         ul ? AGAVE_SHIFT_DOWN_RIGHT : AGAVE_SHIFT_DOWN, 1.0f);
    o.dropout = c->dropout;
    o.shortcut_channels = shortcut;
    o.cond_channels = c->F;
    return model_add_layer(m, AGAVE_LAYER_GATED_RESNET, &o, l);
}

static agave_status add_shifted(agave_model *m, agave_layer_kind kind, int in, int kh, int kw,
                                int stride, agave_shift shift, agave_layer **l)
{
    agave_layer_options o = conv_options(in, m->cfg.F, kh, kw, stride, shift, 1.0f);
    return model_add_layer(m, kind, &o, l);
}

agave_status pixelcnn_build(agave_model *m)
{
    const agave_config *c = &m->cfg;
    pixelcnn_net *p = &m->pcnn;
    int F = c->F, R = c->R;
    agave_layer_options o = conv_options(c->C, F, 3, 3, 1, AGAVE_SHIFT_NONE, 1.0f);
    TRY(model_add_layer(m, AGAVE_LAYER_COND_STREAM, &o, &p->cond));
    /* First layers see [x, 1] and are shifted so no output sees its own pixel. */
    TRY(add_shifted(m, AGAVE_LAYER_CONV, c->C + 1, 2, 3, 1, AGAVE_SHIFT_DOWN, &p->u_init));
    TRY(add_shifted(m, AGAVE_LAYER_CONV, c->C + 1, 1, 3, 1, AGAVE_SHIFT_DOWN, &p->ul_init_a));
    TRY(add_shifted(m, AGAVE_LAYER_CONV, c->C + 1, 2, 1, 1, AGAVE_SHIFT_DOWN_RIGHT,
                    &p->ul_init_b));
    for (int lv = 0; lv < 3; lv++) {
        for (int r = 0; r < R; r++) {
            TRY(add_gated(m, 0, 0, &p->up_u[lv][r]));
            TRY(add_gated(m, 1, F, &p->up_ul[lv][r]));
        }
        if (lv < 2) {
            TRY(add_shifted(m, AGAVE_LAYER_CONV, F, 2, 3, 2, AGAVE_SHIFT_DOWN, &p->down_u[lv]));
            TRY(add_shifted(m, AGAVE_LAYER_CONV, F, 2, 2, 2, AGAVE_SHIFT_DOWN_RIGHT,
                            &p->down_ul[lv]));
        }
    }
    /* Down pass: R blocks at H/4, then R + 1 at H/2 and at H. */
    for (int lv = 2; lv >= 0; lv--) {
        int blocks = lv == 2 ? R : R + 1;
        for (int r = 0; r < blocks; r++) {
            TRY(add_gated(m, 0, F, &p->dn_u[lv][r]));
            TRY(add_gated(m, 1, 2 * F, &p->dn_ul[lv][r]));
        }
        if (lv > 0) {
            TRY(add_shifted(m, AGAVE_LAYER_DECONV, F, 2, 3, 2, AGAVE_SHIFT_DOWN,
                            &p->upsample_u[lv - 1]));
            TRY(add_shifted(m, AGAVE_LAYER_DECONV, F, 2, 2, 2, AGAVE_SHIFT_DOWN_RIGHT,
                            &p->upsample_ul[lv - 1]));
        }
    }
    int P = dmol_param_count(c->C, c->M);
    o = conv_options(F, P, 1, 1, 1, AGAVE_SHIFT_NONE, 1.0f);
    return model_add_layer(m, AGAVE_LAYER_NIN, &o, &p->out);
}

/* The up pass stores 3R + 3 activations per stream; the down pass pops them. */
typedef struct stream_stack {
    agave_tensor *u[3 * MODEL_MAX_R + 3], *ul[3 * MODEL_MAX_R + 3];
    int n;
} stream_stack;

static void push(stream_stack *s, agave_tensor *u, agave_tensor *ul)
{
    s->u[s->n] = u;
    s->ul[s->n++] = ul;
}

/* [x, 1]: the channel of ones lets the first convs tell padding from data. */
static agave_status pad_with_ones(agave_context *ctx, agave_tensor *x, agave_tensor **out)
{
    int dims[4] = {tN(x), 1, tH(x), tW(x)};
    agave_tensor *ones = tensor_new_arena(ctx, 4, dims);
    if (!ones)
        return AGAVE_ERR_NOMEM;
    agave_tensor_fill(ones, 1.0f);
    return agave_concat(ctx, x, ones, out);
}

static agave_status first_layers(agave_model *m, agave_tensor *x, agave_tensor **u,
                                 agave_tensor **ul)
{
    agave_context *ctx = m->ctx;
    pixelcnn_net *p = &m->pcnn;
    agave_tensor *xp, *a, *b;
    TRY(pad_with_ones(ctx, x, &xp));
    TRY(agave_layer_forward(p->u_init, xp, u));
    TRY(agave_down_shift(ctx, *u, u));
    TRY(agave_layer_forward(p->ul_init_a, xp, &a));
    TRY(agave_down_shift(ctx, a, &a));
    TRY(agave_layer_forward(p->ul_init_b, xp, &b));
    TRY(agave_right_shift(ctx, b, &b));
    return agave_add(ctx, a, b, ul);
}

static agave_status up_pass(agave_model *m, agave_tensor *x, agave_tensor *const g[3],
                            stream_stack *s)
{
    pixelcnn_net *p = &m->pcnn;
    agave_tensor *u, *ul;
    TRY(first_layers(m, x, &u, &ul));
    s->n = 0;
    push(s, u, ul);
    for (int lv = 0; lv < 3; lv++) {
        for (int r = 0; r < m->cfg.R; r++) {
            TRY(agave_layer_forward_gated(p->up_u[lv][r], u, NULL, g[lv], &u));
            TRY(agave_layer_forward_gated(p->up_ul[lv][r], ul, u, g[lv], &ul));
            push(s, u, ul);
        }
        if (lv < 2) {
            TRY(agave_layer_forward(p->down_u[lv], u, &u));
            TRY(agave_layer_forward(p->down_ul[lv], ul, &ul));
            push(s, u, ul);
        }
    }
    return AGAVE_OK;
}

static agave_status down_pass(agave_model *m, agave_tensor *const g[3], stream_stack *s,
                              agave_tensor **ul_out)
{
    agave_context *ctx = m->ctx;
    pixelcnn_net *p = &m->pcnn;
    s->n--;
    agave_tensor *u = s->u[s->n], *ul = s->ul[s->n], *cat;
    for (int lv = 2; lv >= 0; lv--) {
        int blocks = lv == 2 ? m->cfg.R : m->cfg.R + 1;
        for (int r = 0; r < blocks; r++) {
            s->n--;
            TRY(agave_layer_forward_gated(p->dn_u[lv][r], u, s->u[s->n], g[lv], &u));
            TRY(agave_concat(ctx, u, s->ul[s->n], &cat));
            TRY(agave_layer_forward_gated(p->dn_ul[lv][r], ul, cat, g[lv], &ul));
        }
        if (lv > 0) {
            TRY(agave_layer_forward(p->upsample_u[lv - 1], u, &u));
            TRY(agave_layer_forward(p->upsample_ul[lv - 1], ul, &ul));
        }
    }
    *ul_out = ul;
    return AGAVE_OK;
}

/* f (N,C,H/s,W/s) -> elu(g_l) at H, H/2, H/4 through the conditioning stream. */
static agave_status condition(agave_model *m, agave_tensor *f, agave_tensor *g[3])
{
    for (int up = m->cfg.s; up > 1; up /= 2)
        TRY(agave_upsample2x(m->ctx, f, &f));
    return agave_layer_forward_cond(m->pcnn.cond, f, g);
}

agave_status pixelcnn_forward(agave_model *m, agave_tensor *x, agave_tensor *f,
                              agave_tensor **params)
{
    agave_tensor *g[3] = {NULL, NULL, NULL}, *ul;
    if (f)
        TRY(condition(m, f, g));
    stream_stack s;
    TRY(up_pass(m, x, g, &s));
    TRY(down_pass(m, g, &s, &ul));
    TRY(agave_elu(m->ctx, ul, &ul));
    return agave_layer_forward(m->pcnn.out, ul, params);
}
