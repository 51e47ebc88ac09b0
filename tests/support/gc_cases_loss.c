/* Gradient-check cases for the loss ops (lib/loss): dlogistic_nll, dmol_nll,
 * gaussian_sample, gaussian_logprob, gaussian_kl, with respect to every float
 * input.
 *
 * The mixture has two kinks: the log-scale clamp at -7 and the switch to the
 * centre density where a bin's mass is at most 1e-5. Each dmol case puts its
 * parameters in one regime with margins wider than the finite-difference step,
 * so no step crosses a kink (the margins are worked out next to each regime).
 * Every case has pixels at 0 and 255 (the open-ended edge bins). */
#include <math.h>
#include <stdint.h>

#include "gradcheck.h"

#define SHAPE4(n, c, h, w) 4, {n, c, h, w}
#define MAX_VALUES 512

/* Sub-pixel values: in every (n,c) plane the first pixel is 0, the second 255,
 * the others spread over 1..254. */
static void fill_pattern(uint8_t *x, int planes, int plane)
{
    for (int p = 0; p < planes; p++)
        for (int i = 0; i < plane; i++) {
            size_t k = (size_t)p * plane + i;
            x[k] = i == 0 ? 0 : i == 1 ? 255 : (uint8_t)(1 + (37 * k + 11 * p) % 254);
        }
}

static double to_net(int v) { return v / 127.5 - 1.0; }

/* ---- discretized logistic ---------------------------------------------------------- */
static agave_status run_dlogistic(agave_context *ctx, agave_tensor **in, agave_tensor **out,
                                  int levels)
{
    uint8_t y[MAX_VALUES];
    int planes = agave_tensor_dim(in[0], 0) * agave_tensor_dim(in[0], 1);
    fill_pattern(y, planes, (int)agave_tensor_numel(in[0]) / planes);
    return agave_dlogistic_nll(ctx, y, in[0], in[1], levels, out);
}
static agave_status run_dlogistic_256(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return run_dlogistic(ctx, in, out, 256);
}
static agave_status run_dlogistic_32(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return run_dlogistic(ctx, in, out, 32);
}
static agave_status run_dlogistic_4(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return run_dlogistic(ctx, in, out, 4);
}
static agave_status run_dlogistic_2(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return run_dlogistic(ctx, in, out, 2);
}

/* Sharp scales (log-scale -7..-6, s <= 0.0025) with every mean 0.05..0.3 away
 * from its value's bin centre (<= 0.0039 from the edges): |a|, |b| >= 18, where
 * log p ~ -|a| is linear and central differences are exact to float noise. */
static void prepare_dlogistic_far(agave_tensor **in)
{
    uint8_t y[MAX_VALUES];
    int planes = agave_tensor_dim(in[0], 0) * agave_tensor_dim(in[0], 1);
    int n = (int)agave_tensor_numel(in[0]);
    fill_pattern(y, planes, n / planes);
    float *mean = agave_tensor_data(in[0]);
    for (int i = 0; i < n; i++) {   /* mean was drawn in [0, 1] */
        double u = mean[i];
        double off = u < 0.5 ? -(0.05 + 0.5 * u) : 0.05 + 0.5 * (u - 0.5);
        mean[i] = (float)(to_net(y[i]) + off);
    }
}

/* ---- mixture of logistics ------------------------------------------------------------ */
static agave_status run_dmol(agave_context *ctx, agave_tensor **in, agave_tensor **out,
                             int channels)
{
    uint8_t x[MAX_VALUES];
    int N = agave_tensor_dim(in[0], 0), P = agave_tensor_dim(in[0], 1);
    int hw = agave_tensor_dim(in[0], 2) * agave_tensor_dim(in[0], 3);
    fill_pattern(x, N * channels, hw);
    return agave_dmol_nll(ctx, x, channels, in[0], P / (channels == 1 ? 3 : 10), out);
}
static agave_status run_dmol_c1(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return run_dmol(ctx, in, out, 1);
}
static agave_status run_dmol_c3(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return run_dmol(ctx, in, out, 3);
}

