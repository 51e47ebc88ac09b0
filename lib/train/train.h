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

/* The learning rate of training step k = 1, 2, ...:
 * lr * min(1, k / warmup) * decay^(k - 1); warmup 0 means none. */
double lr_schedule(double lr, int warmup, double decay, int64_t k);

/* Polyak averaging with a warm-up (docs/model.md, Training): avg starts equal to
 * the parameters, and the update after t earlier ones is
 *   avg <- d avg + (1 - d) params,   d = min(ema, (1 + t) / (10 + t)),
 * with no bias correction, so that a short run's average covers its recent
 * steps (about the last (10 + t) / 9 of them while d < ema) instead of being
 * dominated by its first ones. t counts the updates since the average began:
 * the step count minus one when averaging has been on since the init. */
typedef struct param_average {
    size_t total;
    int64_t t;          /* updates so far */
    float *avg;         /* the averaged parameters */
    float *backup;      /* live parameters while the average is applied */
    int applied;
} param_average;

/* Starts the average at the current parameters. */
agave_status average_init(param_average *a, agave_tensor *const *params, int n);
/* d for the update after t earlier ones. */
float average_decay(int64_t t, float ema);
void average_update(param_average *a, agave_tensor *const *params, int n, float ema);
/* Puts the average into the parameters (saving the live values) and back. */
void average_apply(param_average *a, agave_tensor *const *params, int n);
void average_restore(param_average *a, agave_tensor *const *params, int n);
void average_free(param_average *a);

#endif
