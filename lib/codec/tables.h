/* Integer frequency tables from the model's floats, computed the same way by
 * the encoder and the decoder (lib/codec/tables.c).
 *
 * Every table here sums to exactly 2^prec and gives every symbol at least one
 * unit: a quantised CDF cdf(k) = k + floor(F(k) * (2^prec - n)) over n
 * symbols, F the model's CDF (F(0) = 0, F(n) = 1, clamped to [0, 1], NaN
 * read as 0). Each value is computed on its own, so a coder asks only for the
 * two or log2(n) values it needs. */
#ifndef AGAVE_CODEC_TABLES_H
#define AGAVE_CODEC_TABLES_H

#include <stdint.h>

#include "../loss/loss.h"

#define CODEC_PIXEL_PREC 24    /* sub-pixel tables sum to 2^24 */
#define CODEC_LATENT_PREC 24   /* posterior tables of a latent dimension */
#define CODEC_MAX_MIX 64       /* mixture components a pixel model may have */
#define CODEC_MIN_LATENT_BITS 2
#define CODEC_MAX_LATENT_BITS 16

/* ---- one pixel's mixture, channel by channel ------------------------------------ */
/* p(r, g, b) = sum_m pi_m p_m(r) p_m(g | r) p_m(b | r, g) is coded as p(r),
 * then p(g | r), then p(b | r, g): each channel is a mixture of logistics
 * whose weights are the components' responsibilities for the channels
 * already coded. */
typedef struct pixel_model {
    int C, M, c;                       /* channels, components, channel being coded */
    dmol_component comp[CODEC_MAX_MIX];
    double log_resp[CODEC_MAX_MIX];    /* log pi_m + sum of log p_m over coded channels */
    double xn[3];                      /* coded values on the network scale */
    /* the channel being coded */
    double weight[CODEC_MAX_MIX], mean[CODEC_MAX_MIX], inv_s[CODEC_MAX_MIX];
} pixel_model;

/* Starts a pixel from its P = dmol_param_count(C, M) parameters (contiguous). */
void pixel_model_begin(pixel_model *pm, const float *params, int C, int M);
/* The quantised CDF of the current channel at k (0..256). */
uint32_t pixel_cdf(const pixel_model *pm, int k);
/* The float model's probability of value v in the current channel (for the
 * code-length statistics). */
double pixel_prob(const pixel_model *pm, int v);
/* Fixes the current channel to value v and moves to the next channel (after
 * the last one, only counts it: nothing reads its responsibilities). */
void pixel_model_next(pixel_model *pm, int v);
/* pixel_prob(pm, v), then pixel_model_next(pm, v), from one evaluation of
 * the components' masses (the encoder's statistics). */
double pixel_model_take(pixel_model *pm, int v);

/* Finds the value whose interval holds slot (binary search on pixel_cdf):
 * the decoder's lookup. *start, *freq receive its interval. */
int pixel_find(const pixel_model *pm, uint32_t slot, uint32_t *start, uint32_t *freq);
/* The interval of value v: 0 if the decoder's search could land elsewhere
 * (a CDF that decreases), which the encoder then refuses to write. For a
 * model with finite components it cannot (tables.c says why) and this costs
 * two pixel_cdf; any other is checked by walking pixel_find's steps. */
int pixel_interval(const pixel_model *pm, int v, uint32_t *start, uint32_t *freq);

/* ---- the latent code: buckets of equal prior mass ------------------------------- */
/* Each latent dimension's real line is cut into 2^bits buckets of prior mass
 * 2^-bits each (BB-ANS): bucket i is [edge[i], edge[i+1]), edge[i] =
 * Phi^-1(i / 2^bits); the decoder network sees its centre Phi^-1((i + 1/2) /
 * 2^bits). The prior codes a bucket with 2^-bits exactly; the posterior
 * N(mu, sigma^2) with the quantised CDF of Phi((edge[i] - mu) / sigma). */
typedef struct latent_grid {
    int bits;
    double *edge;     /* 2^bits + 1 (edge[0] = -inf, edge[2^bits] = +inf) */
    float *centre;    /* 2^bits */
} latent_grid;

int latent_grid_init(latent_grid *g, int bits);   /* 0 if memory is short */
void latent_grid_free(latent_grid *g);

/* The quantised posterior CDF at bucket i (0..2^bits), inv_sigma = 1/sigma. */
uint32_t latent_cdf(const latent_grid *g, double mu, double inv_sigma, uint32_t i);
/* The bucket whose posterior interval holds slot. */
uint32_t latent_find(const latent_grid *g, double mu, double inv_sigma, uint32_t slot,
                     uint32_t *start, uint32_t *freq);

/* The standard normal's inverse CDF, to about 1e-15 (tests compare it). */
double codec_probit(double p);

#endif
