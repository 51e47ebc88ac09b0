/* The log-mass of one logistic bin, computed stably, with its gradient.
 * Private to lib/loss (the auxiliary discretized logistic and the mixture of
 * logistics share it).
 *
 * For X ~ logistic(mean, s = exp(log_scale)) and a bin [lo, hi), let
 * a = (hi - mean)/s, b = (lo - mean)/s and d = a - b = (hi - lo)/s. Then
 *   sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(-d)),
 * so  log mass = log sigmoid(a) + log sigmoid(-b) + log(1 - exp(-d)): three
 * non-positive terms, no cancellation, and a far-away mean gives ~ -|a| rather
 * than log(0). With ea = exp(-|a|), eb = exp(-|b|):
 *   log sigmoid(a) + log sigmoid(-b) = min(a,0) - max(b,0) - log1p(ea + eb + ea eb).
 * The last term of the first line depends on the scale only, so it is computed
 * once per scale (logistic_width); and when the bin lies on one side of the
 * mean one of ea, eb is the other times exp(-d): one exp and one log1p per bin.
 * Gradients (the 1/expm1(d) terms of d/da and d/db cancel in both):
 *   d/dmean      = -(sigmoid(-a) - sigmoid(b)) / s
 *   d/dlog_scale = -(a sigmoid(-a) - b sigmoid(b) + d / expm1(d))
 * Open bins keep one term: lo = -inf gives log sigmoid(a), hi = +inf gives
 * log sigmoid(-b).
 * Every function takes want_grad: 0 skips the gradient (the fields stay 0),
 * which callers that only score values pass as a constant.
 */
#ifndef AGAVE_LOSS_LOGISTIC_H
#define AGAVE_LOSS_LOGISTIC_H

#include <math.h>

typedef struct bin_logprob {
    double logp;         /* log-probability in nats */
    double d_mean;       /* d logp / d mean */
    double d_log_scale;  /* d logp / d log_scale */
} bin_logprob;

/* A scale and the terms of a bin width that do not depend on the bin's place. */
typedef struct logistic_width {
    double log_scale;
    double inv_s;            /* exp(-log_scale); must be finite */
    double exp_neg_d;        /* exp(-d), d = width / s; < 0 while not computed */
    double log_one_minus;    /* log(1 - exp(-d)); log d where d underflows */
    double d_over_expm1;     /* d / expm1(d), -> 1 as d -> 0 */
} logistic_width;

/* The scale alone, the width terms marked missing (exp_neg_d < 0): callers
 * that may not need them (edge bins, far tails) fill them on demand. */
static inline logistic_width logistic_scale_only(double log_scale)
{
    logistic_width w;
    w.log_scale = log_scale;
    w.inv_s = exp(-log_scale);   /* 0 for log_scale > 745: then d = 0 */
    w.exp_neg_d = -1;
    w.log_one_minus = w.d_over_expm1 = 0;
    return w;
}

/* Fills the width terms of w for a bin of the given width. */
static inline void logistic_width_fill(logistic_width *w, double width)
{
    double d = width * w->inv_s, one_minus = -expm1(-d);
    /* 1 - (1 - e^-d) is exact to 1e-16 absolute, all the products below need */
    w->exp_neg_d = 1 - one_minus;
    if (one_minus > 0) {
        w->log_one_minus = log(one_minus);
        w->d_over_expm1 = d * w->exp_neg_d / one_minus;
    } else {   /* d below the double range: log(1 - e^-d) = log d */
        w->log_one_minus = log(width) - w->log_scale;
        w->d_over_expm1 = 1;
    }
}

static inline logistic_width logistic_width_make(double log_scale, double width)
{
    logistic_width w = logistic_scale_only(log_scale);
    logistic_width_fill(&w, width);
    return w;
}

/* x * f where x may be infinite and f zero (f a sigmoid that underflowed):
 * the limit x * sigmoid(x) -> 0 as x -> -inf, never NaN. */
static inline double times_sigmoid(double x, double f) { return f == 0 ? 0 : x * f; }

