/* The lossless codec (lib/codec): the rANS stack on its own, the integer
 * frequency tables against the model's floats, round trips through the
 * public API (tiny and a small fashion-shaped model, 1 and 2 threads, every
 * mode the codec takes), and the refusals: damaged, truncated and foreign
 * files, another model, another thread count, another machine. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "codec/codec.h"
#include "codec/rans.h"
#include "codec/tables.h"
#include "loss/loss.h"
#include "model/model.h"
#include "model/sample_cached.h"
#include "support/gradcheck.h"
#include "support/support.h"

/* ---- the rANS stack ---------------------------------------------------------------- */
/* A random table of n symbols summing to 2^prec, every frequency >= 1, some
 * tiny and some dominant. cdf[0..n]. */
static void random_table(int n, int prec, uint32_t *cdf)
{
    uint32_t total = 1u << prec, spare = total - (uint32_t)n;
    double *w = malloc((size_t)n * sizeof *w), sum = 0;
    for (int i = 0; i < n; i++) {
        double u = test_uniform(0, 1);
        w[i] = u < 0.2 ? 0 : u < 0.9 ? u : 50 * u;   /* zero weight: frequency 1 */
        sum += w[i];
    }
    cdf[0] = 0;
    uint32_t given = 0;
    for (int i = 0; i < n; i++) {
        uint32_t extra = sum > 0 ? (uint32_t)floor(w[i] / sum * spare) : 0;
        if (i == n - 1)
            extra = spare - given;
        given += extra;
        cdf[i + 1] = cdf[i] + 1 + extra;
    }
    assert_int_equal(cdf[n], total);
    free(w);
}

/* Bits a stack holds beyond a state of RANS_L: words and the state's bits. */
static double stack_bits(const rans_stack *r) { return 32.0 * r->len + log2((double)r->state); }

/* Random symbols under random tables pushed, then popped back in reverse:
 * every symbol comes back, the stack ends exactly where it began, and the
 * code length is the sum of -log2 p to within a few bytes. */
static void test_rans_round_trip(void **state)
{
    (void)state;
    enum { N = 20000 };
    static uint32_t cdfs[8][257];
    static int sizes[8], precs[8], sym[N], table[N];
    test_rng_seed(11);
    const int prec_choice[8] = {1, 4, 12, 16, 20, 24, 28, 31};
    for (int t = 0; t < 8; t++) {
        precs[t] = prec_choice[t];
        int most = precs[t] >= 8 ? 256 : 1 << precs[t];
        sizes[t] = 1 + (int)test_uniform(0, most - 0.01);
        random_table(sizes[t], precs[t], cdfs[t]);
    }
    rans_stack r;
    rans_init(&r, 99, 1 << 20);
    uint64_t start_state = r.state;
    double ideal = 0, before = stack_bits(&r);
    for (int i = 0; i < N; i++) {
        table[i] = (int)test_uniform(0, 7.99);
        const uint32_t *c = cdfs[table[i]];
        sym[i] = (int)test_uniform(0, sizes[table[i]] - 0.01);
        uint32_t freq = c[sym[i] + 1] - c[sym[i]];
        rans_push(&r, c[sym[i]], freq, precs[table[i]]);
        ideal += precs[table[i]] - log2((double)freq);
    }
    double used = stack_bits(&r) - before;
    /* rANS with 32-bit words and a 2^31 lower bound loses a fraction of a bit per
     * renormalisation at most; here the whole stream is within 8 bytes */
    assert_true(used >= ideal - 64);
    assert_true(used <= ideal + 64);
    for (int i = N - 1; i >= 0; i--) {
        const uint32_t *c = cdfs[table[i]];
        uint32_t slot = rans_peek(&r, precs[table[i]]);
        int s = 0;
        while (c[s + 1] <= slot)
            s++;
        assert_int_equal(s, sym[i]);
        rans_pop(&r, c[s], c[s + 1] - c[s], precs[table[i]]);
    }
    assert_int_equal(r.len, 0);
    assert_true(r.state == start_state);
    assert_int_equal(r.virtual_used, 0);
    assert_int_equal(r.error, RANS_OK);
    rans_free(&r);
}

/* Bits-back's order: an encoder that pops before it pushes draws virtual
 * words from below its bottom; a decoder that undoes every step ends on
 * exactly the seed's state with those words pushed back (rans_is_initial),
 * and one step left out or changed is seen. */
static void test_rans_virtual_words(void **state)
{
    (void)state;
    enum { STEPS = 3000 };
    static uint32_t wide[257], narrow[257];
    static int popped[STEPS], pushed[STEPS];
    test_rng_seed(12);
    for (int v = 0; v <= 200; v++)   /* popped: 200 symbols alike, 7.6 bits each */
        wide[v] = (uint32_t)((v * 65536 + 100) / 200);
    narrow[0] = 0;   /* pushed: symbol 0 takes 90% of the table, about 1 bit a step */
    for (int v = 1; v <= 200; v++)
        narrow[v] = 58982 + (uint32_t)((v - 1) * (65536 - 58982) / 199);
    rans_stack enc;
    rans_init(&enc, 7, 1 << 20);
    for (int i = 0; i < STEPS; i++) {   /* pop a "latent", push "data" */
        uint32_t slot = rans_peek(&enc, 16);
        int s = 0;
        while (wide[s + 1] <= slot)
            s++;
        popped[i] = s;
        rans_pop(&enc, wide[s], wide[s + 1] - wide[s], 16);
        pushed[i] = test_uniform(0, 1) < 0.9 ? 0 : (int)test_uniform(1, 199.99);
        rans_push(&enc, narrow[pushed[i]], narrow[pushed[i] + 1] - narrow[pushed[i]], 16);
    }
    assert_true(enc.virtual_used > 100);
    for (int variant = 0; variant < 2; variant++) {
        rans_stack dec;
        assert_true(rans_load(&dec, enc.state, enc.words, enc.len, 7, 1 << 20));
        for (int i = STEPS - 1; i >= 0; i--) {
            uint32_t slot = rans_peek(&dec, 16);
            int s = 0;
            while (narrow[s + 1] <= slot)
                s++;
            assert_int_equal(s, pushed[i]);
            rans_pop(&dec, narrow[s], narrow[s + 1] - narrow[s], 16);
            int back = popped[i];
            if (variant == 1 && i == STEPS / 2)
                back = (back + 1) % 200;   /* one wrong step */
            rans_push(&dec, wide[back], wide[back + 1] - wide[back], 16);
        }
        assert_int_equal(dec.error, RANS_OK);
        assert_int_equal(rans_is_initial(&dec), variant == 0);
        rans_free(&dec);
    }
    rans_free(&enc);
}

