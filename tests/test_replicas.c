/* Training steps on several threads as replicas (lib/model/replicas.c).
 *
 * The reference is the one-thread step on the whole batch: a step on T
 * threads cuts the batch into T slices, one per replica, and must give the
 * same parameters up to the order of float sums, the same random state
 * exactly (every image draws its own noise and dropout masks, whichever
 * replica runs it), and the same bits on every run with the same thread
 * count. The tiny configuration runs with dropout 0.5 and one IAF step, so
 * that every random draw matters; 3 threads on 8 images give uneven slices
 * (2, 3, 3). */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

#define N 8          /* images per batch */
#define STEPS 5
#define D 64         /* 1x8x8 */

/* One step's gradient, T threads against 1, relative to its largest
 * component: the two differ only in the order of float sums over images
 * (measured: about 1e-7). A replica's gradient dropped or added twice, or a
 * slice drawn with another slice's noise, changes it by 1e-2 or more. */
#define GRAD_RTOL 1e-5
/* Parameters after STEPS steps, relative to the largest (see
 * test_replicas_match_one_thread): measured 7e-8 to 7e-6 by seed; the
 * parameters move by about 8e-4 in those steps. */
#define PARAM_RTOL 1e-4

typedef struct run {
    agave_context *ctx;
    agave_model *m;
    agave_step_stats stats[STEPS];
} run;

/* n images of a fixed pseudo-random pattern. */
static void make_images(uint8_t *x, int n, unsigned seed)
{
    unsigned s = seed;
    for (int i = 0; i < n * D; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (uint8_t)((i % D / 8 * 24 + i % 8 * 6 + (s >> 16) % 64) % 256);
    }
}

/* The tiny model with dropout and an IAF step on a context of `threads`
 * (replicas off when `op_by_op`), initialised on the first batch, then
 * STEPS steps on the next ones. */
static void train_seeded(run *r, int threads, int op_by_op, const uint8_t *batches, uint64_t seed)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.dropout = 0.5f;
    cfg.T = 1;
    cfg.lr_warmup = 0;
    assert_int_equal(agave_context_create(&r->ctx, seed), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(r->ctx, threads), AGAVE_OK);
    r->ctx->replica_steps_off = op_by_op;
    assert_int_equal(agave_model_create(r->ctx, &cfg, &r->m), AGAVE_OK);
    assert_int_equal(agave_model_init(r->m, batches, N), AGAVE_OK);
    for (int s = 0; s < STEPS; s++) {
        r->stats[s].struct_size = sizeof r->stats[s];
        assert_int_equal(
            agave_model_train_step(r->m, batches + (size_t)(s + 1) * N * D, N, &r->stats[s]),
            AGAVE_OK);
        assert_false(r->stats[s].rejected);
    }
}

static void train(run *r, int threads, int op_by_op, const uint8_t *batches)
{
    train_seeded(r, threads, op_by_op, batches, 11);
}

static void run_free(run *r)
{
    agave_model_free(r->m);
    agave_context_free(r->ctx);
}

/* max |a - b| / max |a| over the parameters of two models. */
static double param_rel_diff(const agave_model *a, const agave_model *b)
{
    assert_int_equal(a->param_total, b->param_total);
    double d = 0, s = 0;
    for (size_t i = 0; i < a->param_total; i++) {
        d = fmax(d, fabs((double)a->param_block[i] - b->param_block[i]));
        s = fmax(s, fabs((double)a->param_block[i]));
    }
    return d / s;
}

static uint8_t *batches_of(unsigned seed)
{
    uint8_t *x = malloc((size_t)(STEPS + 1) * N * D);
    assert_non_null(x);
    make_images(x, (STEPS + 1) * N, seed);
    return x;
}

/* ---- tests ------------------------------------------------------------------------------ */

/* One forward and backward of the same batch from the same parameters and
 * random state: on R = 2 and 3 replicas against one thread, the gradient
 * equals to float rounding, the step's sums and loss too, and the random
 * state ends in the same place. */
