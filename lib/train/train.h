/* Internal view of optimisers and parameter averaging. */
#ifndef AGAVE_TRAIN_H
#define AGAVE_TRAIN_H

#include "../core/core.h"

struct agave_optimizer {
    agave_context *ctx;
    agave_optimizer_kind kind;
    float lr, beta1, beta2, eps;
    int n_params;
    agave_tensor **params;
    size_t total;       /* floats over all parameters */
    float *m, *u;       /* first moment; second moment (Adam) or infinity norm (Adamax) */
    int64_t t;          /* updates applied */
};

/* Global L2 norm of all gradients (double accumulation); NaN/Inf propagate. */
double optim_grad_norm(const agave_optimizer *opt);
/* Zeroes every registered gradient. */
void optim_zero_grads(agave_optimizer *opt);
/* Registers one tensor (used by the model, which is not a single layer). */
agave_status optim_add_tensor(agave_optimizer *opt, agave_tensor *t);

/* Polyak averaging: avg = decay * avg + (1 - decay) * params, over a flat copy. */
typedef struct param_average {
    size_t total;
    float *avg;
} param_average;

agave_status average_init(param_average *a, agave_tensor *const *params, int n);
void average_update(param_average *a, agave_tensor *const *params, int n, float decay);
/* Swaps the averaged values with the live parameters (call twice to undo). */
void average_swap(param_average *a, agave_tensor *const *params, int n);
void average_free(param_average *a);

#endif
