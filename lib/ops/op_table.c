#include "op_table.h"

const op_info op_table[OP_COUNT] = {
#define X(id, name) [OP_##id] = {#name, name##_backward},
    AGAVE_OP_LIST(X)
#undef X
};

_Static_assert(sizeof op_table / sizeof op_table[0] == OP_COUNT,
               "op table and op enum disagree");

tape_node *op_record(agave_context *ctx, int op, agave_tensor *out, agave_tensor *const *in,
                     int n_in, agave_status *st)
{
    *st = AGAVE_OK;
    if (!tape_should_record(ctx, in, n_in))
        return NULL;
    tape_node *node = tape_record(ctx, op, op_table[op].backward, out, in, n_in);
    if (!node)
        *st = AGAVE_ERR_NOMEM;
    return node;
}
