/* Weight-normalised linear layers: conv, deconv, nin, dense.
 * forward: w = g * v / ||v|| (v masked first for IAF convs), then the op.
 * The first forward runs the data-dependent initialisation instead. */
#include "../ops/fused.h"
#include "nn.h"

/* Paddings of a shifted convolution (agave_shift in agave.h). */
static void conv_pads(const agave_layer_options *o, int pad[4] /* top,bottom,left,right */)
{
    int kh = o->kernel_h, kw = o->kernel_w;
    switch (o->shift) {
    case AGAVE_SHIFT_DOWN:
        pad[0] = kh - 1, pad[1] = 0, pad[2] = (kw - 1) / 2, pad[3] = (kw - 1) / 2;
        break;
    case AGAVE_SHIFT_DOWN_RIGHT:
        pad[0] = kh - 1, pad[1] = 0, pad[2] = kw - 1, pad[3] = 0;
        break;
    default:
        pad[0] = (kh - 1) / 2, pad[1] = kh / 2, pad[2] = (kw - 1) / 2, pad[3] = kw / 2;
        break;
    }
}

/* The crop of a transposed conv that keeps the shift's causality. */
static void deconv_crop(const agave_layer_options *o, int *top, int *left)
{
    *top = o->shift == AGAVE_SHIFT_NONE ? (o->kernel_h - 1) / 2 : 0;
    *left = o->shift == AGAVE_SHIFT_DOWN_RIGHT ? 0 : (o->kernel_w - 1) / 2;
}

/* y = op(x; w, b) for the layer's kind. w is (out,in,...) per output channel. */
static agave_status apply_linear(agave_layer *l, agave_tensor *x, agave_tensor *w,
                                 agave_tensor **y)
{
    agave_context *ctx = l->ctx;
    const agave_layer_options *o = &l->opt;
    switch (l->kind) {
    case AGAVE_LAYER_CONV: {
        int p[4];
        conv_pads(o, p);
        return agave_conv2d(ctx, x, w, l->b, o->stride, p[0], p[1], p[2], p[3], y);
    }
    case AGAVE_LAYER_DECONV: {
        agave_tensor *wt;   /* (in,out,KH,KW) as agave_conv2d_transpose wants */
        TRY(agave_transpose01(ctx, w, &wt));
        int top, left;
        deconv_crop(o, &top, &left);
        return agave_conv2d_transpose(ctx, x, wt, l->b, o->stride, top, left,
                                      tH(x) * o->stride, tW(x) * o->stride, y);
    }
    case AGAVE_LAYER_NIN:
        return agave_nin(ctx, x, w, l->b, y);
    default:
        return agave_dense(ctx, x, w, l->b, y);
    }
}

static agave_status normalised_weight(agave_layer *l, agave_tensor **w)
{
    agave_tensor *v = l->v;
    if (l->mask)
        TRY(agave_mul(l->ctx, v, l->mask, &v));
    return agave_weight_norm(l->ctx, v, l->g, w);
}

/* A transposed conv's whole output plane before the crop, TensorFlow's size
 * (H*stride + KH - 1) x (W*stride + KW - 1) as openai/pixel-cnn's deconv2d
 * computes it (its last row and column get no input, only the bias).
 * x is (N,in,H,W) -> full (N,out,H*stride+KH-1,W*stride+KW-1). */
static agave_status deconv_full(agave_layer *l, agave_tensor *x, agave_tensor *w,
                                agave_tensor **full)
{
    const agave_layer_options *o = &l->opt;
    agave_tensor *wt;   /* (in,out,KH,KW) */
    TRY(agave_transpose01(l->ctx, w, &wt));
    return agave_conv2d_transpose(l->ctx, x, wt, l->b, o->stride, 0, 0,
                                  tH(x) * o->stride + o->kernel_h - 1,
                                  tW(x) * o->stride + o->kernel_w - 1, full);
}

/* Data-dependent init: with g = 1, b = 0 run the layer on this batch (not
 * recorded), then choose g, b so that each output channel has mean 0 and std
 * init_scale (docs/model.md, Training). A transposed conv takes these statistics
 * on its full output, before the crop, and then runs again for the cropped
 * one. *y is the layer's output with the chosen g, b. */
