/* Model configurations: one table of keys (name, field, type, bounds, default,
 * meaning) from which setting, reading back, listing, validation, defaults and
 * comparison all work; the named configurations as key=value text. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "config.h"

/* What an integer key must be besides within [min, max]. */
typedef enum key_rule {
    RULE_NONE = 0,
    RULE_ODD,     /* 1 or 3 */
    RULE_MULT4,   /* a multiple of 4 */
    RULE_POW2     /* a power of two */
} key_rule;

typedef struct config_key {
    const char *name;
    size_t offset;           /* of the field in agave_config: 4 bytes, an int, float or enum */
    agave_key_type type;
    unsigned flags;          /* AGAVE_KEY_ARCHITECTURE, AGAVE_KEY_TRAINING */
    double min, max;         /* INT, FLOAT: the hull of the valid values */
    int open_min, open_max;  /* FLOAT: min or max itself is refused */
    key_rule rule;           /* INT */
    const char *choices;     /* CHOICE: the words, '|'-separated, in enum order */
    const char *fallback;    /* the default as text; NULL: the named configuration sets it */
    const char *range;       /* the valid values in words */
    const char *meaning;
} config_key;

#define ARCH AGAVE_KEY_ARCHITECTURE
#define TRAIN AGAVE_KEY_TRAINING
/* The name and offset of a field, which must be 4 bytes (a negative array
 * size stops the build otherwise). */
#define FIELD(f)                                                                           \
    #f, offsetof(agave_config, f) + 0 * sizeof(char[sizeof(((agave_config *)0)->f) == 4 ? 1 : -1])
#define INT(f, lo, hi, rule, def, flags, range, meaning)                                   \
    {FIELD(f), AGAVE_KEY_INT, flags, lo, hi, 0, 0, rule, "", def, range, meaning}
#define REAL(f, lo, hi, open_lo, open_hi, def, flags, range, meaning)                      \
    {FIELD(f), AGAVE_KEY_FLOAT, flags, lo, hi, open_lo, open_hi, RULE_NONE, "", def, range,  \
     meaning}
#define CHOICE(f, words, def, flags, range, meaning)                                       \
    {FIELD(f), AGAVE_KEY_CHOICE, flags, 0, 0, 0, 0, RULE_NONE, words, def, range, meaning}

/* docs/model.md names the architecture keys; the upper bounds keep every
 * tensor size far from overflow and refuse absurd sizes before anything is
 * allocated (docs/reliability.md). Keys are only ever appended. */
