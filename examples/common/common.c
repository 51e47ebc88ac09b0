#include "common.h"

#include <stdio.h>
#include <string.h>

int open_context(const char *prog, uint64_t seed, int threads, agave_context **ctx)
{
    if (agave_context_create(ctx, seed) != AGAVE_OK)
        return fail(prog, "cannot create a libagave context: out of memory (OpenBLAS alone "
                    "needs 128 MiB of address space per thread; see ulimit -v)");
    if (agave_context_set_threads(*ctx, threads) != AGAVE_OK) {
        int rc = fail(prog, "--threads %d: %s", threads, agave_context_last_error(*ctx));
        agave_context_free(*ctx);
        *ctx = NULL;
        return rc;
    }
    return EXIT_OK;
}

void data_opts_init(data_opts *d)
{
    d->resize = d->crop = NULL;
    d->test_percent = 10;
}

/* "HxW" or "N" (N x N), each side 1..AGAVE_DATASET_MAX_SIDE. */
static int parse_size(const char *text, int *h, int *w)
{
    char *x = strchr(text, 'x');
    long long a, b;
    if (!x)
        return parse_ll(text, 1, AGAVE_DATASET_MAX_SIDE, &a) && (*h = *w = (int)a, 1);
    char first[24];
    size_t n = (size_t)(x - text);
    if (n == 0 || n >= sizeof first)
        return 0;
    memcpy(first, text, n);
    first[n] = '\0';
    if (!parse_ll(first, 1, AGAVE_DATASET_MAX_SIDE, &a) ||
        !parse_ll(x + 1, 1, AGAVE_DATASET_MAX_SIDE, &b))
        return 0;
    *h = (int)a;
    *w = (int)b;
    return 1;
}

int data_opts_make(const char *prog, const data_opts *d, agave_dataset_options *out)
{
    agave_dataset_options_init(out);
    out->test_percent = (int)d->test_percent;
    if (d->resize && !parse_size(d->resize, &out->resize_height, &out->resize_width))
        return fail(prog, "--resize %s: expected HxW (e.g. 32x32) or N for N x N, each side "
                    "1..%d", d->resize, AGAVE_DATASET_MAX_SIDE);
    if (d->crop && strcmp(d->crop, "aspect") == 0) {
        if (!d->resize)
            return fail(prog, "--crop aspect takes the shape of --resize HxW, which is missing");
        out->crop_height = out->crop_width = AGAVE_CROP_ASPECT;
    } else if (d->crop && !parse_size(d->crop, &out->crop_height, &out->crop_width)) {
        return fail(prog, "--crop %s: expected HxW (e.g. 64x64), N for N x N, or aspect",
                    d->crop);
    }
    return EXIT_OK;
}

int open_dataset(const char *prog, agave_context *ctx, const char *path, agave_data_split split,
                 const data_opts *d, agave_dataset **ds)
{
    agave_dataset_options opt;
    data_opts none;
    data_opts_init(&none);
    if (data_opts_make(prog, d ? d : &none, &opt) != EXIT_OK)
        return EXIT_ERROR;
    agave_status st = agave_dataset_open_v2(ctx, path, split, &opt, ds);
    if (st == AGAVE_OK)
        return EXIT_OK;
    const char *msg = agave_context_last_error(ctx);
    return fail(prog, "%s", *msg ? msg : agave_status_string(st));
}

int load_checkpoint(const char *prog, agave_context *ctx, const char *path,
                    agave_model **model)
{
    agave_status st = agave_model_load(ctx, path, NULL, model);
    if (st != AGAVE_OK) {
        const char *msg = agave_context_last_error(ctx);
        return fail(prog, "%s", *msg ? msg : agave_status_string(st));
    }
    if (!agave_model_is_initialized(*model)) {
        agave_model_free(*model);
        *model = NULL;
        return fail(prog, "checkpoint %s holds a model that was never initialised (saved "
                    "before its first step)", path);
    }
    return EXIT_OK;
}

int check_image_shape(const char *prog, const agave_config *cfg, const agave_dataset *ds,
                      const char *data_path)
{
    int C = agave_dataset_channels(ds), H = agave_dataset_height(ds),
        W = agave_dataset_width(ds);
    if (C == cfg->C && H == cfg->H && W == cfg->W)
        return EXIT_OK;
    return fail(prog, "%s holds %dx%dx%d images (CxHxW) but the model is for %dx%dx%d%s", data_path,
                C, H, W, cfg->C, cfg->H, cfg->W,
                C == cfg->C ? "; --resize HxW (or --crop) gives images another size" : "");
}

int choose_weights(const char *prog, agave_model *m, const char *choice, const char *path)
{
    if (!choice)
        return EXIT_OK;
    agave_weights w;
    if (strcmp(choice, "average") == 0)
        w = AGAVE_WEIGHTS_AVERAGE;
    else if (strcmp(choice, "raw") == 0)
        w = AGAVE_WEIGHTS_RAW;
    else
        return fail(prog, "--weights %s: expected average or raw", choice);
    if (w == AGAVE_WEIGHTS_AVERAGE && !agave_model_has_average(m))
        return fail(prog, "--weights average: %s holds no averaged parameters (it was trained "
                    "with ema=0); use --weights raw", path);
    agave_status st = agave_model_set_weights(m, w);
    return st == AGAVE_OK ? EXIT_OK : fail(prog, "--weights %s: %s", choice, agave_status_string(st));
}

const char *weights_name(const agave_model *m)
{
    return agave_model_weights(m) == AGAVE_WEIGHTS_AVERAGE ? "average" : "raw";
}

void describe_config(const agave_config *c, unsigned flags, char *buf, size_t len)
{
    size_t at = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < agave_config_key_count() && at < len; i++) {
        agave_config_key k = {.struct_size = sizeof k};
        char value[AGAVE_CONFIG_VALUE_MAX];
        if (agave_config_key_info(i, &k) != AGAVE_OK || (k.flags & flags) != flags ||
            agave_config_get(c, k.name, value, sizeof value) != AGAVE_OK)
            continue;
        int n = snprintf(buf + at, len - at, "%s%s=%s", at ? " " : "", k.name, value);
        at += n > 0 ? (size_t)n : 0;
    }
}

void list_keys(char *buf, size_t len)
{
    size_t at = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < agave_config_key_count() && at < len; i++) {
        agave_config_key k = {.struct_size = sizeof k};
        if (agave_config_key_info(i, &k) == AGAVE_OK) {
            int n = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", k.name);
            at += n > 0 ? (size_t)n : 0;
        }
    }
}

void list_presets(char *buf, size_t len)
{
    size_t at = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; agave_config_preset_name(i) && at < len; i++) {
        int n = snprintf(buf + at, len - at, "%s%s", at ? ", " : "", agave_config_preset_name(i));
        at += n > 0 ? (size_t)n : 0;
    }
}
