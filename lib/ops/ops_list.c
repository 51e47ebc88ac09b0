/* The entries of lib/ops's ops (ops_list.h) and their recording. */
#include "ops_list.h"

#define X(id, name) const op_def OP_##id[1] = {{#name, name##_backward}};
OPS_OP_LIST(X)
#undef X

tape_node *op_record(agave_context *ctx, const op_def *op, agave_tensor *out,
                     agave_tensor *const *in, int n_in, agave_status *st)
{
    *st = AGAVE_OK;
    if (!tape_should_record(ctx, in, n_in))
        return NULL;
    tape_node *node = tape_record(ctx, op, out, in, n_in);
    if (!node)
        *st = AGAVE_ERR_NOMEM;
    return node;
}