/* sigmoid(-a) and sigmoid(b) from ea = exp(-|a|), eb = exp(-|b|). */
static inline double sigmoid_neg_from(double a, double ea)
{
    return a >= 0 ? ea / (1 + ea) : 1 / (1 + ea);
}
static inline double sigmoid_from(double b, double eb)
{
    return b >= 0 ? 1 / (1 + eb) : eb / (1 + eb);
}

/* A bin open below, [-inf, hi): log sigmoid(a). */
static inline bin_logprob logistic_lower_logprob(double a, double inv_s, int want_grad)
{
    double ea = exp(-fabs(a));
    bin_logprob r = {(a < 0 ? a : 0) - log1p(ea), 0, 0};
    if (!want_grad)
        return r;
    double sig_neg_a = sigmoid_neg_from(a, ea);
    r.d_mean = -inv_s * sig_neg_a;
    r.d_log_scale = -times_sigmoid(a, sig_neg_a);
    return r;
}

/* A bin open above, [lo, +inf): log sigmoid(-b). */
static inline bin_logprob logistic_upper_logprob(double b, double inv_s, int want_grad)
{
    double eb = exp(-fabs(b));
    bin_logprob r = {-(b > 0 ? b : 0) - log1p(eb), 0, 0};
    if (!want_grad)
        return r;
    double sig_b = sigmoid_from(b, eb);
    r.d_mean = inv_s * sig_b;
    r.d_log_scale = times_sigmoid(b, sig_b);
    return r;
}

/* A bin [lo, hi) with both edges finite; a, b as above, w for its scale and width. */
static inline bin_logprob logistic_interior_logprob(double a, double b, const logistic_width *w,
                                                    int want_grad)
{
    double ea, eb;
    if (b >= 0) {          /* above the mean: a = b + d */
        eb = exp(-b);
        ea = eb * w->exp_neg_d;
    } else if (a <= 0) {   /* below the mean: b = a - d */
        ea = exp(a);
        eb = ea * w->exp_neg_d;
    } else {               /* straddles the mean (or NaN, which propagates) */
        ea = exp(-a);
        eb = exp(b);
    }
    /* log((1+ea)(1+eb)) rather than log1p(ea + eb + ea eb): the absolute error
     * of 1e-16 is all log p needs, and log is twice as fast */
    bin_logprob r = {(a < 0 ? a : 0) - (b > 0 ? b : 0) + w->log_one_minus -
                         log((1 + ea) * (1 + eb)),
                     0, 0};
    if (!want_grad)
        return r;
    double sig_neg_a = sigmoid_neg_from(a, ea), sig_b = sigmoid_from(b, eb);
    r.d_mean = -w->inv_s * (sig_neg_a - sig_b);
    r.d_log_scale = -(times_sigmoid(a, sig_neg_a) - times_sigmoid(b, sig_b) + w->d_over_expm1);
    return r;
}

/*
 * PixelCNN++'s underflow fallback: the log-density at the bin centre x times
 * the bin width, log pdf(x) + log_width, with mid = (x - mean)/s:
 *   log pdf(x) = mid - log_scale - 2 softplus(mid)
 *   d/dmean      =  tanh(mid/2) / s
 *   d/dlog_scale =  mid tanh(mid/2) - 1
 */
static inline bin_logprob logistic_centre_logprob(double x, double mean, double log_scale,
                                                  double inv_s, double log_width, int want_grad)
{
    double mid = (x - mean) * inv_s, e = exp(-fabs(mid));
    bin_logprob r = {mid - log_scale - 2 * ((mid > 0 ? mid : 0) + log1p(e)) + log_width, 0, 0};
    if (!want_grad)
        return r;
    double tanh_half = (mid >= 0 ? 1 : -1) * (1 - e) / (1 + e);   /* tanh(mid/2) */
    r.d_mean = inv_s * tanh_half;
    r.d_log_scale = mid * tanh_half - 1;
    return r;
}

#endif
