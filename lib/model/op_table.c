/* The table of every op (op_table.h). */
#include "op_table.h"

const op_def *const op_table[OP_COUNT] = {
#define X(id, name) OP_##id,
    OPS_OP_LIST(X) LOSS_OP_LIST(X)
#undef X
};
