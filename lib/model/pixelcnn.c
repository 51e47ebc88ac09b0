/* The conditional PixelCNN++ of docs/model.md (Salimans et al. 2017, as in
 * openai/pixel-cnn), with AGAVE's conditioning stream feeding every gated
 * block. Its layers are built from the topology (topology.c). */
#include "model.h"

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
    for (int lv = 0; lv < TOPO_LEVELS; lv++) {
        for (int r = 0; r < m->cfg.R; r++) {
            TRY(agave_layer_forward_gated(p->up_u[lv][r], u, NULL, g[lv], &u));
            TRY(agave_layer_forward_gated(p->up_ul[lv][r], ul, u, g[lv], &ul));
            push(s, u, ul);
        }
        if (lv < TOPO_LEVELS - 1) {
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
    for (int lv = TOPO_LEVELS - 1; lv >= 0; lv--) {
        for (int r = 0; r < topo_down_blocks(&m->cfg, lv); r++) {
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
