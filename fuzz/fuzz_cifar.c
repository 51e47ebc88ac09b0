/* libFuzzer harness: the CIFAR-10 binary reader (plain and gzip) behind
 * agave_dataset_open / agave_dataset_open_files. The input is a control byte
 * and a file (fuzz/fuzz_common.h); the name ends in ".bin", so the CIFAR-10
 * reader is chosen unless the control byte asks for a name without a hint.
 * Seeds: fuzz/make_corpus.c. Run: make fuzz (docs/reliability.md). */
#include "fuzz_common.h"

static agave_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx && agave_context_create(&ctx, 1) != AGAVE_OK)
        __builtin_trap();
    fuzz_data_input(ctx, data, size, "data_batch_1.bin");
    return 0;
}
