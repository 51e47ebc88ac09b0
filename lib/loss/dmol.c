/* The discretized mixture of logistics (PixelCNN++, docs/model.md, "The
 * discretized mixture of logistics"): per-pixel kernels, the plain-buffer log-probability,
 * the per-image NLL op on the tape, and the sampler.
 *
 * Layout of one pixel's P parameters (channel axis), component m of M:
 *   logit m;  for sub-pixel c: mean M + 3Mc + m, log-scale 2M + 3Mc + m,
 *   coupling coefficient 3M + 3Mc + m (C = 3 only; slot 0 couples G to R,
 *   slot 1 B to R, slot 2 B to G, each through tanh).
 * Per channel, with x~ = v/127.5 - 1 and s = exp(max(log_scale, -7)):
 *   v = 0:    log sigmoid((x~ + 1/255 - mu)/s)                 (from -inf)
 *   v = 255:  log(1 - sigmoid((x~ - 1/255 - mu)/s))             (to +inf)
 *   else:     log(bin mass) where the mass exceeds 1e-5, else
 *             log pdf(x~) - log(127.5)                           (PixelCNN++'s fallback)
 * log p(x) = logsumexp_m(log_softmax(logits)_m + sum_c log p_c(x_c | m)). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "../ops/ops.h"
#include "loss_ops.h"
#include "logistic.h"
#include "loss.h"

#define DMOL_MIN_LOG_SCALE (-7.0)
#define DMOL_HALF_BIN (1.0 / 255.0)
/* log(1e-5): bin masses at or below it take the centre-density fallback. */
#define DMOL_LOG_MASS_THRESHOLD (-11.512925464970229)
/* log of the bin width 1/127.5 used by the fallback. */
#define DMOL_LOG_BIN_WIDTH (-4.8481163669398871)

/* Parameter channel indices of component m (M components) for sub-pixel c. */
static inline size_t idx_mean(int M, int c, int m) { return (size_t)M * (1 + 3 * c) + m; }
static inline size_t idx_log_scale(int M, int c, int m) { return (size_t)M * (2 + 3 * c) + m; }
static inline size_t idx_coeff(int M, int c, int m) { return (size_t)M * (3 + 3 * c) + m; }

/* Forced inline, so that the callers that pass no gradient buffer (a constant
 * NULL) compile without the gradient arithmetic: about a quarter of the time
 * of a value-only evaluation. */
#if defined(__GNUC__)
#define DMOL_INLINE static inline __attribute__((always_inline))
#else
#define DMOL_INLINE static inline
#endif

/* ---- one component, prepared ------------------------------------------------------------ */
/* A bin lying wholly on one side of the mean, more than this many scales away,
 * has mass below sigmoid(-11.6) = 9.2e-6 < 1e-5: the fallback applies without
 * computing the mass. Most of the 256 values of a sharp channel are there. */
#define DMOL_SURE_TAIL 11.6

/* tanh(u) = -expm1(-2|u|) / (2 + expm1(-2|u|)) with u's sign: exact to a few
 * ulps and half the cost of libm's tanh. */
static inline double tanh_via_expm1(double u)
{
    double e = expm1(-2 * fabs(u)), t = -e / (2 + e);
    return u < 0 ? -t : t;
}

/* Everything of component m that does not depend on the pixel's values. The
 * bin-width terms (an expm1 and a log per channel) only if with_widths: a
 * kernel that scores one value needs them only for an interior bin near the
 * mean, and fills them there. */
static void component_prepare(const float *p, size_t stride, int C, int M, int m,
                              double log_weight, int with_widths, dmol_component *comp)
{
    comp->log_weight = log_weight;
    for (int c = 0; c < C; c++) {
        double raw_ls = p[idx_log_scale(M, c, m) * stride];
        double ls = raw_ls < DMOL_MIN_LOG_SCALE ? DMOL_MIN_LOG_SCALE : raw_ls;
        comp->mean[c] = p[idx_mean(M, c, m) * stride];
        comp->width[c] = logistic_scale_only(ls);
        if (with_widths)
            logistic_width_fill(&comp->width[c], 2 * DMOL_HALF_BIN);
        comp->clamped[c] = raw_ls < DMOL_MIN_LOG_SCALE;
        comp->coeff[c] = C == 3 ? tanh_via_expm1(p[idx_coeff(M, c, m) * stride]) : 0;
    }
}

