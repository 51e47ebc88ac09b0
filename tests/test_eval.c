/* Evaluation (lib/model/eval.c) against a per-image reference.
 *
 * The library scores the (image, sample) rows of all images in chunks that
 * cross image boundaries. The reference below is the evaluation as it was
 * before that: one image at a time, encoded alone, its K samples through the
 * decoder and the PixelCNN in chunks of at most 32, its IWAE from its own K
 * log-weights. Both draw the z samples from the context's generator in the
 * same order (image by image, sample by sample), so from the same generator
 * state they score every image with the same samples, and their figures may
 * differ only by float rounding (the GEMMs see other batch sizes). The cases
 * cover several K and n, chunks that cut images apart (a memory limit makes
 * them small), an IAF, colour images with s = 2, and modes vae and pixelcnn. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

/* Per-image figures (bpd) of the two computations may differ by float
 * rounding: the PixelCNN's log-likelihood of an image sums 64 to 192 float
 * log-probabilities computed by GEMMs of another width. Measured: at most
 * 7e-7 bpd (on figures of 5 to 9 bpd). A row scored with another image's
 * encoding or another sample moves an image's figures by 1e-3 bpd or more. */
#define BPD_TOL 1e-5

#define FIGURES 5   /* elbo, recon, kl, aux, iwae */

typedef struct figures {
    double v[FIGURES];
} figures;

/* ---- the reference: one image at a time ------------------------------------------- */
#define REF_CHUNK 32

typedef struct ref_sums {
    double recon, kl, aux_nll;
} ref_sums;

/* k samples of one encoded image (mean, log_std, context: (1,Z,h,w) tensors
 * outside the arena): log-weights into log_w, sums into s. */
static void ref_samples(agave_model *m, const uint8_t *x, agave_tensor *const enc[3], int k,
                        double *log_w, ref_sums *s)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    forward_plan plan = plan_for_mode(c->mode);
    size_t D = (size_t)c->C * c->H * c->W, Dy = D / ((size_t)c->s * c->s);
    agave_tensor *rep[3] = {NULL, NULL, NULL};
    for (int e = 0; e < 3; e++) {
        if (!enc[e])
            continue;
        int dims[4] = {k, tC(enc[e]), tH(enc[e]), tW(enc[e])};
        rep[e] = tensor_new_arena(ctx, 4, dims);
        assert_non_null(rep[e]);
        for (int i = 0; i < k; i++)
            memcpy(rep[e]->data + (size_t)i * enc[e]->numel, enc[e]->data,
                   enc[e]->numel * sizeof(float));
    }
    uint8_t *xk = arena_alloc(&ctx->arena, D * (size_t)k), *y = arena_alloc(&ctx->arena, Dy * k);
    assert_non_null(xk);
    assert_non_null(y);
    for (int i = 0; i < k; i++)
        memcpy(xk + (size_t)i * D, x, D);
    agave_tensor *z, *log_q, *log_p_z, *f, *nll_y, *nll_x = NULL, *kl = NULL, *params;
    assert_int_equal(vae_posterior_sample(m, rep[0], rep[1], rep[2], &z, &log_q, &log_p_z),
                     AGAVE_OK);
    assert_int_equal(vae_decode(m, z, &f), AGAVE_OK);
    if (c->T == 0)
        assert_int_equal(agave_gaussian_kl(ctx, rep[0], rep[1], &kl), AGAVE_OK);
    assert_int_equal(agave_image_pool(xk, k, c->C, c->H, c->W, c->s, y), AGAVE_OK);
    assert_int_equal(agave_dlogistic_nll(ctx, y, f, m->aux_log_scale, c->b, &nll_y), AGAVE_OK);
    if (plan.pixelcnn) {
        agave_tensor *xt = image_tensor(ctx, xk, k, c->C, c->H, c->W);
        assert_int_equal(pixelcnn_forward(m, xt, plan.condition ? f : NULL, &params), AGAVE_OK);
        assert_int_equal(agave_dmol_nll(ctx, xk, c->C, params, c->M, &nll_x), AGAVE_OK);
    }
    const agave_tensor *nll = nll_x ? nll_x : nll_y;
    for (int i = 0; i < k; i++) {
        double kl_i = kl ? kl->data[i] : (double)log_q->data[i] - log_p_z->data[i];
        log_w[i] = -(double)nll->data[i] + log_p_z->data[i] - log_q->data[i];
        s->recon += nll->data[i];
        s->kl += kl_i;
        s->aux_nll += nll_y->data[i];
    }
}

