/* Internal interface of lib/loss: the per-element kernels behind the public
 * losses, exported for lib/model (autoregressive sampling, evaluation).
 *
 * All kernels compute in double from float inputs: the bin masses of a sharp
 * logistic depend on x - mu divided by scales down to e^-7, where float32
 * rounding of x - mu alone would cost ~1e-4 relative in log p. The cost is
 * negligible next to the networks that produce the parameters. */
#ifndef AGAVE_LOSS_H
#define AGAVE_LOSS_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"
#include "logistic.h"

/* ---- shared conventions ------------------------------------------------------ */
/* Network scale of an 8-bit value: x~ = v / 127.5 - 1. */
static inline double loss_pixel_to_net(int v) { return v / 127.5 - 1.0; }

/* Its inverse for any double: the nearest 8-bit value (halves up), clipped
 * to 0..255, with NaN as 0 (-inf 0, +inf 255). Every conversion of network
 * output to pixels goes through here: casting NaN or a value out of range
 * to an integer is undefined behaviour. */
static inline uint8_t loss_net_to_pixel(double v)
{
    double level = (v + 1.0) * 127.5 + 0.5;
    if (!(level >= 0))   /* NaN too */
        return 0;
    return level >= 255 ? 255 : (uint8_t)level;   /* truncation: floor, level >= 0 */
}

/* True for a power of two in 2..256. */
static inline int loss_levels_valid(int levels)
{
    return levels >= 2 && levels <= 256 && (levels & (levels - 1)) == 0;
}

/* A double log-probability as float. A value below -FLT_MAX (only reachable
 * for absurd inputs, e.g. |mean| > 1e30 or log-scale < -80) becomes -FLT_MAX
 * rather than -inf: the true value is finite, just below the float range. */
static inline float loss_to_float(double v)
{
    if (v < -FLT_MAX)
        return -FLT_MAX;
    if (v > FLT_MAX)
        return FLT_MAX;
    return (float)v;
}

/* ---- discretized logistic with `levels` bins (lib/loss/dlogistic.c) --------- */
/* log p(level | mean, s = exp(log_scale)) on the network scale, docs/model.md,
 * "The auxiliary image y": level in 0..levels-1, levels a power of two in 2..256.
 * If d_mean / d_log_scale are non-NULL they receive d log p / d mean and
 * d log p / d log_scale. No clamp and no fallback: the exact bin mass. */
double dlogistic_level_logprob(int level, int levels, double mean, double log_scale,
                               double *d_mean, double *d_log_scale);

/* ---- discretized mixture of logistics (lib/loss/dmol.c) ---------------------- */
/* One pixel. params[k * stride] is parameter channel k of the pixel in
 * docs/model.md's layout (P = 3*n_mix for channels 1, 10*n_mix for channels 3;
 * stride = H*W for an NCHW tensor). x[c * x_stride] is sub-pixel c, 0..255.
 * Returns log p(x) in nats: log-sum-exp over components of
 * log_softmax(logits) + the sum over channels of each channel's log-probability. */
double dmol_pixel_logprob(const float *params, size_t stride, int channels, int n_mix,
                          const uint8_t *x, size_t x_stride);

/* As dmol_pixel_logprob, and writes d log p / d params[k * stride] to
 * grad[k * stride] for every k < P (overwriting). scratch holds n_mix doubles. */
double dmol_pixel_logprob_grad(const float *params, size_t stride, int channels, int n_mix,
                               const uint8_t *x, size_t x_stride, float *grad,
                               double *scratch);

/* One mixture component of one pixel with everything that does not depend on
 * the pixel's values computed once: for evaluating many values under one
 * pixel's parameters (the whole distribution of a pixel, 256^3 values). */
typedef struct dmol_component {
    double log_weight;           /* log softmax(logits)_m */
    double mean[3];              /* before coupling */
    double coeff[3];             /* tanh of the coupling coefficients (0 for C = 1) */
    logistic_width width[3];     /* scale (clamped at -7) and the bin width 2/255 */
    int clamped[3];              /* the raw log-scale was below -7 */
} dmol_component;

/* The coupled means of a component at a pixel whose R, G on the network scale
 * are xn[0], xn[1]: G += coeff[0] x_r, B += coeff[1] x_r + coeff[2] x_g. */
static inline void dmol_coupled_means(const dmol_component *comp, int C, const double xn[3],
                                      double mean[3])
{
    mean[0] = comp->mean[0];
    if (C == 3) {
        mean[1] = comp->mean[1] + comp->coeff[0] * xn[0];
        mean[2] = comp->mean[2] + comp->coeff[1] * xn[0] + comp->coeff[2] * xn[1];
    }
}

/* Fills comps[0..n_mix-1] from one pixel's parameters (layout as above). */
void dmol_mixture_prepare(const float *params, size_t stride, int channels, int n_mix,
                          dmol_component *comps);
/* log p(x) under prepared components; equal to dmol_pixel_logprob. */
double dmol_mixture_logprob(const dmol_component *comps, int channels, int n_mix,
                            const uint8_t *x, size_t x_stride);

/* Draws one pixel into x[c * x_stride]: a component by Gumbel-max on the
 * logits (n_mix uniforms), then R, G, B in order (one uniform each), a logistic
 * sample with the coupled mean (coupling on the already drawn, rounded values),
 * clipped to [-1, 1] and rounded to the nearest of the 256 levels. */
void dmol_pixel_sample(const float *params, size_t stride, int channels, int n_mix,
                       agave_rng *rng, uint8_t *x, size_t x_stride);

/* Parameter channels per pixel of the mixture of logistics: 3*n_mix (channels
 * 1: logits, means, log-scales) or 10*n_mix (channels 3: also the three
 * coefficients). The one place this count is written. */
static inline int dmol_param_count(int channels, int n_mix)
{
    return (channels == 1 ? 3 : 10) * n_mix;
}

/* agave_gaussian_sample with mean's N items sitting at span in their batch's
 * random stream (core.h: the model's batch slice). */
agave_status gaussian_sample_span(agave_context *ctx, agave_tensor *mean, agave_tensor *log_std,
                                  rng_span span, agave_tensor **z);

#endif