/* Where a regime puts each parameter; params are drawn uniform in [0, 1] and
 * mapped. Means are either absolute (free) or offset from the pixel's coupled
 * value x~_c - shift_c, by off in [off_lo, off_hi] (signed: both signs). */
typedef struct dmol_regime {
    float logit_lo, logit_hi, ls_lo, ls_hi, coeff_lo, coeff_hi;
    int offset_means, signed_offset;
    float mean_lo, mean_hi;   /* the absolute range, or the offset range */
} dmol_regime;

static float lerp(float lo, float hi, float u) { return lo + (hi - lo) * u; }

static void dmol_prepare(agave_tensor **in, int C, const dmol_regime *r)
{
    int N = agave_tensor_dim(in[0], 0), P = agave_tensor_dim(in[0], 1);
    int hw = agave_tensor_dim(in[0], 2) * agave_tensor_dim(in[0], 3), M = P / (C == 1 ? 3 : 10);
    uint8_t x[MAX_VALUES];
    fill_pattern(x, N * C, hw);
    float *p = agave_tensor_data(in[0]);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < hw; i++) {
            float *q = p + (size_t)n * P * hw + i;
            const uint8_t *xv = x + (size_t)n * C * hw + i;
            for (int m = 0; m < M; m++) {
                q[m * hw] = lerp(r->logit_lo, r->logit_hi, q[m * hw]);
                double t[3] = {0, 0, 0};
                for (int c = 0; c < C; c++) {
                    float *ls = &q[(2 * M + 3 * M * c + m) * hw];
                    *ls = lerp(r->ls_lo, r->ls_hi, *ls);
                    if (C == 3) {
                        float *k = &q[(3 * M + 3 * M * c + m) * hw];
                        *k = lerp(r->coeff_lo, r->coeff_hi, *k);
                        t[c] = tanh(*k);
                    }
                }
                for (int c = 0; c < C; c++) {
                    float *mean = &q[(M + 3 * M * c + m) * hw];
                    double u = *mean;
                    if (!r->offset_means) {
                        *mean = lerp(r->mean_lo, r->mean_hi, (float)u);
                        continue;
                    }
                    double off = lerp(r->mean_lo, r->mean_hi, (float)u);
                    if (r->signed_offset)
                        off = u < 0.5 ? -lerp(r->mean_lo, r->mean_hi, (float)(2 * u))
                                      : lerp(r->mean_lo, r->mean_hi, (float)(2 * u - 1));
                    double x0 = to_net(xv[0]), x1 = C == 3 ? to_net(xv[hw]) : 0;
                    double shift = c == 1 ? t[0] * x0 : c == 2 ? t[1] * x0 + t[2] * x1 : 0;
                    *mean = (float)(to_net(xv[c * hw]) - shift + off);
                }
            }
        }
}

/* Smooth regime: means in [-0.5, 0.5], tanh(coeff) <= 0.77, so the coupled
 * centre is at most |x~| + 0.5 + 2 * 0.77 + 0.02 (the steps) ~ 3.06 from the
 * value, and s >= exp(-0.51): every interior bin mass is >= 8e-5 (|c|/s <= 5.1),
 * well above 1e-5; log-scales stay above -7. */
static const dmol_regime smooth = {-2, 2, -0.5f, 1, -1, 1, 0, 0, -0.5f, 0.5f};
static void prepare_dmol_c1_smooth(agave_tensor **in) { dmol_prepare(in, 1, &smooth); }
static void prepare_dmol_c3_smooth(agave_tensor **in) { dmol_prepare(in, 3, &smooth); }

