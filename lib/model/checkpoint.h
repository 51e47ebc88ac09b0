/* Internal: the checkpoint loader on a memory buffer. agave_model_load reads
 * the file and calls this; the fuzzer (fuzz/fuzz_checkpoint.c) and the
 * regression tests call it directly. Private to the library. */
#ifndef AGAVE_CHECKPOINT_H
#define AGAVE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

/* The library's own headers see the whole API, the experimental part too
 * (tests compile them without AGAVE_BUILDING_LIBRARY). */
#ifndef AGAVE_EXPERIMENTAL
#define AGAVE_EXPERIMENTAL
#endif
#include "agave.h"

/* Parses the len bytes at data as a checkpoint file and creates the model on
 * ctx, exactly as agave_model_load does with a file of those bytes; name is
 * used in messages where the path would be. Clears the context's error first;
 * *out is NULL on failure. data may be NULL when len is 0. */
agave_status checkpoint_load_memory(agave_context *ctx, const char *name, const void *data,
                                    size_t len, const agave_config *expect, agave_model **out);

/* The parameter values (floats) of the model cfg describes, counted
 * without building it: the loader refuses a file too small to hold them
 * before allocating anything. */
uint64_t checkpoint_min_param_floats(const agave_config *cfg);

#endif
