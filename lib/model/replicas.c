/* Training steps on several threads as replicas: with T > 1 threads, a
 * step's batch is cut into T slices, and each thread runs the forward and
 * backward of its slice, one-threaded: thread 0 on the model itself, thread
 * k on replica k, a copy of the model's layers on a one-thread context of
 * its own (arena, tape, gradient block) that reads the model's parameters.
 * Then the replicas' gradients are added, in replica order, to the model's,
 * and the model takes its step as after a data-parallel reduction
 * (parallel.c).
 *
 * Why: run op by op, each op split over the threads, a step waits at every
 * op's end for the slower thread; with fashion's small planes the second
 * thread spent a quarter of a step waiting (docs/performance.md). Replicas
 * wait once per step.
 *
 * What it computes: each slice is a batch slice (rng_span, as
 * agave_model_set_batch_slice's), so its thread draws exactly the random
 * numbers the whole batch draws for its images and skips the others', and
 * its loss is its share of the batch mean: the one-thread step up to the
 * order of float sums, the same bits on every run with the same thread
 * count. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* A replica of m on a one-thread context of its own: m's configuration,
 * every layer initialised, no optimiser; its parameter values are views of
 * m's from replica_sync on, so its own block is freed. */
static agave_status replica_create(agave_model *m, agave_model **out)
{
    agave_context *rctx;
    agave_model *r;
    if (agave_context_create(&rctx, 0) != AGAVE_OK)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate a training replica's context");
    agave_status st = agave_model_create(rctx, &m->cfg, &r);
    if (st != AGAVE_OK) {
        ctx_error(m->ctx, st, "training replica: %s", agave_context_last_error(rctx));
        agave_context_free(rctx);
        return st;
    }
    for (int i = 0; i < r->n_layers; i++)
        agave_layer_skip_init(r->layers[i]);
    agave_optimizer_free(r->opt);
    r->opt = NULL;
    for (int p = 0; p < r->n_params; p++)
        r->params[p]->data = m->params[p]->data;
    free(r->param_block);
    r->param_block = NULL;
    r->initialized = 1;
    rctx->team_level = 1;
    *out = r;
    return AGAVE_OK;
}

void model_replicas_free(agave_model *m)
{
    for (int i = 0; i < m->n_replicas; i++) {
        agave_context *rctx = m->replicas[i]->ctx;
        agave_model_free(m->replicas[i]);
        agave_context_free(rctx);
    }
    free(m->replicas);
    m->replicas = NULL;
    m->n_replicas = 0;
}

void model_replicas_trim(agave_model *m)
{
    for (int i = 0; i < m->n_replicas; i++)
        arena_trim(&m->replicas[i]->ctx->arena);
}

/* At least `count` replicas besides m. */
static agave_status replicas_reserve(agave_model *m, int count)
{
    if (count <= m->n_replicas)
        return AGAVE_OK;
    agave_model **grown = realloc(m->replicas, (size_t)count * sizeof *grown);
    if (!grown)
        return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate training replicas");
    m->replicas = grown;
    while (m->n_replicas < count) {
        TRY(replica_create(m, &m->replicas[m->n_replicas]));
        m->n_replicas++;
    }
    return AGAVE_OK;
}

/* Before a step: r reads m's parameters (views: m's values may have moved,
 * by a checkpoint load or the average) and training settings, multiplies as
 * m's context does, starts from m's random state and a zero gradient. */
static void replica_sync(const agave_model *m, agave_model *r)
{
    for (int p = 0; p < r->n_params; p++)
        r->params[p]->data = m->params[p]->data;
    r->cfg = m->cfg;
    r->step = m->step;
    model_set_dropout(r, m->cfg.dropout);
    agave_context *rc = r->ctx, *mc = m->ctx;
    rc->rng = mc->rng;
    rc->precision = mc->precision;
    rc->gemm_engine = mc->gemm_engine;
    rc->conv_plain = mc->conv_plain;
    rc->gemm_flops = 0;
    memset(r->grad_block, 0, r->param_total * sizeof *r->grad_block);
}

int model_step_replicas(const agave_model *m, int n)
{
    const int T = m->ctx->threads;
    if (T < 2 || n < 2 || m->ctx->replica_steps_off || omp_in_parallel())
        return 1;
    return T < n ? T : n;
}

/* Slice k of R of n images: [n * k / R, n * (k + 1) / R). */
static int slice_first(int n, int R, int k) { return (int)((long)n * k / R); }