/* A decoder that pops past its words reports it instead of reading memory;
 * a stored state outside [2^31, 2^63) is refused. */
static void test_rans_limits(void **state)
{
    (void)state;
    rans_stack r;
    uint32_t words[2] = {1, 2};
    assert_false(rans_load(&r, RANS_L - 1, words, 2, 1, 16));
    assert_false(rans_load(&r, 1ull << 63, words, 2, 1, 16));
    assert_false(rans_load(&r, RANS_L, words, 2, 1, 1));   /* more words than the limit */
    assert_true(rans_load(&r, RANS_L, words, 2, 1, 16));
    for (int i = 0; i < 10; i++)
        rans_pop(&r, 0, 1, 31);   /* the narrowest symbol: consumes a word every time */
    assert_int_equal(r.error, RANS_ERR_EMPTY);
    rans_free(&r);
    rans_init(&r, 1, 4);
    for (int i = 0; i < 10; i++)
        rans_push(&r, 0, 1, 31);
    assert_int_equal(r.error, RANS_ERR_LIMIT);
    assert_true(r.len <= 4);
    rans_free(&r);
}

/* ---- the tables ---------------------------------------------------------------------- */
/* Random mixture parameters of one pixel (P floats), some sharp, some wide. */
static void random_params(float *p, int C, int M)
{
    int P = dmol_param_count(C, M);
    for (int k = 0; k < P; k++)
        p[k] = (float)test_uniform(-1.5, 1.5);
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++)   /* log-scales, down to below the clamp at -7 */
            p[M * (2 + 3 * c) + m] = (float)test_uniform(-8, 0.5);
}

/* The mixture's joint probability of pixel x straight from docs/model.md, in
 * long double: sum over components of pi_m times the product over channels
 * of the logistic bin masses, with the coupled means on the true values. */
static double reference_joint(const float *p, int C, int M, const uint8_t *x)
{
    long double top = -INFINITY, sum = 0, joint = 0;
    for (int m = 0; m < M; m++)
        top = p[m] > top ? p[m] : top;
    for (int m = 0; m < M; m++)
        sum += expl(p[m] - top);
    for (int m = 0; m < M; m++) {
        long double prod = expl(p[m] - top) / sum, xn[3];
        for (int c = 0; c < C; c++) {
            long double mean = p[M * (1 + 3 * c) + m], ls = p[M * (2 + 3 * c) + m];
            if (c == 1)
                mean += tanhl(p[M * 3 + m]) * xn[0];
            if (c == 2)
                mean += tanhl(p[M * 6 + m]) * xn[0] + tanhl(p[M * 9 + m]) * xn[1];
            long double s = expl(ls < -7 ? -7 : ls), v = x[c] / 127.5L - 1;
            long double hi = x[c] == 255 ? 1 : 1 / (1 + expl(-(v + 1 / 255.0L - mean) / s));
            long double lo = x[c] == 0 ? 0 : 1 / (1 + expl(-(v - 1 / 255.0L - mean) / s));
            prod *= hi - lo;
            xn[c] = v;
        }
        joint += prod;
    }
    return (double)logl(joint);
}

/* Every table sums to 2^24 with every value at least one unit, the
 * decoder's search finds every value the encoder codes, each integer
 * probability is the float one to within the quantisation, and the float
 * conditionals multiply to the mixture's joint probability of the pixel
 * (docs/model.md's formula in long double, reference_joint). */
static void check_pixel_tables(int C, int M, unsigned seed)
{
    test_rng_seed(seed);
    float params[10 * 8];
    int compared = 0;
    for (int trial = 0; trial < 60; trial++) {
        random_params(params, C, M);
        uint8_t x[3];
        pixel_model pm;
        pixel_model_begin(&pm, params, C, M);
        double model = 0;
        for (int c = 0; c < C; c++) {
            uint32_t prev = pixel_cdf(&pm, 0);
            assert_int_equal(prev, 0);
            double total = 0, u = test_uniform(0, 1), below = 0;
            x[c] = 255;
            for (int v = 0; v < 256; v++) {
                uint32_t next = pixel_cdf(&pm, v + 1);
                assert_true(next >= prev + 1);
                uint32_t s, f;
                assert_true(pixel_interval(&pm, v, &s, &f));
                assert_int_equal(s, prev);
                assert_int_equal(f, next - prev);
                uint32_t s2, f2;
                assert_int_equal(pixel_find(&pm, s + f / 2, &s2, &f2), v);
                assert_int_equal(pixel_find(&pm, s + f - 1, &s2, &f2), v);
                /* the integer probability is the float one, quantised: the floor
                 * and the 256 units lent to the symbols move it by at most
                 * 2^-23 absolute plus 1.6e-5 relative */
                double p = pixel_prob(&pm, v), q = (double)f / (1u << CODEC_PIXEL_PREC);
                assert_true(fabs(q - p) <= 1.6e-5 * p + 1.2e-7);
                total += p;
                /* half the trials draw the pixel from the model itself (typical
                 * values), the others take it at random */
                below += p;
                if (trial % 2 == 0 && x[c] == 255 && below > u)
                    x[c] = (uint8_t)v;
                prev = next;
            }
            assert_int_equal(prev, 1u << CODEC_PIXEL_PREC);
            assert_true(fabs(total - 1) < 1e-12);
            if (trial % 2)
                x[c] = (uint8_t)test_uniform(0, 255.99);
            model += log(pixel_prob(&pm, x[c]));
            /* the encoder's take = prob then next, to the bit */
            pixel_model taken = pm;
            double p_taken = pixel_model_take(&taken, x[c]);
            assert_true(p_taken == pixel_prob(&pm, x[c]));
            pixel_model_next(&pm, x[c]);
            assert_int_equal(taken.c, pm.c);
            if (pm.c < C)
                for (int m = 0; m < M; m++) {
                    assert_true(taken.weight[m] == pm.weight[m]);
                    assert_true(taken.mean[m] == pm.mean[m]);
                    assert_true(taken.inv_s[m] == pm.inv_s[m]);
                }
        }
        /* the chain rule of the coded conditionals is the mixture's joint */
        double joint = reference_joint(params, C, M, x);
        if (joint > log(1e-12)) {
            assert_true(fabs(model - joint) < 1e-9);
            compared++;
        }
        /* and close to the library's own likelihood, whose small-mass fallback
         * differs a little */
        if (joint > log(1e-3))
            assert_true(fabs(dmol_pixel_logprob(params, 1, C, M, x, 1) - joint) < 1e-3);
    }
    assert_true(compared >= 30);
}

