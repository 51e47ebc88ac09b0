/* libFuzzer harness of the configuration parser: agave_config_init,
 * agave_config_set (every key, any text), agave_config_validate, and what a
 * valid configuration leads to (its parameter count, its memory estimate,
 * and for a small one the model itself).
 *
 * Input: text lines. The first is a configuration name; if it is not one,
 * "tiny" is used. Every further line is KEY=VALUE (no '=': the whole line is
 * the key, the value empty), given to agave_config_set. The last byte of the
 * input, modulo 64, is the size of validate's message buffer (0: NULL).
 *
 * Promises checked (a broken one traps, which libFuzzer reports):
 *  - init succeeds exactly for the named configurations
 *    (agave_config_preset_name), else leaves the struct alone and returns
 *    AGAVE_ERR_INVALID_ARG;
 *  - set returns AGAVE_ERR_UNKNOWN_KEY exactly for the names that are not
 *    keys (agave_config_key_index), else AGAVE_OK or AGAVE_ERR_INVALID_ARG;
 *    a refused value leaves the configuration unchanged, and an accepted one
 *    changes at most the one field it names (every field is 4 bytes after
 *    struct_size); get then gives text that set reads back to the same
 *    configuration;
 *  - validate returns AGAVE_OK with an empty message or AGAVE_ERR_CONFIG
 *    with a non-empty one, always NUL-terminated within the buffer;
 *  - for a valid configuration: every number key lies within the bounds
 *    agave_config_key_info gives; the parameter count and the memory estimate
 *    succeed, the estimate at least holds the parameters, the gradients and
 *    two optimiser moments, and the estimate grows with the batch; a model
 *    of at most 20,000 parameters and 32 x 32 pixels is built (or refused
 *    for memory) and has exactly the counted parameters. */
#include "fuzz_common.h"

/* The 4-byte fields after struct_size that differ between a and b. */
static int fields_changed(const agave_config *a, const agave_config *b)
{
    const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
    int n = 0;
    for (size_t off = sizeof a->struct_size; off + 4 <= sizeof *a; off += 4)
        n += memcmp(pa + off, pb + off, 4) != 0;
    return n;
}

/* A NUL-terminated copy of bytes [p, p + n). */
static char *text(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static void check_init(const char *name, agave_config *cfg)
{
    int known = 0;
    for (int i = 0; agave_config_preset_name(i); i++)
        known |= strcmp(name, agave_config_preset_name(i)) == 0;
    agave_config before;
    memset(&before, 0x5a, sizeof before);
    *cfg = before;
    agave_status st = agave_config_init(cfg, name);
    if (known) {
        FUZZ_CHECK(st == AGAVE_OK && cfg->struct_size == sizeof *cfg);
        FUZZ_CHECK(agave_config_validate(cfg, NULL, 0) == AGAVE_OK);
    } else {
        FUZZ_CHECK(st == AGAVE_ERR_INVALID_ARG);
        FUZZ_CHECK(memcmp(cfg, &before, sizeof before) == 0);
        FUZZ_CHECK(agave_config_init(cfg, "tiny") == AGAVE_OK);
    }
}

static void check_set(agave_config *cfg, char *line)
{
    char *eq = strchr(line, '=');
    const char *key = line, *value = "";
    if (eq) {
        *eq = '\0';
        value = eq + 1;
    }
    agave_config before = *cfg;
    agave_status st = agave_config_set(cfg, key, value);
    int is_key = agave_config_key_index(key) >= 0;
    FUZZ_CHECK(is_key ? st == AGAVE_OK || st == AGAVE_ERR_INVALID_ARG
                      : st == AGAVE_ERR_UNKNOWN_KEY);
    if (st != AGAVE_OK) {
        FUZZ_CHECK(memcmp(cfg, &before, sizeof before) == 0);
        return;
    }
    FUZZ_CHECK(fields_changed(cfg, &before) <= 1 && cfg->struct_size == sizeof *cfg);
    char text[AGAVE_CONFIG_VALUE_MAX];
    FUZZ_CHECK(agave_config_get(cfg, key, text, sizeof text) == AGAVE_OK);
    agave_config again = before;
    FUZZ_CHECK(agave_config_set(&again, key, text) == AGAVE_OK);
    FUZZ_CHECK(memcmp(&again, cfg, sizeof again) == 0);
}

/* Every INT and FLOAT key of a valid configuration within its bounds. */
static void check_bounds(const agave_config *cfg)
{
    for (int i = 0; i < agave_config_key_count(); i++) {
        agave_config_key k;
        memset(&k, 0, sizeof k);
        k.struct_size = sizeof k;
        FUZZ_CHECK(agave_config_key_info(i, &k) == AGAVE_OK && k.name);
        if (k.type == AGAVE_KEY_CHOICE)
            continue;
        char text[AGAVE_CONFIG_VALUE_MAX];
        FUZZ_CHECK(agave_config_get(cfg, k.name, text, sizeof text) == AGAVE_OK);
        double v = strtod(text, NULL);
        FUZZ_CHECK(v >= k.min && v <= k.max);
    }
}

static void check_valid(const agave_config *cfg)
{
    size_t count = 0, one = 0, many = 0;
    check_bounds(cfg);
    FUZZ_CHECK(agave_config_param_numel(cfg, &count) == AGAVE_OK && count > 0);
    FUZZ_CHECK(agave_config_estimate_bytes(cfg, 1, &one) == AGAVE_OK);
    FUZZ_CHECK(agave_config_estimate_bytes(cfg, 64, &many) == AGAVE_OK);
    FUZZ_CHECK(one / 4 >= count * 4 && many >= one);
    if (count > 20000 || cfg->H * cfg->W > 32 * 32)
        return;
    /* One context for every input: creating one reserves OpenBLAS's buffers. */
    static agave_context *ctx;
    if (!ctx && agave_context_create(&ctx, 1) != AGAVE_OK)
        return;
    agave_model *m = NULL;
    agave_status st = agave_model_create(ctx, cfg, &m);
    FUZZ_CHECK(st == AGAVE_OK || st == AGAVE_ERR_NOMEM);
    if (st == AGAVE_OK)
        FUZZ_CHECK(agave_model_param_numel(m) == count);
    else
        FUZZ_CHECK(m == NULL && agave_context_last_error(ctx)[0] != '\0');
    agave_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t msg_len = size ? data[size - 1] % 64 : 0;
    size_t at = 0, lines = 0;
    agave_config cfg;
    while (at <= size && lines < 64) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) : size;
        char *line = text(data + at, end - at);
        if (lines++ == 0)
            check_init(line, &cfg);
        else
            check_set(&cfg, line);
        free(line);
        at = end + 1;
    }
    char msg[64];
    memset(msg, 'x', sizeof msg);
    agave_status st = agave_config_validate(&cfg, msg_len ? msg : NULL, msg_len);
    FUZZ_CHECK(st == AGAVE_OK || st == AGAVE_ERR_CONFIG);
    if (msg_len) {
        FUZZ_CHECK(memchr(msg, '\0', msg_len) != NULL);
        FUZZ_CHECK(st == AGAVE_OK ? msg[0] == '\0' : msg_len == 1 || msg[0] != '\0');
    }
    if (st == AGAVE_OK)
        check_valid(&cfg);
    return 0;
}
