/* Resource limits (docs/reliability.md): absurd sizes are refused before
 * anything is allocated, with a status and a message that say so, and an
 * allocation that fails anyway comes back as AGAVE_ERR_NOMEM, leaving the
 * objects involved usable, never as a crash.
 *  - configuration bounds (H = 10^6, F = 10^6, ...), evaluation K = 10^9,
 *    batch and sample counts, tensor sizes;
 *  - data set headers that promise more than the 4 GiB data set limit;
 *  - checkpoints whose configuration needs more parameters than the file
 *    holds, or whose counters no run can reach (lib/model/checkpoint.c), and
 *    the lower bound behind the first check, against real models;
 *  - allocation failure: a child process lowers its address-space limit
 *    (RLIMIT_AS, what `ulimit -v` sets) to what it has mapped plus 192 MiB,
 *    relative so that OpenBLAS's own reservations at load time do not
 *    matter, and asks for a 512 MiB tensor, a model of 2 GB, a training
 *    step whose activations do not fit and a gzip data set that inflates to
 *    512 MiB: each must return AGAVE_ERR_NOMEM, and the model must still
 *    train a normal batch afterwards. Skipped under valgrind (its own memory
 *    lives in the same address space; AGAVE_UNDER_VALGRIND=1);
 *  - the memory estimate against measured peaks (also skipped under valgrind:
 *    slow there, and about numbers) and the context's memory limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "agave.h"
#include "core/core.h"
#include "data/data.h"
#include "model/checkpoint.h"
#include "support/support.h"

static agave_context *g_ctx;

static int setup(void **state)
{
    (void)state;
    return agave_context_create(&g_ctx, 3) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(g_ctx);
    return 0;
}

static void expect_message(const char *part)
{
    const char *msg = agave_context_last_error(g_ctx);
    if (!strstr(msg, part))
        fail_msg("message '%s' does not mention '%s'", msg, part);
}

/* tiny with the smallest sizes, then "key=value" overrides. */
static agave_config micro_config(const char *const *sets, int n)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    static const char *const micro[][2] = {{"H", "4"}, {"W", "4"}, {"F", "2"}, {"R", "0"},
                                           {"M", "1"}, {"Fv", "2"}, {"Rv", "0"}, {"Z", "1"},
                                           {"ema", "0"}};
    for (size_t i = 0; i < sizeof micro / sizeof *micro; i++)
        assert_int_equal(agave_config_set(&cfg, micro[i][0], micro[i][1]), AGAVE_OK);
    for (int i = 0; i < n; i++) {
        char kv[64];
        snprintf(kv, sizeof kv, "%s", sets[i]);
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = '\0';
        assert_int_equal(agave_config_set(&cfg, kv, eq + 1), AGAVE_OK);
    }
    return cfg;
}

/* ---- configuration, evaluation, sampling, tensors ---------------------------- */

static void test_absurd_configurations(void **state)
{
    (void)state;
    static const struct { const char *key, *value, *says; } absurd[] = {
        {"H", "1000000", "height"},  {"W", "1000000", "width"},   {"F", "1000000", "filters"},
        {"Fv", "1000000", "filters"}, {"R", "1000", "residual"}, {"M", "1000000", "mixture"},
        {"Z", "1000000000", "latent"}, {"T", "1000", "IAF"},     {"b", "1024", "colour"},
        {"s", "8", "pooling"},
    };
    for (size_t i = 0; i < sizeof absurd / sizeof *absurd; i++) {
        agave_config cfg;
        assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
        assert_int_equal(agave_config_set(&cfg, absurd[i].key, absurd[i].value), AGAVE_OK);
        char msg[256];
        assert_int_equal(agave_config_validate(&cfg, msg, sizeof msg), AGAVE_ERR_CONFIG);
        if (!strstr(msg, absurd[i].says))
            fail_msg("%s=%s: '%s' does not mention '%s'", absurd[i].key, absurd[i].value, msg,
                     absurd[i].says);
        agave_model *m = (agave_model *)&cfg;   /* must be reset to NULL */
        assert_int_equal(agave_model_create(g_ctx, &cfg, &m), AGAVE_ERR_CONFIG);
        assert_null(m);
        expect_message(absurd[i].says);
    }
}

