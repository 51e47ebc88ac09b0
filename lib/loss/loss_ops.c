/* The entries of lib/loss's ops (loss_ops.h). */
#include "loss_ops.h"

#define X(id, name) const op_def OP_##id[1] = {{#name, name##_backward}};
LOSS_OP_LIST(X)
#undef X
