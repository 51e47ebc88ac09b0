/* Finite-difference gradient checks for tape ops.
 *
 * A case names an op of the op table, describes its inputs (shape and the
 * uniform range they are drawn from) and runs the op. The harness forms
 * L = sum(out * R) for a fixed random R, back-propagates, and compares every
 * analytic dL/dx (or a sample of 256 per input) against the central difference
 * (L(x+eps) - L(x-eps)) / 2eps, L summed in double. An element passes when
 *   |numeric - analytic| <= atol + rtol * max(|numeric|, |analytic|).
 * Defaults eps = 1e-2, rtol = 1e-2, atol = 2e-3: float32 forward noise on the
 * few outputs one input touches is ~1e-4 after division by 2eps, truncation
 * error is eps^2 f'''/6 ~ 2e-5, while a wrong backward formula (a missing term,
 * a transposed index, a factor of 2) is off by O(|gradient|) ~ 0.1..10.
 */
#ifndef AGAVE_TEST_GRADCHECK_H
#define AGAVE_TEST_GRADCHECK_H

#include <agave.h>

#define GC_MAX_INPUTS 4

typedef struct gc_input {
    int ndim;
    int dims[4];
    float lo, hi;      /* values drawn uniformly from [lo, hi] */
    int constant;      /* 1: not differentiated (no gradient requested) */
} gc_input;

typedef struct gc_case {
    const char *op;      /* op table name, e.g. "conv2d" */
    const char *label;   /* what this case covers */
    int n_inputs;
    gc_input in[GC_MAX_INPUTS];
    /* Runs the op on in[0..n_inputs-1]; writes its output. */
    agave_status (*run)(agave_context *ctx, agave_tensor **in, agave_tensor **out);
    /* Optional: overwrite input values after the uniform fill (e.g. keep away from kinks). */
    void (*prepare)(agave_tensor **in);
    int random;          /* the op draws random numbers: reseed before every run */
    double eps, rtol, atol;  /* 0 = the defaults above */
} gc_case;

/* Each family file defines one array and its length. */
extern const gc_case gc_cases_conv[];
extern const int gc_n_cases_conv;
extern const gc_case gc_cases_elementwise[];
extern const int gc_n_cases_elementwise;
extern const gc_case gc_cases_loss[];
extern const int gc_n_cases_loss;
extern const gc_case gc_cases_misc[];
extern const int gc_n_cases_misc;

typedef struct gc_result {
    int checked;          /* gradient elements compared */
    int failed;           /* elements outside the tolerance */
    double worst_excess;  /* max of |num - ana| - (atol + rtol * max) (<= 0 when passing) */
    char first_failure[256];
} gc_result;

/* Runs one case with the given seed; returns AGAVE_OK when the op itself ran. */
agave_status gc_run_case(const gc_case *c, unsigned seed, gc_result *res);

/* Deterministic test random numbers (independent of the library's RNG). */
void test_rng_seed(unsigned long long seed);
double test_uniform(double lo, double hi);

#endif