static void test_pixel_tables_grey(void **state)
{
    (void)state;
    check_pixel_tables(1, 5, 21);
}

static void test_pixel_tables_colour(void **state)
{
    (void)state;
    check_pixel_tables(3, 4, 22);
}

/* A CDF that is not monotone (a mixture with a decreasing component, which
 * no model produces): the encoder's check refuses the values whose intervals
 * the decoder's search could miss, and every value it accepts is found
 * again from every slot of its interval. */
static void test_pixel_interval_refuses(void **state)
{
    (void)state;
    /* F rises to 0.9 near x~ = -0.8, falls to 0.5 at -0.2, rises to 0.6 at 0.5 */
    float params[3 * 3] = {0, 0, 0, -0.8f, -0.2f, 0.5f, -3, -3, -3};
    pixel_model pm;
    pixel_model_begin(&pm, params, 1, 3);
    pm.weight[0] = 0.5, pm.weight[1] = 0.4, pm.weight[2] = 0.1;
    pm.inv_s[1] = -pm.inv_s[1];
    int refused = 0, accepted = 0;
    for (int v = 0; v < 256; v++) {
        uint32_t s, f, s2, f2;
        if (!pixel_interval(&pm, v, &s, &f)) {
            refused++;
            continue;
        }
        accepted++;
        for (uint32_t slot = s; slot < s + f; slot += 1 + f / 64)
            assert_int_equal(pixel_find(&pm, slot, &s2, &f2), v);
        assert_int_equal(pixel_find(&pm, s + f - 1, &s2, &f2), v);
    }
    assert_true(refused > 0 && accepted > 0);
}

/* The encoder skips the search walk for models with finite components
 * (tables.c proves it redundant): on the sharpest components the network can
 * make (log-scale -7, a mean on a bin edge or just off it, weights from
 * 1e-30 to 1), cdf never decreases and pixel_find lands on every value from
 * both ends of its interval. */
static void test_pixel_interval_sharp(void **state)
{
    (void)state;
    test_rng_seed(31);
    const int M = 4;
    for (int trial = 0; trial < 200; trial++) {
        float params[3 * 4];
        for (int m = 0; m < M; m++) {
            int edge = (int)test_uniform(1, 255.99);
            double nudge = trial % 3 == 0 ? 0 : test_uniform(-1e-6, 1e-6);
            params[m] = (float)test_uniform(-70, 0);                       /* logit */
            params[M + m] = (float)((2.0 * edge - 1.0) / 255.0 - 1.0 + nudge);
            params[2 * M + m] = (float)test_uniform(-9, -5);               /* log-scale */
        }
        pixel_model pm;
        pixel_model_begin(&pm, params, 1, M);
        for (int k = 0; k < 256; k++)
            assert_true(pixel_cdf(&pm, k + 1) >= pixel_cdf(&pm, k));
        for (int v = 0; v < 256; v++) {
            uint32_t s, f, s2, f2;
            assert_true(pixel_interval(&pm, v, &s, &f));
            assert_int_equal(pixel_find(&pm, s, &s2, &f2), v);
            assert_int_equal(pixel_find(&pm, s + f - 1, &s2, &f2), v);
            assert_true(s2 == s && f2 == f);
        }
    }
}

/* The probit against erfc (an independent function), the buckets of equal
 * prior mass, and the posterior's tables. */
static void test_latent_tables(void **state)
{
    (void)state;
    for (int i = 1; i < 1000; i++) {
        double p = i / 1000.0, x = codec_probit(p);
        assert_true(fabs(0.5 * erfc(-x / sqrt(2.0)) - p) < 1e-15 * (p < 0.5 ? 1 : 2));
    }
    assert_true(fabs(codec_probit(1e-12) + 7.034483825) < 1e-8);
    latent_grid g;
    assert_true(latent_grid_init(&g, 6));
    for (int i = 0; i < 64; i++) {
        assert_true(g.edge[i] < g.centre[i] && g.centre[i] < g.edge[i + 1]);
        double mass = 0.5 * erfc(-g.edge[i + 1] / sqrt(2.0)) - 0.5 * erfc(-g.edge[i] / sqrt(2.0));
        assert_true(fabs(mass - 1.0 / 64) < 1e-14);
    }
    test_rng_seed(23);
    for (int trial = 0; trial < 200; trial++) {
        double mu = test_uniform(-4, 4), sigma = exp(test_uniform(-4, 1)), inv = 1 / sigma;
        uint32_t prev = 0;
        for (uint32_t i = 1; i <= 64; i++) {
            uint32_t c = latent_cdf(&g, mu, inv, i);
            assert_true(c >= prev + 1);
            /* the bucket's posterior mass by Simpson's rule on the density */
            double lo = fmax(g.edge[i - 1], mu - 12 * sigma), hi = fmin(g.edge[i], mu + 12 * sigma);
            double mass = 0;
            if (hi > lo) {
                const int K = 2000;
                for (int k = 0; k <= K; k++) {
                    double t = (lo + (hi - lo) * k / K - mu) / sigma;
                    mass += (k == 0 || k == K ? 1 : k % 2 ? 4 : 2) * exp(-t * t / 2);
                }
                mass *= (hi - lo) / K / 3 / (sigma * sqrt(2 * M_PI));
            }
            /* quantisation: the floor, and the 2^6 units lent to the buckets */
            double q = (double)(c - prev) / (1u << CODEC_LATENT_PREC);
            assert_true(fabs(q - mass) <= 3.9e-6 * mass + 1.3e-7);
            uint32_t s, f;
            assert_int_equal(latent_find(&g, mu, inv, (prev + c) / 2, &s, &f), i - 1);
            assert_int_equal(s, prev);
            assert_int_equal(f, c - prev);
            prev = c;
        }
        assert_int_equal(prev, 1u << CODEC_LATENT_PREC);
    }
    latent_grid_free(&g);
}

/* ---- the sampler's hook ----------------------------------------------------------- */
typedef struct hook_log {
    float *params;   /* (H*W, n, P) as the hook saw them */
    int P;
    int n;
} hook_log;