static void test_replicas_gradient_is_the_batch_gradient(void **state)
{
    (void)state;
    uint8_t *x = batches_of(5);
    run one;
    train(&one, 1, 0, x);   /* parameters some steps away from the init */
    agave_model *m1 = one.m;
    const size_t P = m1->param_total;
    const agave_rng rng0 = one.ctx->rng;
    double sums1[REDUCE_EXTRA], loss1;
    assert_int_equal(model_forward_backward(m1, x, N, sums1, &loss1), AGAVE_OK);
    float *g1 = malloc(P * sizeof *g1);
    memcpy(g1, m1->grad_block, P * sizeof *g1);
    double gmax = 0;
    for (size_t i = 0; i < P; i++)
        gmax = fmax(gmax, fabs(g1[i]));
    assert_true(gmax > 0);
    for (int R = 2; R <= 3; R++) {
        run t;
        train(&t, R, 0, x);
        memcpy(t.m->param_block, m1->param_block, P * sizeof(float));
        memset(t.m->grad_block, 0, P * sizeof(float));
        t.ctx->rng = rng0;
        double sums[REDUCE_EXTRA], loss;
        assert_int_equal(model_step_replicas(t.m, N), R);
        assert_int_equal(model_replicas_forward_backward(t.m, x, N, R, sums, &loss), AGAVE_OK);
        double d = 0;
        for (size_t i = 0; i < P; i++)
            d = fmax(d, fabs((double)t.m->grad_block[i] - g1[i]));
        printf("%d replicas against 1 thread: max gradient difference %.3g of max |g| %.3g\n",
               R, d / gmax, gmax);
        assert_true(d < GRAD_RTOL * gmax);
        assert_memory_equal(&t.ctx->rng, &one.ctx->rng, sizeof one.ctx->rng);
        assert_true(fabs(loss - loss1) < 1e-6 * fabs(loss1));
        for (int k = 0; k < REDUCE_EXTRA; k++)
            assert_true(fabs(sums[k] - sums1[k]) <= 1e-6 * fabs(sums1[k]));
        assert_int_equal((int)sums[REDUCE_IMAGES], N);
        agave_tape_reset(t.ctx);
        run_free(&t);
    }
    agave_tape_reset(one.ctx);
    free(g1);
    run_free(&one);
    free(x);
}

/* Training on 2 and 3 threads (replicas) against 1: the same run. Adamax
 * divides by the largest |gradient| seen, so a component whose gradient is
 * near zero can turn a rounding difference into a step of the learning
 * rate: hence the parameters' looser tolerance; it still sees a dropped
 * replica (about the parameters' whole movement). */
static void test_replicas_match_one_thread(void **state)
{
    (void)state;
    uint8_t *x = batches_of(5);
    run one, init;
    train(&one, 1, 0, x);
    assert_int_equal(one.m->n_replicas, 0);
    /* the parameters moved: the comparison is not between two copies of the init */
    assert_int_equal(agave_context_create(&init.ctx, 11), AGAVE_OK);
    agave_config cfg;
    assert_int_equal(agave_model_get_config(one.m, &cfg), AGAVE_OK);
    assert_int_equal(agave_model_create(init.ctx, &cfg, &init.m), AGAVE_OK);
    assert_int_equal(agave_model_init(init.m, x, N), AGAVE_OK);
    double moved = param_rel_diff(one.m, init.m);
    assert_true(moved > 5 * PARAM_RTOL);
    for (int threads = 2; threads <= 3; threads++) {
        run t;
        train(&t, threads, 0, x);
        assert_int_equal(t.m->n_replicas, threads - 1);
        double rd = param_rel_diff(one.m, t.m);
        printf("%d threads against 1 after %d steps: max relative parameter difference %.3g "
               "(tolerance %g; moved %.3g from the init)\n", threads, STEPS, rd, PARAM_RTOL,
               moved);
        assert_true(rd < PARAM_RTOL);
        assert_memory_equal(&t.ctx->rng, &one.ctx->rng, sizeof one.ctx->rng);
        for (int s = 0; s < STEPS; s++) {
            assert_true(fabs(t.stats[s].loss_bpd - one.stats[s].loss_bpd) <
                        1e-5 * one.stats[s].loss_bpd);
            assert_true(fabs(t.stats[s].kl_bpd - one.stats[s].kl_bpd) <
                        1e-6 + 1e-5 * one.stats[s].kl_bpd);
            assert_true(fabs(t.stats[s].grad_norm - one.stats[s].grad_norm) <
                        1e-4 * one.stats[s].grad_norm);
        }
        assert_int_equal(agave_model_step_count(t.m), STEPS);
        run_free(&t);
    }
    run_free(&init);
    run_free(&one);
    free(x);
}