/* One channel at value v (0..255) with the coupled mean. */
DMOL_INLINE bin_logprob channel_logprob(int v, double mean, const logistic_width *w,
                                        int clamped, int want_grad)
{
    double x = loss_pixel_to_net(v);
    double a = (x + DMOL_HALF_BIN - mean) * w->inv_s, b = (x - DMOL_HALF_BIN - mean) * w->inv_s;
    bin_logprob r;
    if (v == 0) {
        r = logistic_lower_logprob(a, w->inv_s, want_grad);
    } else if (v == 255) {
        r = logistic_upper_logprob(b, w->inv_s, want_grad);
    } else if (a < -DMOL_SURE_TAIL || b > DMOL_SURE_TAIL) {
        r = logistic_centre_logprob(x, mean, w->log_scale, w->inv_s, DMOL_LOG_BIN_WIDTH,
                                    want_grad);
    } else {
        logistic_width filled;
        if (w->exp_neg_d < 0) {
            filled = *w;
            logistic_width_fill(&filled, 2 * DMOL_HALF_BIN);
            w = &filled;
        }
        r = logistic_interior_logprob(a, b, w, want_grad);
        if (!(r.logp > DMOL_LOG_MASS_THRESHOLD))
            r = logistic_centre_logprob(x, mean, w->log_scale, w->inv_s, DMOL_LOG_BIN_WIDTH,
                                        want_grad);
    }
    if (clamped)
        r.d_log_scale = 0;   /* the clamp is flat below -7 */
    return r;
}

/* Sum over channels of the component's log-probabilities at x (values on the
 * network scale xn; the coupling uses the true values). If grad is non-NULL,
 * writes d(sum)/d(mean, log-scale, coefficient) of component m to its slots,
 * grad[k * stride] (not yet weighted by the component's responsibility). */
DMOL_INLINE double component_logprob(const dmol_component *comp, int C, const uint8_t *x,
                                     size_t x_stride, const double xn[3], float *grad,
                                     size_t stride, int M, int m)
{
    double mean[3], total = 0, d_mean[3];
    dmol_coupled_means(comp, C, xn, mean);
    for (int c = 0; c < C; c++) {
        bin_logprob r = channel_logprob(x[c * x_stride], mean[c], &comp->width[c],
                                        comp->clamped[c], grad != NULL);
        total += r.logp;
        d_mean[c] = r.d_mean;
        if (grad) {
            grad[idx_mean(M, c, m) * stride] = (float)r.d_mean;
            grad[idx_log_scale(M, c, m) * stride] = (float)r.d_log_scale;
        }
    }
    if (grad && C == 3) {   /* d tanh(u)/du = 1 - tanh^2 */
        const double *t = comp->coeff;
        grad[idx_coeff(M, 0, m) * stride] = (float)(d_mean[1] * xn[0] * (1 - t[0] * t[0]));
        grad[idx_coeff(M, 1, m) * stride] = (float)(d_mean[2] * xn[0] * (1 - t[1] * t[1]));
        grad[idx_coeff(M, 2, m) * stride] = (float)(d_mean[2] * xn[1] * (1 - t[2] * t[2]));
    }
    return total;
}

/* ---- log-sum-exp, accumulated online ---------------------------------------------- */
typedef struct lse_acc { double max, sum; } lse_acc;

static inline void lse_add(lse_acc *acc, double v)
{
    if (v == -INFINITY)
        return;
    if (v <= acc->max) {
        acc->sum += exp(v - acc->max);
    } else {   /* also taken for NaN, which then propagates */
        acc->sum = acc->sum * exp(acc->max - v) + 1;
        acc->max = v;
    }
}

static inline double lse_value(const lse_acc *acc) { return acc->max + log(acc->sum); }

