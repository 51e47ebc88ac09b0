/* The scalar a training step minimises, from the per-image terms of a
 * forward pass: the batch mean, or one process's share of it. */
#include "model.h"

static agave_status add_term(agave_context *ctx, agave_tensor **sum, agave_tensor *term)
{
    if (!*sum) {
        *sum = term;
        return AGAVE_OK;
    }
    return agave_add(ctx, *sum, term, sum);
}

/* Per image: nll_x + nll_y + lambda * kl, over the terms the mode has. */
static agave_status per_image_objective(agave_model *m, const model_terms *t, agave_tensor **sum)
{
    agave_context *ctx = m->ctx;
    agave_tensor *weighted_kl;
    *sum = NULL;
    if (t->nll_x)
        TRY(add_term(ctx, sum, t->nll_x));
    if (t->nll_y)
        TRY(add_term(ctx, sum, t->nll_y));
    if (t->kl) {
        TRY(agave_scale(ctx, t->kl, m->cfg.lambda, &weighted_kl));
        TRY(add_term(ctx, sum, weighted_kl));
    }
    return AGAVE_OK;
}

/* loss = mean over images of the per-image objective. */
agave_status model_objective(agave_model *m, const model_terms *t, agave_tensor **loss)
{
    agave_tensor *sum;
    TRY(per_image_objective(m, t, &sum));
    return agave_mean(m->ctx, sum, loss);
}

/* loss = (sum over this slice's images of the per-image objective) / total:
 * this process's share of the mean over a batch of total images. */
agave_status model_slice_objective(agave_model *m, const model_terms *t, int64_t total,
                                   agave_tensor **loss)
{
    agave_tensor *sum;
    TRY(per_image_objective(m, t, &sum));
    TRY(agave_sum(m->ctx, sum, &sum));
    return agave_scale(m->ctx, sum, (float)(1.0 / (double)total), loss);
}
