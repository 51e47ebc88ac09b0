/* Data-parallel training without MPI (agave_model_set_batch_slice and
 * agave_model_set_grad_reducer): two threads stand for two processes, each
 * with its own context and model, and the reducer sums their buffers through
 * shared memory and a barrier, as MPI_Allreduce would.
 *
 * Two "processes" on slices of B images each must give what one process gives
 * on the whole batch of 2B images: the same parameters to float rounding (the
 * only difference is the order of the sums), the same random state exactly,
 * and bit-identical parameters in the two processes. The tiny configuration
 * runs with dropout 0.5 and one IAF step, so that every random draw matters. */
#define AGAVE_EXPERIMENTAL   /* the data-parallel hooks under test */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

#define B 4          /* images per process */
#define STEPS 6
#define D 64         /* 1x8x8 */

/* Relative tolerance of 1 against 2 processes after STEPS steps: the largest
 * parameter difference over the largest parameter magnitude. The two runs
 * draw the same noise for every image and differ only in the order of float
 * additions (the batch mean is one sum over 2B images against two sums over B
 * plus the reduction), a few units of float rounding (6e-8) per step; Adamax
 * divides by max |g|, which can amplify the difference in a near-zero
 * gradient component, hence the headroom. Measured: 1.2e-7. A wrong
 * reduction (a sum of means instead of a mean, dropped or doubled images,
 * different noise) moves the parameters by 1e-3 or more. */
#define PARAM_RTOL 1e-5

static agave_config tiny_random(void)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.dropout = 0.5f;
    cfg.T = 1;
    cfg.lr_warmup = 0;   /* the full rate from step 1, so 6 steps move the parameters */
    return cfg;
}

/* A context of 7 threads and the tiny_random model on it. */
static agave_model *tiny_model(agave_context **ctx)
{
    agave_config cfg = tiny_random();
    agave_model *m;
    assert_int_equal(agave_context_create(ctx, 7), AGAVE_OK);
    assert_int_equal(agave_model_create(*ctx, &cfg, &m), AGAVE_OK);
    return m;
}

/* n images of a fixed pseudo-random pattern (the ZX81's LCG over a gradient). */
static void make_images(uint8_t *x, int n, unsigned seed)
{
    unsigned s = seed;
    for (int i = 0; i < n * D; i++) {
        s = (s * 75 + 74) % 65537;
        x[i] = (uint8_t)((i % D / 8 * 24 + i % 8 * 6 + s % 64) % 256);
    }
}

/* All parameters of a model, concatenated (malloc'ed). */
static float *params_of(agave_model *m, size_t *n)
{
    *n = agave_model_param_numel(m);
    float *p = malloc(*n * sizeof *p);
    size_t off = 0;
    for (int i = 0; i < agave_model_param_tensor_count(m); i++) {
        agave_tensor *t;
        assert_int_equal(agave_model_param(m, i, NULL, &t), AGAVE_OK);
        size_t k = agave_tensor_numel(t);
        assert_int_equal(agave_tensor_copy_out(t, p + off, k), AGAVE_OK);
        off += k;
    }
    return p;
}

/* max |a - b| / max |a| */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    return d / s;
}

/* ---- two processes as two threads --------------------------------------------------- */
typedef struct group {
    pthread_barrier_t barrier;
    float *slot[2];            /* each process's buffer during a reduction */
    int poison_rank;           /* -1, or the process whose gradient gets a NaN ... */
    int poison_step;           /* ... at this reduction (0-based) */
    int reductions;
    int threads;               /* each process's context's threads (0: 1) */
} group;

typedef struct proc {
    group *g;
    int rank;
    int calls;                 /* reducer calls */
    agave_context *ctx;
    agave_model *model;
    const uint8_t *batches;    /* STEPS global batches of 2B images */
    agave_step_stats stats[STEPS];
    agave_status status;
} proc;

