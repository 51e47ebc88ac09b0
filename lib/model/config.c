/* Model configurations: MODEL.md's named table, text overrides, validation. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/struct_size.h"
#include "config.h"

typedef struct named_config {
    const char *name;
    int C, H, W, F, R, M;
    float dropout;
    int Fv, Rv, Z, T, b, s;
    float lambda;
} named_config;

/* MODEL.md "Configurations". tiny defaults to 1x8x8 and T = 0 (tests set C = 3, T = 1). */
static const named_config named[] = {
    {"tiny", 1, 8, 8, 8, 1, 2, 0.0f, 8, 1, 4, 0, 256, 1, 2.0f},
    {"fashion", 1, 28, 28, 32, 1, 5, 0.0f, 32, 1, 8, 0, 256, 1, 2.0f},
    {"cifar-small", 3, 32, 32, 64, 2, 10, 0.5f, 64, 2, 16, 0, 256, 1, 4.0f},
    {"cifar-paper", 3, 32, 32, 160, 5, 10, 0.5f, 160, 4, 32, 2, 256, 1, 12.0f},
};

/* The fields with a default of their own; the named configuration sets the rest. */
static void config_defaults(agave_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->mode = AGAVE_MODE_AGAVE;
    cfg->optimizer = AGAVE_OPTIM_ADAMAX;
    cfg->lr = 0.002f;
    cfg->ema = 0.9995f;
    cfg->grad_clip = 0.0f;
    cfg->max_bad_steps = 10;
}

agave_status agave_config_init_sized(agave_config *cfg, size_t struct_size, const char *name)
{
    if (!cfg || !name)
        return AGAVE_ERR_NULL;
    if (struct_size < CONFIG_MIN_SIZE)
        return AGAVE_ERR_INVALID_ARG;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        const named_config *n = &named[i];
        if (strcmp(name, n->name) != 0)
            continue;
        agave_config c;
        config_defaults(&c);
        c.C = n->C, c.H = n->H, c.W = n->W;
        c.F = n->F, c.R = n->R, c.M = n->M, c.dropout = n->dropout;
        c.Fv = n->Fv, c.Rv = n->Rv, c.Z = n->Z, c.T = n->T;
        c.b = n->b, c.s = n->s, c.lambda = n->lambda;
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

agave_status config_import(const agave_config *cfg, agave_config *out, char *msg, size_t len)
{
    config_defaults(out);
    return struct_read(out, sizeof *out, cfg, CONFIG_MIN_SIZE, "agave_config", msg, len)
               ? AGAVE_OK
               : AGAVE_ERR_CONFIG;
}

static int parse_int(const char *v, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < -2147483647L || x > 2147483647L)
        return 0;
    *out = (int)x;
    return 1;
}

static int parse_float(const char *v, float *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return 0;
    *out = (float)x;
    return 1;
}

static int parse_mode(const char *v, agave_mode *m)
{
    static const char *names[] = {"agave", "vae", "pixelcnn", "naive"};
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) {
            *m = (agave_mode)i;
            return 1;
        }
    return 0;
}

static int parse_optimizer(const char *v, agave_optimizer_kind *k)
{
    if (strcmp(v, "adamax") == 0)
        *k = AGAVE_OPTIM_ADAMAX;
    else if (strcmp(v, "adam") == 0)
        *k = AGAVE_OPTIM_ADAM;
    else
        return 0;
    return 1;
}

/* 1 when the caller's struct has the field that starts at `field`. */
static int covers(const agave_config *cfg, const void *field, size_t size)
{
    size_t end = (size_t)((const char *)field - (const char *)cfg) + size;
    return end <= struct_size_get(cfg) && end <= sizeof *cfg;
}

agave_status agave_config_set(agave_config *cfg, const char *key, const char *value)
{
    if (!cfg || !key || !value)
        return AGAVE_ERR_NULL;
    struct { const char *key; int *field; } ints[] = {
        {"C", &cfg->C}, {"H", &cfg->H}, {"W", &cfg->W}, {"F", &cfg->F}, {"R", &cfg->R},
        {"M", &cfg->M}, {"Fv", &cfg->Fv}, {"Rv", &cfg->Rv}, {"Z", &cfg->Z}, {"T", &cfg->T},
        {"b", &cfg->b}, {"s", &cfg->s}, {"max_bad_steps", &cfg->max_bad_steps},
    };
    struct { const char *key; float *field; } floats[] = {
        {"dropout", &cfg->dropout}, {"lambda", &cfg->lambda}, {"lr", &cfg->lr},
        {"ema", &cfg->ema}, {"grad_clip", &cfg->grad_clip},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(key, ints[i].key) == 0 && covers(cfg, ints[i].field, sizeof(int)))
            return parse_int(value, ints[i].field) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (strcmp(key, floats[i].key) == 0 && covers(cfg, floats[i].field, sizeof(float)))
            return parse_float(value, floats[i].field) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    if (strcmp(key, "mode") == 0 && covers(cfg, &cfg->mode, sizeof cfg->mode))
        return parse_mode(value, &cfg->mode) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    if (strcmp(key, "optimizer") == 0 && covers(cfg, &cfg->optimizer, sizeof cfg->optimizer))
        return parse_optimizer(value, &cfg->optimizer) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    return AGAVE_ERR_INVALID_ARG;
}