static void test_absurd_counts(void **state)
{
    (void)state;
    agave_config cfg = micro_config(NULL, 0);
    agave_model *m;
    assert_int_equal(agave_model_create(g_ctx, &cfg, &m), AGAVE_OK);
    uint8_t x[2 * 16];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)(i * 41);
    assert_int_equal(agave_model_init(m, x, 2), AGAVE_OK);
    agave_eval_stats es;
    memset(&es, 0, sizeof es);
    es.struct_size = sizeof es;
    /* K = 10^9 importance samples, and more images than the buffer could
     * hold: refused before x is read (x holds 2 images). */
    assert_int_equal(agave_model_evaluate(m, x, 2, 1000000000, &es), AGAVE_ERR_LIMIT);
    expect_message("K = 1000000000");
    assert_int_equal(agave_model_evaluate(m, x, (1 << 24) + 1, 1, &es), AGAVE_ERR_LIMIT);
    agave_step_stats ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    assert_int_equal(agave_model_train_step(m, x, (1 << 20) + 1, &ss), AGAVE_ERR_INVALID_ARG);
    expect_message("batch size");
    assert_int_equal(agave_model_step_count(m), 0);
    uint8_t out[16];
    assert_int_equal(agave_model_sample(m, 1000000, 1, NULL, out), AGAVE_ERR_LIMIT);
    /* The model is untouched by the refusals. */
    assert_int_equal(agave_model_train_step(m, x, 2, &ss), AGAVE_OK);
    assert_int_equal(agave_model_step_count(m), 1);
    agave_model_free(m);
}

static void test_absurd_tensors(void **state)
{
    (void)state;
    agave_tensor *t = (agave_tensor *)g_ctx;
    int cube[3] = {1 << 20, 1 << 20, 1 << 20};   /* 2^60 elements */
    assert_int_equal(agave_tensor_create(g_ctx, 3, cube, &t), AGAVE_ERR_SHAPE);
    assert_null(t);
    expect_message("2^40");
    /* 2^40 floats (4 TiB) pass the shape check; the allocation fails. */
    int big[2] = {1 << 30, 1 << 10};
    assert_int_equal(agave_tensor_create(g_ctx, 2, big, &t), AGAVE_ERR_NOMEM);
    assert_null(t);
}

/* ---- data set headers -------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t *gzip_bytes(const uint8_t *src, size_t n, size_t *len)
{
    uLongf cap = compressBound((uLong)n) + 64;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY),
                     Z_OK);
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* A 16-byte header claiming 2^32 - 1 images of 28x28 (3.4 * 10^12 bytes),
 * or 1 image of 65536 x 1: refused from the header alone, plain or gzip. */
static void test_absurd_dataset_headers(void **state)
{
    (void)state;
    uint8_t head[16 + 64];
    memset(head, 0, sizeof head);
    put_be32(head, 0x00000803u);
    put_be32(head + 4, 0xffffffffu);
    put_be32(head + 8, 28);
    put_be32(head + 12, 28);
    agave_dataset *ds = (agave_dataset *)g_ctx;
    assert_int_equal(dataset_open_memory(g_ctx, "x-idx3-ubyte", head, sizeof head, &ds),
                     AGAVE_ERR_LIMIT);
    assert_null(ds);
    expect_message("4294967295 images");
    size_t gz_len;
    uint8_t *gz = gzip_bytes(head, sizeof head, &gz_len);
    assert_int_equal(dataset_open_memory(g_ctx, "x-idx3-ubyte.gz", gz, gz_len, &ds),
                     AGAVE_ERR_LIMIT);
    expect_message("data set limit");
    free(gz);
    put_be32(head + 4, 1);
    put_be32(head + 8, 65536);
    put_be32(head + 12, 1);
    assert_int_equal(dataset_open_memory(g_ctx, "x-idx3-ubyte", head, sizeof head, &ds),
                     AGAVE_ERR_FORMAT);
    expect_message("out of range");
}

/* ---- checkpoints --------------------------------------------------------------- */

/* A saved micro model's bytes. */
static uint8_t *micro_checkpoint(size_t *len)
{
    agave_config cfg = micro_config(NULL, 0);
    agave_model *m;
    assert_int_equal(agave_model_create(g_ctx, &cfg, &m), AGAVE_OK);
    char path[] = "/tmp/agave-test-limits-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(agave_model_save(m, path), AGAVE_OK);
    agave_model_free(m);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*len);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, *len, f), *len);
    fclose(f);
    unlink(path);
    return p;
}

/* Writes the CRC-32 and payload length that make the bytes a well-formed
 * checkpoint again (docs/checkpoint.md), then loads it from memory. */
static agave_status load_patched(uint8_t *p, size_t len)
{
    uint64_t payload = len - 28;
    memcpy(p + 16, &payload, 8);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)(len - 4));
    memcpy(p + len - 4, &crc, 4);
    agave_model *m = (agave_model *)g_ctx;
    agave_status st = checkpoint_load_memory(g_ctx, "patched.ckpt", p, len, NULL, &m);
    if (st == AGAVE_OK)
        agave_model_free(m);
    else
        assert_null(m);
    return st;
}

/* Offsets in a version 2 checkpoint with its 22 configuration fields
 * (docs/checkpoint.md). */
#define OFF_CFG 28               /* after the u32 field count */
#define OFF_F (OFF_CFG + 12)
#define OFF_R (OFF_CFG + 16)
#define OFF_STEP (24 + 4 + 22 * 4)
#define OFF_REJECTED (OFF_STEP + 8)
#define OFF_BAD (OFF_STEP + 16)
#define OFF_RNG (OFF_STEP + 24)