static agave_status log_hook(void *user, int lane, int first, int count, int p,
                             const float *params)
{
    (void)lane;
    hook_log *h = user;
    memcpy(h->params + ((size_t)p * h->n + first) * h->P, params,
           (size_t)count * h->P * sizeof(float));
    return AGAVE_OK;
}

/* The hook sees exactly the parameters cached_sampler_step gives for the
 * same batch: the codec's path adds nothing to the sampler's arithmetic. */
static void test_hook_matches_step(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 3), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(ctx, 2), AGAVE_OK);
    agave_config cfg = support_tiny_config(3, 0, 1, 256, AGAVE_MODE_AGAVE);
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    const int n = 5, P = dmol_param_count(3, cfg.M), HW = 64;
    uint8_t *x = malloc((size_t)n * 3 * HW);
    float *f = malloc((size_t)n * 3 * HW * sizeof *f);
    test_rng_seed(4);
    for (int i = 0; i < n * 3 * HW; i++)
        x[i] = (uint8_t)test_uniform(0, 255.99), f[i] = (float)test_uniform(-1, 1);
    assert_int_equal(agave_model_init(m, x, n), AGAVE_OK);
    hook_log h = {malloc((size_t)HW * n * P * sizeof(float)), P, n};
    cached_sampler *s;
    assert_int_equal(cached_sampler_create(m, n, 1, &s), AGAVE_OK);
    assert_int_equal(cached_sampler_lanes(s), 2);
    assert_int_equal(cached_sampler_begin(s, f, x), AGAVE_OK);
    assert_int_equal(cached_sampler_run(s, log_hook, &h), AGAVE_OK);
    assert_int_equal(cached_sampler_begin(s, f, x), AGAVE_OK);
    for (int p = 0; p < HW; p++) {
        const float *params;
        assert_int_equal(cached_sampler_step(s, p / 8, p % 8, &params), AGAVE_OK);
        assert_memory_equal(params, h.params + (size_t)p * n * P, (size_t)n * P * sizeof(float));
    }
    cached_sampler_free(s);
    free(h.params), free(x), free(f);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* The hook's parameters of a tiny conditional model's sampler for n images
 * (made for n_make, then set to n), run pixel by pixel or a row at a time,
 * with or without fixed products; NULL when a step is refused (st says
 * why). */
typedef struct sampler_run {
    int n_make, n, fixed, known;
} sampler_run;

static float *hook_params(agave_model *m, const uint8_t *x, const float *f, sampler_run r,
                          agave_status *st)
{
    const int P = dmol_param_count(m->cfg.C, m->cfg.M), HW = m->cfg.H * m->cfg.W;
    hook_log h = {malloc((size_t)HW * r.n * P * sizeof(float)), P, r.n};
    cached_sampler *s;
    assert_int_equal(cached_sampler_create(m, r.n_make, 1, &s), AGAVE_OK);
    *st = r.fixed ? cached_sampler_fix_products(s) : AGAVE_OK;
    if (*st == AGAVE_OK)
        *st = cached_sampler_set_batch(s, r.n);
    if (*st == AGAVE_OK)
        *st = cached_sampler_begin(s, f, x);
    if (*st == AGAVE_OK)
        *st = r.known ? cached_sampler_run_known(s, log_hook, &h) : cached_sampler_run(s, log_hook, &h);
    cached_sampler_free(s);
    if (*st != AGAVE_OK) {
        free(h.params);
        return NULL;
    }
    return h.params;
}

typedef struct sampler_fixture {
    agave_context *ctx;
    agave_model *m;
    uint8_t *x;
    float *f;
    int n;
} sampler_fixture;

static void sampler_fixture_make(sampler_fixture *fx, int n)
{
    assert_int_equal(agave_context_create(&fx->ctx, 3), AGAVE_OK);
    assert_int_equal(agave_context_set_threads(fx->ctx, 2), AGAVE_OK);
    agave_config cfg = support_tiny_config(3, 0, 1, 256, AGAVE_MODE_AGAVE);
    assert_int_equal(agave_model_create(fx->ctx, &cfg, &fx->m), AGAVE_OK);
    const int HW = cfg.H * cfg.W;
    fx->n = n;
    fx->x = malloc((size_t)n * 3 * HW);
    fx->f = malloc((size_t)n * 3 * HW * sizeof *fx->f);
    test_rng_seed(6);
    for (int i = 0; i < n * 3 * HW; i++)
        fx->x[i] = (uint8_t)test_uniform(0, 255.99), fx->f[i] = (float)test_uniform(-1, 1);
    assert_int_equal(agave_model_init(fx->m, fx->x, n), AGAVE_OK);
}

static void sampler_fixture_free(sampler_fixture *fx)
{
    free(fx->x), free(fx->f);
    agave_model_free(fx->m);
    agave_context_free(fx->ctx);
}

static size_t params_bytes(const sampler_fixture *fx, int n)
{
    return (size_t)fx->m->cfg.H * fx->m->cfg.W * n * dmol_param_count(3, fx->m->cfg.M) *
           sizeof(float);
}

/* The encoder's rows give the decoder's pixels' bits: with fixed products,
 * a row at a time equals pixel by pixel to the last bit, for batches that
 * split into lanes of 3 and 4 images and of 1 image. */
static void test_rows_match_pixels(void **state)
{
    (void)state;
    if (!cached_sampler_fixed_products_available())
        skip();
    sampler_fixture fx;
    sampler_fixture_make(&fx, 7);
    const int sizes[] = {7, 2, 1};
    for (int i = 0; i < 3; i++) {
        agave_status st;
        float *pixels = hook_params(fx.m, fx.x, fx.f, (sampler_run){7, sizes[i], 1, 0}, &st);
        assert_non_null(pixels);
        float *rows = hook_params(fx.m, fx.x, fx.f, (sampler_run){7, sizes[i], 1, 1}, &st);
        assert_non_null(rows);
        assert_memory_equal(rows, pixels, params_bytes(&fx, sizes[i]));
        free(pixels), free(rows);
    }
    sampler_fixture_free(&fx);
}

/* Without fixed products a row would round unlike a pixel: refused. */
static void test_rows_need_fixed_products(void **state)
{
    (void)state;
    sampler_fixture fx;
    sampler_fixture_make(&fx, 3);
    agave_status st;
    assert_null(hook_params(fx.m, fx.x, fx.f, (sampler_run){3, 3, 0, 1}, &st));
    assert_int_equal(st, AGAVE_ERR_STATE);
    sampler_fixture_free(&fx);
}