static void pixel_to_net(const uint8_t *x, size_t x_stride, int C, double xn[3])
{
    xn[0] = xn[1] = xn[2] = 0;
    for (int c = 0; c < C; c++)
        xn[c] = loss_pixel_to_net(x[c * x_stride]);
}

/* ---- per-pixel kernels (loss.h) ------------------------------------------------------- */
double dmol_pixel_logprob(const float *params, size_t stride, int channels, int n_mix,
                          const uint8_t *x, size_t x_stride)
{
    double xn[3];
    pixel_to_net(x, x_stride, channels, xn);
    lse_acc logits = {-INFINITY, 0}, joint = {-INFINITY, 0};
    for (int m = 0; m < n_mix; m++) {
        dmol_component comp;
        component_prepare(params, stride, channels, n_mix, m, params[(size_t)m * stride], 0,
                          &comp);
        lse_add(&logits, comp.log_weight);
        lse_add(&joint, comp.log_weight + component_logprob(&comp, channels, x, x_stride, xn,
                                                            NULL, 0, n_mix, m));
    }
    return lse_value(&joint) - lse_value(&logits);
}

void dmol_mixture_prepare(const float *params, size_t stride, int channels, int n_mix,
                          dmol_component *comps)
{
    lse_acc logits = {-INFINITY, 0};
    for (int m = 0; m < n_mix; m++)
        lse_add(&logits, params[(size_t)m * stride]);
    double log_norm = lse_value(&logits);
    for (int m = 0; m < n_mix; m++)
        component_prepare(params, stride, channels, n_mix, m,
                          params[(size_t)m * stride] - log_norm, 1, &comps[m]);
}

double dmol_mixture_logprob(const dmol_component *comps, int channels, int n_mix,
                            const uint8_t *x, size_t x_stride)
{
    double xn[3];
    pixel_to_net(x, x_stride, channels, xn);
    lse_acc joint = {-INFINITY, 0};
    for (int m = 0; m < n_mix; m++)
        lse_add(&joint, comps[m].log_weight + component_logprob(&comps[m], channels, x, x_stride,
                                                                xn, NULL, 0, n_mix, m));
    return lse_value(&joint);
}

/* With w_m = softmax_m(logit_m + S_m) (the responsibility, S_m the component's
 * channel sum) and pi_m = softmax(logits)_m:
 *   d log p / d logit_m = w_m - pi_m,   d log p / d theta_m = w_m d S_m / d theta_m. */
double dmol_pixel_logprob_grad(const float *params, size_t stride, int channels, int n_mix,
                               const uint8_t *x, size_t x_stride, float *grad,
                               double *scratch)
{
    double xn[3];
    pixel_to_net(x, x_stride, channels, xn);
    lse_acc logits = {-INFINITY, 0}, joint = {-INFINITY, 0};
    for (int m = 0; m < n_mix; m++) {
        dmol_component comp;
        component_prepare(params, stride, channels, n_mix, m, params[(size_t)m * stride], 0,
                          &comp);
        scratch[m] = comp.log_weight + component_logprob(&comp, channels, x, x_stride, xn, grad,
                                                         stride, n_mix, m);
        lse_add(&logits, comp.log_weight);
        lse_add(&joint, scratch[m]);
    }
    double log_norm = lse_value(&logits), log_joint = lse_value(&joint);
    int per_channel = channels == 3 ? 3 : 2;   /* mean, log-scale (, coefficient) */
    for (int m = 0; m < n_mix; m++) {
        double w = exp(scratch[m] - log_joint);
        grad[(size_t)m * stride] = (float)(w - exp(params[(size_t)m * stride] - log_norm));
        for (int c = 0; c < channels; c++)
            for (int k = 0; k < per_channel; k++) {
                size_t i = (idx_mean(n_mix, c, m) + (size_t)k * n_mix) * stride;
                grad[i] = (float)(w * grad[i]);
            }
    }
    return log_joint - log_norm;
}