/* The batch slice of slice k: its images' place in m's slice (or in the
 * batch when m has none). */
static rng_span slice_span(rng_span whole, int n, int R, int k)
{
    if (whole.total > 0)
        return (rng_span){whole.first + slice_first(n, R, k), whole.total};
    return (rng_span){slice_first(n, R, k), n};
}

/* The model that runs slice k: m itself for k = 0. */
static agave_model *runner(agave_model *m, int k) { return k ? m->replicas[k - 1] : m; }

/* m's gradient (slice 0's) += the replicas', in replica order; on the
 * team's threads. */
static void add_replica_gradients(agave_model *m, int R)
{
    const size_t P = m->param_total;
#pragma omp for schedule(static)
    for (size_t i = 0; i < P; i++) {
        float g = m->grad_block[i];
        for (int k = 1; k < R; k++)
            g += m->replicas[k - 1]->grad_block[i];
        m->grad_block[i] = g;
    }
}

/* Memory for the step: the replicas' arenas start at the model's arena
 * size scaled to a slice, so that their first step maps one chunk; and the
 * model's own arena, which runs slice 0, gives back the pages of a larger
 * pass (the initialisation's or an evaluation's whole batch) that would
 * otherwise stay resident beside the replicas'. */
static void replicas_prepare(agave_model *m, int n, int R)
{
    agave_arena *own = &m->ctx->arena;
    const size_t whole = own->reserved;
    size_t slice_need = 0;
    for (int k = 1; k < R; k++) {
        agave_model *r = runner(m, k);
        replica_sync(m, r);
        const int count = slice_first(n, R, k + 1) - slice_first(n, R, k);
        arena_reserve(&r->ctx->arena, whole / (size_t)n * (size_t)count);
        const size_t need = r->ctx->arena.peak ? r->ctx->arena.peak : r->ctx->arena.reserved;
        slice_need = need > slice_need ? need : slice_need;
    }
    agave_tape_reset(m->ctx);
    if (own->touched > slice_need + slice_need / 4)
        arena_trim(own);
}

agave_status model_replicas_forward_backward(agave_model *m, const uint8_t *x, int n, int R,
                                             double sums[REDUCE_EXTRA], double *loss)
{
    TRY(replicas_reserve(m, R - 1));
    replicas_prepare(m, n, R);
    const size_t D = (size_t)m->cfg.C * m->cfg.H * m->cfg.W;
    const rng_span whole = m->slice;
    agave_status status[R];
    double part_sums[R][REDUCE_EXTRA], part_loss[R];
    memset(part_sums, 0, sizeof part_sums);
    memset(part_loss, 0, sizeof part_loss);
    for (int k = 0; k < R; k++)
        runner(m, k)->slice = slice_span(whole, n, R, k);
    m->ctx->team_level = 1;
#pragma omp parallel num_threads(R)
    {
        const int k = omp_get_thread_num();
        agave_model *r = runner(m, k);
        const int first = slice_first(n, R, k), count = slice_first(n, R, k + 1) - first;
        if (k)
            ctx_clear_error(r->ctx);
        status[k] = model_forward_backward(r, x + (size_t)first * D, count, part_sums[k],
                                           &part_loss[k]);
#pragma omp barrier
        add_replica_gradients(m, R);
    }
    m->ctx->team_level = 0;
    m->slice = whole;
    agave_status st = AGAVE_OK;
    memset(sums, 0, REDUCE_EXTRA * sizeof *sums);
    *loss = 0;
    for (int k = 0; k < R; k++) {
        agave_model *r = runner(m, k);
        if (k) {
            agave_tape_reset(r->ctx);
            m->ctx->gemm_flops += r->ctx->gemm_flops;
            if (status[k] == AGAVE_OK && memcmp(&r->ctx->rng, &m->ctx->rng, sizeof m->ctx->rng))
                status[k] = ctx_error(r->ctx, AGAVE_ERR_STATE,
                                      "training replica %d drew other random numbers than the "
                                      "model (a defect of libagave: please report it)", k);
        }
        if (status[k] != AGAVE_OK && st == AGAVE_OK)
            st = k ? ctx_error(m->ctx, status[k], "%s", agave_context_last_error(r->ctx))
                   : status[k];
        for (int j = 0; j < REDUCE_EXTRA; j++)
            sums[j] += part_sums[k][j];
        *loss += part_loss[k];
    }
    if (st != AGAVE_OK)
        memset(m->grad_block, 0, m->param_total * sizeof *m->grad_block);
    return st;
}