static agave_status init_params(agave_layer *l, agave_tensor *x, agave_tensor **y)
{
    agave_context *ctx = l->ctx;
    const int deconv = l->kind == AGAVE_LAYER_DECONV;
    int was_recording = agave_tape_recording(ctx);
    agave_tape_set_recording(ctx, 0);
    agave_tensor_fill(l->g, 1.0f);
    agave_tensor_fill(l->b, 0.0f);
    agave_tensor *w = NULL, *stats_on = NULL;
    agave_status st = normalised_weight(l, &w);
    if (st == AGAVE_OK)
        st = deconv ? deconv_full(l, x, w, &stats_on) : apply_linear(l, x, w, &stats_on);
    if (st == AGAVE_OK)
        st = agave_weight_norm_init(ctx, stats_on, l->opt.init_scale, l->g, l->b);
    if (st == AGAVE_OK && deconv) {
        tensor_release_buffers(stats_on);
        st = normalised_weight(l, &w);
        if (st == AGAVE_OK)
            st = apply_linear(l, x, w, &stats_on);
    }
    agave_tape_set_recording(ctx, was_recording);
    if (st != AGAVE_OK)
        return st;
    *y = stats_on;
    l->initialized = 1;
    return AGAVE_OK;
}

static agave_status init_forward(agave_layer *l, agave_tensor *x, agave_tensor **out)
{
    agave_tensor *w = NULL, *y = NULL;
    TRY(init_params(l, x, &y));
    if (!agave_tape_recording(l->ctx)) {
        *out = y;
        return AGAVE_OK;
    }
    /* Recording: run the initialised layer again so the first step's loss is
     * differentiable too (the output equals y up to rounding). */
    TRY(normalised_weight(l, &w));
    return apply_linear(l, x, w, out);
}

static agave_status check_input(agave_layer *l, const agave_tensor *x)
{
    int in = l->kind == AGAVE_LAYER_DENSE ? (int)(x->numel / (size_t)tN(x)) : tC(x);
    int spatial = l->kind != AGAVE_LAYER_DENSE;
    if (in == l->opt.in_channels && (!spatial || x->ndim == 4))
        return AGAVE_OK;
    char s[SHAPE_BUF];
    return ctx_error(l->ctx, AGAVE_ERR_SHAPE, "layer expects %s with %d input %s, x is %s",
                     spatial ? "(N,C,H,W)" : "(N,K)", l->opt.in_channels,
                     spatial ? "channels" : "features", shape_str(x, s, sizeof s));
}

/* The conv layer applied to concat_elu(x). Once initialised it is one fused
 * op (ops/fused.h) that never stores concat_elu(x); the data-dependent init
 * runs on concat_elu(x) made explicitly and gives it back afterwards. */
agave_status linear_forward_ce(agave_layer *l, agave_tensor *x, agave_tensor **out)
{
    agave_context *ctx = l->ctx;
    if (l->kind != AGAVE_LAYER_CONV || l->mask) {
        agave_tensor *t;
        TRY(agave_concat_elu(ctx, x, &t));
        return linear_forward(l, t, out);
    }
    if (x->ndim != 4 || 2 * tC(x) != l->opt.in_channels) {
        char s[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "layer expects (N,C,H,W) with %d input channels after concat_elu, x is %s",
                         l->opt.in_channels, shape_str(x, s, sizeof s));
    }
    if (!l->initialized) {
        int was_recording = agave_tape_recording(ctx);
        agave_tape_set_recording(ctx, 0);
        agave_tensor *t = NULL, *y = NULL;
        agave_status st = agave_concat_elu(ctx, x, &t);
        if (st == AGAVE_OK)
            st = init_params(l, t, &y);
        agave_tape_set_recording(ctx, was_recording);
        TRY(st);
        tensor_release_buffers(t);
        if (!was_recording) {   /* y is the initialised output, as in init_forward */
            *out = y;
            return AGAVE_OK;
        }
        tensor_release_buffers(y);
    }
    agave_tensor *w;
    TRY(normalised_weight(l, &w));
    int p[4];
    conv_pads(&l->opt, p);
    return conv2d_ce(ctx, x, w, l->b, l->opt.stride, p[0], p[1], p[2], p[3], out);
}

