/* Internal fused ops: pairs of public ops that the model always runs back to
 * back, computed as one op so that the tensor between them is never stored
 * (a step's memory is its stored activations). Each gives the same numbers,
 * bit for bit, as the pair it replaces; each has its own op-table entry and
 * gradient check. Not part of the public API. */
#ifndef AGAVE_OPS_FUSED_H
#define AGAVE_OPS_FUSED_H

#include "../core/core.h"

/* agave_dropout(agave_concat_elu(x), p): x (N,C,...) -> y (N,2C,...), the same
 * random draws in the same order. Backward recomputes concat_elu from x, so
 * only y (for the next op) and the mask are kept, not concat_elu's output.
 * p in (0, 1). */
agave_status concat_elu_dropout(agave_context *ctx, agave_tensor *x, float p, agave_tensor **out);

#endif
