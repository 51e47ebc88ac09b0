/* The differentiable ops of lib/ops: each one's entry (its name and its
 * backward) for the tape. Adding an op is one line in OPS_OP_LIST plus
 * NAME_backward in its family's file; the table of every op of the library
 * (lib/model/op_table.h, with the loss ops) is walked by the gradient-check
 * test, so an op without a check fails `make check`. */
#ifndef AGAVE_OPS_LIST_H
#define AGAVE_OPS_LIST_H

#include "../core/core.h"

/* X(ENTRY_SUFFIX, name): name_backward must exist. */
#define OPS_OP_LIST(X)                                                                    \
    /* conv family: lib/ops/conv2d.c, conv2d_transpose.c, nin.c, dense.c */               \
    X(CONV2D, conv2d)                                                                     \
    X(CONV2D_CE, conv2d_ce) /* internal: ops/fused.h */                                   \
    X(CONV2D_TRANSPOSE, conv2d_transpose)                                                 \
    X(NIN, nin)                                                                           \
    X(NIN_ADD, nin_add) /* internal: ops/fused.h */                                       \
    X(DENSE, dense)                                                                       \
    /* element-wise arithmetic: lib/ops/arith.c */                                        \
    X(BIAS_ADD, bias_add)                                                                 \
    X(ADD, add)                                                                           \
    X(SUB, sub)                                                                           \
    X(MUL, mul)                                                                           \
    X(SCALE, scale)                                                                       \
    /* nonlinearities: lib/ops/activation.c */                                            \
    X(ELU, elu)                                                                           \
    X(CONCAT_ELU, concat_elu)                                                             \
    X(CONCAT_ELU_DROPOUT, concat_elu_dropout) /* internal: ops/fused.h */                 \
    X(SIGMOID, sigmoid)                                                                   \
    X(TANH, tanh)                                                                         \
    X(EXP, exp)                                                                           \
    X(LOG, log)                                                                           \
    X(SOFTPLUS, softplus)                                                                 \
    /* reductions: lib/ops/reduce.c */                                                    \
    X(LOGSUMEXP, logsumexp)                                                               \
    X(SUM, sum)                                                                           \
    X(SUM_ITEMS, sum_items)                                                               \
    X(MEAN, mean)                                                                         \
    /* shape and resampling: lib/ops/shape.c */                                           \
    X(CONCAT, concat)                                                                     \
    X(SPLIT, split)                                                                       \
    X(DOWN_SHIFT, down_shift)                                                             \
    X(RIGHT_SHIFT, right_shift)                                                           \
    X(UPSAMPLE2X, upsample2x)                                                             \
    X(AVG_POOL, avg_pool)                                                                 \
    X(TRANSPOSE01, transpose01)                                                           \
    X(GATE, gate)                                                                         \
    /* regularisation and parameterisation: lib/ops/dropout.c, lib/ops/weight_norm.c */   \
    X(DROPOUT, dropout)                                                                   \
    X(WEIGHT_NORM, weight_norm)

/* OP_CONV2D, ...: each op's entry. An array of one, so that the name alone
 * is a `const op_def *` to pass to op_record and compare (op == OP_ADD). */
#define X(id, name)                                                                       \
    extern const op_def OP_##id[1];                                                       \
    agave_status name##_backward(agave_context *ctx, const tape_node *node);
OPS_OP_LIST(X)
#undef X

/* Records op with output out when any input requires a gradient. Returns
 * the node (to fill saved state), NULL with *st = OK when nothing is
 * recorded, NULL with *st set on failure. */
tape_node *op_record(agave_context *ctx, const op_def *op, agave_tensor *out,
                     agave_tensor *const *in, int n_in, agave_status *st);

#endif
