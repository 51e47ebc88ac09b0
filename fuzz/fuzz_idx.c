/* libFuzzer harness: the IDX image reader (plain and gzip) behind
 * agave_dataset_open / agave_dataset_open_files. The input is a control byte
 * and a file (fuzz/fuzz_common.h); the name carries "idx", so the IDX reader
 * is chosen unless the control byte asks for a name without a hint.
 * Seeds: fuzz/make_corpus.c. Run: make fuzz (docs/reliability.md). */
#include "fuzz_common.h"

static agave_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One context for the whole run: the reader keeps no state in it besides
     * the last-error message, and creating one per input would only add
     * noise to the executions per second. */
    if (!ctx && agave_context_create(&ctx, 1) != AGAVE_OK)
        __builtin_trap();
    fuzz_data_input(ctx, data, size, "fuzz-train-images-idx3-ubyte");
    return 0;
}
