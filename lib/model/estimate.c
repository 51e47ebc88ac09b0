/* Sizes from a configuration alone, before anything is allocated: the exact
 * parameter count and an estimate of a training step's peak memory, which a
 * context's memory limit (agave_context_set_memory_limit) is checked against. */
#include <stdint.h>

#include "config.h"
#include "model.h"

/* The exact count: the topology's (topology.c), which the model is built from. */
uint64_t config_param_count(const agave_config *c)
{
    return topology_param_numel(c);
}

/* ---- a training step's memory ------------------------------------------------------ */
/* Step-arena bytes per image: activations, their gradients and what backward
 * saves, as a least-squares fit of measured arena peaks over the terms the
 * architecture suggests (the fit, its points and when to redo it:
 * docs/reliability.md, "A memory limit"; tests/test_limits.c checks it). */
static double arena_bytes_per_image(const agave_config *c)
{
    double HW = (double)c->H * c->W, F = c->F, R = c->R, Fv = c->Fv, Rv = c->Rv;
    double P = dmol_param_count(c->C, c->M), s2 = (double)c->s * c->s;
    /* Every part, whatever the mode: the data-dependent initialisation of
     * the first step runs the VAE, the conditioning stream and the PixelCNN
     * even in modes vae and pixelcnn, and since backward hands buffers back
     * to the arena its forward-only peak is about that of a whole step in
     * mode agave. */
    double pixelcnn = 231.1 * F * R + 111.8 * F + 8.8 * P + 83.8 * c->C +
                      (c->dropout > 0 ? 12.2 * F * R : 0);
    double cond_stream = 78.2 * F;
    double vae = 47.4 * Fv * Rv - 0.7 * Fv + 33.9 * c->Z / 16 - 37.4 * Fv * c->T / 16 +
                 0.5 * c->C / s2 + 35.1 * Fv / s2;
    double per_pixel = pixelcnn + cond_stream + vae;
    return per_pixel * HW;
}

/* Persistent bytes: parameters, gradients, the optimiser's two moments, and
 * with averaging the average and the backup swapped in for evaluation. */
static double persistent_bytes(const agave_config *c, uint64_t params)
{
    return 4.0 * (double)params * (4 + (c->ema > 0 ? 2 : 0));
}

/* Upper bound of the reusable conv scratch: an im2col matrix of the widest
 * layer (2F x 3 x 3 rows for a gated block's conv) over the batch. */
static double scratch_bytes(const agave_config *c, int batch)
{
    double rows = 18.0 * c->F, vrows = 12.5 * c->Fv, prows = 4.0 * dmol_param_count(c->C, c->M);
    if (vrows > rows)
        rows = vrows;
    if (prows > rows)
        rows = prows;
    return 4.0 * batch * (double)c->H * c->W * rows;
}

double config_step_bytes(const agave_config *c, int batch)
{
    uint64_t params = config_param_count(c);
    /* The arena: per-image activations plus the step's weight-normalised
     * weights and their gradients; 1.2 keeps the estimate above the fit's
     * worst point (docs/reliability.md, "A memory limit"). */
    double arena = 1.2 * (batch * arena_bytes_per_image(c) + 4.8 * (double)params);
    return persistent_bytes(c, params) + arena + scratch_bytes(c, batch);
}

/* What each training replica adds on T > 1 threads (lib/model/replicas.c):
 * its gradient block and its arena's weight-normalised weights and their
 * gradients; its images' activations are the batch's share, already counted. */
static double replica_bytes(const agave_config *c)
{
    double params = (double)config_param_count(c);
    return 4.0 * params + 1.2 * 4.8 * params;
}

double config_model_bytes(const agave_config *c)
{
    return persistent_bytes(c, config_param_count(c));
}

/* Without the tape a forward pass releases nothing before the arena's reset;
 * the division keeps the training estimate above its measured peaks
 * (docs/performance.md, Evaluation: memory). */
double config_forward_bytes_per_image(const agave_config *c)
{
    return (1.2 * arena_bytes_per_image(c) + scratch_bytes(c, 1)) / 1.5;
}

/* A step of batch images on `threads` threads. */
static double step_bytes_on(const agave_config *c, int batch, int threads)
{
    int replicas = (threads < batch ? threads : batch) - 1;
    return config_step_bytes(c, batch) + (replicas > 0 ? replicas * replica_bytes(c) : 0.0);
}

/* The largest batch whose step on `threads` fits in limit (0 if none does). */
static int largest_batch(const agave_config *c, int threads, size_t limit)
{
    int lo = 0, hi = 1 << 20;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (step_bytes_on(c, mid, threads) <= (double)limit)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

agave_status model_check_memory(agave_context *ctx, const agave_config *cfg, int n,
                                const char *fn)
{
    size_t limit = ctx->memory_limit;
    double need = step_bytes_on(cfg, n, ctx->threads);
    if (!limit || need <= (double)limit)
        return AGAVE_OK;
    int fits = largest_batch(cfg, ctx->threads, limit);
    if (!fits)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "%s: this model needs about %.0f MiB for a training step even at batch "
                         "1, over the context's memory limit of %.0f MiB", fn, need / 1048576.0,
                         (double)limit / 1048576.0);
    return ctx_error(ctx, AGAVE_ERR_LIMIT,
                     "%s: a training step at batch %d needs about %.0f MiB, over the context's "
                     "memory limit of %.0f MiB; batches up to %d fit", fn, n, need / 1048576.0,
                     (double)limit / 1048576.0, fits);
}

agave_status agave_config_param_numel(const agave_config *caller, size_t *count)
{
    if (!caller || !count)
        return AGAVE_ERR_NULL;
    *count = 0;
    agave_config cfg;
    if (config_read(caller, &cfg, NULL, 0) != AGAVE_OK)
        return AGAVE_ERR_CONFIG;
    *count = (size_t)config_param_count(&cfg);
    return AGAVE_OK;
}

agave_status agave_config_estimate_bytes(const agave_config *caller, int batch, size_t *bytes)
{
    if (!caller || !bytes)
        return AGAVE_ERR_NULL;
    *bytes = 0;
    agave_config cfg;
    if (batch < 1 || config_read(caller, &cfg, NULL, 0) != AGAVE_OK)
        return batch < 1 ? AGAVE_ERR_INVALID_ARG : AGAVE_ERR_CONFIG;
    double b = config_step_bytes(&cfg, batch);
    *bytes = b >= (double)SIZE_MAX ? SIZE_MAX : (size_t)b;
    return AGAVE_OK;
}

/* The name before 1.0. */
agave_status agave_config_param_count(const agave_config *cfg, size_t *count)
{
    return agave_config_param_numel(cfg, count);
}