static void test_checkpoint_config_larger_than_file(void **state)
{
    (void)state;
    size_t len;
    uint8_t *p = micro_checkpoint(&len);
    uint8_t *q = malloc(len);
    memcpy(q, p, len);
    assert_int_equal(load_patched(q, len), AGAVE_OK);   /* the patching itself is right */
    int32_t F = 1024, R = 32;
    memcpy(q + OFF_F, &F, 4);
    memcpy(q + OFF_R, &R, 4);
    assert_int_equal(load_patched(q, len), AGAVE_ERR_FORMAT);
    expect_message("too small for its configuration");
    free(q);
    free(p);
}

static void test_checkpoint_impossible_counters(void **state)
{
    (void)state;
    size_t len;
    uint8_t *p = micro_checkpoint(&len);
    uint8_t *q = malloc(len);
    static const struct { size_t off; int size; uint64_t value; } bad[] = {
        {OFF_STEP, 8, (uint64_t)1 << 63},      /* negative as int64 */
        {OFF_STEP, 8, (uint64_t)INT64_MAX},     /* the next step would overflow */
        {OFF_REJECTED, 8, UINT64_MAX},
        {OFF_BAD, 4, 0xffffffffu},              /* -1 */
        {OFF_BAD, 4, 11},                       /* more than max_bad_steps (10) */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memcpy(q, p, len);
        memcpy(q + bad[i].off, &bad[i].value, (size_t)bad[i].size);
        assert_int_equal(load_patched(q, len), AGAVE_ERR_FORMAT);
        expect_message("impossible");
    }
    memcpy(q, p, len);
    memset(q + OFF_RNG, 0, 32);   /* xoshiro256** can never be all zero */
    assert_int_equal(load_patched(q, len), AGAVE_ERR_FORMAT);
    expect_message("all zero");
    memcpy(q, p, len);
    int32_t ten = 10;             /* max_bad_steps itself is a state a run can save */
    memcpy(q + OFF_BAD, &ten, 4);
    assert_int_equal(load_patched(q, len), AGAVE_OK);
    free(q);
    free(p);
}

/* The loader's bound is the topology's exact count: it must equal the built
 * model's (more would refuse a valid checkpoint, less let a short file build
 * a model), over random configurations and the named ones. */
static void test_param_bound_is_count(void **state)
{
    (void)state;
    static const char *const values[][5] = {
        {"F=1", "F=3", "F=8", "F=16", "F=5"}, {"R=0", "R=1", "R=2", "R=0", "R=1"},
        {"M=1", "M=5", "M=2", "M=10", "M=3"}, {"Fv=1", "Fv=4", "Fv=8", "Fv=2", "Fv=16"},
        {"Rv=0", "Rv=1", "Rv=2", "Rv=1", "Rv=0"}, {"Z=1", "Z=2", "Z=4", "Z=3", "Z=8"},
        {"T=0", "T=1", "T=2", "T=0", "T=1"},   {"s=1", "s=2", "s=4", "s=1", "s=2"},
        {"C=1", "C=3", "C=1", "C=3", "C=1"},
    };
    const int keys = (int)(sizeof values / sizeof *values);
    int checked = 0;
    uint32_t lcg = 12345;
    for (int trial = 0; trial < 40; trial++) {
        const char *sets[16];
        for (int k = 0; k < keys; k++) {
            lcg = lcg * 1103515245u + 12345u;
            sets[k] = values[k][(lcg >> 16) % 5];
        }
        agave_config cfg = micro_config(sets, keys);
        agave_model *m;
        assert_int_equal(agave_model_create(g_ctx, &cfg, &m), AGAVE_OK);
        uint64_t bound = checkpoint_min_param_floats(&cfg);
        uint64_t count = agave_model_param_numel(m);
        size_t counted = 0;   /* from the configuration alone: exact */
        assert_int_equal(agave_config_param_numel(&cfg, &counted), AGAVE_OK);
        if (counted != count)
            fail_msg("trial %d: agave_config_param_numel %zu, the model has %llu", trial,
                     counted, (unsigned long long)count);
        if (bound != count)
            fail_msg("trial %d: bound %llu != %llu parameters (F %d R %d Fv %d Rv %d Z %d T %d "
                     "s %d C %d)", trial, (unsigned long long)bound, (unsigned long long)count,
                     cfg.F, cfg.R, cfg.Fv, cfg.Rv, cfg.Z, cfg.T, cfg.s, cfg.C);
        agave_model_free(m);
        checked++;
    }
    static const char *const named[] = {"tiny", "fashion", "cifar-small"};
    for (size_t i = 0; i < sizeof named / sizeof *named; i++) {
        agave_config cfg;
        assert_int_equal(agave_config_init(&cfg, named[i]), AGAVE_OK);
        agave_model *m;
        assert_int_equal(agave_model_create(g_ctx, &cfg, &m), AGAVE_OK);
        uint64_t bound = checkpoint_min_param_floats(&cfg), count = agave_model_param_numel(m);
        size_t counted = 0;
        assert_int_equal(agave_config_param_numel(&cfg, &counted), AGAVE_OK);
        assert_int_equal(counted, count);
        assert_int_equal(bound, count);
        agave_model_free(m);
    }
    assert_int_equal(checked, 40);
}

