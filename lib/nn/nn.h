/* Internal view of layers. A layer is either a weight-normalised linear map
 * (CONV, DECONV, NIN, DENSE: parameters v, g, b) or a composite of child
 * layers (GATED_RESNET, RESNET, COND_STREAM). */
#ifndef AGAVE_NN_H
#define AGAVE_NN_H

#include "../core/core.h"

#define LAYER_MAX_CHILDREN 4
#define LAYER_NAME_LEN 48

/* A gated residual block's children by role, NULL where absent:
 * c1 = conv1(ce(x)) [+ nin_a(ce(a))]; c2 = conv2(ce(c1)) [+ nin_h(h)]. */
typedef struct gated_parts {
    struct agave_layer *conv1, *nin_a, *conv2, *nin_h;
} gated_parts;

/* Where a weight-normalised CONV, DECONV or NIN layer's taps read, exactly as
 * its op runs it (lib/nn/linear.c): for callers that run the layer their
 * own way (the cached sampler). */
typedef struct layer_geometry {
    int in, out;          /* channels */
    int kh, kw, stride;   /* 1 x 1, stride 1 for NIN */
    int top, left;        /* CONV: padding above and on the left; DECONV: the crop */
    int deconv;           /* 1: a transposed conv, out[I, j] = full[I + top, j + left] */
} layer_geometry;

/* Which gated_parts field a child fills (GATED_NONE: not a gated block's). */
typedef enum gated_role {
    GATED_NONE, GATED_CONV1, GATED_NIN_A, GATED_CONV2, GATED_NIN_H
} gated_role;

/* One child of a composite layer, before it exists. */
typedef struct layer_child_spec {
    const char *name;     /* its parameters' prefix */
    agave_layer_kind kind;
    agave_layer_options opt;
    gated_role role;
} layer_child_spec;

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
    gated_parts gated;    /* GATED_RESNET: its children by role */
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
/* The children a composite layer of this kind and options has, in parameter
 * order (the one list blocks_create_children builds from); returns how many. */
int blocks_children(agave_layer_kind kind, const agave_layer_options *p,
                    layer_child_spec out[LAYER_MAX_CHILDREN]);

/* The parameter values (floats) of a layer of this kind and options, children
 * included, without creating it: what layer_new will allocate. */
uint64_t layer_param_numel(agave_layer_kind kind, const agave_layer_options *o);

/* l's geometry; AGAVE_ERR_INVALID_ARG unless l is a CONV, DECONV or NIN. */
agave_status layer_geometry_of(const agave_layer *l, layer_geometry *g);
/* The weights l's op multiplies by, w = g v / ||v|| (v masked first), as
 * out rows of kh*kw*in values, tap-major ((a*kw + b)*in + c): row q at
 * dst + q*ld. *bias is l's bias (out). Temporaries are arena tensors. */
agave_status layer_pack_weights(agave_layer *l, float *dst, size_t ld, const float **bias);
/* A GATED_RESNET's children by role; AGAVE_ERR_INVALID_ARG for other kinds. */
agave_status layer_gated_parts(const agave_layer *l, gated_parts *p);

/* Sets the random span (core.h) of l and its children: the model's batch
 * slice during a data-parallel step, RNG_WHOLE_BATCH otherwise. */
void layer_set_span(agave_layer *l, rng_span span);

/* Appends every parameter (recursively, dotted names) to the layer's list. */
agave_status layer_collect_params(agave_layer *l);

#endif