/* Sharp, inside the bin: s in [exp(-4.8), exp(-4.2)] = [0.0082, 0.015] and the
 * coupled centre within 0.006 of the value, at most 0.010 after a step of 2e-3
 * on the mean and on a coefficient; the worst bin then has a = 1.45, b = 0.50
 * and mass sigmoid(a) - sigmoid(b) = 0.19, far above 1e-5. The curvature ~ 1/s^3
 * needs the smaller step eps = 2e-3: truncation eps^2 f'''/6 ~ 0.07 against
 * gradients ~ 1/s ~ 100; float noise ~ 1e-6 / (2 eps) = 2.5e-4. */
static const dmol_regime sharp = {-2, 2, -4.4f, -3.9f, -1, 1, 1, 0, -0.006f, 0.006f};
static void prepare_dmol_c1_sharp(agave_tensor **in) { dmol_prepare(in, 1, &sharp); }
static void prepare_dmol_c3_sharp(agave_tensor **in) { dmol_prepare(in, 3, &sharp); }

/* Underflow branch: s <= exp(-4.5) = 0.011, coupled centre 0.15..0.3 away from
 * the value: |c|/s >= 13.5 - 1 (a step of 0.01 on the mean or a coefficient),
 * bin mass <= 0.7 * exp(-12.5) = 3e-6 < 1e-5, so every interior bin takes
 * log pdf(x~) - log(127.5) on both sides of each step (the edge pixels 0 and
 * 255 keep their open bins). log-scales stay above -7.
 * One component (M = 1) here and below the clamp: each channel's log p is then
 * ~ -|c|/s, linear, while a mixture of far-apart sharp components is a smooth
 * maximum of such lines, whose curvature ~ 1/s^2 around the switch defeats
 * central differences at any step float32 can resolve. The mixture weighting
 * is checked by the smooth and sharp cases. */
static const dmol_regime underflow = {-1, 1, -5, -4.5f, -1, 1, 1, 1, 0.15f, 0.3f};
static void prepare_dmol_c1_underflow(agave_tensor **in) { dmol_prepare(in, 1, &underflow); }
static void prepare_dmol_c3_underflow(agave_tensor **in) { dmol_prepare(in, 3, &underflow); }

/* Below the clamp: log-scales in [-9, -7.3], 0.3 below -7 after any step, so
 * s = exp(-7) and d/d log-scale is 0 (numerically too); centres 0.05..0.3 from
 * the value: |c|/s >= 44, deep in the underflow branch and linear there. */
static const dmol_regime clamped = {-1, 1, -9, -7.3f, -1, 1, 1, 1, 0.05f, 0.3f};
static void prepare_dmol_c1_clamped(agave_tensor **in) { dmol_prepare(in, 1, &clamped); }
static void prepare_dmol_c3_clamped(agave_tensor **in) { dmol_prepare(in, 3, &clamped); }

/* ---- Gaussian terms ------------------------------------------------------------------- */
static agave_status run_gaussian_sample(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_gaussian_sample(ctx, in[0], in[1], out);
}
static agave_status run_gaussian_logprob(agave_context *ctx, agave_tensor **in,
                                         agave_tensor **out)
{
    return agave_gaussian_logprob(ctx, in[0], in[1], in[2], out);
}
static agave_status run_gaussian_kl(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_gaussian_kl(ctx, in[0], in[1], out);
}

#define MEAN_2342 {SHAPE4(2, 3, 4, 2), -1.2f, 1.2f, 0}
#define DMOL01(n, p, h, w) {SHAPE4(n, p, h, w), 0, 1, 0}