/* ---- memory estimate and limit ------------------------------------------------------ */

/* What a training step really held: the step arena's peak and the conv
 * scratch (measured), plus the persistent buffers (parameters, gradients,
 * two optimiser moments, and with averaging the average and its backup). */
static double measured_step_bytes(agave_context *ctx, const agave_config *cfg, int batch)
{
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, cfg, &m), AGAVE_OK);
    size_t D = (size_t)cfg->C * cfg->H * cfg->W;
    uint8_t *x = malloc(D * (size_t)batch);
    assert_non_null(x);
    for (size_t i = 0; i < D * (size_t)batch; i++)
        x[i] = (uint8_t)(i * 2654435761u >> 24);
    agave_step_stats st = {.struct_size = sizeof st};
    for (int i = 0; i < 2; i++)
        assert_int_equal(agave_model_train_step(m, x, batch, &st), AGAVE_OK);
    double scratch = 0;
    for (int i = 0; i < SCRATCH_SLOTS; i++)
        scratch += (double)ctx->scratch[i].bytes;
    double persistent = 4.0 * (double)agave_model_param_numel(m) * (cfg->ema > 0 ? 6 : 4);
    double total = (double)agave_context_arena_peak(ctx) + scratch + persistent;
    agave_model_free(m);
    free(x);
    return total;
}

/* The estimate must stay above what a step really needs (the limit refuses
 * on it), and close enough to be useful: within 1.6x. Configurations unlike
 * the ones the fit used (lib/model/estimate.c), every mode, and fashion. */
static void test_estimate_bounds_measured_peak(void **state)
{
    (void)state;
    /* Numbers, not memory safety: under valgrind its training steps (fashion
     * among them) took 8 minutes; make check and make sanitize run it. */
    const char *vg = getenv("AGAVE_UNDER_VALGRIND");
    if (vg && *vg == '1')
        skip();
    static const char *const cases[][8] = {
        {"tiny", "2", "F=12", "R=2", "Fv=12", "Z=6", "", ""},
        {"tiny", "3", "C=3", "H=12", "W=16", "M=3", "T=1", "dropout=0.3"},
        {"tiny", "2", "mode=vae", "Fv=24", "Rv=2", "T=2", "s=2", ""},
        {"tiny", "2", "mode=pixelcnn", "F=12", "R=3", "C=3", "", ""},
        {"tiny", "3", "mode=naive", "F=20", "Fv=4", "s=4", "ema=0", ""},
        {"tiny", "1", "H=20", "W=12", "R=0", "Rv=0", "", ""},
        {"fashion", "2", "", "", "", "", "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        agave_context *ctx;
        assert_int_equal(agave_context_create(&ctx, 5), AGAVE_OK);
        agave_config cfg;
        assert_int_equal(agave_config_init(&cfg, cases[i][0]), AGAVE_OK);
        for (int k = 2; k < 8; k++) {
            if (!*cases[i][k])
                continue;
            char kv[64];
            snprintf(kv, sizeof kv, "%s", cases[i][k]);
            char *eq = strchr(kv, '=');
            *eq = '\0';
            assert_int_equal(agave_config_set(&cfg, kv, eq + 1), AGAVE_OK);
        }
        int batch = atoi(cases[i][1]);
        size_t estimate = 0;
        assert_int_equal(agave_config_estimate_bytes(&cfg, batch, &estimate), AGAVE_OK);
        double measured = measured_step_bytes(ctx, &cfg, batch);
        double ratio = (double)estimate / measured;
        if (ratio < 1.0 || ratio > 1.6)
            fail_msg("case %zu (%s %s %s %s ...): estimate %zu bytes, measured %.0f (ratio %.3f)",
                     i, cases[i][0], cases[i][2], cases[i][3], cases[i][4], estimate, measured,
                     ratio);
        print_message("estimate/measured %.3f: %s batch %s %s %s %s %s %s %s\n", ratio,
                      cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4],
                      cases[i][5], cases[i][6], cases[i][7]);
        agave_context_free(ctx);
    }
}

/* Under a limit: a model too large even at batch 1 is refused by create, a
 * batch too large by init and train_step, each with AGAVE_ERR_LIMIT before
 * the step allocates anything, and the message names the batch that fits. */
/* On 2 threads a step of 4 images runs on 2 replicas: the check adds the
 * second one's gradient block and normalised weights (4 + 1.2 x 4.8 bytes
 * per parameter). A limit just above the one-thread estimate refuses the
 * 2-thread step, naming the largest batch that fits (1: one replica), and
 * passes on 1 thread. */