static const config_key keys[] = {
    INT(C, 1, 3, RULE_ODD, NULL, ARCH, "1 or 3", "image channels"),
    INT(H, 4, 1024, RULE_MULT4, NULL, ARCH, "a multiple of 4 in 4..1024", "image height"),
    INT(W, 4, 1024, RULE_MULT4, NULL, ARCH, "a multiple of 4 in 4..1024", "image width"),
    INT(F, 1, 1024, RULE_NONE, NULL, ARCH, "in 1..1024", "PixelCNN++ filters"),
    INT(R, 0, 32, RULE_NONE, NULL, ARCH, "in 0..32", "PixelCNN++ gated residual blocks per stage"),
    INT(M, 1, 64, RULE_NONE, NULL, ARCH, "in 1..64", "mixture components"),
    REAL(dropout, 0, 1, 0, 1, NULL, TRAIN, "in [0, 1)", "PixelCNN++ dropout"),
    INT(Fv, 1, 1024, RULE_NONE, NULL, ARCH, "in 1..1024", "VAE filters"),
    INT(Rv, 0, 32, RULE_NONE, NULL, ARCH, "in 0..32", "VAE residual blocks per stage"),
    INT(Z, 1, 1024, RULE_NONE, NULL, ARCH, "in 1..1024", "latent channels"),
    INT(T, 0, 16, RULE_NONE, NULL, ARCH, "in 0..16", "IAF steps"),
    INT(b, 2, 256, RULE_POW2, NULL, ARCH, "a power of two in 2..256",
        "auxiliary image colour levels"),
    INT(s, 1, 4, RULE_POW2, NULL, ARCH, "1, 2 or 4", "auxiliary image pooling factor"),
    REAL(lambda, 0, HUGE_VAL, 0, 0, NULL, TRAIN, "finite and >= 0", "KL weight"),
    CHOICE(mode, "agave|vae|pixelcnn|naive", "agave", TRAIN,
           "agave, vae, pixelcnn or naive", "terms of the objective trained"),
    CHOICE(optimizer, "adamax|adam", "adamax", 0, "adamax or adam", "optimiser"),
    REAL(lr, 0, HUGE_VAL, 1, 0, "0.004", TRAIN, "> 0", "learning rate"),
    REAL(ema, 0, 1, 0, 1, "0.9995", TRAIN, "in [0, 1) (0 turns averaging off)",
         "parameter averaging decay"),
    REAL(grad_clip, 0, HUGE_VAL, 0, 0, "0", TRAIN, ">= 0 (0 turns clipping off)",
         "largest gradient L2 norm"),
    INT(max_bad_steps, 1, INT_MAX, RULE_NONE, "10", TRAIN, ">= 1",
        "non-finite steps tolerated in a row"),
    INT(lr_warmup, 0, INT_MAX, RULE_NONE, "100", TRAIN, ">= 0 (0: no warm-up)",
        "learning-rate warm-up steps"),
    REAL(lr_decay, 0, 1, 1, 0, "1", TRAIN, "in (0, 1] (1: no decay)",
         "learning-rate decay per step"),
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

/* docs/model.md, "Configurations": every architecture key, and lambda. */
static const struct {
    const char *name, *values;
} presets[] = {
    {"tiny", "C=1 H=8 W=8 F=8 R=1 M=2 dropout=0 Fv=8 Rv=1 Z=4 T=0 b=256 s=1 lambda=2"},
    {"fashion", "C=1 H=28 W=28 F=32 R=1 M=5 dropout=0 Fv=32 Rv=1 Z=8 T=0 b=256 s=1 lambda=2"},
    {"cifar-small",
     "C=3 H=32 W=32 F=64 R=2 M=10 dropout=0.5 Fv=64 Rv=2 Z=16 T=0 b=256 s=1 lambda=4"},
    {"cifar-paper",
     "C=3 H=32 W=32 F=160 R=5 M=10 dropout=0.5 Fv=160 Rv=4 Z=32 T=2 b=256 s=1 lambda=12"},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

/* ---- one key's value -------------------------------------------------------------- */
static void *field_of(agave_config *cfg, const config_key *k)
{
    return (char *)cfg + k->offset;
}

static int get_int(const agave_config *cfg, const config_key *k)
{
    int v;
    memcpy(&v, (const char *)cfg + k->offset, sizeof v);
    return v;
}

static float get_float(const agave_config *cfg, const config_key *k)
{
    float v;
    memcpy(&v, (const char *)cfg + k->offset, sizeof v);
    return v;
}

/* Word i of a '|'-separated list into buf; 0 when there is no word i. */
static int choice_word(const char *choices, int i, char *buf, size_t len)
{
    for (const char *p = choices; i >= 0; i--) {
        const char *end = strchr(p, '|');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (i == 0) {
            if (n + 1 > len)
                return 0;
            memcpy(buf, p, n);
            buf[n] = '\0';
            return n > 0;
        }
        if (!end)
            return 0;
        p = end + 1;
    }
    return 0;
}

static int parse_choice(const config_key *k, const char *text, int *out)
{
    char word[32];
    for (int i = 0; choice_word(k->choices, i, word, sizeof word); i++)
        if (strcmp(word, text) == 0) {
            *out = i;
            return 1;
        }
    return 0;
}

static int parse_int(const char *v, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < INT_MIN || x > INT_MAX)
        return 0;
    *out = (int)x;
    return 1;
}

static int parse_float(const char *v, float *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || !isfinite((float)x))
        return 0;
    *out = (float)x;
    return 1;
}

/* Parses text into the key's field; 0 when the text is not of the key's type. */
static int set_value(agave_config *cfg, const config_key *k, const char *text)
{
    int i;
    float f;
    switch (k->type) {
    case AGAVE_KEY_INT:
        if (!parse_int(text, &i))
            return 0;
        memcpy(field_of(cfg, k), &i, sizeof i);
        return 1;
    case AGAVE_KEY_FLOAT:
        if (!parse_float(text, &f))
            return 0;
        memcpy(field_of(cfg, k), &f, sizeof f);
        return 1;
    case AGAVE_KEY_CHOICE:
        if (!parse_choice(k, text, &i))
            return 0;
        memcpy(field_of(cfg, k), &i, sizeof i);
        return 1;
    }
    return 0;
}

/* The value as text that set_value reads back to the same value: the
 * shortest %g that round-trips a float. 0 when len is too small. */