/* A sampler set to a smaller batch computes what one made for it does, bit
 * for bit (the same lanes, the same products), in both product modes; a
 * batch beyond what it was made for, or of none, is refused. */
static void test_set_batch_as_made(void **state)
{
    (void)state;
    sampler_fixture fx;
    sampler_fixture_make(&fx, 7);
    const int fixed_modes = cached_sampler_fixed_products_available() ? 2 : 1;
    for (int fixed = 0; fixed < fixed_modes; fixed++)
        for (int n = 1; n <= 7; n += 3) {
            agave_status st;
            float *set = hook_params(fx.m, fx.x, fx.f, (sampler_run){7, n, fixed, 0}, &st);
            float *made = hook_params(fx.m, fx.x, fx.f, (sampler_run){n, n, fixed, 0}, &st);
            assert_non_null(set), assert_non_null(made);
            assert_memory_equal(set, made, params_bytes(&fx, n));
            free(set), free(made);
        }
    agave_status st;
    assert_null(hook_params(fx.m, fx.x, fx.f, (sampler_run){3, 4, 0, 0}, &st));
    assert_int_equal(st, AGAVE_ERR_INVALID_ARG);
    assert_null(hook_params(fx.m, fx.x, fx.f, (sampler_run){3, 0, 0, 0}, &st));
    assert_int_equal(st, AGAVE_ERR_INVALID_ARG);
    sampler_fixture_free(&fx);
}

/* ---- models and images for the round trips ------------------------------------------ */
/* A model of cfg after data-dependent initialisation and a few steps on x. */
static agave_model *trained(agave_context *ctx, agave_config cfg, const uint8_t *x, int n)
{
    agave_model *m;
    cfg.ema = 0.9f;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    for (int s = 0; s < 3; s++) {
        agave_step_stats st = {.struct_size = sizeof st};
        assert_int_equal(agave_model_train_step(m, x, n < 16 ? n : 16, &st), AGAVE_OK);
    }
    return m;
}

/* n images of D bytes: all black, all white, noise, then smooth shapes. */
static uint8_t *test_images(int n, int C, int H, int W, unsigned seed)
{
    size_t D = (size_t)C * H * W;
    uint8_t *x = malloc((size_t)n * D);
    test_rng_seed(seed);
    for (int i = 0; i < n; i++) {
        uint8_t *img = x + (size_t)i * D;
        int kind = i % 5;
        double cx = test_uniform(0, W), cy = test_uniform(0, H), r = test_uniform(2, H);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    size_t at = ((size_t)c * H + y) * W + xx;
                    double d = hypot(xx - cx, y - cy);
                    img[at] = kind == 0   ? 0
                              : kind == 1 ? 255
                              : kind == 2 ? (uint8_t)test_uniform(0, 255.99)
                                          : (uint8_t)(d < r ? 200 - 60 * c + (int)(d * 3) % 40 : 0);
                }
    }
    return x;
}

typedef struct buffer { uint8_t *p; size_t len, cap; size_t first_write_at; } buffer;

static agave_status buffer_write(const void *data, size_t len, void *user)
{
    buffer *b = user;
    if (b->len + len > b->cap) {
        b->cap = 2 * (b->len + len);
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return AGAVE_OK;
}

/* Compresses x with opt, decompresses it, and checks every byte; returns
 * the compressed file (malloc'ed) in *out. */
static void round_trip(agave_model *m, const agave_codec_options *opt, const uint8_t *x, int n,
                       size_t D, buffer *out)
{
    agave_context *ctx = NULL;
    size_t cap = 0;
    (void)ctx;
    assert_int_equal(agave_codec_bound(m, opt, n, &cap), AGAVE_OK);
    uint8_t *file = malloc(cap);
    size_t size = 0;
    agave_status st = agave_codec_encode(m, opt, x, n, file, cap, &size);
    if (st != AGAVE_OK)
        fail_msg("encode: %s", agave_context_last_error(m->ctx));
    uint8_t *y = malloc((size_t)n * D + 1);
    memset(y, 0xa5, (size_t)n * D + 1);
    int64_t got = -1;
    st = agave_codec_decode(m, file, size, y, n, &got);
    if (st != AGAVE_OK)
        fail_msg("decode: %s", agave_context_last_error(m->ctx));
    assert_int_equal(got, n);
    assert_memory_equal(x, y, (size_t)n * D);
    free(y);
    if (out) {
        out->p = file, out->len = size, out->cap = cap;
    } else {
        free(file);
    }
}

/* tiny, grey and colour: mode agave on 200 images with 1 and 2 threads, and
 * modes naive (no per-image CRCs) and pixelcnn (no latent code) on 60. */
static void test_round_trip_tiny(void **state)
{
    (void)state;
    const struct {
        agave_mode mode;
        int threads, n, batch, chunk, bits, image_crc;
    } runs[4] = {{AGAVE_MODE_AGAVE, 1, 200, 7, 60, 8, 1},   /* several chunks, the last short */
                 {AGAVE_MODE_AGAVE, 2, 200, 64, 4096, 12, 1},
                 {AGAVE_MODE_NAIVE, 2, 60, 17, 30, 4, 0},
                 {AGAVE_MODE_PIXELCNN, 1, 60, 27, 60, 8, 1}};
    for (int C = 1; C <= 3; C += 2)
        for (int r = 0; r < 4; r++) {
            agave_context *ctx;
            assert_int_equal(agave_context_create(&ctx, 5), AGAVE_OK);
            assert_int_equal(agave_context_set_threads(ctx, runs[r].threads), AGAVE_OK);
            agave_config cfg = support_tiny_config(C, 0, 1, 256, runs[r].mode);
            uint8_t *x = test_images(runs[r].n, C, 8, 8, 31 + C);
            agave_model *m = trained(ctx, cfg, x, runs[r].n);
            agave_codec_options opt;
            agave_codec_options_init(&opt);
            opt.batch = runs[r].batch, opt.chunk = runs[r].chunk;
            opt.latent_bits = runs[r].bits, opt.image_crc = runs[r].image_crc;
            round_trip(m, &opt, x, runs[r].n, (size_t)C * 64, NULL);
            free(x);
            agave_model_free(m);
            agave_context_free(ctx);
        }
}

/* A fashion-shaped model (1x28x28, every part, small widths), 300 images. */
static agave_config fashion_small(void)
{
    agave_config cfg;
    assert_int_equal(agave_config_init(&cfg, "fashion"), AGAVE_OK);
    cfg.F = 8, cfg.M = 3, cfg.Fv = 8, cfg.Z = 2;
    return cfg;
}

static void test_round_trip_fashion(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        agave_context *ctx;
        assert_int_equal(agave_context_create(&ctx, 6), AGAVE_OK);
        assert_int_equal(agave_context_set_threads(ctx, threads), AGAVE_OK);
        int n = 300;
        uint8_t *x = test_images(n, 1, 28, 28, 41);
        agave_model *m = trained(ctx, fashion_small(), x, n);
        agave_codec_options opt;
        agave_codec_options_init(&opt);   /* the defaults: batch 64, one chunk */
        buffer file = {0};
        round_trip(m, &opt, x, n, 784, &file);
        /* The streaming encoder writes the same bytes, and its statistics add
         * up to the file: the coded bits plus the framing (header, one CRC
         * per image, then 100 to 300 bytes of header, the chunk's fixed part
         * and chain states; about 200 here). */
        buffer again = {0};
        agave_codec_encoder *e;
        assert_int_equal(agave_codec_encoder_create(m, &opt, n, buffer_write, &again, &e),
                         AGAVE_OK);
        assert_int_equal(agave_codec_encoder_add(e, x, n), AGAVE_OK);
        assert_int_equal(agave_codec_encoder_finish(e), AGAVE_OK);
        agave_codec_stats s = {.struct_size = sizeof s};
        assert_int_equal(agave_codec_encoder_stats(e, &s), AGAVE_OK);
        agave_codec_encoder_free(e);
        assert_int_equal(again.len, file.len);
        assert_memory_equal(again.p, file.p, file.len);
        assert_int_equal(s.bytes, file.len);
        double coded = s.pixel_bits + s.latent_prior_bits - s.latent_posterior_bits +
                       s.initial_bits, framing = 8.0 * (double)file.len - coded;
        assert_true(framing >= 8.0 * (4 * n + 100) && framing < 8.0 * (4 * n + 300));
        free(again.p);
        free(file.p);
        free(x);
        agave_model_free(m);
        agave_context_free(ctx);
    }
}