/* Two runs on 2 threads: the same bits; and the step op by op (replicas
 * off) is the same function. */
static void test_replicas_same_bits_every_run(void **state)
{
    (void)state;
    uint8_t *x = batches_of(7);
    run a, b, ops;
    train(&a, 2, 0, x);
    train(&b, 2, 0, x);
    train(&ops, 2, 1, x);
    assert_int_equal(ops.m->n_replicas, 0);
    assert_memory_equal(a.m->param_block, b.m->param_block,
                        a.m->param_total * sizeof *a.m->param_block);
    assert_memory_equal(a.stats, b.stats, sizeof a.stats);
    double rd = param_rel_diff(ops.m, a.m);
    printf("replicas against op by op, 2 threads: %.3g\n", rd);
    assert_true(rd < PARAM_RTOL);
    assert_memory_equal(&a.ctx->rng, &ops.ctx->rng, sizeof a.ctx->rng);
    run_free(&a), run_free(&b), run_free(&ops);
    free(x);
}

/* Fewer images than threads: one replica per image; a single image runs
 * on the model alone. */
static void test_replicas_small_batches(void **state)
{
    (void)state;
    uint8_t *x = batches_of(3);
    agave_context *c1, *c4;
    agave_model *m1, *m4;
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.lr_warmup = 0;
    assert_int_equal(agave_context_create(&c1, 2), AGAVE_OK);
    assert_int_equal(agave_context_create(&c4, 2), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(c4, 4), AGAVE_OK);
    assert_int_equal(agave_model_create(c1, &cfg, &m1), AGAVE_OK);
    assert_int_equal(agave_model_create(c4, &cfg, &m4), AGAVE_OK);
    assert_int_equal(model_step_replicas(m4, 1), 1);
    assert_int_equal(model_step_replicas(m4, 3), 3);
    assert_int_equal(model_step_replicas(m4, 9), 4);
    assert_int_equal(model_step_replicas(m1, 9), 1);
    const int sizes[] = {3, 1, 2};
    for (int i = 0; i < 3; i++) {
        const uint8_t *b = x + (size_t)i * N * D;
        assert_int_equal(agave_model_train_step(m1, b, sizes[i], NULL), AGAVE_OK);
        assert_int_equal(agave_model_train_step(m4, b, sizes[i], NULL), AGAVE_OK);
    }
    assert_int_equal(m4->n_replicas, 2);
    assert_true(param_rel_diff(m1, m4) < PARAM_RTOL);
    assert_memory_equal(&c1->rng, &c4->rng, sizeof c1->rng);
    agave_model_free(m1), agave_model_free(m4);
    agave_context_free(c1), agave_context_free(c4);
    free(x);
}

/* max |a - b| / max |a| of two models' gradient blocks. */
static double grad_rel_diff(const agave_model *a, const agave_model *b)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < a->param_total; i++) {
        d = fmax(d, fabs((double)a->grad_block[i] - b->grad_block[i]));
        s = fmax(s, fabs((double)a->grad_block[i]));
    }
    return d / s;
}

/* The replicas read the model's parameters as they are at each step: values
 * set between steps (here: another model's, as a checkpoint load would) are
 * what the next gradient is taken at, on 2 threads as on 1. */
