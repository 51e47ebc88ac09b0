/* Every differentiable op of the library, lib/ops's and lib/loss's, in one
 * table: the gradient-check test walks it (an op without a check fails
 * `make check`) and the op benchmark names ops from it. It lives here, above
 * both folders, so that lib/ops links without lib/loss. */
#ifndef AGAVE_OP_TABLE_H
#define AGAVE_OP_TABLE_H

#include "../loss/loss_ops.h"
#include "../ops/ops_list.h"

#define X(id, name) +1
enum { OP_COUNT = 0 OPS_OP_LIST(X) LOSS_OP_LIST(X) };
#undef X

extern const op_def *const op_table[OP_COUNT];

#endif
