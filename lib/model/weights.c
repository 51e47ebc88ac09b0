/* Which weights evaluation and sampling use: the averaged parameters (the
 * default, when the model has them) or the raw ones the optimiser moves. */
#include "model.h"

agave_status agave_model_set_weights(agave_model *m, agave_weights w)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (w != AGAVE_WEIGHTS_AVERAGE && w != AGAVE_WEIGHTS_RAW)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_model_set_weights: %d is neither AGAVE_WEIGHTS_AVERAGE (0) nor "
                         "AGAVE_WEIGHTS_RAW (1)", (int)w);
    if (w == AGAVE_WEIGHTS_AVERAGE && !m->ema.avg)
        return ctx_error(m->ctx, AGAVE_ERR_STATE,
                         "agave_model_set_weights: the model has no averaged parameters (ema "
                         "is 0, or the model is not initialised yet)");
    m->weights = w;
    return AGAVE_OK;
}

agave_weights agave_model_weights(const agave_model *m)
{
    return m && m->weights == AGAVE_WEIGHTS_AVERAGE && m->ema.avg ? AGAVE_WEIGHTS_AVERAGE
                                                                   : AGAVE_WEIGHTS_RAW;
}

int agave_model_has_average(const agave_model *m) { return m && m->ema.avg; }

void model_apply_average(agave_model *m)
{
    model_replicas_trim(m);   // what runs next works in m's own arena
    if (agave_model_weights(m) == AGAVE_WEIGHTS_AVERAGE)
        average_apply(&m->ema, m->param_block);
}

void model_restore_params(agave_model *m) { average_restore(&m->ema, m->param_block); }