static void test_memory_limit_counts_replicas(void **state)
{
    (void)state;
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    size_t at4 = 0, at1 = 0, params = 0;
    assert_int_equal(agave_config_estimate_bytes(&cfg, 4, &at4), AGAVE_OK);
    assert_int_equal(agave_config_estimate_bytes(&cfg, 1, &at1), AGAVE_OK);
    assert_int_equal(agave_config_param_numel(&cfg, &params), AGAVE_OK);
    agave_context *ctx;
    agave_model *m;
    assert_int_equal(agave_context_create(&ctx, 9), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
    assert_int_equal(agave_context_set_memory_limit(ctx, at4 + 4 * params), AGAVE_OK);
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    uint8_t x[4 * 64];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)(i * 29);
    assert_int_equal(agave_model_train_step(m, x, 4, NULL), AGAVE_ERR_LIMIT);
    assert_non_null(strstr(agave_context_last_error(ctx), "batches up to"));
    assert_int_equal(agave_model_step_count(m), 0);
    /* with room for the replica (10 bytes per parameter) it trains */
    assert_int_equal(agave_context_set_memory_limit(ctx, at4 + 10 * params), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, 4, NULL), AGAVE_OK);
    assert_int_equal(agave_model_step_count(m), 1);
    /* and on one thread the first limit was enough */
    assert_int_equal(agave_context_set_memory_limit(ctx, at4 + 4 * params), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, 1), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, 4, NULL), AGAVE_OK);
    assert_int_equal(agave_model_step_count(m), 2);
    agave_model_free(m);
    agave_context_free(ctx);
}

static void test_memory_limit_refuses(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 9), AGAVE_OK);
    assert_int_equal(agave_context_memory_limit(ctx), 0);
    agave_config big;
    assert_int_equal(agave_config_init(&big, "cifar-paper"), AGAVE_OK);
    assert_int_equal(agave_context_set_memory_limit(ctx, (size_t)256 << 20), AGAVE_OK);
    assert_int_equal(agave_context_memory_limit(ctx), (size_t)256 << 20);
    agave_model *m = NULL;
    assert_int_equal(agave_model_create(ctx, &big, &m), AGAVE_ERR_LIMIT);
    assert_null(m);
    assert_non_null(strstr(agave_context_last_error(ctx), "even at batch 1"));

    /* tiny: a limit between the estimates at batch 4 and 5. */
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    size_t at4 = 0, at5 = 0;
    assert_int_equal(agave_config_estimate_bytes(&cfg, 4, &at4), AGAVE_OK);
    assert_int_equal(agave_config_estimate_bytes(&cfg, 5, &at5), AGAVE_OK);
    assert_true(at4 < at5);
    assert_int_equal(agave_context_set_memory_limit(ctx, (at4 + at5) / 2), AGAVE_OK);
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    uint8_t x[8 * 64];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)(i * 37);
    agave_step_stats st = {.struct_size = sizeof st};
    assert_int_equal(agave_model_train_step(m, x, 8, &st), AGAVE_ERR_LIMIT);
    assert_non_null(strstr(agave_context_last_error(ctx), "batches up to 4 fit"));
    assert_int_equal(agave_context_arena_bytes(ctx), 0);   /* nothing was allocated */
    assert_int_equal(agave_model_init(m, x, 5), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_model_step_count(m), 0);
    assert_int_equal(agave_model_train_step(m, x, 4, &st), AGAVE_OK);
    assert_int_equal(agave_model_step_count(m), 1);
    /* No limit again: any batch. */
    assert_int_equal(agave_context_set_memory_limit(ctx, 0), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, 8, &st), AGAVE_OK);
    agave_model_free(m);
    assert_int_equal(agave_context_set_memory_limit(NULL, 1), AGAVE_ERR_NULL);
    size_t n = 1;
    assert_int_equal(agave_config_estimate_bytes(&cfg, 0, &n), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_estimate_bytes(NULL, 1, &n), AGAVE_ERR_NULL);
    cfg.H = 6;
    assert_int_equal(agave_config_param_numel(&cfg, &n), AGAVE_ERR_CONFIG);
    agave_context_free(ctx);
}

/* ---- allocation failure ---------------------------------------------------------- */

static long vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* In the child: each failed expectation exits with its own code. */
#define CHILD_EXPECT(code, cond)                                                           \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "child check %d failed: %s (%s)\n", code, #cond,               \
                    agave_context_last_error(ctx));                                        \
            _exit(code);                                                                   \
        }                                                                                  \
    } while (0)

