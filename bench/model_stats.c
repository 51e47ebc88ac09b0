/* model_stats: parameter counts and forward FLOPs per image of the named
 * configurations (docs/model.md's table). FLOPs are counted, not estimated:
 * every GEMM the library runs adds 2*M*N*K to the context's counter, and one
 * training-mode forward (mode agave: encoder, decoder, auxiliary term,
 * conditioning stream and PixelCNN) is run on a batch of 4.
 * usage: model_stats [config...]   (default: all four) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static size_t count_layers(agave_model *m, int first, int last)
{
    size_t n = 0;
    for (int l = first; l <= last; l++)
        for (int i = 0; i < m->layers[l]->n_params; i++)
            n += agave_tensor_numel(m->layers[l]->params[i]);
    return n;
}

static int index_of(agave_model *m, agave_layer *l)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i] == l)
            return i;
    return -1;
}

static int stats(const char *name)
{
    agave_context *ctx;
    agave_config cfg;
    agave_model *m;
    if (agave_config_init(&cfg, name) != AGAVE_OK) {
        fprintf(stderr, "model_stats: unknown configuration %s\n", name);
        return 2;
    }
    agave_context_create(&ctx, 1);
    if (agave_model_create(ctx, &cfg, &m) != AGAVE_OK) {
        fprintf(stderr, "model_stats: %s\n", agave_context_last_error(ctx));
        return 2;
    }
    int n = 4;
    size_t D = (size_t)cfg.C * cfg.H * cfg.W;
    uint8_t *x = malloc(n * D);
    for (size_t i = 0; i < n * D; i++)
        x[i] = (uint8_t)(i * 2654435761u >> 24);
    agave_model_init(m, x, n);   /* initialise first: the init pass runs extra GEMMs */
    agave_tape_set_recording(ctx, 0);
    forward_plan all = {1, 1, 1, 1}, vae = {1, 1, 0, 0}, pcnn = {0, 0, 1, 0};
    model_terms t;
    double flops[3];
    forward_plan plans[3] = {all, vae, pcnn};
    for (int p = 0; p < 3; p++) {
        agave_tape_reset(ctx);
        ctx->gemm_flops = 0;
        model_forward(m, x, n, plans[p], &t);
        flops[p] = (double)ctx->gemm_flops / n;
    }
    int dec_out = index_of(m, m->vae.dec_out), cond = index_of(m, m->pcnn.cond);
    size_t vae_params = count_layers(m, 0, dec_out) + (size_t)cfg.C;
    size_t cond_params = count_layers(m, cond, cond);
    size_t total = agave_model_param_numel(m);
    printf("| %s | %zu | %zu | %zu | %zu | %.3f | %.3f | %.3f |\n", name, total, vae_params,
           cond_params, total - vae_params - cond_params, flops[0] / 1e9, flops[1] / 1e9,
           flops[2] / 1e9);
    free(x);
    agave_model_free(m);
    agave_context_free(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    const char *all[] = {"tiny", "fashion", "cifar-small", "cifar-paper"};
    printf("| configuration | parameters | VAE (incl. aux scales) | conditioning stream | "
           "PixelCNN++ (incl. per-block projections) | forward GFLOP/image (agave) | "
           "VAE only | unconditional PixelCNN++ |\n|---|---|---|---|---|---|---|---|\n");
    int rc = 0;
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            rc |= stats(argv[i]);
    else
        for (int i = 0; i < 4; i++)
            rc |= stats(all[i]);
    return rc;
}
