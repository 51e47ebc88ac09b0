/* Integer frequency tables from the model's floats (lib/codec/tables.h).
 *
 * Exactness rests on both sides evaluating the same expressions on the same
 * inputs: the functions here are pure, use double arithmetic and libm, and
 * are compiled without fused multiply-adds (-ffp-contract=off), so the
 * encoder and the decoder of one build on one machine agree bit for bit.
 *
 * A decoder finds the symbol under a slot by binary search on the quantised
 * CDF cdf(k) = k + floor(G(k)), G = clamp01(F) * spread, which finds every
 * value of a non-empty interval when cdf never decreases. It cannot when
 * every component has a finite weight >= 0, a finite mean and a finite
 * inv_s >= 0 (all the network makes): the exact mixture at the computed
 * edges rises with k (the edges and (e - mean) * inv_s round monotonically),
 * the computed F is within 1e-14 of it (exp to a few ulp, then M + 3
 * roundings of numbers at most 1), so G dips by less than 4e-7 (spread <
 * 2^24) and cdf(k + 1) - cdf(k) = 1 + floor(G(k + 1)) - floor(G(k)) >= 0:
 * the unit each value is lent absorbs any dip smaller than one. Any other
 * model (NaN, an infinity, a negative weight or scale) is not taken on
 * trust: pixel_interval walks the decoder's search for the value and
 * refuses one that would not be found. */
#include <math.h>
#include <stdlib.h>

#include "tables.h"

#define PIXEL_VALUES 256

static double clamp01(double v)
{
    if (!(v > 0))   /* also NaN */
        return 0;
    return v < 1 ? v : 1;
}

/* logistic sigmoid 1 / (1 + e^-t): one formula for every t, so that it is
 * monotone wherever exp is; +-inf and huge |t| give 0 or 1. */
static double sigmoid(double t) { return 1.0 / (1.0 + exp(-t)); }

/* sigmoid(b) - sigmoid(a) for a <= b without cancellation in the upper tail. */
static double sigmoid_diff(double a, double b)
{
    if (a >= 0)
        return sigmoid(-a) - sigmoid(-b);
    return sigmoid(b) - sigmoid(a);
}

/* ---- pixels ------------------------------------------------------------------- */
/* Network-scale edge between values k - 1 and k: x~(k) - 1/255. */
static double pixel_edge(int k) { return (2.0 * k - 1.0) / 255.0 - 1.0; }

/* Weights, means and scales of channel pm->c from the responsibilities. */
static void channel_prepare(pixel_model *pm)
{
    double mean[3], top = -INFINITY, total = 0;
    for (int m = 0; m < pm->M; m++)
        if (pm->log_resp[m] > top)
            top = pm->log_resp[m];
    for (int m = 0; m < pm->M; m++) {
        double w = top == -INFINITY ? 1.0 : exp(pm->log_resp[m] - top);
        pm->weight[m] = w;
        total += w;
        dmol_coupled_means(&pm->comp[m], pm->C, pm->xn, mean);
        pm->mean[m] = mean[pm->c];
        pm->inv_s[m] = pm->comp[m].width[pm->c].inv_s;
    }
    for (int m = 0; m < pm->M; m++)
        pm->weight[m] /= total;
}

void pixel_model_begin(pixel_model *pm, const float *params, int C, int M)
{
    pm->C = C, pm->M = M, pm->c = 0;
    pm->xn[0] = pm->xn[1] = pm->xn[2] = 0;
    dmol_mixture_prepare(params, 1, C, M, pm->comp);
    for (int m = 0; m < M; m++)
        pm->log_resp[m] = pm->comp[m].log_weight;
    channel_prepare(pm);
}

uint32_t pixel_cdf(const pixel_model *pm, int k)
{
    if (k <= 0)
        return 0;
    if (k >= PIXEL_VALUES)
        return 1u << CODEC_PIXEL_PREC;
    double e = pixel_edge(k), F = 0;
    for (int m = 0; m < pm->M; m++)
        F += pm->weight[m] * sigmoid((e - pm->mean[m]) * pm->inv_s[m]);
    const double spread = (double)((1u << CODEC_PIXEL_PREC) - PIXEL_VALUES);
    return (uint32_t)k + (uint32_t)floor(clamp01(F) * spread);
}

/* Component m's mass at value v of the current channel. */
static double component_mass(const pixel_model *pm, int m, int v)
{
    double a = v == 0 ? -INFINITY : (pixel_edge(v) - pm->mean[m]) * pm->inv_s[m];
    double b = v == PIXEL_VALUES - 1 ? INFINITY : (pixel_edge(v + 1) - pm->mean[m]) * pm->inv_s[m];
    return sigmoid_diff(a, b);
}

double pixel_prob(const pixel_model *pm, int v)
{
    double p = 0;
    for (int m = 0; m < pm->M; m++)
        p += pm->weight[m] * component_mass(pm, m, v);
    return p;
}

/* Moves past value v of the current channel given its components' masses
 * (NULL after the last channel, whose responsibilities nothing reads). */
static void advance(pixel_model *pm, int v, const double *mass)
{
    if (mass)
        for (int m = 0; m < pm->M; m++)
            /* an underflowed mass: the smallest log a double mass can have */
            pm->log_resp[m] += mass[m] > 0 ? log(mass[m]) : -745.0;
    pm->xn[pm->c] = loss_pixel_to_net(v);
    pm->c++;
    if (pm->c < pm->C)
        channel_prepare(pm);
}

