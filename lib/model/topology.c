/* The model's layers from its configuration (topology.h): the VAE, then the
 * conditioning stream and the PixelCNN++ of docs/model.md. */
#include "model.h"
#include "topology.h"

/* The walk in progress: where each layer goes and the first error. */
typedef struct walker {
    topo_visit visit;
    void *user;
    agave_status st;
} walker;

static void emit(walker *w, topo_slot slot, int level, int index, agave_layer_kind kind,
                 agave_layer_options o)
{
    if (w->st != AGAVE_OK)
        return;
    topo_layer l = {slot, level, index, kind, o};
    w->st = w->visit(w->user, &l);
}

static agave_layer_options conv_options(int in, int out, int kh, int kw, int stride,
                                        agave_shift shift, float init_scale)
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

/* ---- the VAE ---------------------------------------------------------------------- */
static void conv3(walker *w, topo_slot slot, int level, int in, int out, int stride,
                  float init_scale)
{
    emit(w, slot, level, 0, AGAVE_LAYER_CONV,
         conv_options(in, out, 3, 3, stride, AGAVE_SHIFT_NONE, init_scale));
}

/* init_scale 0.1 is the block's second conv's (docs/model.md, Training); its
 * first conv always starts at 1.0. */
static void resnet(walker *w, topo_slot slot, int level, int index, int F)
{
    emit(w, slot, level, index, AGAVE_LAYER_RESNET,
         conv_options(F, F, 3, 3, 1, AGAVE_SHIFT_NONE, 0.1f));
}

/* IAF step t: masked convs over the Z latent channels; odd steps reverse the
 * degrees, which is docs/model.md's channel reversal between steps. */
static void iaf_step(walker *w, int Z, int t)
{
    agave_layer_options o = conv_options(Z, 2 * Z, 3, 3, 1, AGAVE_SHIFT_NONE, 1.0f);
    o.mask_degrees = Z;
    o.mask_reverse = t % 2;
    emit(w, TOPO_IAF_IN, t, 0, AGAVE_LAYER_CONV, o);
    emit(w, TOPO_IAF_CTX, t, 0, AGAVE_LAYER_CONV,
         conv_options(Z, 2 * Z, 3, 3, 1, AGAVE_SHIFT_NONE, 1.0f));
    o = conv_options(2 * Z, 2 * Z, 3, 3, 1, AGAVE_SHIFT_NONE, 1.0f);
    o.mask_degrees = Z;
    o.mask_inclusive = 1;
    o.mask_reverse = t % 2;
    emit(w, TOPO_IAF_OUT, t, 0, AGAVE_LAYER_CONV, o);
}

static void vae(walker *w, const agave_config *c)
{
    conv3(w, TOPO_ENC_IN, 0, c->C, c->Fv, 1, 1.0f);
    for (int s = 0; s < 2; s++) {
        for (int r = 0; r < c->Rv; r++)
            resnet(w, TOPO_ENC_RES, s, r, c->Fv);
        conv3(w, TOPO_ENC_DOWN, s, c->Fv, c->Fv, 2, 1.0f);
    }
    /* mean and log-std, and with IAF steps their context */
    conv3(w, TOPO_ENC_OUT, 0, c->Fv, 2 * c->Z + (c->T > 0 ? c->Z : 0), 1, 0.1f);
    for (int t = 0; t < c->T; t++)
        iaf_step(w, c->Z, t);
    conv3(w, TOPO_DEC_IN, 0, c->Z, c->Fv, 1, 1.0f);
    for (int s = 0; s < topo_vae_upsamplings(c); s++) {
        conv3(w, TOPO_DEC_UP, s, c->Fv, c->Fv, 1, 1.0f);
        for (int r = 0; r < c->Rv; r++)
            resnet(w, TOPO_DEC_RES, s, r, c->Fv);
    }
    conv3(w, TOPO_DEC_OUT, 0, c->Fv, c->C, 1, 0.1f);
}

/* ---- the PixelCNN++ ---------------------------------------------------------------- */
/* Gated block of the u stream (down-shifted 2x3) or ul stream (down-right 2x2). */
static void gated(walker *w, const agave_config *c, topo_slot slot, int lv, int r, int ul,
                  int shortcut)
{
    agave_layer_options o = conv_options(c->F, c->F, 2, ul ? 2 : 3, 1,
                                         ul ? AGAVE_SHIFT_DOWN_RIGHT : AGAVE_SHIFT_DOWN, 1.0f);
    o.dropout = c->dropout;
    o.shortcut_channels = shortcut;
    o.cond_channels = c->F;
    emit(w, slot, lv, r, AGAVE_LAYER_GATED_RESNET, o);
}