static int format_value(const agave_config *cfg, const config_key *k, char *buf, size_t len)
{
    int n = -1;
    if (k->type == AGAVE_KEY_INT) {
        n = snprintf(buf, len, "%d", get_int(cfg, k));
    } else if (k->type == AGAVE_KEY_FLOAT) {
        float v = get_float(cfg, k);
        for (int digits = 6; digits <= 9; digits++) {
            n = snprintf(buf, len, "%.*g", digits, (double)v);
            if (n < 0 || (size_t)n >= len || strtof(buf, NULL) == v || !isfinite(v))
                break;
        }
    } else {
        char word[32];
        int i = get_int(cfg, k);
        if (choice_word(k->choices, i, word, sizeof word))
            n = snprintf(buf, len, "%s", word);
        else
            n = snprintf(buf, len, "%d", i);   /* not one of the words: validation says so */
    }
    return n >= 0 && (size_t)n < len;
}

/* 1 when the key's value is valid. */
static int value_ok(const agave_config *cfg, const config_key *k)
{
    if (k->type == AGAVE_KEY_FLOAT) {
        double v = get_float(cfg, k);
        return isfinite(v) && v >= k->min && v <= k->max && !(k->open_min && v == k->min) &&
               !(k->open_max && v == k->max);
    }
    int v = get_int(cfg, k);
    if (k->type == AGAVE_KEY_CHOICE) {
        char word[32];
        return v >= 0 && choice_word(k->choices, v, word, sizeof word);
    }
    if (v < k->min || v > k->max)
        return 0;
    switch (k->rule) {
    case RULE_ODD:
        return v % 2 == 1;
    case RULE_MULT4:
        return v % 4 == 0;
    case RULE_POW2:
        return (v & (v - 1)) == 0;
    case RULE_NONE:
        break;
    }
    return 1;
}

static const config_key *find_key(const char *name)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* 1 when the caller's struct has the key's field. */
static int covers(const agave_config *cfg, const config_key *k)
{
    return k->offset + 4 <= struct_size_get(cfg);
}

/* ---- defaults, named configurations, import ----------------------------------------- */
/* The keys with a default of their own; a named configuration sets the rest. */
static void config_defaults(agave_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    for (int i = 0; i < N_KEYS; i++)
        if (keys[i].fallback)
            set_value(cfg, &keys[i], keys[i].fallback);
}