/* The reducer: both buffers are summed in rank order by each process, so the
 * two get the same bits (as Open MPI's allreduce gives every rank). */
static agave_status sum_reduce(float *buf, size_t n, void *user)
{
    proc *p = user;
    group *g = p->g;
    p->calls++;
    if (p->rank == g->poison_rank && p->calls - 1 == g->poison_step)
        buf[0] = NAN;
    g->slot[p->rank] = buf;
    pthread_barrier_wait(&g->barrier);
    float *sum = malloc(n * sizeof *sum);
    if (!sum)
        return AGAVE_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        sum[i] = g->slot[0][i] + g->slot[1][i];
    pthread_barrier_wait(&g->barrier);   /* both have read both buffers */
    memcpy(buf, sum, n * sizeof *sum);
    free(sum);
    return AGAVE_OK;
}

static void *proc_run(void *arg)
{
    proc *p = arg;
    agave_config cfg = tiny_random();
    p->status = agave_context_create(&p->ctx, 7);
    if (p->status == AGAVE_OK && p->g->threads > 1)
        p->status = agave_context_set_threads(p->ctx, p->g->threads);
    if (p->status == AGAVE_OK)
        p->status = agave_model_create(p->ctx, &cfg, &p->model);
    /* The whole first batch initialises every process alike. */
    if (p->status == AGAVE_OK)
        p->status = agave_model_init(p->model, p->batches, 2 * B);
    if (p->status == AGAVE_OK)
        p->status = agave_model_set_batch_slice(p->model, (int64_t)p->rank * B, 2 * B);
    if (p->status == AGAVE_OK)
        p->status = agave_model_set_grad_reducer(p->model, sum_reduce, p);
    for (int s = 0; s < STEPS && p->status == AGAVE_OK; s++) {
        p->stats[s].struct_size = sizeof p->stats[s];
        p->status = agave_model_train_step(
            p->model, p->batches + ((size_t)s * 2 * B + (size_t)p->rank * B) * D, B,
            &p->stats[s]);
    }
    return NULL;
}

static void run_two(proc p[2], group *g, const uint8_t *batches)
{
    assert_int_equal(pthread_barrier_init(&g->barrier, NULL, 2), 0);
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        memset(&p[r], 0, sizeof p[r]);
        p[r].g = g, p[r].rank = r, p[r].batches = batches;
        assert_int_equal(pthread_create(&th[r], NULL, proc_run, &p[r]), 0);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&g->barrier);
    for (int r = 0; r < 2; r++)
        assert_int_equal(p[r].status, AGAVE_OK);
}

static void free_proc(proc *p)
{
    agave_model_free(p->model);
    agave_context_free(p->ctx);
}

/* One process on the whole batches. */
static void run_one(agave_context **ctx, agave_model **m, const uint8_t *batches,
                    agave_step_stats stats[STEPS])
{
    *m = tiny_model(ctx);
    for (int s = 0; s < STEPS; s++) {
        stats[s].struct_size = sizeof stats[s];
        assert_int_equal(
            agave_model_train_step(*m, batches + (size_t)s * 2 * B * D, 2 * B, &stats[s]),
            AGAVE_OK);
    }
}

/* ---- tests ---------------------------------------------------------------------------- */
/* Two processes of `threads` threads each (on 2, each process's step runs
 * on replicas, lib/model/replicas.c) against one process of one thread. */