/* base + the NIN layer applied to x, or to concat_elu(x) with ce. Once
 * initialised it is one fused op (ops/fused.h), which stores neither the
 * layer's output nor concat_elu(x); the data-dependent init runs the ops one by
 * one. */
agave_status linear_forward_add(agave_layer *l, agave_tensor *x, int ce, agave_tensor *base,
                                agave_tensor **out)
{
    agave_context *ctx = l->ctx;
    const int fused = l->kind == AGAVE_LAYER_NIN && !l->mask;
    if (fused && (x->ndim != 4 || tC(x) * (ce ? 2 : 1) != l->opt.in_channels)) {
        char s[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "layer expects (N,C,H,W) with %d input channels%s, x is %s",
                         l->opt.in_channels, ce ? " after concat_elu" : "", shape_str(x, s, sizeof s));
    }
    if (fused && !l->initialized) {
        /* Initialise as linear_forward would, then give the temporaries back
         * to the arena: only g and b outlive this (a model's init runs the
         * whole network unrecorded, so its peak is every stored tensor). */
        int was_recording = agave_tape_recording(ctx);
        agave_tape_set_recording(ctx, 0);
        agave_tensor *t = x, *y = NULL;
        agave_status st = ce ? agave_concat_elu(ctx, x, &t) : AGAVE_OK;
        if (st == AGAVE_OK)
            st = init_params(l, t, &y);
        if (st == AGAVE_OK && !was_recording)
            st = agave_add(ctx, base, y, out);
        agave_tape_set_recording(ctx, was_recording);
        TRY(st);
        tensor_release_buffers(y);
        if (t != x)
            tensor_release_buffers(t);
        if (!was_recording)
            return AGAVE_OK;
    }
    if (fused) {
        agave_tensor *w;
        TRY(normalised_weight(l, &w));
        return nin_add(ctx, x, w, l->b, base, ce, out);
    }
    agave_tensor *t = x;
    if (ce)
        TRY(agave_concat_elu(ctx, x, &t));
    TRY(linear_forward(l, t, &t));
    return agave_add(ctx, base, t, out);
}

agave_status linear_forward(agave_layer *l, agave_tensor *x, agave_tensor **out)
{
    TRY(check_input(l, x));
    if (!l->initialized)
        return init_forward(l, x, out);
    agave_tensor *w;
    TRY(normalised_weight(l, &w));
    return apply_linear(l, x, w, out);
}

agave_status layer_geometry_of(const agave_layer *l, layer_geometry *g)
{
    if (!l || !g)
        return AGAVE_ERR_NULL;
    const agave_layer_options *o = &l->opt;
    *g = (layer_geometry){.in = o->in_channels, .out = o->out_channels, .kh = 1, .kw = 1,
                          .stride = 1};
    switch (l->kind) {
    case AGAVE_LAYER_CONV: {
        int p[4];
        conv_pads(o, p);
        g->kh = o->kernel_h, g->kw = o->kernel_w, g->stride = o->stride;
        g->top = p[0], g->left = p[2];
        return AGAVE_OK;
    }
    case AGAVE_LAYER_DECONV:
        g->kh = o->kernel_h, g->kw = o->kernel_w, g->stride = o->stride, g->deconv = 1;
        deconv_crop(o, &g->top, &g->left);
        return AGAVE_OK;
    case AGAVE_LAYER_NIN:
        return AGAVE_OK;
    default:
        return ctx_error(l->ctx, AGAVE_ERR_INVALID_ARG,
                         "layer_geometry_of: the layer is not a conv, deconv or nin");
    }
}

agave_status layer_pack_weights(agave_layer *l, float *dst, size_t ld, const float **bias)
{
    layer_geometry g;
    TRY(layer_geometry_of(l, &g));
    agave_tensor *w;   /* (out, in, kh, kw) */
    TRY(normalised_weight(l, &w));
    const int taps = g.kh * g.kw;
    for (int q = 0; q < g.out; q++)
        for (int c = 0; c < g.in; c++)
            for (int t = 0; t < taps; t++)
                dst[(size_t)q * ld + (size_t)t * g.in + c] =
                    w->data[((size_t)q * g.in + c) * taps + t];
    *bias = l->b->data;
    return AGAVE_OK;
}
