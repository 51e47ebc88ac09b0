/* The differentiable ops of lib/loss: each one's entry (its name and its
 * backward) for the tape, as lib/ops/ops_list.h does for lib/ops. */
#ifndef AGAVE_LOSS_OPS_H
#define AGAVE_LOSS_OPS_H

#include "../ops/ops_list.h"

/* X(ENTRY_SUFFIX, name): name_backward must exist. */
#define LOSS_OP_LIST(X)                                                                   \
    X(DLOGISTIC_NLL, dlogistic_nll) /* lib/loss/dlogistic.c */                            \
    X(DMOL_NLL, dmol_nll)           /* lib/loss/dmol.c */                                 \
    X(GAUSSIAN_SAMPLE, gaussian_sample) /* lib/loss/gaussian.c */                         \
    X(GAUSSIAN_LOGPROB, gaussian_logprob)                                                 \
    X(GAUSSIAN_KL, gaussian_kl)

#define X(id, name)                                                                       \
    extern const op_def OP_##id[1];                                                       \
    agave_status name##_backward(agave_context *ctx, const tape_node *node);
LOSS_OP_LIST(X)
#undef X

#endif
