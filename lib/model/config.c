/* Model configurations: MODEL.md's named table, text overrides, validation. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"

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

agave_status agave_config_init(agave_config *cfg, const char *name)
{
    if (!cfg || !name)
        return AGAVE_ERR_NULL;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        const named_config *n = &named[i];
        if (strcmp(name, n->name) != 0)
            continue;
        memset(cfg, 0, sizeof *cfg);
        cfg->struct_size = sizeof *cfg;
        cfg->C = n->C, cfg->H = n->H, cfg->W = n->W;
        cfg->F = n->F, cfg->R = n->R, cfg->M = n->M, cfg->dropout = n->dropout;
        cfg->Fv = n->Fv, cfg->Rv = n->Rv, cfg->Z = n->Z, cfg->T = n->T;
        cfg->b = n->b, cfg->s = n->s, cfg->lambda = n->lambda;
        cfg->mode = AGAVE_MODE_AGAVE;
        cfg->optimizer = AGAVE_OPTIM_ADAMAX;
        cfg->lr = 0.002f;
        cfg->ema = 0.9995f;
        cfg->grad_clip = 0.0f;
        cfg->max_bad_steps = 10;
        cfg->lr_warmup = 0;
        cfg->lr_decay = 1.0f;
        return AGAVE_OK;
    }
    return AGAVE_ERR_INVALID_ARG;
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

agave_status agave_config_set(agave_config *cfg, const char *key, const char *value)
{
    if (!cfg || !key || !value)
        return AGAVE_ERR_NULL;
    struct { const char *key; int *field; } ints[] = {
        {"C", &cfg->C}, {"H", &cfg->H}, {"W", &cfg->W}, {"F", &cfg->F}, {"R", &cfg->R},
        {"M", &cfg->M}, {"Fv", &cfg->Fv}, {"Rv", &cfg->Rv}, {"Z", &cfg->Z}, {"T", &cfg->T},
        {"b", &cfg->b}, {"s", &cfg->s}, {"max_bad_steps", &cfg->max_bad_steps},
        {"lr_warmup", &cfg->lr_warmup},
    };
    struct { const char *key; float *field; } floats[] = {
        {"dropout", &cfg->dropout}, {"lambda", &cfg->lambda}, {"lr", &cfg->lr},
        {"ema", &cfg->ema}, {"grad_clip", &cfg->grad_clip}, {"lr_decay", &cfg->lr_decay},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (strcmp(key, ints[i].key) == 0)
            return parse_int(value, ints[i].field) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (strcmp(key, floats[i].key) == 0)
            return parse_float(value, floats[i].field) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    if (strcmp(key, "mode") == 0)
        return parse_mode(value, &cfg->mode) ? AGAVE_OK : AGAVE_ERR_INVALID_ARG;
    if (strcmp(key, "optimizer") == 0)
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

/* Upper bounds keep every tensor size far from overflow and refuse absurd
 * sizes before anything is allocated (issue 7: resource limits). */
agave_status agave_config_validate(const agave_config *cfg, char *msg, size_t len)
{
    if (!cfg)
        return AGAVE_ERR_NULL;
    if (cfg->struct_size < sizeof *cfg)
        REFUSE("struct_size %zu is smaller than %zu: call agave_config_init first",
               cfg->struct_size, sizeof *cfg);
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
    if (cfg->lr_warmup < 0)
        REFUSE("lr_warmup = %d must be >= 0 (steps of warm-up; 0: none)", cfg->lr_warmup);
    if (!(cfg->lr_decay > 0 && cfg->lr_decay <= 1))
        REFUSE("lr_decay = %g must be in (0, 1] (the factor per step; 1: no decay)",
               (double)cfg->lr_decay);
    if (msg && len)
        msg[0] = '\0';
    return AGAVE_OK;
}