void pixel_model_next(pixel_model *pm, int v)
{
    if (pm->c + 1 >= pm->C) {
        advance(pm, v, NULL);
        return;
    }
    double mass[CODEC_MAX_MIX];
    for (int m = 0; m < pm->M; m++)
        mass[m] = component_mass(pm, m, v);
    advance(pm, v, mass);
}

double pixel_model_take(pixel_model *pm, int v)
{
    double mass[CODEC_MAX_MIX], p = 0;
    for (int m = 0; m < pm->M; m++) {
        mass[m] = component_mass(pm, m, v);
        p += pm->weight[m] * mass[m];
    }
    advance(pm, v, pm->c + 1 < pm->C ? mass : NULL);
    return p;
}

int pixel_find(const pixel_model *pm, uint32_t slot, uint32_t *start, uint32_t *freq)
{
    /* invariant: cdf(lo) <= slot < cdf(hi), so the result's freq is >= 1
     * whatever the CDF looks like */
    int lo = 0, hi = PIXEL_VALUES;
    uint32_t c_lo = 0, c_hi = 1u << CODEC_PIXEL_PREC;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        uint32_t c = pixel_cdf(pm, mid);
        if (c <= slot)
            lo = mid, c_lo = c;
        else
            hi = mid, c_hi = c;
    }
    *start = c_lo, *freq = c_hi - c_lo;
    return lo;
}

/* 1 when every component is one whose CDF cannot make cdf decrease (the
 * bound at the top of this file). */
static int cdf_never_decreases(const pixel_model *pm)
{
    for (int m = 0; m < pm->M; m++)
        if (!(pm->weight[m] >= 0 && pm->weight[m] <= 1 && isfinite(pm->mean[m]) &&
              pm->inv_s[m] >= 0 && isfinite(pm->inv_s[m])))
            return 0;
    return 1;
}

int pixel_interval(const pixel_model *pm, int v, uint32_t *start, uint32_t *freq)
{
    uint32_t s = pixel_cdf(pm, v), e = pixel_cdf(pm, v + 1);
    if (e <= s)
        return 0;
    *start = s, *freq = e - s;
    if (cdf_never_decreases(pm))
        return 1;
    /* every step of pixel_find must go v's way for every slot in [s, e) */
    int lo = 0, hi = PIXEL_VALUES;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        uint32_t c = mid == v ? s : mid == v + 1 ? e : pixel_cdf(pm, mid);
        if (mid <= v) {
            if (c > s)
                return 0;
            lo = mid;
        } else {
            if (c < e)
                return 0;
            hi = mid;
        }
    }
    return 1;
}

/* ---- the latent code ------------------------------------------------------------ */
/* Acklam's rational approximation of the probit (relative error 1.2e-9), then
 * one Halley step on Phi(x) - p, which brings it to double precision. */
double codec_probit(double p)
{
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
    const double p_low = 0.02425;
    if (!(p > 0))
        return -INFINITY;
    if (p >= 1)
        return INFINITY;
    double x;
    if (p < p_low || p > 1 - p_low) {
        double q = sqrt(-2 * log(p < 0.5 ? p : 1 - p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        if (p > 0.5)
            x = -x;
    } else {
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
    double u = e * sqrt(2 * M_PI) * exp(x * x / 2);
    return x - u / (1 + x * u / 2);
}

int latent_grid_init(latent_grid *g, int bits)
{
    size_t n = (size_t)1 << bits;
    g->bits = bits;
    g->edge = malloc((n + 1) * sizeof *g->edge);
    g->centre = malloc(n * sizeof *g->centre);
    if (!g->edge || !g->centre) {
        latent_grid_free(g);
        return 0;
    }
    g->edge[0] = -INFINITY;
    g->edge[n] = INFINITY;
    for (size_t i = 1; i < n; i++)
        g->edge[i] = codec_probit((double)i / (double)n);
    for (size_t i = 0; i < n; i++)
        g->centre[i] = (float)codec_probit(((double)i + 0.5) / (double)n);
    return 1;
}

void latent_grid_free(latent_grid *g)
{
    free(g->edge), free(g->centre);
    g->edge = NULL, g->centre = NULL;
}

uint32_t latent_cdf(const latent_grid *g, double mu, double inv_sigma, uint32_t i)
{
    uint32_t n = 1u << g->bits;
    if (i == 0)
        return 0;
    if (i >= n)
        return 1u << CODEC_LATENT_PREC;
    double t = (g->edge[i] - mu) * inv_sigma;
    double Phi = 0.5 * erfc(-t * M_SQRT1_2);
    const double spread = (double)((1u << CODEC_LATENT_PREC) - n);
    return i + (uint32_t)floor(clamp01(Phi) * spread);
}

uint32_t latent_find(const latent_grid *g, double mu, double inv_sigma, uint32_t slot,
                     uint32_t *start, uint32_t *freq)
{
    uint32_t lo = 0, hi = 1u << g->bits;
    uint32_t c_lo = 0, c_hi = 1u << CODEC_LATENT_PREC;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint32_t c = latent_cdf(g, mu, inv_sigma, mid);
        if (c <= slot)
            lo = mid, c_lo = c;
        else
            hi = mid, c_hi = c;
    }
    *start = c_lo, *freq = c_hi - c_lo;
    return lo;
}