/* The image's figures in bpd (agave_eval_stats' meanings). */
static figures ref_figures(const agave_config *c, const ref_sums *s, double iwae, int K,
                           int with_iwae)
{
    double D = (double)c->C * c->H * c->W, Dy = D / (c->s * c->s);
    double Dx = c->mode == AGAVE_MODE_VAE ? Dy : D;
    figures f;
    double recon = agave_nats_to_bpd(s->recon / K, Dx), kl = agave_nats_to_bpd(s->kl / K, Dx);
    f.v[0] = recon + kl;
    f.v[1] = recon;
    f.v[2] = kl;
    f.v[3] = agave_nats_to_bpd((s->aux_nll + s->kl) / K, Dy);
    f.v[4] = with_iwae ? agave_nats_to_bpd(-iwae, Dx) : recon + kl;
    return f;
}

/* Image x scored alone, as the evaluation did before it batched across images. */
static figures ref_image(agave_model *m, const uint8_t *x, int K_asked)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    ref_sums s = {0, 0, 0};
    if (c->mode == AGAVE_MODE_PIXELCNN) {
        agave_tape_reset(ctx);
        agave_tensor *params, *nll;
        assert_int_equal(pixelcnn_forward(m, image_tensor(ctx, x, 1, c->C, c->H, c->W), NULL,
                                          &params), AGAVE_OK);
        assert_int_equal(agave_dmol_nll(ctx, x, c->C, params, c->M, &nll), AGAVE_OK);
        s.recon = nll->data[0];
        return ref_figures(c, &s, -(double)nll->data[0], 1, K_asked > 0);
    }
    int K = K_asked > 0 ? K_asked : 1;
    agave_tape_reset(ctx);
    agave_tensor *mean, *log_std, *context, *enc[3] = {NULL, NULL, NULL};
    assert_int_equal(vae_encode(m, image_tensor(ctx, x, 1, c->C, c->H, c->W), &mean, &log_std,
                                &context), AGAVE_OK);
    agave_tensor *from[3] = {mean, log_std, context};
    for (int e = 0; e < 3; e++) {   /* kept outside the arena, which each chunk resets */
        if (!from[e])
            continue;
        assert_int_equal(agave_tensor_create(ctx, 4, from[e]->dims, &enc[e]), AGAVE_OK);
        memcpy(enc[e]->data, from[e]->data, from[e]->numel * sizeof(float));
    }
    double *log_w = malloc((size_t)K * sizeof *log_w);
    assert_non_null(log_w);
    for (int done = 0; done < K; done += REF_CHUNK) {
        agave_tape_reset(ctx);
        ref_samples(m, x, enc, K - done < REF_CHUNK ? K - done : REF_CHUNK, log_w + done, &s);
    }
    double iwae;
    assert_int_equal(agave_iwae_from_log_weights(log_w, 1, K, &iwae), AGAVE_OK);
    free(log_w);
    for (int e = 0; e < 3; e++)
        agave_tensor_free(enc[e]);
    return ref_figures(c, &s, iwae, K, K_asked > 0);
}

/* Every image scored alone, with the averaged parameters in place, as the
 * library evaluates. */