void dmol_pixel_sample(const float *params, size_t stride, int channels, int n_mix,
                       agave_rng *rng, uint8_t *x, size_t x_stride)
{
    /* Gumbel-max: argmax_m logit_m - log(-log u_m) is a draw from softmax(logits). */
    int m = 0;
    double best = -INFINITY;
    for (int k = 0; k < n_mix; k++) {
        double v = params[(size_t)k * stride] - log(-log(rng_uniform_double(rng)));
        if (v > best) {
            best = v;
            m = k;
        }
    }
    dmol_component comp;
    component_prepare(params, stride, channels, n_mix, m, 0, 0, &comp);
    double xn[3] = {0, 0, 0}, mean[3];
    for (int c = 0; c < channels; c++) {
        /* Coupling on the already drawn and rounded R and G (xn), as the
         * likelihood sees them. */
        dmol_coupled_means(&comp, channels, xn, mean);
        double u = rng_uniform_double(rng);
        double s = exp(comp.width[c].log_scale);   /* clamped at -7 */
        double v = mean[c] + s * (log(u) - log1p(-u));   /* logistic(mean, s) */
        uint8_t level = loss_net_to_pixel(v);   /* clipped to [-1, 1]; NaN becomes 0 */
        x[c * x_stride] = level;
        xn[c] = loss_pixel_to_net(level);
    }
}

/* ---- argument checks shared by the three entry points --------------------------------- */
/* Validates channels, sizes and n_mix; ctx may be NULL (no message then). */
static agave_status dmol_check_dims(agave_context *ctx, const char *fn, int n, int channels,
                                    int height, int width, int n_mix)
{
    if (channels != 1 && channels != 3)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: channels is %d, must be 1 or 3", fn,
                         channels);
    if (n_mix < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "%s: n_mix is %d, must be >= 1", fn, n_mix);
    if (n_mix > INT_MAX / 10)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "%s: n_mix %d is too large", fn, n_mix);
    if (n < 1 || height < 1 || width < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "%s: n, height and width (%d, %d, %d) must be >= 1", fn, n, height,
                         width);
    /* n * P * height * width floats must be addressable. */
    size_t total = (size_t)dmol_param_count(channels, n_mix), limit = SIZE_MAX / sizeof(float);
    const int factors[3] = {n, height, width};
    for (int i = 0; i < 3; i++) {
        if (total > limit / (size_t)factors[i])
            return ctx_error(ctx, AGAVE_ERR_LIMIT,
                             "%s: n * P * height * width overflows the address space", fn);
        total *= (size_t)factors[i];
    }
    return AGAVE_OK;
}

agave_status agave_dmol_logprob(const uint8_t *x, const float *params, int n, int channels,
                                int height, int width, int n_mix, float *logp)
{
    if (!x || !params || !logp)
        return AGAVE_ERR_NULL;
    agave_status st = dmol_check_dims(NULL, "agave_dmol_logprob", n, channels, height, width,
                                      n_mix);
    if (st != AGAVE_OK)
        return st;
    size_t hw = (size_t)height * width, P = (size_t)dmol_param_count(channels, n_mix);
    for (size_t img = 0; img < (size_t)n; img++)
        for (size_t i = 0; i < hw; i++)
            logp[img * hw + i] = loss_to_float(dmol_pixel_logprob(
                params + img * P * hw + i, hw, channels, n_mix, x + img * channels * hw + i, hw));
    return AGAVE_OK;
}

agave_status agave_dmol_sample(agave_context *ctx, const float *params, int n, int channels,
                               int height, int width, int n_mix, uint8_t *x)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!params || !x)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_dmol_sample: params or x is NULL");
    TRY(dmol_check_dims(ctx, "agave_dmol_sample", n, channels, height, width, n_mix));
    /* Pixels in raster order, one after another: the draws are reproducible. */
    size_t hw = (size_t)height * width, P = (size_t)dmol_param_count(channels, n_mix);
    for (size_t img = 0; img < (size_t)n; img++)
        for (size_t i = 0; i < hw; i++)
            dmol_pixel_sample(params + img * P * hw + i, hw, channels, n_mix, &ctx->rng,
                              x + img * channels * hw + i, hw);
    return AGAVE_OK;
}

