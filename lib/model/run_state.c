/* The run's data order and position (agave_run_state), kept by the model so
 * that agave_model_save writes it into the checkpoint beside the step counts
 * it belongs to, and a resumed run reads the batches an uninterrupted one
 * would. The limits are the ones agave-train's command line applies. */
#include <stdio.h>
#include <string.h>

#include "../core/struct_size.h"
#include "model.h"

/* Epoch counts a run can reach, far from overflowing when incremented. */
#define RUN_MAX_EPOCH ((uint64_t)1 << 62)

int run_state_check(const agave_run_state *s, char *why, size_t len)
{
    if (s->batch < 1 || s->batch > AGAVE_RUN_BATCH_MAX) {
        snprintf(why, len, "batch %lld is outside 1..%d", (long long)s->batch,
                 AGAVE_RUN_BATCH_MAX);
        return 0;
    }
    if (s->threads < 1 || s->threads > AGAVE_RUN_THREADS_MAX) {
        snprintf(why, len, "threads %lld is outside 1..%d", (long long)s->threads,
                 AGAVE_RUN_THREADS_MAX);
        return 0;
    }
    if (s->seed > (uint64_t)INT64_MAX) {
        snprintf(why, len, "seed %llu is above 2^63 - 1", (unsigned long long)s->seed);
        return 0;
    }
    if (s->images < 1) {
        snprintf(why, len, "%lld images per epoch: need at least 1", (long long)s->images);
        return 0;
    }
    if (s->index >= (uint64_t)s->images || s->epoch >= RUN_MAX_EPOCH) {
        snprintf(why, len, "position epoch %llu, image %llu is outside an epoch of %lld images",
                 (unsigned long long)s->epoch, (unsigned long long)s->index,
                 (long long)s->images);
        return 0;
    }
    return 1;
}

agave_status agave_model_set_run_state(agave_model *m, const agave_run_state *s)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!s) {
        m->has_run = 0;
        return AGAVE_OK;
    }
    agave_run_state r;
    memset(&r, 0, sizeof r);
    char why[192];
    if (!struct_read(&r, sizeof r, s, STRUCT_SIZE(agave_run_state, images), "agave_run_state",
                     why, sizeof why))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "agave_model_set_run_state: %s", why);
    if (!run_state_check(&r, why, sizeof why))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "agave_model_set_run_state: %s", why);
    m->run = r;
    m->has_run = 1;
    return AGAVE_OK;
}

agave_status agave_model_run_state(const agave_model *m, agave_run_state *s)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!s)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_model_run_state: s is NULL");
    if (!m->has_run)
        return ctx_error(m->ctx, AGAVE_ERR_STATE,
                         "the model holds no run state (its checkpoint was written without "
                         "one, or before libagave 1.0)");
    char why[192];
    if (!struct_write(s, &m->run, sizeof m->run, STRUCT_SIZE(agave_run_state, images),
                      "agave_run_state", why, sizeof why))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "agave_model_run_state: %s", why);
    return AGAVE_OK;
}