static void ref_evaluate(agave_model *m, const uint8_t *x, int n, int K, figures *out)
{
    const agave_config *c = &m->cfg;
    size_t D = (size_t)c->C * c->H * c->W;
    int was_recording = agave_tape_recording(m->ctx);
    agave_tape_set_recording(m->ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    for (int i = 0; i < n; i++)
        out[i] = ref_image(m, x + (size_t)i * D, K);
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(m->ctx, was_recording);
    agave_tape_reset(m->ctx);
}

/* ---- helpers ---------------------------------------------------------------------- */
/* n images of a pseudo-random pattern over a gradient (the ZX81's LCG). */
static uint8_t *make_images(int n, size_t D, unsigned seed)
{
    uint8_t *x = malloc((size_t)n * D);
    assert_non_null(x);
    unsigned s = seed;
    for (size_t i = 0; i < (size_t)n * D; i++) {
        s = (s * 75 + 74) % 65537;
        x[i] = (uint8_t)((i % D * 7 + s % 96) % 256);
    }
    return x;
}

typedef struct model_case {
    agave_context *ctx;
    agave_model *m;
    uint8_t *x;
    size_t D;
} model_case;

/* A tiny model (with the changes given) trained for a few steps, so that its
 * KL and auxiliary terms are not those of the initialisation. */
static void case_open(model_case *mc, int n, int C, int T, int s, agave_mode mode)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "tiny"), AGAVE_OK);
    cfg.C = C, cfg.T = T, cfg.s = s, cfg.mode = mode;
    mc->D = (size_t)cfg.C * cfg.H * cfg.W;
    assert_int_equal(agave_context_create(&mc->ctx, 11), AGAVE_OK);
    assert_int_equal(agave_model_create(mc->ctx, &cfg, &mc->m), AGAVE_OK);
    mc->x = make_images(n > 8 ? n : 8, mc->D, 3);
    agave_step_stats st = {.struct_size = sizeof st};
    for (int i = 0; i < 3; i++)
        assert_int_equal(agave_model_train_step(mc->m, mc->x, 8, &st), AGAVE_OK);
}

static void case_close(model_case *mc)
{
    agave_model_free(mc->m);
    agave_context_free(mc->ctx);
    free(mc->x);
}

/* A memory limit that leaves room for about `rows` rows per chunk. */
static void limit_rows(model_case *mc, int rows)
{
    double bytes = config_model_bytes(&mc->m->cfg) +
                   (rows + 0.5) * config_forward_bytes_per_image(&mc->m->cfg);
    assert_int_equal(agave_context_set_memory_limit(mc->ctx, (size_t)bytes), AGAVE_OK);
    assert_int_equal(eval_chunk_rows(mc->m), rows);
}

/* The library's figures of n images with K samples, per image and averaged,
 * against the reference from the same generator state; both must leave the
 * generator in the same state. Returns the largest difference seen. */
static double check_against_reference(model_case *mc, int n, int K)
{
    agave_context *ctx = mc->ctx;
    figures *ref = malloc((size_t)n * sizeof *ref);
    double *got[FIGURES];
    for (int f = 0; f < FIGURES; f++)
        got[f] = malloc((size_t)n * sizeof(double));
    assert_non_null(ref);
    agave_rng start = ctx->rng;
    ref_evaluate(mc->m, mc->x, n, K, ref);
    agave_rng ref_end = ctx->rng;
    ctx->rng = start;
    agave_eval_options o;
    agave_eval_options_init(&o);
    o.elbo_bpd = got[0], o.recon_bpd = got[1], o.kl_bpd = got[2], o.aux_bpd = got[3];
    o.iwae_bpd = got[4];
    agave_eval_stats st = {.struct_size = sizeof st};
    assert_int_equal(agave_model_evaluate_scores(mc->m, mc->x, n, K, &o, &st), AGAVE_OK);
    assert_memory_equal(&ctx->rng, &ref_end, sizeof ref_end);
    assert_int_equal(st.n_images, n);
    assert_int_equal(st.iwae_samples, K);
    double worst = 0, mean[FIGURES] = {0}, ref_mean[FIGURES] = {0};
    for (int i = 0; i < n; i++)
        for (int f = 0; f < FIGURES; f++) {
            double d = fabs(got[f][i] - ref[i].v[f]);
            if (!(d <= BPD_TOL))
                fail_msg("n %d K %d image %d figure %d: %.9f, reference %.9f", n, K, i, f,
                         got[f][i], ref[i].v[f]);
            worst = fmax(worst, d);
            mean[f] += got[f][i] / n;
            ref_mean[f] += ref[i].v[f] / n;
        }
    /* The means of the per-image figures are the call's figures. */
    const double means[FIGURES] = {st.elbo_bpd, st.recon_bpd, st.kl_bpd, st.aux_bpd, st.iwae_bpd};
    for (int f = 0; f < FIGURES; f++) {
        if (!(fabs(means[f] - mean[f]) <= 1e-12 * (1 + fabs(mean[f]))))
            fail_msg("n %d K %d figure %d: mean %.12f, mean of the images %.12f", n, K, f,
                     means[f], mean[f]);
        assert_true(fabs(means[f] - ref_mean[f]) <= BPD_TOL);
    }
    for (int f = 0; f < FIGURES; f++)
        free(got[f]);
    free(ref);
    return worst;
}