/* ---- the tape op: out[n] = -sum over pixels of log p ------------------------------------ */
agave_status agave_dmol_nll(agave_context *ctx, const uint8_t *x, int channels,
                            agave_tensor *params, int n_mix, agave_tensor **out)
{
    TRY(check_op_entry(ctx, out, "dmol_nll"));
    if (!x)
        return ctx_error(ctx, AGAVE_ERR_NULL, "dmol_nll: x is NULL");
    TRY(check_tensor(ctx, params, "dmol_nll", "params"));
    TRY(dmol_check_dims(ctx, "dmol_nll", 1, channels, 1, 1, n_mix));
    int P = dmol_param_count(channels, n_mix);
    if (params->ndim != 4 || tC(params) != P) {
        char sp[SHAPE_BUF];
        return ctx_error(ctx, AGAVE_ERR_SHAPE,
                         "dmol_nll: params %s must be (N,%d,H,W) for %d channel(s) and n_mix %d",
                         shape_str(params, sp, sizeof sp), P, channels, n_mix);
    }
    int N = tN(params), H = tH(params), W = tW(params);
    size_t hw = (size_t)H * W;
    int record = tape_should_record(ctx, &params, 1);
    agave_tensor *nll = tensor_new_arena(ctx, 1, &N);
    double *row_logp = arena_alloc(&ctx->arena, (size_t)N * H * sizeof(double));
    /* Saved for backward: d log p / d params, same layout as params. */
    float *d_params = record ? arena_alloc(&ctx->arena, params->numel * sizeof(float)) : NULL;
    double *scratch = record ? arena_alloc(&ctx->arena, (size_t)N * H * n_mix * sizeof(double))
                             : NULL;
    if (!nll || !row_logp || (record && (!d_params || !scratch)))
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "dmol_nll: step arena is out of memory");

    /* One pass per pixel computing value and gradient; each row summed on its
     * own so the result does not depend on the thread count. */
    long rows = (long)N * H;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static)
    for (long r = 0; r < rows; r++) {
        size_t n = (size_t)r / H, h = (size_t)r % H;
        double sum = 0;
        for (size_t w = 0; w < (size_t)W; w++) {
            size_t pi = n * P * hw + h * W + w, xi = n * channels * hw + h * W + w;
            sum += record ? dmol_pixel_logprob_grad(params->data + pi, hw, channels, n_mix,
                                                    x + xi, hw, d_params + pi,
                                                    scratch + (size_t)r * n_mix)
                          : dmol_pixel_logprob(params->data + pi, hw, channels, n_mix, x + xi,
                                               hw);
        }
        row_logp[r] = sum;
    }
    for (int n = 0; n < N; n++) {
        double sum = 0;
        for (int h = 0; h < H; h++)
            sum += row_logp[(size_t)n * H + h];
        nll->data[n] = loss_to_float(-sum);
    }
    agave_status st;
    tape_node *node = op_record(ctx, OP_DMOL_NLL, nll, &params, 1, &st);
    TRY(st);
    if (node)
        node->saved = d_params;
    *out = nll;
    return AGAVE_OK;
}

/* d out[n] / d params[n,...] = -d log p / d params (saved by the forward pass). */
agave_status dmol_nll_backward(agave_context *ctx, const tape_node *node)
{
    agave_status st = AGAVE_OK;
    float *g_params = input_grad(node, 0, &st);
    TRY(st);
    if (!g_params)
        return AGAVE_OK;
    const float *d_params = node->saved, *g = node->out->grad;
    const agave_tensor *params = node->in[0];
    size_t per_image = params->numel / (size_t)tN(params);
    long n_el = (long)params->numel;
#pragma omp parallel for num_threads(ctx_region_threads(ctx)) schedule(static) if (n_el > 65536)
    for (long i = 0; i < n_el; i++)
        g_params[i] -= g[(size_t)i / per_image] * d_params[i];
    return AGAVE_OK;
}