static void two_processes_match_one(int threads)
{
    uint8_t *batches = malloc((size_t)STEPS * 2 * B * D);
    make_images(batches, STEPS * 2 * B, 5);
    group g = {.poison_rank = -1, .threads = threads};
    proc p[2];
    run_two(p, &g, batches);
    agave_context *ctx;
    agave_model *m;
    agave_step_stats one[STEPS];
    run_one(&ctx, &m, batches, one);

    size_t n, n0, n1;
    float *ref = params_of(m, &n), *a = params_of(p[0].model, &n0), *b = params_of(p[1].model, &n1);
    assert_true(n == n0 && n == n1);
    /* The processes agree bit for bit, and so do their generators with the
     * one process's: every image drew the same noise. */
    assert_memory_equal(a, b, n * sizeof *a);
    assert_memory_equal(&p[0].ctx->rng, &ctx->rng, sizeof ctx->rng);
    assert_memory_equal(&p[1].ctx->rng, &ctx->rng, sizeof ctx->rng);
    /* The step figures are the whole batch's, in both processes. The gradient
     * norm is the check that sees a wrongly scaled sum (a sum of the processes'
     * means instead of their mean): Adamax's update m / u does not change when
     * every gradient is scaled alike, so the parameters barely show it. */
    for (int s = 0; s < STEPS; s++) {
        assert_memory_equal(&p[0].stats[s], &p[1].stats[s], sizeof p[0].stats[s]);
        assert_true(fabs(p[0].stats[s].loss_bpd - one[s].loss_bpd) < 1e-4 * one[s].loss_bpd);
        assert_true(fabs(p[0].stats[s].kl_bpd - one[s].kl_bpd) < 1e-4 + 1e-4 * one[s].kl_bpd);
        assert_true(fabs(p[0].stats[s].grad_norm - one[s].grad_norm) <
                    1e-3 * one[s].grad_norm);
    }
    double rd = rel_diff(ref, a, n);
    printf("parameters after %d steps, 2 x %d against 1 x %d images: max relative difference "
           "%.3g (tolerance %g)\n", STEPS, B, 2 * B, rd, PARAM_RTOL);
    assert_true(rd < PARAM_RTOL);
    /* The parameters moved: the comparison is not between two copies of the init. */
    agave_context *c0;
    agave_model *m0;
    m0 = tiny_model(&c0);
    assert_int_equal(agave_model_init(m0, batches, 2 * B), AGAVE_OK);
    size_t ni;
    float *init = params_of(m0, &ni);
    double moved = rel_diff(ref, init, n);
    printf("the parameters moved by %.3g (relative) from their initial values\n", moved);
    assert_true(moved > 10 * PARAM_RTOL);
    assert_int_equal(agave_model_step_count(p[0].model), STEPS);
    assert_int_equal(p[0].calls, STEPS);
    assert_int_equal(p[0].model->n_replicas, threads - 1);
    free(init), free(ref), free(a), free(b);
    agave_model_free(m0);
    agave_context_free(c0);
    agave_model_free(m);
    agave_context_free(ctx);
    free_proc(&p[0]);
    free_proc(&p[1]);
    free(batches);
}

static void test_two_processes_match_one(void **state)
{
    (void)state;
    two_processes_match_one(1);
}

static void test_two_processes_of_two_threads_match_one(void **state)
{
    (void)state;
    two_processes_match_one(2);
}

/* A NaN in one process's gradient rejects that step in both, alike; the
 * other steps are applied. */