/* Applies "key=value key=value ..." (keys of the table). */
static void apply_preset(agave_config *cfg, const char *values)
{
    char text[256], *save = NULL;
    snprintf(text, sizeof text, "%s", values);
    for (char *kv = strtok_r(text, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        *eq = '\0';
        set_value(cfg, find_key(kv), eq + 1);
    }
}

agave_status agave_config_init_sized(agave_config *cfg, size_t struct_size, const char *name)
{
    if (!cfg || !name)
        return AGAVE_ERR_NULL;
    if (struct_size < CONFIG_MIN_SIZE)
        return AGAVE_ERR_INVALID_ARG;
    for (int i = 0; i < N_PRESETS; i++) {
        if (strcmp(name, presets[i].name) != 0)
            continue;
        agave_config c;
        config_defaults(&c);
        apply_preset(&c, presets[i].values);
        struct_init(cfg, struct_size, &c, sizeof c);
        return AGAVE_OK;
    }
    return AGAVE_ERR_INVALID_ARG;
}

/* Programs built against 0.1's agave.h call this symbol, with that header's
 * struct: the fields up to max_bad_steps. */
agave_status (agave_config_init)(agave_config *cfg, const char *name)
{
    return agave_config_init_sized(cfg, config_size_0_1(), name);
}

size_t config_size_0_1(void)
{
    return STRUCT_SIZE(agave_config, max_bad_steps);
}

const char *agave_config_preset_name(int index)
{
    return index >= 0 && index < N_PRESETS ? presets[index].name : NULL;
}

agave_status config_import(const agave_config *cfg, agave_config *out, char *msg, size_t len)
{
    config_defaults(out);
    return struct_read(out, sizeof *out, cfg, CONFIG_MIN_SIZE, "agave_config", msg, len)
               ? AGAVE_OK
               : AGAVE_ERR_CONFIG;
}

/* ---- keys ------------------------------------------------------------------------- */
agave_status agave_config_set(agave_config *cfg, const char *key, const char *value)
{
    if (!cfg || !key || !value)
        return AGAVE_ERR_NULL;
    const config_key *k = find_key(key);
    if (!k || !covers(cfg, k))
        return AGAVE_ERR_UNKNOWN_KEY;
    return set_value(cfg, k, value) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
}

agave_status agave_config_get(const agave_config *cfg, const char *key, char *buf, size_t len)
{
    if (!cfg || !key || !buf)
        return AGAVE_ERR_NULL;
    if (len)
        buf[0] = '\0';
    const config_key *k = find_key(key);
    if (!k)
        return AGAVE_ERR_UNKNOWN_KEY;
    agave_config full;
    if (config_import(cfg, &full, NULL, 0) != AGAVE_OK)
        return AGAVE_ERR_CONFIG;
    if (!format_value(&full, k, buf, len)) {
        if (len)
            buf[0] = '\0';
        return AGAVE_ERR_INVALID_ARG;
    }
    return AGAVE_OK;
}

int agave_config_key_count(void) { return N_KEYS; }

int agave_config_key_index(const char *name)
{
    const config_key *k = name ? find_key(name) : NULL;
    return k ? (int)(k - keys) : -1;
}

agave_status agave_config_key_info(int index, agave_config_key *info)
{
    if (!info)
        return AGAVE_ERR_NULL;
    if (index < 0 || index >= N_KEYS)
        return AGAVE_ERR_INVALID_ARG;
    const config_key *k = &keys[index];
    agave_config_key d;
    memset(&d, 0, sizeof d);
    d.struct_size = sizeof d;
    d.name = k->name;
    d.type = k->type;
    d.flags = k->flags;
    d.min = k->type == AGAVE_KEY_CHOICE ? 0 : k->min;
    d.max = k->type == AGAVE_KEY_CHOICE ? 0 : k->max;
    d.range = k->range;
    d.choices = k->choices;
    d.default_value = k->fallback;
    d.description = k->meaning;
    return struct_write(info, &d, sizeof d, 0, NULL, NULL, 0) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
}

static int selected(const config_key *k, unsigned want, unsigned avoid)
{
    return (k->flags & want) == want && !(k->flags & avoid);
}

int config_equal(const agave_config *a, const agave_config *b, unsigned want, unsigned avoid)
{
    for (int i = 0; i < N_KEYS; i++)
        if (selected(&keys[i], want, avoid) &&
            memcmp((const char *)a + keys[i].offset, (const char *)b + keys[i].offset, 4) != 0)
            return 0;
    return 1;
}

int config_same_architecture(const agave_config *a, const agave_config *b)
{
    return config_equal(a, b, AGAVE_KEY_ARCHITECTURE, 0);
}

int agave_config_equal(const agave_config *a, const agave_config *b, unsigned flags)
{
    agave_config fa, fb;
    if (!a || !b || config_import(a, &fa, NULL, 0) != AGAVE_OK ||
        config_import(b, &fb, NULL, 0) != AGAVE_OK)
        return 0;
    return config_equal(&fa, &fb, flags, 0);
}

void config_key_names(unsigned want, char *buf, size_t len)
{
    size_t at = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < N_KEYS; i++)
        if (selected(&keys[i], want, 0) && at < len) {
            int n = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", keys[i].name);
            at += n > 0 ? (size_t)n : 0;
        }
}

void config_copy_keys(agave_config *to, const agave_config *from, unsigned want)
{
    for (int i = 0; i < N_KEYS; i++)
        if (selected(&keys[i], want, 0))
            memcpy((char *)to + keys[i].offset, (const char *)from + keys[i].offset, 4);
}

const char *agave_mode_name(agave_mode mode)
{
    static const char *names[] = {"agave", "vae", "pixelcnn", "naive"};
    return (unsigned)mode < sizeof names / sizeof names[0] ? names[mode] : NULL;
}

/* ---- validation ------------------------------------------------------------------- */
agave_status config_check(const agave_config *cfg, char *msg, size_t len)
{
    for (int i = 0; i < N_KEYS; i++) {
        const config_key *k = &keys[i];
        if (value_ok(cfg, k))
            continue;
        char value[AGAVE_CONFIG_VALUE_MAX];
        format_value(cfg, k, value, sizeof value);
        if (msg && len)
            snprintf(msg, len, "%s = %s: %s must be %s", k->name, value, k->meaning, k->range);
        return AGAVE_ERR_CONFIG;
    }
    if (msg && len)
        msg[0] = '\0';
    return AGAVE_OK;
}

agave_status config_read(const agave_config *cfg, agave_config *out, char *msg, size_t len)
{
    agave_status st = config_import(cfg, out, msg, len);
    return st == AGAVE_OK ? config_check(out, msg, len) : st;
}

agave_status agave_config_validate(const agave_config *cfg, char *msg, size_t len)
{
    if (!cfg)
        return AGAVE_ERR_NULL;
    agave_config full;
    return config_read(cfg, &full, msg, len);
}
