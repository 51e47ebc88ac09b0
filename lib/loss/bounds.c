/* Bound arithmetic (docs/model.md, "Bounds reported"): ELBO and IWAE_K from
 * per-sample log-weights log w = log p(x,z) - log q(z|x), and nats to bits per
 * dimension. Everything in double. */
#include <math.h>

#include "loss.h"

static agave_status check_log_weights(const double *log_w, int n, int k, const double *out)
{
    if (!log_w || !out)
        return AGAVE_ERR_NULL;
    if (n < 1 || k < 1)
        return AGAVE_ERR_INVALID_ARG;
    if ((size_t)n > SIZE_MAX / sizeof(double) / (size_t)k)
        return AGAVE_ERR_LIMIT;
    return AGAVE_OK;
}

/* Largest entry of a row (NaN entries ignored); -inf for an all -inf row. */
static double row_max(const double *w, int k)
{
    double m = -INFINITY;
    for (int j = 0; j < k; j++)
        if (w[j] > m)
            m = w[j];
    return m;
}

/* Both bounds are computed around the row maximum m:
 *   elbo = m + mean(w - m),   iwae = m + (log sum exp(w - m) - log k).
 * For k = 1 both give w exactly, and for equal weights both give m exactly,
 * so IWAE >= ELBO (Jensen) also holds to the last bit in those cases. A
 * non-finite m (all -inf, or a +inf weight) is returned as is; NaN propagates. */
static double row_elbo(const double *w, int k)
{
    double m = row_max(w, k), sum = 0;
    if (!isfinite(m)) {
        for (int j = 0; j < k; j++)
            sum += w[j];
        return sum / k;
    }
    for (int j = 0; j < k; j++)
        sum += w[j] - m;
    return m + sum / k;
}

static double row_iwae(const double *w, int k)
{
    double m = row_max(w, k), sum = 0;
    for (int j = 0; j < k; j++) {
        if (isnan(w[j]))
            return NAN;
        sum += isfinite(m) ? exp(w[j] - m) : 0;
    }
    if (!isfinite(m))
        return m;
    return m + (log(sum) - log((double)k));
}

agave_status agave_elbo_from_log_weights(const double *log_w, int n, int k, double *elbo)
{
    agave_status st = check_log_weights(log_w, n, k, elbo);
    if (st != AGAVE_OK)
        return st;
    for (int i = 0; i < n; i++)
        elbo[i] = row_elbo(log_w + (size_t)i * k, k);
    return AGAVE_OK;
}

agave_status agave_iwae_from_log_weights(const double *log_w, int n, int k, double *iwae)
{
    agave_status st = check_log_weights(log_w, n, k, iwae);
    if (st != AGAVE_OK)
        return st;
    for (int i = 0; i < n; i++)
        iwae[i] = row_iwae(log_w + (size_t)i * k, k);
    return AGAVE_OK;
}

/* bpd = nll / (dims ln 2); NaN unless dims > 0. */
double agave_nats_to_bpd(double nll_nats, double dims)
{
    if (!(dims > 0))
        return NAN;
    return nll_nats / (dims * M_LN2);
}
