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

int open_dataset(const char *prog, agave_context *ctx, const char *path, agave_data_split split,
                 agave_dataset **ds)
{
    agave_status st = agave_dataset_open(ctx, path, split, ds);
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
    if (agave_model_step_count(*model) == 0) {
        /* A model saved before its first step has no initialised weights. */
        agave_model_free(*model);
        *model = NULL;
        return fail(prog, "checkpoint %s holds an untrained model (step 0)", path);
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
    return fail(prog, "%s holds %dx%dx%d images (CxHxW) but the model is for %dx%dx%d", data_path,
                C, H, W, cfg->C, cfg->H, cfg->W);
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

const char *mode_name(agave_mode mode)
{
    switch (mode) {
    case AGAVE_MODE_AGAVE:
        return "agave";
    case AGAVE_MODE_VAE:
        return "vae";
    case AGAVE_MODE_PIXELCNN:
        return "pixelcnn";
    case AGAVE_MODE_NAIVE:
        return "naive";
    }
    return "?";
}

void describe_config(const agave_config *c, char *buf, size_t len)
{
    snprintf(buf, len,
             "%dx%dx%d images, mode %s; PixelCNN++ F=%d R=%d M=%d dropout=%g; VAE Fv=%d Rv=%d "
             "Z=%d T=%d; aux b=%d s=%d; lambda=%g; %s lr=%g ema=%g grad_clip=%g "
             "max_bad_steps=%d",
             c->C, c->H, c->W, mode_name(c->mode), c->F, c->R, c->M, (double)c->dropout, c->Fv,
             c->Rv, c->Z, c->T, c->b, c->s, (double)c->lambda,
             c->optimizer == AGAVE_OPTIM_ADAM ? "adam" : "adamax", (double)c->lr,
             (double)c->ema, (double)c->grad_clip, c->max_bad_steps);
}
