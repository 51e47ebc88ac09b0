/* Data-dependent initialisation: one forward over a batch without the
 * tape, which initialises every layer, then the parameter average. */
#include "model.h"

agave_status model_check_batch(agave_model *m, const uint8_t *x, int n, const char *fn)
{
    if (!x)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "%s: the image buffer is NULL", fn);
    if (n < 1 || n > 1 << 20)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "%s: batch size %d is out of 1..2^20",
                         fn, n);
    return AGAVE_OK;
}

agave_status agave_model_init(agave_model *m, const uint8_t *x, int n)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    TRY(model_check_batch(m, x, n, "agave_model_init"));
    TRY(model_check_memory(m->ctx, &m->cfg, n, "agave_model_init"));
    /* Every part runs once, whatever the mode, so that all layers get initialised. */
    agave_context *ctx = m->ctx;
    agave_tape_reset(ctx);
    int was_recording = agave_tape_recording(ctx);
    agave_tape_set_recording(ctx, 0);
    model_set_training(m, 1);
    model_terms t;
    forward_plan all = {1, 1, 1, 1};
    agave_status st = model_forward(m, x, n, all, &t);
    agave_tape_set_recording(ctx, was_recording);
    agave_tape_reset(ctx);
    if (st != AGAVE_OK)
        return st;
    average_free(&m->ema);
    if (m->cfg.ema > 0 && average_init(&m->ema, m->param_block, m->param_total) != AGAVE_OK)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate the parameter average");
    m->initialized = 1;
    return AGAVE_OK;
}
