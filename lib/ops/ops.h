/* Shared helpers for op implementations. */
#ifndef AGAVE_OPS_H
#define AGAVE_OPS_H

#include "ops_list.h"

/* Checks that a and b have identical shapes, naming both in the error. */
agave_status check_same_shape(agave_context *ctx, const agave_tensor *a, const agave_tensor *b,
                              const char *op);
/* Checks ctx non-NULL and out non-NULL; clears *out and the error. */
agave_status check_op_entry(agave_context *ctx, agave_tensor **out, const char *op);

/* The gradient buffer of input i of node, or NULL if it needs none.
 * Sets *st to NOMEM if one was needed but could not be made. */
float *input_grad(const tape_node *node, int i, agave_status *st);

#endif
