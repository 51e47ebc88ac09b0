/* libFuzzer harness: the checkpoint loader behind agave_model_load, through
 * its memory entry checkpoint_load_memory (lib/model/checkpoint.h), which
 * agave_model_load calls with the file's bytes.
 *
 * Each input is loaded twice:
 *  1. as it is: the envelope checks (magic, version, length, CRC-32);
 *  2. with the payload length and the CRC-32 rewritten to match the bytes
 *     (when there are at least the 28 bytes of header and CRC): a mutation
 *     almost never keeps a CRC valid, so without this the fuzzer would never
 *     get past the checksum into the parser of the configuration, the
 *     parameter table and the optimiser and averaging sections.
 * A model that loads is used: one evaluation and one training step on one
 * image (when its images are small enough to keep the fuzzer fast), since a
 * checkpoint that loads but makes the next call crash is no better.
 * Seeds: fuzz/make_corpus.c. Run: make fuzz (docs/reliability.md). */
#include <zlib.h>

#include "fuzz_common.h"
#include "model/checkpoint.h"

#define HEADER 24   /* magic 8, version 4, flags 4, payload length 8 (docs/checkpoint.md) */

static agave_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Uses a loaded model and checks what it reports. */
static void exercise(agave_model *m)
{
    agave_config cfg;
    FUZZ_CHECK(agave_model_get_config(m, &cfg) == AGAVE_OK);
    char msg[256];
    FUZZ_CHECK(agave_config_validate(&cfg, msg, sizeof msg) == AGAVE_OK);
    int64_t step = agave_model_step_count(m), rejected = agave_model_rejected_count(m);
    FUZZ_CHECK(step >= 0 && rejected >= 0);
    if ((size_t)cfg.C * cfg.H * cfg.W > 3 * 8 * 8)
        return;   /* big images: seconds per step, too slow to fuzz */
    uint8_t x[3 * 8 * 8];
    memset(x, 0x55, sizeof x);
    agave_eval_stats es;
    memset(&es, 0, sizeof es);
    es.struct_size = sizeof es;
    fuzz_check_status(ctx, agave_model_evaluate(m, x, 1, 1, &es));
    agave_step_stats ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    agave_status st = agave_model_train_step(m, x, 1, &ss);
    fuzz_check_status(ctx, st);
    if (st == AGAVE_OK && !ss.rejected)
        FUZZ_CHECK(agave_model_step_count(m) == step + 1);
    else
        FUZZ_CHECK(agave_model_step_count(m) == step);
}

/* The architecture of the seeds' micro model, for the `expect` argument. */
static agave_config micro_config(void)
{
    agave_config cfg;
    agave_config_init(&cfg, "tiny");
    static const char *const kv[][2] = {{"H", "4"},  {"W", "4"},  {"F", "1"},
                                        {"R", "0"},  {"M", "1"},  {"Fv", "1"},
                                        {"Rv", "0"}, {"Z", "1"},  {"T", "0"}};
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        agave_config_set(&cfg, kv[i][0], kv[i][1]);
    return cfg;
}

static void load(const uint8_t *bytes, size_t len)
{
    /* Inputs of odd length also pass an expected architecture, which
     * reaches the comparison (AGAVE_ERR_CONFIG on a mismatch). */
    static agave_config expect;
    if (expect.struct_size == 0)
        expect = micro_config();
    agave_model *m = (agave_model *)(uintptr_t)1;   /* must be reset to NULL */
    agave_status st = checkpoint_load_memory(ctx, "fuzz.ckpt", bytes, len,
                                             (len & 1) ? &expect : NULL, &m);
    fuzz_check_status(ctx, st);
    if (st != AGAVE_OK) {
        FUZZ_CHECK(m == NULL);
        return;
    }
    FUZZ_CHECK(m != NULL);
    exercise(m);
    agave_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx && agave_context_create(&ctx, 1) != AGAVE_OK)
        __builtin_trap();
    /* The same random state for every input, so that a crash reproduces. */
    agave_context_seed(ctx, 1);
    load(data, size);
    if (size < HEADER + 4)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    uint64_t payload = size - HEADER - 4;
    memcpy(fixed + 16, &payload, 8);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), fixed, (uInt)(size - 4));
    memcpy(fixed + size - 4, &crc, 4);
    fuzz_dump("fuzz.ckpt", fixed, size);
    agave_context_seed(ctx, 1);
    load(fixed, size);
    free(fixed);
    return 0;
}
