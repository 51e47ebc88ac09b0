/* Internal view of layers. A layer is either a weight-normalised linear map
 * (CONV, DECONV, NIN, DENSE: parameters v, g, b) or a composite of child
 * layers (GATED_RESNET, RESNET, COND_STREAM). */
#ifndef AGAVE_NN_H
#define AGAVE_NN_H

#include "../core/core.h"

#define LAYER_MAX_CHILDREN 4
#define LAYER_NAME_LEN 48

struct agave_layer {
    agave_context *ctx;
    agave_layer_kind kind;
    agave_layer_options opt;
    int training;
    int initialized;
    rng_span span;        /* where its batch's items sit in the random stream (dropout) */
    /* linear layers: v is (out,in,KH,KW) for CONV/DECONV, (out,in) for NIN/DENSE */
    agave_tensor *v, *g, *b;
    agave_tensor *mask;   /* masked CONV only: constant 0/1 of v's shape */
    /* composite layers */
    agave_layer *child[LAYER_MAX_CHILDREN];
    const char *child_name[LAYER_MAX_CHILDREN];
    int n_child;
    /* flattened parameter list with dotted names, built at creation */
    int n_params;
    agave_tensor **params;
    char (*param_names)[LAYER_NAME_LEN];
};

/* Internal constructors used by the model (no public option checks repeated). */
agave_status layer_new(agave_context *ctx, agave_layer_kind kind, const agave_layer_options *o,
                       agave_layer **out);

/* Linear forward of a weight-normalised layer, initialising it on first use. */
agave_status linear_forward(agave_layer *l, agave_tensor *x, agave_tensor **out);
/* linear_forward(l, concat_elu(x)), fused for conv layers. */
agave_status linear_forward_ce(agave_layer *l, agave_tensor *x, agave_tensor **out);
/* base + linear_forward(l, ce ? concat_elu(x) : x), fused for NIN layers. */
agave_status linear_forward_add(agave_layer *l, agave_tensor *x, int ce, agave_tensor *base,
                                agave_tensor **out);
agave_status gated_forward(agave_layer *l, agave_tensor *x, agave_tensor *a, agave_tensor *h,
                           agave_tensor **out);
agave_status resnet_forward(agave_layer *l, agave_tensor *x, agave_tensor **out);
agave_status cond_forward(agave_layer *l, agave_tensor *f, agave_tensor *out[3]);

/* Creates children of composite kinds (lib/nn/blocks.c). */
agave_status blocks_create_children(agave_layer *l);

/* Sets the random span (core.h) of l and its children: the model's batch
 * slice during a data-parallel step, RNG_WHOLE_BATCH otherwise. */
void layer_set_span(agave_layer *l, rng_span span);

/* Appends every parameter (recursively, dotted names) to the layer's list. */
agave_status layer_collect_params(agave_layer *l);

#endif