static int is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }

#define REFUSE(...)                                                                        \
    do {                                                                                   \
        if (msg && len)                                                                    \
            snprintf(msg, len, __VA_ARGS__);                                               \
        return AGAVE_ERR_CONFIG;                                                           \
    } while (0)

agave_status agave_config_validate(const agave_config *cfg, char *msg, size_t len)
{
    if (!cfg)
        return AGAVE_ERR_NULL;
    agave_config full;
    return config_read(cfg, &full, msg, len);
}

/* Upper bounds keep every tensor size far from overflow and refuse absurd
 * sizes before anything is allocated (docs/reliability.md). */
agave_status config_read(const agave_config *cfg, agave_config *out, char *msg, size_t len)
{
    agave_status st = config_import(cfg, out, msg, len);
    return st == AGAVE_OK ? config_check(out, msg, len) : st;
}

agave_status config_check(const agave_config *cfg, char *msg, size_t len)
{
    if (cfg->C != 1 && cfg->C != 3)
        REFUSE("C = %d: images must have 1 or 3 channels", cfg->C);
    if (cfg->H < 4 || cfg->W < 4 || cfg->H > 1024 || cfg->W > 1024 || cfg->H % 4 || cfg->W % 4)
        REFUSE("H x W = %d x %d: both must be multiples of 4 in 4..1024", cfg->H, cfg->W);
    if (cfg->F < 1 || cfg->F > 1024 || cfg->Fv < 1 || cfg->Fv > 1024)
        REFUSE("F = %d, Fv = %d: filters must be in 1..1024", cfg->F, cfg->Fv);
    if (cfg->R < 0 || cfg->R > 32 || cfg->Rv < 0 || cfg->Rv > 32)
        REFUSE("R = %d, Rv = %d: residual blocks per stage must be in 0..32", cfg->R, cfg->Rv);
    if (cfg->M < 1 || cfg->M > 64)
        REFUSE("M = %d: mixture components must be in 1..64", cfg->M);
    if (cfg->Z < 1 || cfg->Z > 1024)
        REFUSE("Z = %d: latent channels must be in 1..1024", cfg->Z);
    if (cfg->T < 0 || cfg->T > 16)
        REFUSE("T = %d: IAF steps must be in 0..16", cfg->T);
    if (!is_pow2(cfg->b) || cfg->b < 2 || cfg->b > 256)
        REFUSE("b = %d: colour levels must be a power of two in 2..256", cfg->b);
    if (cfg->s != 1 && cfg->s != 2 && cfg->s != 4)
        REFUSE("s = %d: the auxiliary pooling factor must be 1, 2 or 4", cfg->s);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        REFUSE("dropout = %g must be in [0, 1)", (double)cfg->dropout);
    if (!(cfg->lambda >= 0) || !isfinite(cfg->lambda))
        REFUSE("lambda = %g must be finite and >= 0", (double)cfg->lambda);
    if ((unsigned)cfg->mode > AGAVE_MODE_NAIVE)
        REFUSE("mode %d is unknown (agave, vae, pixelcnn, naive)", (int)cfg->mode);
    if ((unsigned)cfg->optimizer > AGAVE_OPTIM_ADAM)
        REFUSE("optimizer %d is unknown (adamax, adam)", (int)cfg->optimizer);
    if (!(cfg->lr > 0) || !isfinite(cfg->lr))
        REFUSE("lr = %g must be > 0", (double)cfg->lr);
    if (!(cfg->ema >= 0 && cfg->ema < 1))
        REFUSE("ema = %g must be in [0, 1) (0 turns averaging off)", (double)cfg->ema);
    if (!(cfg->grad_clip >= 0) || !isfinite(cfg->grad_clip))
        REFUSE("grad_clip = %g must be >= 0 (0 turns clipping off)", (double)cfg->grad_clip);
    if (cfg->max_bad_steps < 1)
        REFUSE("max_bad_steps = %d must be >= 1", cfg->max_bad_steps);
    if (msg && len)
        msg[0] = '\0';
    return AGAVE_OK;
}