/* Runs under the lowered limit; every big request must fail cleanly. */
static void nomem_child(const uint8_t *gz, size_t gz_len)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 1) != AGAVE_OK)
        _exit(10);
    agave_config small = micro_config(NULL, 0);
    agave_model *m;
    CHILD_EXPECT(11, agave_model_create(ctx, &small, &m) == AGAVE_OK);
    uint8_t x[2 * 16];
    memset(x, 100, sizeof x);
    agave_step_stats ss;
    memset(&ss, 0, sizeof ss);
    ss.struct_size = sizeof ss;
    /* This first step also makes OpenBLAS allocate its work buffer while
     * memory is there: OpenBLAS 0.3.21 retries a failed allocation for ever
     * (tests/limits_ulimit.sh, docs/reliability.md). */
    CHILD_EXPECT(12, agave_model_train_step(m, x, 2, &ss) == AGAVE_OK);

    struct rlimit rl;
    getrlimit(RLIMIT_AS, &rl);
    struct rlimit low = rl;
    low.rlim_cur = (rlim_t)(vm_size_kib() + 192 * 1024) * 1024;
    CHILD_EXPECT(13, setrlimit(RLIMIT_AS, &low) == 0);

    agave_tensor *t = NULL;
    int dims[2] = {1 << 17, 1 << 10};   /* 512 MiB */
    CHILD_EXPECT(20, agave_tensor_create(ctx, 2, dims, &t) == AGAVE_ERR_NOMEM && !t);

    agave_config big;
    agave_config_init(&big, "fashion");
    agave_config_set(&big, "F", "1024");
    agave_config_set(&big, "R", "1");   /* about 2 GB of parameters, 150 MB per block */
    agave_model *huge = NULL;
    CHILD_EXPECT(21, agave_model_create(ctx, &big, &huge) == AGAVE_ERR_NOMEM && !huge);

    /* A batch whose activations do not fit: the step fails, the model is
     * unchanged, and the next normal step works. */
    int n = 1 << 20;   /* the largest batch allowed; 64 MiB as floats */
    uint8_t *many = calloc((size_t)n, 16);
    CHILD_EXPECT(22, many != NULL);
    int64_t before = agave_model_step_count(m);
    CHILD_EXPECT(23, agave_model_train_step(m, many, n, &ss) == AGAVE_ERR_NOMEM);
    CHILD_EXPECT(24, agave_model_step_count(m) == before);
    free(many);
    agave_tape_reset(ctx);
    CHILD_EXPECT(25, agave_model_train_step(m, x, 2, &ss) == AGAVE_OK);
    CHILD_EXPECT(26, agave_model_step_count(m) == before + 1);

    agave_dataset *ds = NULL;
    CHILD_EXPECT(27, dataset_open_memory(ctx, "big-idx3-ubyte.gz", gz, gz_len, &ds) ==
                         AGAVE_ERR_NOMEM && !ds);

    /* Back to the old limit, so that LeakSanitizer (make sanitize) can check
     * at exit that the failed calls freed what they had allocated. */
    setrlimit(RLIMIT_AS, &rl);
    agave_model_free(m);
    agave_context_free(ctx);
    exit(0);
}

static void test_allocation_failure_is_nomem(void **state)
{
    (void)state;
    const char *vg = getenv("AGAVE_UNDER_VALGRIND");
    if (vg && *vg == '1')
        skip();
    /* An IDX file of one 16384 x 32768 image (512 MiB) of zeros, as gzip
     * members (the reader takes concatenated members): the header, then 128
     * copies of one compressed 4 MiB of zeros, about 0.5 MiB in all, so
     * that only inflating it needs the memory. */
    uint8_t head[16];
    put_be32(head, 0x00000803u);
    put_be32(head + 4, 1);
    put_be32(head + 8, 16384);
    put_be32(head + 12, 32768);
    size_t head_len, zeros_len;
    uint8_t *gz_head = gzip_bytes(head, sizeof head, &head_len);
    uint8_t *zeros = calloc((size_t)4 << 20, 1);
    assert_non_null(zeros);
    uint8_t *gz_zeros = gzip_bytes(zeros, (size_t)4 << 20, &zeros_len);
    free(zeros);
    size_t gz_len = head_len + 128 * zeros_len;
    uint8_t *gz = malloc(gz_len);
    assert_non_null(gz);
    memcpy(gz, gz_head, head_len);
    for (int i = 0; i < 128; i++)
        memcpy(gz + head_len + (size_t)i * zeros_len, gz_zeros, zeros_len);
    free(gz_head);
    free(gz_zeros);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        nomem_child(gz, gz_len);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(gz);
    if (WIFSIGNALED(status))
        fail_msg("the child died of signal %d under the memory limit", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child check %d failed (its stderr says which)", WEXITSTATUS(status));
}

/* ---- a large file is judged by its header ---------------------------------------- */

/* A sparse 1 GiB file (no disk space used) whose first 24 bytes are the
 * header: magic, version, flags, payload length. */
static void sparse_file(const char *path, const char *magic, uint64_t payload)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    uint8_t head[24] = {0};
    uint32_t version = 1;
    memcpy(head, magic, 8);
    memcpy(head + 8, &version, 4);
    memcpy(head + 16, &payload, 8);
    assert_int_equal(write(fd, head, sizeof head), (ssize_t)sizeof head);
    assert_int_equal(ftruncate(fd, (off_t)1 << 30), 0);
    close(fd);
}