const gc_case gc_cases_loss[] = {
    /* dlogistic: mean (2,3,4,2), log_scale (3) shared by each channel's pixels */
    {"dlogistic_nll", "b=256, log-scale -3..3", 2, {MEAN_2342, {1, {3}, -3, 3, 0}},
     run_dlogistic_256, NULL, 0, 0, 0, 0},
    {"dlogistic_nll", "b=32", 2, {MEAN_2342, {1, {3}, -3, 1, 0}}, run_dlogistic_32, NULL, 0, 0,
     0, 0},
    {"dlogistic_nll", "b=4", 2, {MEAN_2342, {1, {3}, -3, 1, 0}}, run_dlogistic_4, NULL, 0, 0, 0,
     0},
    {"dlogistic_nll", "b=2", 2, {MEAN_2342, {1, {3}, -2, 1, 0}}, run_dlogistic_2, NULL, 0, 0, 0,
     0},
    {"dlogistic_nll", "b=256, log-scale -7..-6, far means", 2,
     {{SHAPE4(2, 3, 4, 2), 0, 1, 0}, {1, {3}, -7, -6, 0}}, run_dlogistic_256,
     prepare_dlogistic_far, 0, 0, 0, 0},

    /* dmol: params (N,P,H,W), every element checked */
    {"dmol_nll", "C=1 M=3 smooth", 1, {DMOL01(2, 9, 3, 4)}, run_dmol_c1, prepare_dmol_c1_smooth,
     0, 0, 0, 0},
    {"dmol_nll", "C=3 M=2 smooth, coupling", 1, {DMOL01(2, 20, 2, 3)}, run_dmol_c3,
     prepare_dmol_c3_smooth, 0, 0, 0, 0},
    {"dmol_nll", "C=1 M=2 sharp in-bin", 1, {DMOL01(2, 6, 3, 4)}, run_dmol_c1,
     prepare_dmol_c1_sharp, 0, 2e-3, 0, 0},
    {"dmol_nll", "C=3 M=2 sharp in-bin, coupling", 1, {DMOL01(2, 20, 2, 3)}, run_dmol_c3,
     prepare_dmol_c3_sharp, 0, 2e-3, 0, 0},
    {"dmol_nll", "C=1 M=1 underflow branch", 1, {DMOL01(2, 3, 3, 4)}, run_dmol_c1,
     prepare_dmol_c1_underflow, 0, 0, 0, 0},
    {"dmol_nll", "C=3 M=1 underflow branch, coupling", 1, {DMOL01(2, 10, 2, 3)}, run_dmol_c3,
     prepare_dmol_c3_underflow, 0, 0, 0, 0},
    {"dmol_nll", "C=1 M=1 log-scales below the -7 clamp", 1, {DMOL01(2, 3, 3, 4)},
     run_dmol_c1, prepare_dmol_c1_clamped, 0, 0, 0, 0},
    {"dmol_nll", "C=3 M=1 log-scales below the -7 clamp, coupling", 1, {DMOL01(2, 10, 2, 3)},
     run_dmol_c3, prepare_dmol_c3_clamped, 0, 0, 0, 0},

    /* Gaussian terms */
    {"gaussian_sample", "(3,4,2,2)", 2,
     {{SHAPE4(3, 4, 2, 2), -1, 1, 0}, {SHAPE4(3, 4, 2, 2), -1.5f, 0.5f, 0}},
     run_gaussian_sample, NULL, 1, 0, 0, 0},
    {"gaussian_logprob", "z, mean and log_std (3,4,2,2)", 3,
     {{SHAPE4(3, 4, 2, 2), -2, 2, 0},
      {SHAPE4(3, 4, 2, 2), -1, 1, 0},
      {SHAPE4(3, 4, 2, 2), -1, 0.7f, 0}},
     run_gaussian_logprob, NULL, 0, 0, 0, 0},
    {"gaussian_kl", "(3,4,2,2)", 2,
     {{SHAPE4(3, 4, 2, 2), -1.5f, 1.5f, 0}, {SHAPE4(3, 4, 2, 2), -1.5f, 1, 0}}, run_gaussian_kl,
     NULL, 0, 0, 0, 0},
};
const int gc_n_cases_loss = sizeof gc_cases_loss / sizeof gc_cases_loss[0];
