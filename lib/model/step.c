/* The training step, one path for one process and for data parallelism:
 * checks, forward and backward, the reducer when one is set, then the
 * rejection of a non-finite step or the update of the parameters, the
 * average and the counters. */
#include <math.h>
#include <string.h>

#include "../core/struct_size.h"
#include "model.h"

static agave_status reject_step(agave_model *m, agave_step_stats *stats, const char *why)
{
    optim_zero_grads(m->opt);
    agave_tape_reset(m->ctx);
    m->bad_steps++;
    m->rejected++;
    if (stats)
        stats->rejected = 1;
    if (m->bad_steps >= m->cfg.max_bad_steps)
        return ctx_error(m->ctx, AGAVE_ERR_NUMERIC,
                         "%d consecutive training steps had a non-finite %s: stop training and "
                         "resume from the last good checkpoint with a lower learning rate or "
                         "gradient clipping", m->bad_steps, why);
    ctx_error(m->ctx, AGAVE_OK, "step rejected: non-finite %s (%d in a row)", why, m->bad_steps);
    return AGAVE_OK;
}

/* The end of every training step, once the gradient is complete (and, with
 * several processes, summed): reject a non-finite one, else update the
 * parameters, the average and the counts. */
static agave_status apply_update(agave_model *m, double grad_norm, agave_step_stats *stats)
{
    if (!isfinite(grad_norm))
        return reject_step(m, stats, "gradient");
    m->opt->lr = (float)agave_model_learning_rate(m);
    agave_status st = agave_optimizer_step(m->opt, m->cfg.grad_clip);
    agave_tape_reset(m->ctx);
    if (st != AGAVE_OK)
        return st;
    if (m->ema.avg)
        average_update(&m->ema, m->param_block, m->cfg.ema);
    m->step++;
    m->bad_steps = 0;
    return AGAVE_OK;
}

/* The step's checks before any work: the batch, the memory limit, and with
 * a batch slice an initialised model (every process must start from the
 * same parameters) and images that fit the slice. */
static agave_status check_step(agave_model *m, const uint8_t *x, int n)
{
    const char *fn = "agave_model_train_step";
    TRY(model_check_batch(m, x, n, fn));
    TRY(model_check_memory(m->ctx, &m->cfg, n, fn));
    if (m->slice.total > 0 && !m->initialized)
        return ctx_error(m->ctx, AGAVE_ERR_STATE,
                         "agave_model_train_step: with a batch slice set, first initialise the "
                         "model with agave_model_init on the whole batch, in every process, so "
                         "that all start from the same parameters");
    return model_check_slice(m, n, fn);
}

/* Forward over this process's images (the slice's place in the random
 * stream), the objective (this process's share of the batch mean with a
 * slice), the sums, and backward unless the loss is not finite. Backward
 * gives each activation's memory back once it has been consumed, so the
 * sums are read before it. */
agave_status model_forward_backward(agave_model *m, const uint8_t *x, int n,
                                    double sums[REDUCE_EXTRA], double *loss_value)
{
    agave_context *ctx = m->ctx;
    agave_tape_reset(ctx);
    agave_tape_set_recording(ctx, 1);
    model_set_training(m, 1);
    model_terms t;
    agave_tensor *loss;
    model_set_span(m, m->slice);
    agave_status st = model_forward(m, x, n, plan_for_mode(m->cfg.mode), &t);
    model_set_span(m, RNG_WHOLE_BATCH);
    if (st == AGAVE_OK)
        st = m->slice.total > 0 ? model_slice_objective(m, &t, m->slice.total, &loss)
                                : model_objective(m, &t, &loss);
    if (st != AGAVE_OK)
        return st;
    *loss_value = loss->data[0];
    int bad_loss = !isfinite(*loss_value);
    model_local_sums(m, &t, n, bad_loss, sums);
    return bad_loss ? AGAVE_OK : tape_backward(ctx, loss, 1);
}

/* One training step, in one process or as one of several (agave.h,
 * data-parallel training): with a reducer, every process calls it exactly
 * once, whatever its own loss, so that the processes stay in step and decide
 * alike. stats, when not NULL, is the library's own struct, zeroed. */
static agave_status train_step(agave_model *m, const uint8_t *x, int n, agave_step_stats *stats)
{
    TRY(check_step(m, x, n));
    if (!m->initialized)
        TRY(agave_model_init(m, x, n));
    double sums[REDUCE_EXTRA], loss;
    const int replicas = model_step_replicas(m, n);
    if (replicas < 2)
        model_replicas_trim(m);   // replicas of an earlier step on more threads idle
    agave_status st = replicas > 1
                          ? model_replicas_forward_backward(m, x, n, replicas, sums, &loss)
                          : model_forward_backward(m, x, n, sums, &loss);
    if (st == AGAVE_OK && m->reduce_fn && (st = model_reduce_step(m, sums)) != AGAVE_OK)
        optim_zero_grads(m->opt);
    if (st != AGAVE_OK) {
        agave_tape_reset(m->ctx);
        return st;
    }
    if (!(sums[REDUCE_BAD_LOSS] == 0))
        return reject_step(m, stats, m->reduce_fn ? "loss (in at least one process)" : "loss");
    double grad_norm = optim_grad_norm(m->opt);
    if (stats)
        model_step_stats(m, sums, loss, grad_norm, stats);
    return apply_update(m, grad_norm, stats);
}

agave_status agave_model_train_step(agave_model *m, const uint8_t *x, int n,
                                    agave_step_stats *stats)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    agave_step_stats full;
    memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    char msg[256];
    if (stats && !struct_write(stats, &full, sizeof full, sizeof full.struct_size,
                               "agave_step_stats", msg, sizeof msg))
        return ctx_error(m->ctx, AGAVE_ERR_INVALID_ARG, "agave_model_train_step: %s", msg);
    agave_status st = train_step(m, x, n, stats ? &full : NULL);
    if (stats)
        struct_write(stats, &full, sizeof full, 0, NULL, NULL, 0);
    return st;
}