/* ---- tests ------------------------------------------------------------------------ */
/* Several K and n with the default chunk (64 rows for tiny), and with chunks
 * of 5 and 1 rows, so that chunks end inside images and images inside chunks. */
static void test_batched_equals_per_image(void **state)
{
    (void)state;
    const int cases[][2] = {{1, 1}, {70, 1}, {19, 0}, {30, 3}, {5, 40}, {3, 150}};
    model_case mc;
    case_open(&mc, 70, 1, 1, 1, AGAVE_MODE_AGAVE);
    assert_int_equal(eval_chunk_rows(mc.m), 64);
    double worst = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        worst = fmax(worst, check_against_reference(&mc, cases[c][0], cases[c][1]));
    limit_rows(&mc, 5);
    worst = fmax(worst, check_against_reference(&mc, 13, 3));
    worst = fmax(worst, check_against_reference(&mc, 12, 1));
    limit_rows(&mc, 1);
    worst = fmax(worst, check_against_reference(&mc, 4, 2));
    print_message("largest per-image difference: %.2e bpd\n", worst);
    case_close(&mc);
}

/* Other shapes and modes: C = 3 with s = 2 and no IAF; mode vae (bounds on
 * y); mode pixelcnn (no latent: one row per image whatever K). */
static void test_batched_equals_per_image_modes(void **state)
{
    (void)state;
    model_case mc;
    case_open(&mc, 21, 3, 0, 2, AGAVE_MODE_AGAVE);
    check_against_reference(&mc, 21, 4);
    limit_rows(&mc, 3);
    check_against_reference(&mc, 7, 2);
    case_close(&mc);
    case_open(&mc, 17, 1, 1, 1, AGAVE_MODE_VAE);
    check_against_reference(&mc, 17, 5);
    case_close(&mc);
    case_open(&mc, 67, 1, 0, 1, AGAVE_MODE_PIXELCNN);
    check_against_reference(&mc, 67, 3);
    check_against_reference(&mc, 9, 0);
    case_close(&mc);
}

/* The same seed and thread count give the same figures, bit for bit. */
static void test_reproducible(void **state)
{
    (void)state;
    model_case mc;
    case_open(&mc, 20, 1, 1, 1, AGAVE_MODE_AGAVE);
    agave_eval_stats a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
    agave_context_seed(mc.ctx, 5);
    assert_int_equal(agave_model_evaluate(mc.m, mc.x, 20, 7, &a), AGAVE_OK);
    agave_context_seed(mc.ctx, 5);
    assert_int_equal(agave_model_evaluate(mc.m, mc.x, 20, 7, &b), AGAVE_OK);
    assert_memory_equal(&a, &b, sizeof a);
    case_close(&mc);
}

/* ---- progress and stopping ---------------------------------------------------------- */
typedef struct progress_log {
    int calls, stop_at;              /* stop once this many samples are done (0: never) */
    int64_t last_samples;
    int images_done, images, bad;
} progress_log;

static int on_progress(const agave_eval_progress *p, void *user)
{
    progress_log *log = user;
    log->calls++;
    /* Samples only grow; images are done once all their K = 3 samples are. */
    if (p->struct_size != sizeof *p || p->samples_done <= log->last_samples ||
        p->images_done != (int)(p->samples_done / 3) || p->samples != 3 * (int64_t)p->images)
        log->bad++;
    log->last_samples = p->samples_done;
    log->images_done = p->images_done;
    log->images = p->images;
    return log->stop_at > 0 && p->samples_done >= log->stop_at;
}

/* Progress after every chunk; a stop keeps the figures of the finished images
 * (the same numbers as without the stop) and reports their means. */