/* Reads a buffer a few bytes at a time, as a pipe might deliver it. */
typedef struct trickle { const uint8_t *p; size_t len, at; unsigned step; } trickle;

static agave_status trickle_read(void *data, size_t len, size_t *got, void *user)
{
    trickle *t = user;
    size_t n = 1 + t->step++ % 7;
    if (n > len)
        n = len;
    if (n > t->len - t->at)
        n = t->len - t->at;
    memcpy(data, t->p + t->at, n);
    t->at += n;
    *got = n;
    return AGAVE_OK;
}

/* Streaming: a chunk leaves the encoder as soon as its images are in (so
 * memory does not grow with the images), and the decoder takes its input in
 * small pieces and hands the images out in order, in reads of any size. */
static void test_streaming(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 8), AGAVE_OK);
    agave_config cfg = support_tiny_config(1, 0, 1, 256, AGAVE_MODE_AGAVE);
    int n = 130;
    uint8_t *x = test_images(n, 1, 8, 8, 51);
    agave_model *m = trained(ctx, cfg, x, n);
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.batch = 16, opt.chunk = 50;
    buffer b = {0};
    agave_codec_encoder *e;
    assert_int_equal(agave_codec_encoder_create(m, &opt, n, buffer_write, &b, &e), AGAVE_OK);
    size_t header = b.len;
    assert_true(header > 0 && header < 400);
    assert_int_equal(agave_codec_encoder_add(e, x, 49), AGAVE_OK);
    assert_int_equal(b.len, header);                  /* chunk 0 not complete yet */
    assert_int_equal(agave_codec_encoder_add(e, x + 49 * 64, 1), AGAVE_OK);
    size_t after_one = b.len;
    assert_true(after_one > header + 50 * 4);         /* chunk 0 written */
    assert_int_equal(agave_codec_encoder_finish(e), AGAVE_ERR_STATE);   /* 80 missing */
    assert_int_equal(agave_codec_encoder_add(e, x + 50 * 64, 80), AGAVE_OK);
    assert_int_equal(agave_codec_encoder_add(e, x, 1), AGAVE_ERR_INVALID_ARG);   /* one too many */
    agave_codec_stats st = {.struct_size = sizeof st};
    assert_int_equal(agave_codec_encoder_stats(e, &st), AGAVE_OK);
    assert_int_equal(st.n_images, n);
    assert_int_equal(st.bytes, b.len);
    agave_codec_encoder_free(e);

    trickle t = {b.p, b.len, 0, 0};
    agave_codec_decoder *d;
    assert_int_equal(agave_codec_decoder_create(m, NULL, trickle_read, &t, &d), AGAVE_OK);
    agave_codec_info info = {.struct_size = sizeof info};
    assert_int_equal(agave_codec_decoder_info(d, &info), AGAVE_OK);
    assert_int_equal(info.n_images, n);
    assert_int_equal(info.chunk, 50);
    assert_int_equal(info.threads, 1);
    uint8_t *y = malloc((size_t)n * 64);
    int done = 0, got = 1, ask = 1;
    while (got > 0) {
        assert_int_equal(agave_codec_decoder_read(d, y + (size_t)done * 64, ask, &got), AGAVE_OK);
        done += got;
        ask = ask % 23 + 4;
        assert_true(done <= n);
    }
    assert_int_equal(done, n);
    assert_memory_equal(x, y, (size_t)n * 64);
    agave_codec_decoder_free(d);
    free(y), free(b.p), free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* ---- refusals ------------------------------------------------------------------------ */
/* A tiny model and a compressed file of n of its images (one chunk). */
typedef struct fixture {
    agave_context *ctx;
    agave_model *m;
    uint8_t *x;
    int n;
    buffer file;
} fixture;

static void fixture_make(fixture *f, int n, int image_crc, unsigned seed)
{
    assert_int_equal(agave_context_create(&f->ctx, seed), AGAVE_OK);
    agave_config cfg = support_tiny_config(1, 0, 1, 256, AGAVE_MODE_AGAVE);
    f->n = n;
    f->x = test_images(n, 1, 8, 8, seed);
    f->m = trained(f->ctx, cfg, f->x, n);
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.batch = 8;
    opt.image_crc = image_crc;
    memset(&f->file, 0, sizeof f->file);
    round_trip(f->m, &opt, f->x, n, 64, &f->file);
}