/* In a child with 64 MiB of address space to spare: the loader reads the
 * header before the whole file, so a gigabyte that is not a checkpoint, or
 * whose header promises another length, is refused for what it is instead
 * of costing a gigabyte of memory first (which here would be
 * AGAVE_ERR_NOMEM); one whose header is right is refused with
 * AGAVE_ERR_NOMEM and a message saying how large it is. Likewise a CIFAR-10
 * file whose size is no whole number of records. */
static void header_child(const char *dir)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 1) != AGAVE_OK)
        _exit(10);
    char path[3][96];
    for (int i = 0; i < 3; i++)
        snprintf(path[i], sizeof path[i], "%s/big%d.ckpt", dir, i);
    uint64_t whole = ((uint64_t)1 << 30) - 28;
    sparse_file(path[0], "GIGABYTE", whole);
    sparse_file(path[1], "AGAVECKP", whole - 1);
    sparse_file(path[2], "AGAVECKP", whole);
    struct rlimit rl;
    getrlimit(RLIMIT_AS, &rl);
    struct rlimit low = rl;
    low.rlim_cur = (rlim_t)(vm_size_kib() + 64 * 1024) * 1024;
    CHILD_EXPECT(11, setrlimit(RLIMIT_AS, &low) == 0);
    agave_model *m = NULL;
    CHILD_EXPECT(12, agave_model_load(ctx, path[0], NULL, &m) == AGAVE_ERR_FORMAT && !m);
    CHILD_EXPECT(13, strstr(agave_context_last_error(ctx), "not a libagave checkpoint"));
    CHILD_EXPECT(14, agave_model_load(ctx, path[1], NULL, &m) == AGAVE_ERR_FORMAT && !m);
    CHILD_EXPECT(15, strstr(agave_context_last_error(ctx), "header promises"));
    CHILD_EXPECT(16, agave_model_load(ctx, path[2], NULL, &m) == AGAVE_ERR_NOMEM && !m);
    CHILD_EXPECT(17, strstr(agave_context_last_error(ctx), "1073741824 bytes"));
    /* The same for a data set: a CIFAR-10 file of 349,406 whole records (zeros:
     * valid labels) and one byte over is refused by its size, unread; read,
     * it would need 1 GiB of pixels first. */
    char cifar[96];
    snprintf(cifar, sizeof cifar, "%s/data_batch_1.bin", dir);
    int fd = open(cifar, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHILD_EXPECT(18, fd >= 0 && ftruncate(fd, (off_t)349406 * 3073 + 1) == 0);
    close(fd);
    agave_dataset *ds = NULL;
    CHILD_EXPECT(19, agave_dataset_open(ctx, cifar, AGAVE_SPLIT_TRAIN, &ds) == AGAVE_ERR_FORMAT &&
                         !ds);
    CHILD_EXPECT(20, strstr(agave_context_last_error(ctx), "349406 records and 1 bytes over"));
    setrlimit(RLIMIT_AS, &rl);
    unlink(cifar);
    for (int i = 0; i < 3; i++)
        unlink(path[i]);
    agave_context_free(ctx);
    exit(0);
}

