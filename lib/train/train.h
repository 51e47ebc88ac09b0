/* Internal view of optimisers and parameter averaging. */
#ifndef AGAVE_TRAIN_H
#define AGAVE_TRAIN_H

#include "../core/core.h"

/* n parameter values and their gradient, side by side in memory. */
typedef struct optim_span {
    float *data;
    float *grad;
    size_t n;
} optim_span;

struct agave_optimizer {
    agave_context *ctx;
    agave_optimizer_kind kind;
    float lr, beta1, beta2, eps;
    int n_spans;
    optim_span *spans;  /* the parameters: one span for a model, one per tensor else */
    size_t total;       /* floats over all spans */
    float *m, *u;       /* first moment; second moment (Adam) or infinity norm (Adamax) */
    int64_t t;          /* updates applied */
};

/* Global L2 norm of all gradients (double accumulation); NaN/Inf propagate. */
double optim_grad_norm(const agave_optimizer *opt);
/* Zeroes every registered gradient. */
void optim_zero_grads(agave_optimizer *opt);
/* Registers one tensor, giving it a gradient buffer if it has none. */
agave_status optim_add_tensor(agave_optimizer *opt, agave_tensor *t);
/* Registers n parameter values and their gradient as one span (a model's
 * parameter block), so that the update is one loop over them. */
agave_status optim_add_span(agave_optimizer *opt, float *data, float *grad, size_t n);

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
    float *avg;         /* the averaged parameters; the live ones while applied */
    int applied;
} param_average;

/* Starts the average at params (total floats, the model's parameter block). */
agave_status average_init(param_average *a, const float *params, size_t total);
/* d for the update after t earlier ones. */
float average_decay(int64_t t, float ema);
void average_update(param_average *a, const float *params, float ema);
/* Puts the average into params (keeping the live values) and back. */
void average_apply(param_average *a, float *params);
void average_restore(param_average *a, float *params);
void average_free(param_average *a);

#endif
