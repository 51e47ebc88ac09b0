/* The model's topology from its configuration alone: every layer in creation
 * order (which is the checkpoint's parameter order) with its kind and
 * options, and the PixelCNN++'s levels. The builder (model.c), the parameter
 * count and memory estimate (estimate.c), the checkpoint's size check and the
 * cached sampler all read it here (docs/model.md describes the network). */
#ifndef AGAVE_MODEL_TOPOLOGY_H
#define AGAVE_MODEL_TOPOLOGY_H

#include "../nn/nn.h"

/* The PixelCNN++'s resolutions: H, H/2, H/4. */
#define TOPO_LEVELS 3

/* Which field of vae_net / pixelcnn_net (model.h) a layer fills. */
typedef enum topo_slot {
    TOPO_ENC_IN, TOPO_ENC_RES, TOPO_ENC_DOWN, TOPO_ENC_OUT,
    TOPO_IAF_IN, TOPO_IAF_CTX, TOPO_IAF_OUT,
    TOPO_DEC_IN, TOPO_DEC_UP, TOPO_DEC_RES, TOPO_DEC_OUT,
    TOPO_COND, TOPO_U_INIT, TOPO_UL_INIT_A, TOPO_UL_INIT_B,
    TOPO_UP_U, TOPO_UP_UL, TOPO_DOWN_U, TOPO_DOWN_UL,
    TOPO_DN_U, TOPO_DN_UL, TOPO_UPSAMPLE_U, TOPO_UPSAMPLE_UL, TOPO_OUT
} topo_slot;

typedef struct topo_layer {
    topo_slot slot;
    int level, index;         /* the field's [level][index] (0 where it is one layer) */
    agave_layer_kind kind;
    agave_layer_options opt;
} topo_layer;

typedef agave_status (*topo_visit)(void *user, const topo_layer *l);

/* Calls visit for every layer of c's model, in creation order; stops at and
 * returns visit's first error. */
agave_status topology_walk(const agave_config *c, topo_visit visit, void *user);

/* The down pass's gated blocks at level lv: R at H/4, R + 1 at H/2 and H. */
int topo_down_blocks(const agave_config *c, int lv);
/* The VAE decoder's x2 upsamplings: 2 for s = 1, 1 for s = 2, 0 for s = 4. */
int topo_vae_upsamplings(const agave_config *c);
/* The parameter values of c's model: its layers' and the auxiliary
 * log-scales (C), exactly what agave_model_create allocates. */
uint64_t topology_param_numel(const agave_config *c);

#endif