static void test_nan_in_one_process_rejects_in_all(void **state)
{
    (void)state;
    uint8_t *batches = malloc((size_t)STEPS * 2 * B * D);
    make_images(batches, STEPS * 2 * B, 9);
    group g = {.poison_rank = 1, .poison_step = 2};
    proc p[2];
    run_two(p, &g, batches);
    for (int r = 0; r < 2; r++) {
        for (int s = 0; s < STEPS; s++)
            assert_int_equal(p[r].stats[s].rejected, s == 2);
        assert_int_equal(agave_model_step_count(p[r].model), STEPS - 1);
        assert_int_equal(agave_model_rejected_count(p[r].model), 1);
    }
    size_t n;
    float *a = params_of(p[0].model, &n), *b = params_of(p[1].model, &n);
    assert_memory_equal(a, b, n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        assert_true(isfinite(a[i]));
    free(a), free(b);
    free_proc(&p[0]);
    free_proc(&p[1]);
    free(batches);
}

/* A reducer that changes nothing, without a slice: the step is the ordinary
 * one-process step, bit for bit. */
static agave_status identity_reduce(float *buf, size_t n, void *user)
{
    (void)buf, (void)n;
    (*(int *)user)++;
    return AGAVE_OK;
}

static void test_identity_reducer_changes_nothing(void **state)
{
    (void)state;
    uint8_t *batches = malloc((size_t)STEPS * 2 * B * D);
    make_images(batches, STEPS * 2 * B, 3);
    agave_context *c1, *c2;
    agave_model *m1, *m2;
    agave_step_stats s1[STEPS];
    run_one(&c1, &m1, batches, s1);
    m2 = tiny_model(&c2);
    int calls = 0;
    assert_int_equal(agave_model_set_grad_reducer(m2, identity_reduce, &calls), AGAVE_OK);
    for (int s = 0; s < STEPS; s++) {
        agave_step_stats st = {.struct_size = sizeof st};
        assert_int_equal(agave_model_train_step(m2, batches + (size_t)s * 2 * B * D, 2 * B, &st),
                         AGAVE_OK);
        assert_true(fabs(st.loss_bpd - s1[s].loss_bpd) < 1e-5 * s1[s].loss_bpd);
    }
    assert_int_equal(calls, STEPS);
    size_t n;
    float *a = params_of(m1, &n), *b = params_of(m2, &n);
    assert_memory_equal(a, b, n * sizeof *a);
    free(a), free(b);
    agave_model_free(m1);
    agave_model_free(m2);
    agave_context_free(c1);
    agave_context_free(c2);
    free(batches);
}

static agave_status failing_reduce(float *buf, size_t n, void *user)
{
    (void)buf, (void)n, (void)user;
    return AGAVE_ERR_IO;
}

/* Bad slices, a slice on an uninitialised model, a slice too small for the
 * images, a failing reducer: each a clear error, nothing changed. */
static void test_errors(void **state)
{
    (void)state;
    uint8_t x[2 * B * D];
    make_images(x, 2 * B, 1);
    agave_context *ctx;
    agave_model *m;
    m = tiny_model(&ctx);
    assert_int_equal(agave_model_set_batch_slice(NULL, 0, 0), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_set_grad_reducer(NULL, NULL, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_set_batch_slice(m, 1, 0), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_model_set_batch_slice(m, 5, 4), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_model_set_batch_slice(m, 4, 4), AGAVE_OK);   /* empty: for n = 0 */
    assert_int_equal(agave_model_set_batch_slice(m, -1, 4), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_model_set_batch_slice(m, 0, ((int64_t)1 << 40) + 1),
                     AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(ctx), "offset"));

    agave_step_stats st = {.struct_size = sizeof st};
    assert_int_equal(agave_model_set_batch_slice(m, B, 2 * B), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, B, &st), AGAVE_ERR_STATE);
    assert_non_null(strstr(agave_context_last_error(ctx), "agave_model_init"));
    assert_int_equal(agave_model_init(m, x, 2 * B), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, B + 1, &st), AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(ctx), "overrun"));
    agave_eval_stats es = {.struct_size = sizeof es};
    assert_int_equal(agave_model_evaluate(m, x, B + 1, 0, &es), AGAVE_ERR_INVALID_ARG);

    size_t n;
    float *before = params_of(m, &n);
    assert_int_equal(agave_model_set_grad_reducer(m, failing_reduce, NULL), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, B, &st), AGAVE_ERR_IO);
    assert_non_null(strstr(agave_context_last_error(ctx), "reducer"));
    float *after = params_of(m, &n);
    assert_memory_equal(before, after, n * sizeof *before);
    assert_int_equal(agave_model_step_count(m), 0);
    /* Removing the reducer and the slice gives the ordinary step back. */
    assert_int_equal(agave_model_set_grad_reducer(m, NULL, NULL), AGAVE_OK);
    assert_int_equal(agave_model_set_batch_slice(m, 0, 0), AGAVE_OK);
    assert_int_equal(agave_model_train_step(m, x, 2 * B, &st), AGAVE_OK);
    assert_int_equal(agave_model_step_count(m), 1);
    free(before), free(after);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* Evaluation in slices (uneven, one of them empty) gives the whole batch's
 * per-image sums and leaves the generator where the whole batch leaves it.
 * Every image gets the same z samples either way; the figures differ by
 * float rounding only, because the evaluation's forward passes take rows of
 * several images at once and a slice groups them differently (measured: 3e-9
 * relative). Other samples move them by 5e-3 relative (the unsliced tail below). */
