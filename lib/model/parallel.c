/* Data parallelism: this process's slice of each batch, and the reducer
 * that sums the gradient block and the step's sums over the processes
 * (agave.h, data-parallel training). */
#include <string.h>

#include "model.h"

#define SLICE_MAX_TOTAL ((int64_t)1 << 40)

agave_status agave_model_set_batch_slice(agave_model *m, int64_t offset, int64_t total)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (total < 0 || total > SLICE_MAX_TOTAL || offset < 0 || offset > total)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "agave_model_set_batch_slice: offset %lld, total %lld: need "
                         "0 <= offset <= total <= 2^40 (total 0: no slice)",
                         (long long)offset, (long long)total);
    m->slice = (rng_span){offset, total};
    return AGAVE_OK;
}

agave_status model_check_slice(agave_model *m, int n, const char *fn)
{
    if (m->slice.total > 0 && m->slice.first + n > m->slice.total)
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: %d images from offset %lld overrun the batch slice's total of "
                         "%lld images (agave_model_set_batch_slice)",
                         fn, n, (long long)m->slice.first, (long long)m->slice.total);
    return AGAVE_OK;
}

agave_status agave_model_set_grad_reducer(agave_model *m, agave_grad_reduce_fn fn, void *user)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    m->reduce_fn = fn;
    m->reduce_user = fn ? user : NULL;
    return AGAVE_OK;
}

/* Has the reducer sum the gradient block and this process's sums, which
 * follow it, over the processes; the sums cross as floats. */
agave_status model_reduce_step(agave_model *m, double sums[REDUCE_EXTRA])
{
    float *buf = m->grad_block, *extra = m->grad_block + m->param_total;
    for (int k = 0; k < REDUCE_EXTRA; k++)
        extra[k] = (float)sums[k];
    agave_status st = m->reduce_fn(buf, m->param_total + REDUCE_EXTRA, m->reduce_user);
    if (st != AGAVE_OK)
        return ctx_error(m->ctx, st,
                         "the gradient reducer failed (%s); the step was not applied",
                         agave_status_string(st));
    for (int k = 0; k < REDUCE_EXTRA; k++)
        sums[k] = extra[k];
    return AGAVE_OK;
}