static void fixture_free(fixture *f)
{
    free(f->file.p), free(f->x);
    agave_model_free(f->m);
    agave_context_free(f->ctx);
}

/* Decoding data must fail with an error status and a message, and whatever
 * it wrote into y must be the true images: a chunk is handed out only once
 * it is checked (the file here has one chunk; only bytes after it let its
 * images out before the error). */
static agave_status decode_refused(fixture *f, const uint8_t *data, size_t size)
{
    uint8_t *y = malloc((size_t)f->n * 64);
    memset(y, 0x5a, (size_t)f->n * 64);
    int64_t got = -1;
    agave_status st = agave_codec_decode(f->m, data, size, y, f->n, &got);
    if (st == AGAVE_OK)
        fail_msg("damaged data of %zu bytes decoded without an error", size);
    assert_true(agave_context_last_error(f->ctx)[0] != '\0');
    assert_int_equal(got, 0);
    for (int i = 0; i < f->n; i++) {
        const uint8_t *img = y + (size_t)i * 64;
        int untouched = 1;
        for (int k = 0; k < 64; k++)
            untouched &= img[k] == 0x5a;
        if (!untouched)
            assert_memory_equal(img, f->x + (size_t)i * 64, 64);
    }
    free(y);
    return st;
}

/* One flipped bit anywhere (every bit of the header, every 5th bit after
 * it) and every truncation are refused, by the CRCs and the framing. */
static void test_refuses_damage(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 24, 1, 61);
    size_t size = f.file.len, header = get_le32(f.file.p + 12);
    uint8_t *copy = malloc(size + 1);
    for (size_t bit = 0; bit < 8 * size; bit += bit < 8 * header ? 1 : 5) {
        memcpy(copy, f.file.p, size);
        copy[bit / 8] ^= (uint8_t)(1u << bit % 8);
        agave_status st = decode_refused(&f, copy, size);
        assert_true(st == AGAVE_ERR_CHECKSUM || st == AGAVE_ERR_FORMAT ||
                    st == AGAVE_ERR_VERSION);
    }
    for (size_t len = 0; len < size; len++)
        assert_int_equal(decode_refused(&f, f.file.p, len), AGAVE_ERR_FORMAT);
    memcpy(copy, f.file.p, size);
    copy[size] = 0;
    assert_int_equal(decode_refused(&f, copy, size + 1), AGAVE_ERR_FORMAT);   /* trailing byte */
    free(copy);
    fixture_free(&f);
}

/* Damage that passes the stream's CRC (the chunk CRC recomputed over the
 * damaged bytes, as a careless repair tool might): the decoded images no
 * longer match, which the per-image CRCs, the per-chunk CRC and the stacks'
 * return to their seeds each catch. */
static void test_refuses_consistent_damage(void **state)
{
    (void)state;
    for (int image_crc = 0; image_crc <= 1; image_crc++) {
        fixture f;
        fixture_make(&f, 24, image_crc, 62 + (unsigned)image_crc);
        size_t size = f.file.len, header = get_le32(f.file.p + 12);
        size_t words_at = header + 16 + 12 + 4 + (image_crc ? 4u * f.n : 0);
        uint8_t *copy = malloc(size);
        for (size_t at = header + 16; at < size - 4; at += 7) {
            if (at >= words_at - 4 && at < words_at)
                continue;   /* the stored chunk CRC of the pixels itself */
            memcpy(copy, f.file.p, size);
            copy[at] ^= 0x10;
            put_le32(copy + size - 4, (uint32_t)crc32(0, copy + header, (uInt)(size - 4 - header)));
            agave_status st = decode_refused(&f, copy, size);
            assert_true(st == AGAVE_ERR_CHECKSUM || st == AGAVE_ERR_FORMAT);
        }
        free(copy);
        fixture_free(&f);
    }
}

/* Another model, another thread count, bf16 products, another machine: refused before
 * anything is decoded, with a message that says which; the same file then
 * decodes once the thread count is right. */
static void test_refuses_other_setups(void **state)
{
    (void)state;
    fixture f;
    fixture_make(&f, 10, 1, 63);
    uint8_t *y = malloc((size_t)f.n * 64);
    int64_t got;
    /* another model: the same configuration, other weights */
    agave_context *ctx2;
    assert_int_equal(agave_context_create(&ctx2, 64), AGAVE_OK);
    agave_model *m2 = trained(ctx2, support_tiny_config(1, 0, 1, 256, AGAVE_MODE_AGAVE), f.x, f.n);
    assert_int_equal(agave_codec_decode(m2, f.file.p, f.file.len, y, f.n, &got), AGAVE_ERR_CONFIG);
    assert_non_null(strstr(agave_context_last_error(ctx2), "another model"));
    agave_model_free(m2);
    agave_context_free(ctx2);
    /* another thread count */
    assert_int_equal(agave_context_set_threads(f.ctx, 2), AGAVE_OK);
    assert_int_equal(agave_codec_decode(f.m, f.file.p, f.file.len, y, f.n, &got), AGAVE_ERR_STATE);
    assert_non_null(strstr(agave_context_last_error(f.ctx), "1 threads"));
    assert_int_equal(agave_context_set_threads(f.ctx, 1), AGAVE_OK);
    assert_int_equal(agave_codec_decode(f.m, f.file.p, f.file.len, y, f.n, &got), AGAVE_OK);
    assert_memory_equal(y, f.x, (size_t)f.n * 64);
    /* bf16 products (where the CPU has them): refused by both sides */
    if (agave_precision_available(AGAVE_PRECISION_BF16)) {
        assert_int_equal(agave_context_set_precision(f.ctx, AGAVE_PRECISION_BF16), AGAVE_OK);
        assert_int_equal(agave_codec_decode(f.m, f.file.p, f.file.len, y, f.n, &got),
                         AGAVE_ERR_CONFIG);
        assert_non_null(strstr(agave_context_last_error(f.ctx), "float32"));
        size_t size, cap;
        assert_int_equal(agave_codec_bound(f.m, NULL, f.n, &cap), AGAVE_OK);
        uint8_t *out = malloc(cap);
        assert_int_equal(agave_codec_encode(f.m, NULL, f.x, f.n, out, cap, &size),
                         AGAVE_ERR_CONFIG);
        free(out);
        assert_int_equal(agave_context_set_precision(f.ctx, AGAVE_PRECISION_FP32), AGAVE_OK);
    }
    /* another machine: the header's description changed, its CRC repaired */
    size_t header = get_le32(f.file.p + 12);
    uint8_t *copy = malloc(f.file.len);
    memcpy(copy, f.file.p, f.file.len);
    assert_int_equal(memcmp(copy + CODEC_HEADER_FIXED, "libagave ", 9), 0);
    copy[CODEC_HEADER_FIXED] = 'L';
    put_le32(copy + header - 4, (uint32_t)crc32(0, copy, (uInt)(header - 4)));
    assert_int_equal(agave_codec_decode(f.m, copy, f.file.len, y, f.n, &got), AGAVE_ERR_STATE);
    assert_non_null(strstr(agave_context_last_error(f.ctx), "Libagave"));
    /* a latent size the model does not have, the CRC repaired: the decoder
     * would read past its latent buffer (the fuzzer found it) */
    for (int delta = -1; delta <= 1; delta += 2) {
        memcpy(copy, f.file.p, f.file.len);
        put_le32(copy + 64, get_le32(f.file.p + 64) + (uint32_t)delta);
        put_le32(copy + header - 4, (uint32_t)crc32(0, copy, (uInt)(header - 4)));
        assert_int_equal(agave_codec_decode(f.m, copy, f.file.len, y, f.n, &got),
                         AGAVE_ERR_FORMAT);
        assert_non_null(strstr(agave_context_last_error(f.ctx), "latent values"));
    }
    /* too little room, a buffer that is not a compressed file */
    assert_int_equal(agave_codec_decode(f.m, f.file.p, f.file.len, y, f.n - 1, &got),
                     AGAVE_ERR_LIMIT);
    agave_codec_info info = {.struct_size = sizeof info};
    assert_int_equal(agave_codec_peek(f.ctx, f.x, 64, &info), AGAVE_ERR_FORMAT);
    assert_int_equal(agave_codec_peek(f.ctx, f.file.p, f.file.len, &info), AGAVE_OK);
    assert_int_equal(info.n_images, f.n);
    assert_int_equal(info.C * info.H * info.W, 64);
    free(copy), free(y);
    fixture_free(&f);
}