static void test_progress_and_stop(void **state)
{
    (void)state;
    enum { N = 30, K = 3, ROWS = 5 };
    model_case mc;
    case_open(&mc, N, 1, 1, 1, AGAVE_MODE_AGAVE);
    limit_rows(&mc, ROWS);
    double full[N], part[N];
    agave_rng start = mc.ctx->rng;
    progress_log log = {0, 0, 0, 0, 0, 0};
    agave_eval_options o;
    agave_eval_options_init(&o);
    o.iwae_bpd = full;
    o.progress = on_progress;
    o.progress_user = &log;
    agave_eval_stats all = {.struct_size = sizeof all};
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, N, K, &o, &all), AGAVE_OK);
    assert_int_equal(log.calls, (N * K + ROWS - 1) / ROWS);
    assert_int_equal(log.bad, 0);
    assert_int_equal(log.last_samples, N * K);
    assert_int_equal(log.images_done, N);

    mc.ctx->rng = start;
    progress_log stop = {0, 4 * ROWS, 0, 0, 0, 0};   /* stops inside image 6 */
    o.iwae_bpd = part;
    o.progress_user = &stop;
    agave_eval_stats some = {.struct_size = sizeof some};
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, N, K, &o, &some), AGAVE_OK);
    assert_int_equal(stop.calls, 4);
    assert_int_equal(some.n_images, 4 * ROWS / K);
    double mean = 0;
    for (int i = 0; i < N; i++) {
        if (i < some.n_images) {
            assert_memory_equal(&part[i], &full[i], sizeof part[i]);
            mean += part[i] / some.n_images;
        } else {
            assert_true(isnan(part[i]));
        }
    }
    assert_true(fabs(some.iwae_bpd - mean) < 1e-12 * mean);
    /* Stopped before any image is finished: no figures, and no NaN in stats. */
    progress_log first = {0, 1, 0, 0, 0, 0};
    o.progress_user = &first;
    agave_eval_stats none = {.struct_size = sizeof none};
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, N, 100, &o, &none), AGAVE_OK);
    assert_int_equal(none.n_images, 0);
    assert_true(none.elbo_bpd == 0 && none.iwae_bpd == 0);
    case_close(&mc);
}

/* The library reads only the caller's struct_size bytes of the options. */
static void test_options_struct_size(void **state)
{
    (void)state;
    model_case mc;
    case_open(&mc, 4, 1, 0, 1, AGAVE_MODE_AGAVE);
    double elbo[4], iwae[4] = {-1, -1, -1, -1};
    agave_eval_options o;
    agave_eval_options_init(&o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_null(o.elbo_bpd);
    assert_null(o.progress);
    o.elbo_bpd = elbo, o.iwae_bpd = iwae;
    o.struct_size = offsetof(agave_eval_options, iwae_bpd);   /* an older, shorter struct */
    agave_eval_stats st = {.struct_size = sizeof st};
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, 4, 2, &o, &st), AGAVE_OK);
    assert_true(isfinite(elbo[3]) && elbo[3] > 0);
    assert_true(iwae[0] == -1 && iwae[3] == -1);
    o.struct_size = 0;
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, 4, 2, &o, &st),
                     AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(mc.ctx), "agave_eval_options"));
    /* A newer header's struct: a field more, accepted at its _init value (0)
     * and refused once set. */
    struct {
        agave_eval_options o;
        uint64_t extra;
    } newer;
    agave_eval_options_init_sized(&newer.o, sizeof newer);
    assert_int_equal(newer.o.struct_size, sizeof newer);
    assert_true(newer.extra == 0);
    newer.o.iwae_bpd = iwae;
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, 4, 2, &newer.o, &st), AGAVE_OK);
    assert_true(isfinite(iwae[3]) && iwae[3] > 0);
    newer.extra = 1;
    assert_int_equal(agave_model_evaluate_scores(mc.m, mc.x, 4, 2, &newer.o, &st),
                     AGAVE_ERR_INVALID_ARG);
    assert_non_null(strstr(agave_context_last_error(mc.ctx), "newer agave.h"));
    assert_int_equal(agave_model_evaluate_scores(NULL, mc.x, 4, 2, NULL, &st), AGAVE_ERR_NULL);
    assert_int_equal(agave_model_evaluate_scores(mc.m, NULL, 4, 2, NULL, &st), AGAVE_ERR_NULL);
    agave_eval_options_init_sized(NULL, 0);
    case_close(&mc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_per_image),
        cmocka_unit_test(test_batched_equals_per_image_modes),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_progress_and_stop),
        cmocka_unit_test(test_options_struct_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
