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

/* Polyak averaging with bias correction: avg starts at 0 and follows
 * avg = decay * avg + (1 - decay) * params; the averaged parameters are
 * avg / (1 - decay^t) after t updates, a weighted mean of the visited
 * parameters that is usable from the first step (Adam's correction). */
typedef struct param_average {
    size_t total;
    int64_t t;          /* updates so far */
    float *avg;         /* the running, uncorrected average */
    float *backup;      /* live parameters while the average is applied */
    int applied;
} param_average;

agave_status average_init(param_average *a, agave_tensor *const *params, int n);
void average_update(param_average *a, agave_tensor *const *params, int n, float decay);
/* Puts the corrected average into the parameters (saving the live values) and back. */
void average_apply(param_average *a, agave_tensor *const *params, int n, float decay);
void average_restore(param_average *a, agave_tensor *const *params, int n);
void average_free(param_average *a);

#endif