/* What the encoder refuses: models it cannot code, bad options, bad calls. */
static void test_encoder_refusals(void **state)
{
    (void)state;
    agave_context *ctx;
    assert_int_equal(agave_context_create(&ctx, 65), AGAVE_OK);
    uint8_t *x = test_images(8, 1, 8, 8, 65);
    buffer b = {0};
    agave_codec_encoder *e = (agave_codec_encoder *)1;
    agave_model *m;
    /* mode vae: no model of x; T > 0: no factorised posterior; not initialised */
    agave_config cfg = support_tiny_config(1, 0, 1, 256, AGAVE_MODE_VAE);
    m = trained(ctx, cfg, x, 8);
    assert_int_equal(agave_codec_encoder_create(m, NULL, 8, buffer_write, &b, &e), AGAVE_ERR_CONFIG);
    assert_null(e);
    agave_model_free(m);
    m = trained(ctx, support_tiny_config(1, 1, 1, 256, AGAVE_MODE_AGAVE), x, 8);
    assert_int_equal(agave_codec_encoder_create(m, NULL, 8, buffer_write, &b, &e), AGAVE_ERR_CONFIG);
    agave_model_free(m);
    cfg = support_tiny_config(1, 0, 1, 256, AGAVE_MODE_AGAVE);
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_codec_encoder_create(m, NULL, 8, buffer_write, &b, &e), AGAVE_ERR_STATE);
    assert_int_equal(agave_model_init(m, x, 8), AGAVE_OK);
    /* options */
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.latent_bits = 17;
    assert_int_equal(agave_codec_encoder_create(m, &opt, 8, buffer_write, &b, &e),
                     AGAVE_ERR_INVALID_ARG);
    agave_codec_options_init(&opt);
    opt.chunk = opt.batch - 1;
    assert_int_equal(agave_codec_encoder_create(m, &opt, 8, buffer_write, &b, &e),
                     AGAVE_ERR_INVALID_ARG);
    opt.struct_size = 0;
    assert_int_equal(agave_codec_encoder_create(m, &opt, 8, buffer_write, &b, &e),
                     AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_codec_encoder_create(m, NULL, -1, buffer_write, &b, &e), AGAVE_ERR_LIMIT);
    assert_int_equal(agave_codec_encoder_create(m, NULL, 8, NULL, &b, &e), AGAVE_ERR_NULL);
    assert_int_equal(agave_codec_encoder_create(NULL, NULL, 8, buffer_write, &b, &e), AGAVE_ERR_NULL);
    /* an output buffer that is too small */
    uint8_t small[100];
    size_t size;
    assert_int_equal(agave_codec_encode(m, NULL, x, 8, small, sizeof small, &size), AGAVE_ERR_LIMIT);
    assert_non_null(strstr(agave_context_last_error(ctx), "agave_codec_bound"));
    /* free functions accept NULL */
    agave_codec_encoder_free(NULL);
    agave_codec_decoder_free(NULL);
    free(b.p), free(x);
    agave_model_free(m);
    agave_context_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rans_round_trip),
        cmocka_unit_test(test_rans_virtual_words),
        cmocka_unit_test(test_rans_limits),
        cmocka_unit_test(test_pixel_tables_grey),
        cmocka_unit_test(test_pixel_tables_colour),
        cmocka_unit_test(test_pixel_interval_refuses),
        cmocka_unit_test(test_pixel_interval_sharp),
        cmocka_unit_test(test_latent_tables),
        cmocka_unit_test(test_hook_matches_step),
        cmocka_unit_test(test_rows_match_pixels),
        cmocka_unit_test(test_rows_need_fixed_products),
        cmocka_unit_test(test_set_batch_as_made),
        cmocka_unit_test(test_round_trip_tiny),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_round_trip_fashion),
        cmocka_unit_test(test_refuses_damage),
        cmocka_unit_test(test_refuses_consistent_damage),
        cmocka_unit_test(test_refuses_other_setups),
        cmocka_unit_test(test_encoder_refusals),
    };
    /* CODEC_TEST=pattern runs only the matching tests (e.g. while timing them). */
    if (getenv("CODEC_TEST"))
        cmocka_set_test_filter(getenv("CODEC_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
