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
/* The same, but a new buffer is not zeroed and *fresh says so: the op then
 * writes every value of it instead of adding. */
float *input_grad_fresh(const tape_node *node, int i, int *fresh, agave_status *st);
/* For an input whose gradient is the output's gradient g unchanged (out =
 * in + ...): in a backward that gives each output back after its node
 * (tape_releasing), when the input has no gradient yet, is an arena tensor
 * of the output's size and no other input of the node, g's buffer becomes
 * the input's gradient and NULL is returned (nothing to add; the output's
 * gradient is NULL from then on, so read g first). Otherwise as input_grad:
 * the buffer to add g into. */
float *input_grad_or_take(const tape_node *node, int i, agave_status *st);

/* Element-wise ops run over a tensor in blocks of EW_BLOCK values, one task
 * each (a multiple of 16: whole 16-bit mask loads for dropout's masks). */
#define EW_BLOCK        16384 /* floats per task: 64 KiB, stays in L2 */
#define EW_PARALLEL_MIN 65536 /* below this a parallel region costs more than it saves */

/* The length of the block at i0 of n values. */
static inline size_t ew_block_len(size_t n, size_t i0)
{
    return n - i0 < EW_BLOCK ? n - i0 : EW_BLOCK;
}

/* What dropout's backward needs (agave_dropout, concat_elu_dropout). */
typedef struct dropout_saved {
    const unsigned char *keep;   /* bit i (keep_bit) set where value i passed; NULL: the
                                    identity (p = 0) */
    float scale;                 /* 1 / (1 - p) */
} dropout_saved;

/* Bit i of a packed mask (bit i % 8 of byte i / 8): dropout keeps one bit
 * per value for backward, not one byte. */
static inline unsigned keep_bit(const unsigned char *bits, size_t i)
{
    return (unsigned)(bits[i >> 3] >> (i & 7)) & 1u;
}

/* Bits [i, i + 16) of a packed mask that holds at least i + 16 bits, as bits
 * 0..15: a vector loop's 16 keep_bits from two or three byte loads (the third
 * byte exists whenever i is not a multiple of 8). */
static inline unsigned keep_bits16(const unsigned char *bits, size_t i)
{
    const unsigned char *b = bits + (i >> 3);
    unsigned word = b[0] | (unsigned)b[1] << 8 | ((i & 7) ? (unsigned)b[2] << 16 : 0u);
    return (word >> (i & 7)) & 0xFFFFu;
}

/* Dropout in place on y's numel values, `items` items on axis 0 sitting at
 * span in their batch's random stream: y[i] = keep[i] ? y[i] / (1 - p) : 0
 * with keep[i] = (u >= p), u uniform, one draw per value in index order. The
 * mask is kept in the arena, packed (keep_bit), when record is set
 * (saved->keep), else it is scratch (saved->keep NULL). 0 < p < 1. */
agave_status dropout_apply(agave_context *ctx, rng_span span, float p, int record, float *y,
                           size_t numel, int items, dropout_saved *saved);

#endif