static void test_replicas_follow_the_parameters(void **state)
{
    (void)state;
    uint8_t *x = batches_of(13);
    run one, two;
    train(&one, 1, 0, x);
    train(&two, 2, 0, x);   /* its replicas exist and have run */
    run other;   /* another seed: other initial weights */
    uint8_t *y = batches_of(17);
    train_seeded(&other, 1, 1, y, 99);
    free(y);
    for (int p = 0; p < one.m->n_params; p++) {
        const agave_tensor *src = other.m->params[p];
        memcpy(one.m->params[p]->data, src->data, src->numel * sizeof(float));
        memcpy(two.m->params[p]->data, src->data, src->numel * sizeof(float));
    }
    two.ctx->rng = one.ctx->rng;
    double sums[REDUCE_EXTRA], loss;
    assert_int_equal(model_forward_backward(one.m, x, N, sums, &loss), AGAVE_OK);
    assert_int_equal(model_replicas_forward_backward(two.m, x, N, 2, sums, &loss), AGAVE_OK);
    double d = grad_rel_diff(one.m, two.m);
    printf("after new parameters, 2 replicas against 1 thread: gradient difference %.3g\n", d);
    assert_true(d < GRAD_RTOL);
    agave_tape_reset(one.ctx), agave_tape_reset(two.ctx);
    run_free(&one), run_free(&two), run_free(&other);
    free(x);
}

/* A NaN parameter makes every replica's loss non-finite: the step is
 * rejected whole (nothing moves, the count does not advance) and training
 * goes on once the parameter is mended. */
static void test_replicas_reject_nonfinite_steps(void **state)
{
    (void)state;
    uint8_t *x = batches_of(19);
    run r;
    train(&r, 2, 0, x);
    const size_t P = r.m->param_total;
    float *before = malloc(P * sizeof *before);
    agave_tensor *last = r.m->params[r.m->n_params - 1];
    last->data[0] = NAN;
    memcpy(before, r.m->param_block, P * sizeof *before);
    agave_step_stats s = {.struct_size = sizeof s};
    assert_int_equal(agave_model_train_step(r.m, x, N, &s), AGAVE_OK);
    assert_true(s.rejected);
    assert_int_equal(agave_model_step_count(r.m), STEPS);
    assert_memory_equal(before, r.m->param_block, (P - 1) * sizeof *before);
    for (size_t i = 0; i < P; i++)
        assert_true(r.m->grad_block[i] == 0.0f);
    last->data[0] = 0.0f;
    assert_int_equal(agave_model_train_step(r.m, x, N, &s), AGAVE_OK);
    assert_false(s.rejected);
    assert_int_equal(agave_model_step_count(r.m), STEPS + 1);
    free(before);
    run_free(&r);
    free(x);
}

/* A replica's context runs inside the replicas' team: its per-thread slot is
 * 0 on every thread of that team (its buffers are its own), while a
 * context's own team numbers its threads. */
static void test_thread_slots(void **state)
{
    (void)state;
    agave_context *own, *replica;
    assert_int_equal(agave_context_create(&own, 1), AGAVE_OK);
    assert_int_equal(agave_context_create(&replica, 1), AGAVE_OK);
    replica->team_level = 1;
    int slot_own[2] = {-1, -1}, slot_replica[2] = {-1, -1}, nested[2] = {-1, -1};
    omp_set_dynamic(0);   /* a team of 2, as asked */
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num();
        slot_own[t] = ctx_thread_slot(own);
        slot_replica[t] = ctx_thread_slot(replica);
#pragma omp parallel num_threads(1)
        nested[t] = ctx_thread_slot(replica);
    }
    assert_int_equal(slot_own[0], 0);
    assert_int_equal(slot_own[1], 1);
    assert_int_equal(slot_replica[0], 0);
    assert_int_equal(slot_replica[1], 0);
    assert_int_equal(nested[0], 0);
    assert_int_equal(nested[1], 0);
    assert_int_equal(ctx_thread_slot(own), 0);
    agave_context_free(own), agave_context_free(replica);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicas_gradient_is_the_batch_gradient),
        cmocka_unit_test(test_replicas_match_one_thread),
        cmocka_unit_test(test_replicas_same_bits_every_run),
        cmocka_unit_test(test_replicas_small_batches),
        cmocka_unit_test(test_replicas_follow_the_parameters),
        cmocka_unit_test(test_replicas_reject_nonfinite_steps),
        cmocka_unit_test(test_thread_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