static void shifted(walker *w, const agave_config *c, topo_slot slot, int lv,
                    agave_layer_kind kind, int in, int kh, int kw, int stride, agave_shift shift)
{
    emit(w, slot, lv, 0, kind, conv_options(in, c->F, kh, kw, stride, shift, 1.0f));
}

static void pixelcnn(walker *w, const agave_config *c)
{
    const int F = c->F, R = c->R;
    emit(w, TOPO_COND, 0, 0, AGAVE_LAYER_COND_STREAM,
         conv_options(c->C, F, 3, 3, 1, AGAVE_SHIFT_NONE, 1.0f));
    /* First layers see [x, 1] and are shifted so no output sees its own pixel. */
    shifted(w, c, TOPO_U_INIT, 0, AGAVE_LAYER_CONV, c->C + 1, 2, 3, 1, AGAVE_SHIFT_DOWN);
    shifted(w, c, TOPO_UL_INIT_A, 0, AGAVE_LAYER_CONV, c->C + 1, 1, 3, 1, AGAVE_SHIFT_DOWN);
    shifted(w, c, TOPO_UL_INIT_B, 0, AGAVE_LAYER_CONV, c->C + 1, 2, 1, 1,
            AGAVE_SHIFT_DOWN_RIGHT);
    for (int lv = 0; lv < TOPO_LEVELS; lv++) {
        for (int r = 0; r < R; r++) {
            gated(w, c, TOPO_UP_U, lv, r, 0, 0);
            gated(w, c, TOPO_UP_UL, lv, r, 1, F);
        }
        if (lv < TOPO_LEVELS - 1) {
            shifted(w, c, TOPO_DOWN_U, lv, AGAVE_LAYER_CONV, F, 2, 3, 2, AGAVE_SHIFT_DOWN);
            shifted(w, c, TOPO_DOWN_UL, lv, AGAVE_LAYER_CONV, F, 2, 2, 2, AGAVE_SHIFT_DOWN_RIGHT);
        }
    }
    for (int lv = TOPO_LEVELS - 1; lv >= 0; lv--) {
        for (int r = 0; r < topo_down_blocks(c, lv); r++) {
            gated(w, c, TOPO_DN_U, lv, r, 0, F);
            gated(w, c, TOPO_DN_UL, lv, r, 1, 2 * F);
        }
        if (lv > 0) {
            shifted(w, c, TOPO_UPSAMPLE_U, lv - 1, AGAVE_LAYER_DECONV, F, 2, 3, 2,
                    AGAVE_SHIFT_DOWN);
            shifted(w, c, TOPO_UPSAMPLE_UL, lv - 1, AGAVE_LAYER_DECONV, F, 2, 2, 2,
                    AGAVE_SHIFT_DOWN_RIGHT);
        }
    }
    /* nin(elu(ul)) F -> the mixture's parameters */
    emit(w, TOPO_OUT, 0, 0, AGAVE_LAYER_NIN,
         conv_options(F, dmol_param_count(c->C, c->M), 1, 1, 1, AGAVE_SHIFT_NONE, 1.0f));
}

agave_status topology_walk(const agave_config *c, topo_visit visit, void *user)
{
    walker w = {visit, user, AGAVE_OK};
    vae(&w, c);
    pixelcnn(&w, c);
    return w.st;
}

int topo_down_blocks(const agave_config *c, int lv)
{
    return lv == TOPO_LEVELS - 1 ? c->R : c->R + 1;
}

int topo_vae_upsamplings(const agave_config *c) { return c->s == 1 ? 2 : c->s == 2 ? 1 : 0; }

static agave_status count_layer(void *user, const topo_layer *l)
{
    *(uint64_t *)user += layer_param_numel(l->kind, &l->opt);
    return AGAVE_OK;
}

uint64_t topology_param_numel(const agave_config *c)
{
    uint64_t total = (uint64_t)c->C;   /* the auxiliary log-scales */
    topology_walk(c, count_layer, &total);
    return total;
}