#define SLICE_RTOL 1e-7
static void test_evaluate_in_slices(void **state)
{
    (void)state;
    enum { N = 7, K = 3 };
    uint8_t x[N * D];
    make_images(x, N, 4);
    agave_context *ctx;
    agave_model *m;
    m = tiny_model(&ctx);
    assert_int_equal(agave_model_init(m, x, N), AGAVE_OK);
    agave_rng start = ctx->rng;
    agave_eval_stats whole = {.struct_size = sizeof whole};
    assert_int_equal(agave_model_evaluate(m, x, N, K, &whole), AGAVE_OK);
    agave_rng end = ctx->rng;

    const int cuts[][2] = {{0, 3}, {3, 3}, {3, 7}, {7, 7}};   /* two empty slices */
    double elbo = 0, iwae = 0, kl = 0;
    int images = 0;
    for (int i = 0; i < 4; i++) {
        ctx->rng = start;   /* each "process" starts from the same state */
        int lo = cuts[i][0], k = cuts[i][1] - cuts[i][0];
        assert_int_equal(agave_model_set_batch_slice(m, lo, N), AGAVE_OK);
        agave_eval_stats s = {.struct_size = sizeof s};
        assert_int_equal(agave_model_evaluate(m, x + (size_t)lo * D, k, K, &s), AGAVE_OK);
        assert_int_equal(s.n_images, k);
        assert_memory_equal(&ctx->rng, &end, sizeof end);
        elbo += k * s.elbo_bpd, iwae += k * s.iwae_bpd, kl += k * s.kl_bpd;
        images += s.n_images;
    }
    assert_int_equal(images, N);
    assert_true(fabs(elbo / N - whole.elbo_bpd) < SLICE_RTOL * whole.elbo_bpd);
    assert_true(fabs(iwae / N - whole.iwae_bpd) < SLICE_RTOL * whole.iwae_bpd);
    assert_true(fabs(kl / N - whole.kl_bpd) < 1e-9 + SLICE_RTOL * whole.kl_bpd);
    /* Without the skipping (no slice), the second half draws other samples. */
    ctx->rng = start;
    assert_int_equal(agave_model_set_batch_slice(m, 0, 0), AGAVE_OK);
    agave_eval_stats tail = {.struct_size = sizeof tail};
    assert_int_equal(agave_model_evaluate(m, x + 3 * D, N - 3, K, &tail), AGAVE_OK);
    double sliced_tail = 0;
    ctx->rng = start;
    assert_int_equal(agave_model_set_batch_slice(m, 3, N), AGAVE_OK);
    agave_eval_stats st = {.struct_size = sizeof st};
    assert_int_equal(agave_model_evaluate(m, x + 3 * D, N - 3, K, &st), AGAVE_OK);
    sliced_tail = st.iwae_bpd;
    assert_true(fabs(sliced_tail - tail.iwae_bpd) > 100 * SLICE_RTOL * tail.iwae_bpd);
    /* n = 0 is a slice's privilege. */
    assert_int_equal(agave_model_set_batch_slice(m, 0, 0), AGAVE_OK);
    assert_int_equal(agave_model_evaluate(m, x, 0, K, &st), AGAVE_ERR_LIMIT);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* ---- a slice without a reducer ------------------------------------------------------- */
/* The long-double sum of a term's values, as a float (the processes
 * exchange floats), over the slice's images: the figure a step on the slice
 * must report. Also says whether the rounding to float changed the sum. */
static double slice_figure(agave_tensor *t, int images, int *rounding_visible)
{
    const float *v = agave_tensor_data(t);
    long double s = 0;
    for (size_t i = 0; i < agave_tensor_numel(t); i++)
        s += v[i];
    float rounded = (float)s;
    *rounding_visible |= (long double)rounded != s;
    return (double)rounded / images;
}

/* A step on a batch slice without a reducer (a process before its reducer
 * is set): its figures are its own images' sums, each rounded to a float as
 * the processes exchange them, over its image count, and the loss rebuilt
 * from them as the objective defines it. The reference is the same forward
 * (same parameters, same place in the random stream, the slice's span), its
 * per-image terms summed here in long double and rounded once: exact, so
 * the figures must match to the last bit. Summing in float, in another
 * order, or not rounding the slice's sums changes the last bits of at least
 * one figure over these steps. */
static void test_slice_without_reducer(void **state)
{
    (void)state;
    uint8_t *batches = malloc((size_t)STEPS * 2 * B * D);
    make_images(batches, STEPS * 2 * B, 11);
    agave_context *ctx;
    agave_model *m;
    m = tiny_model(&ctx);
    assert_int_equal(agave_model_init(m, batches, 2 * B), AGAVE_OK);
    assert_int_equal(agave_model_set_batch_slice(m, B, 2 * B), AGAVE_OK);   /* the second half */
    int rounding_visible = 0;
    for (int s = 0; s < STEPS; s++) {
        const uint8_t *x = batches + ((size_t)s * 2 * B + B) * D;
        /* The step's forward, as forward_backward runs it (lib/model/step.c). */
        agave_rng start = ctx->rng;
        agave_tape_reset(ctx);
        agave_tape_set_recording(ctx, 1);
        model_set_training(m, 1);
        model_set_span(m, m->slice);
        model_terms t;
        assert_int_equal(model_forward(m, x, B, plan_for_mode(m->cfg.mode), &t), AGAVE_OK);
        model_set_span(m, RNG_WHOLE_BATCH);
        double nll_x = slice_figure(t.nll_x, B, &rounding_visible);
        double nll_y = slice_figure(t.nll_y, B, &rounding_visible);
        double kl = slice_figure(t.kl, B, &rounding_visible);
        agave_tape_reset(ctx);
        ctx->rng = start;

        agave_step_stats st = {.struct_size = sizeof st};
        assert_int_equal(agave_model_train_step(m, x, B, &st), AGAVE_OK);
        if (st.pixelcnn_nll != nll_x || st.aux_nll != nll_y || st.kl != kl)
            fail_msg("step %d: nll_x %.17g nll_y %.17g kl %.17g nats, expected %.17g %.17g "
                     "%.17g", s, st.pixelcnn_nll, st.aux_nll, st.kl, nll_x, nll_y, kl);
        double loss_bpd = (nll_x + nll_y + m->cfg.lambda * kl) / (D * M_LN2);
        assert_true(fabs(st.loss_bpd - loss_bpd) <= 1e-14 * loss_bpd);
    }
    /* The float rounding made a difference somewhere: a step that did not
     * round would have been seen. */
    assert_true(rounding_visible);
    assert_int_equal(agave_model_step_count(m), STEPS);
    agave_model_free(m);
    agave_context_free(ctx);
    free(batches);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_processes_match_one),
        cmocka_unit_test(test_two_processes_of_two_threads_match_one),
        cmocka_unit_test(test_nan_in_one_process_rejects_in_all),
        cmocka_unit_test(test_identity_reducer_changes_nothing),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_evaluate_in_slices),
        cmocka_unit_test(test_slice_without_reducer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