static void test_files_judged_before_reading(void **state)
{
    (void)state;
    const char *vg = getenv("AGAVE_UNDER_VALGRIND");
    if (vg && *vg == '1')
        skip();
    char dir[64];
    assert_int_equal(support_tmpdir_make(dir, sizeof dir, "agave-test-header"), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        header_child(dir);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    support_tmpdir_remove(dir);
    if (WIFSIGNALED(status))
        fail_msg("the child died of signal %d", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child check %d failed (its stderr says which)", WEXITSTATUS(status));
}

/* ---- a PNG grid under an address-space limit ----------------------------------- */

/* In a new process (this program run again with --grid-child: a forked
 * child would inherit the heap's free blocks, which serve allocations
 * whatever the limit): writes a 512x512 RGB grid of incompressible pixels
 * (about 0.8 MB for each of the canvas, stb's filtered copy, the zlib
 * stream and the PNG) under limits from what is mapped now upwards, in
 * 64 KiB steps until three calls in a row succeed, so that each allocation
 * of the encoder fails in turn. Every call must return AGAVE_OK or
 * AGAVE_ERR_NOMEM with a message naming the file, and a failed call must
 * leave the previous picture as it was. */
static void grid_child(const char *path)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 1) != AGAVE_OK)
        _exit(10);
    /* A fixed threshold: glibc would otherwise raise it to the first freed
     * block's size and serve the next calls from memory it already has. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    enum { SIDE = 512 };
    uint8_t *img = malloc((size_t)3 * SIDE * SIDE);
    CHILD_EXPECT(11, img != NULL);
    uint32_t r = 12345;
    for (size_t i = 0; i < (size_t)3 * SIDE * SIDE; i++) {
        r = r * 1664525u + 1013904223u;
        img[i] = (uint8_t)(r >> 24);
    }
    agave_grid_options opt;
    agave_grid_options_init(&opt);
    opt.gap = 0;
    agave_status first = agave_image_grid_write(ctx, path, img, 1, 3, SIDE, SIDE, 1, &opt);
    CHILD_EXPECT(12, first == AGAVE_OK);
    struct stat before;
    CHILD_EXPECT(13, stat(path, &before) == 0);
    struct rlimit rl;
    getrlimit(RLIMIT_AS, &rl);
    int ok = 0, nomem = 0, ok_in_a_row = 0;
    for (int k = 0; k <= 96 && ok_in_a_row < 3; k++) {
        struct rlimit low = rl;
        low.rlim_cur = (rlim_t)vm_size_kib() * 1024 + (rlim_t)k * 64 * 1024;
        CHILD_EXPECT(14, setrlimit(RLIMIT_AS, &low) == 0);
        img[0] = (uint8_t)k;   /* a new picture each time */
        agave_status st = agave_image_grid_write(ctx, path, img, 1, 3, SIDE, SIDE, 1, &opt);
        setrlimit(RLIMIT_AS, &rl);
        CHILD_EXPECT(15, st == AGAVE_OK || st == AGAVE_ERR_NOMEM);
        struct stat now;
        CHILD_EXPECT(16, stat(path, &now) == 0);
        if (st == AGAVE_OK) {
            ok++, ok_in_a_row++;
            before = now;
            continue;
        }
        nomem++, ok_in_a_row = 0;
        CHILD_EXPECT(17, strstr(agave_context_last_error(ctx), path) != NULL);
        CHILD_EXPECT(18, now.st_ino == before.st_ino && now.st_size == before.st_size);
    }
    fprintf(stderr, "grid under a memory limit: %d written, %d out of memory\n", ok, nomem);
    CHILD_EXPECT(19, ok > 0 && nomem > 0);   /* the sweep crossed the encoder's needs */
    free(img);
    agave_context_free(ctx);
    exit(0);
}

static void test_grid_out_of_memory_is_an_error(void **state)
{
    (void)state;
    const char *vg = getenv("AGAVE_UNDER_VALGRIND");
    if (vg && *vg == '1')
        skip();
    char dir[64];
    assert_int_equal(support_tmpdir_make(dir, sizeof dir, "agave-test-grid"), 0);
    char path[96];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_limits", "--grid-child", path, (char *)NULL);
        _exit(9);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    support_tmpdir_remove(dir);
    if (WIFSIGNALED(status))
        fail_msg("the child died of signal %d writing a PNG under a memory limit",
                 WTERMSIG(status));
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child check %d failed (its stderr says which)", WEXITSTATUS(status));
}

/* The VmFlags line of the mapping that holds p in /proc/self/smaps, or ""
 * (with *found 0) when there is none. */
static void mapping_flags(const void *p, char *flags, size_t size, int *found)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    *found = 0, flags[0] = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char dash;
        if (sscanf(line, "%lx%c%lx ", &lo, &dash, &hi) == 3 && dash == '-')
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, size, "%s", line + 8);
            *found = 1;
            break;
        }
    }
    fclose(f);
}

/* Arena chunks of 4 MiB and more ask for transparent huge pages: the codec
 * grows its batches from 1 to 64 images, mapping a larger chunk at each step,
 * and faulting those in 4 KiB at a time cost its first 640 images a fifth of
 * their time (docs/codec.md). */
static void test_arena_chunks_ask_for_huge_pages(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 1), AGAVE_OK);
    void *big = arena_alloc(&ctx->arena, (size_t)8 << 20);
    assert_non_null(big);
    char flags[512];
    int found;
    mapping_flags(big, flags, sizeof flags, &found);
    agave_context_free(ctx);
    if (!found)   /* no /proc (or no VmFlags): nothing to look at */
        skip();
    assert_non_null(strstr(flags, " hg"));
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--grid-child") == 0)
        grid_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absurd_configurations),
        cmocka_unit_test(test_absurd_counts),
        cmocka_unit_test(test_absurd_tensors),
        cmocka_unit_test(test_absurd_dataset_headers),
        cmocka_unit_test(test_checkpoint_config_larger_than_file),
        cmocka_unit_test(test_checkpoint_impossible_counters),
        cmocka_unit_test(test_param_bound_is_count),
        cmocka_unit_test(test_estimate_bounds_measured_peak),
        cmocka_unit_test(test_memory_limit_refuses),
        cmocka_unit_test(test_memory_limit_counts_replicas),
        cmocka_unit_test(test_allocation_failure_is_nomem),
        cmocka_unit_test(test_grid_out_of_memory_is_an_error),
        cmocka_unit_test(test_files_judged_before_reading),
        cmocka_unit_test(test_arena_chunks_ask_for_huge_pages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
