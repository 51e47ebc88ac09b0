/* Forward values, error paths and tape behaviour of the non-convolution ops:
 * lib/ops/arith.c, reduce.c, activation.c, shape.c, dropout.c and
 * weight_norm.c. Values are compared with double-precision references and
 * closed forms written here from the header's definitions; gradients are
 * checked by finite differences in test_gradcheck.c, and here only where
 * large tensors take paths (blocks, threads) the small gradcheck cases miss.
 * Only the public API is used. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <agave.h>

#include "core/core.h"
#include "support/gradcheck.h"

/* ---- fixtures and helpers ------------------------------------------------------------ */
static int ctx_setup(void **state)
{
    agave_context *ctx = NULL;
    if (agave_context_create(&ctx, 42) != AGAVE_OK)
        return -1;
    test_rng_seed(1234);
    *state = ctx;
    return 0;
}

static int ctx_teardown(void **state)
{
    agave_context_free(*state);
    return 0;
}

static agave_tensor *tensor_nd(agave_context *ctx, int ndim, const int *dims)
{
    agave_tensor *t = NULL;
    assert_int_equal(agave_tensor_create(ctx, ndim, dims, &t), AGAVE_OK);
    return t;
}

static agave_tensor *tensor4(agave_context *ctx, int n, int c, int h, int w)
{
    int dims[4] = {n, c, h, w};
    return tensor_nd(ctx, 4, dims);
}

static agave_tensor *tensor1(agave_context *ctx, int n) { return tensor_nd(ctx, 1, &n); }

static agave_tensor *uniform(agave_tensor *t, double lo, double hi)
{
    float *d = agave_tensor_data(t);
    for (size_t i = 0; i < agave_tensor_numel(t); i++)
        d[i] = (float)test_uniform(lo, hi);
    return t;
}

static agave_tensor *from_values(agave_context *ctx, const float *v, int n)
{
    agave_tensor *t = tensor1(ctx, n);
    assert_int_equal(agave_tensor_copy_in(t, v, (size_t)n), AGAVE_OK);
    return t;
}

/* |got - ref| <= atol + rtol |ref|, NaN only where ref is NaN, infinities equal. */
static void expect_close(const float *got, const double *ref, size_t n, double atol, double rtol,
                         const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        int ok = isnan(r) ? isnan(g) : isinf(r) ? g == r : fabs(g - r) <= atol + rtol * fabs(r);
        if (!ok)
            fail_msg("%s: element %zu is %.9g, expected %.9g (atol %g, rtol %g)", what, i, g, r,
                     atol, rtol);
    }
}

static void expect_equal(const float *got, const float *ref, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], sizeof got[i]) != 0)
            fail_msg("%s: element %zu is %.9g, expected exactly %.9g", what, i, (double)got[i],
                     (double)ref[i]);
}

static void expect_shape(const agave_tensor *t, int ndim, int d0, int d1, int d2, int d3)
{
    int want[4] = {d0, d1, d2, d3};
    assert_int_equal(agave_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        assert_int_equal(agave_tensor_dim(t, i), want[i]);
}

static void expect_message_has(agave_context *ctx, const char *part)
{
    const char *msg = agave_context_last_error(ctx);
    if (!strstr(msg, part))
        fail_msg("last error \"%s\" does not mention \"%s\"", msg, part);
}

static double *dalloc(size_t n)
{
    double *d = malloc(n * sizeof *d);
    assert_non_null(d);
    return d;
}

/* ---- arith.c ------------------------------------------------------------------------- */
/* A sum, difference or product of two floats is exact in double, so the float
 * result must be that double rounded once: bit-exact comparisons. */
static void test_add_sub_mul_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *a = uniform(tensor4(ctx, 2, 3, 4, 5), -3, 3);
    agave_tensor *b = uniform(tensor4(ctx, 2, 3, 4, 5), -3, 3);
    agave_tensor *s = NULL, *d = NULL, *p = NULL;
    assert_int_equal(agave_add(ctx, a, b, &s), AGAVE_OK);
    assert_int_equal(agave_sub(ctx, a, b, &d), AGAVE_OK);
    assert_int_equal(agave_mul(ctx, a, b, &p), AGAVE_OK);
    expect_shape(s, 4, 2, 3, 4, 5);
    size_t n = agave_tensor_numel(a);
    const float *pa = agave_tensor_data(a), *pb = agave_tensor_data(b);
    float *rs = malloc(n * sizeof *rs), *rd = malloc(n * sizeof *rd), *rp = malloc(n * sizeof *rp);
    for (size_t i = 0; i < n; i++) {
        rs[i] = (float)((double)pa[i] + pb[i]);
        rd[i] = (float)((double)pa[i] - pb[i]);
        rp[i] = (float)((double)pa[i] * pb[i]);
    }
    expect_equal(agave_tensor_data(s), rs, n, "add");
    expect_equal(agave_tensor_data(d), rd, n, "sub");
    expect_equal(agave_tensor_data(p), rp, n, "mul");
    free(rs);
    free(rd);
    free(rp);
    agave_tensor_free(a);
    agave_tensor_free(b);
}

static void test_scale_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 3, 2, 5, 1), -3, 3), *y = NULL;
    assert_int_equal(agave_scale(ctx, x, -1.75f, &y), AGAVE_OK);
    size_t n = agave_tensor_numel(x);
    float ref[30];
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)(-1.75 * agave_tensor_data(x)[i]);
    expect_equal(agave_tensor_data(y), ref, n, "scale");
    agave_tensor_free(x);
}

/* bias (C) is added along axis 1 of 4-D and 2-D tensors. */
static void test_bias_add_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 2, 3), -1, 1), *bias = tensor1(ctx, 3), *y;
    float bv[3] = {10, 20, 30};
    agave_tensor_copy_in(bias, bv, 3);
    assert_int_equal(agave_bias_add(ctx, x, bias, &y), AGAVE_OK);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 6; i++) {
                size_t j = (size_t)(n * 3 + c) * 6 + (size_t)i;
                assert_true(agave_tensor_data(y)[j] == agave_tensor_data(x)[j] + bv[c]);
            }
    int d2[2] = {4, 3};
    agave_tensor *x2 = uniform(tensor_nd(ctx, 2, d2), -1, 1), *y2;
    assert_int_equal(agave_bias_add(ctx, x2, bias, &y2), AGAVE_OK);
    expect_shape(y2, 2, 4, 3, 0, 0);
    for (int i = 0; i < 12; i++)
        assert_true(agave_tensor_data(y2)[i] == agave_tensor_data(x2)[i] + bv[i % 3]);
    agave_tensor_free(x);
    agave_tensor_free(x2);
    agave_tensor_free(bias);
}

/* ---- reduce.c ------------------------------------------------------------------------ */
static void test_sum_mean_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 3, 5, 7, 2), -2, 2), *s, *m;
    double ref = 0;
    for (size_t i = 0; i < agave_tensor_numel(x); i++)
        ref += agave_tensor_data(x)[i];
    assert_int_equal(agave_sum(ctx, x, &s), AGAVE_OK);
    assert_int_equal(agave_mean(ctx, x, &m), AGAVE_OK);
    expect_shape(s, 1, 1, 0, 0, 0);
    expect_shape(m, 1, 1, 0, 0, 0);
    double rm = ref / (double)agave_tensor_numel(x);
    expect_close(agave_tensor_data(s), &ref, 1, 1e-6, 1e-6, "sum");
    expect_close(agave_tensor_data(m), &rm, 1, 1e-7, 1e-6, "mean");
    agave_tensor_free(x);
}

/* 2^20 copies of 0.1f: a float accumulator drifts by hundreds, the documented
 * double accumulation is exact up to the final rounding. */
static void test_sum_accumulates_in_double(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = tensor1(ctx, 1 << 20), *s, *m;
    agave_tensor_fill(x, 0.1f);
    assert_int_equal(agave_sum(ctx, x, &s), AGAVE_OK);
    assert_int_equal(agave_mean(ctx, x, &m), AGAVE_OK);
    double ref = (double)(1 << 20) * (double)0.1f, rm = 0.1f;
    expect_close(agave_tensor_data(s), &ref, 1, 0, 1e-7, "sum of 2^20 x 0.1f");
    expect_close(agave_tensor_data(m), &rm, 1, 0, 1e-7, "mean of 2^20 x 0.1f");
    agave_tensor_free(x);
}

static void test_logsumexp_forward(void **state)
{
    agave_context *ctx = *state;
    int dims[4] = {2, 3, 4, 5};
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 4, 5), -5, 5);
    const float *px = agave_tensor_data(x);
    for (int axis = 0; axis < 4; axis++) {
        agave_tensor *y = NULL;
        assert_int_equal(agave_logsumexp(ctx, x, axis, &y), AGAVE_OK);
        int od[4] = {2, 3, 4, 5};
        od[axis] = 1;
        expect_shape(y, 4, od[0], od[1], od[2], od[3]);
        double ref[60];
        size_t inner = 1, outer = 1;
        for (int i = axis + 1; i < 4; i++)
            inner *= (size_t)dims[i];
        for (int i = 0; i < axis; i++)
            outer *= (size_t)dims[i];
        for (size_t o = 0; o < outer; o++)
            for (size_t i = 0; i < inner; i++) {
                double s = 0;
                for (int k = 0; k < dims[axis]; k++)
                    s += exp((double)px[(o * (size_t)dims[axis] + (size_t)k) * inner + i]);
                ref[o * inner + i] = log(s);
            }
        expect_close(agave_tensor_data(y), ref, outer * inner, 1e-6, 1e-6, "logsumexp");
    }
    agave_tensor_free(x);
}

/* Closed forms: n equal values v give v + log n; huge values do not overflow;
 * all -inf gives -inf, and -inf entries contribute nothing. */
static void test_logsumexp_closed_forms(void **state)
{
    agave_context *ctx = *state;
    int d2[2] = {3, 7};
    agave_tensor *x = tensor_nd(ctx, 2, d2), *y;
    float rows[3] = {-2.5f, 1000.0f, -1000.0f};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 7; k++)
            agave_tensor_data(x)[r * 7 + k] = rows[r];
    assert_int_equal(agave_logsumexp(ctx, x, 1, &y), AGAVE_OK);
    expect_shape(y, 2, 3, 1, 0, 0);
    double ref[3];
    for (int r = 0; r < 3; r++)
        ref[r] = rows[r] + log(7.0);
    expect_close(agave_tensor_data(y), ref, 3, 1e-6, 2e-7, "logsumexp of equal values");

    float inf = INFINITY;
    float v[8] = {-inf, -inf, -inf, -inf, -inf, 0.5f, -inf, 0.5f};
    int d22[2] = {2, 4};
    agave_tensor *z = tensor_nd(ctx, 2, d22);
    agave_tensor_copy_in(z, v, 8);
    assert_int_equal(agave_logsumexp(ctx, z, 1, &y), AGAVE_OK);
    double r2[2] = {-INFINITY, 0.5 + log(2.0)};
    expect_close(agave_tensor_data(y), r2, 2, 1e-6, 1e-6, "logsumexp with -inf");
    agave_tensor_free(x);
    agave_tensor_free(z);
}

/* ---- activation.c -------------------------------------------------------------------- */
static double ref_elu(double x) { return x > 0 ? x : expm1(x); }
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* A sweep over [lo, hi] plus the values where things go wrong. */
static agave_tensor *sweep(agave_context *ctx, double lo, double hi, int n)
{
    const float special[] = {0.0f,    -0.0f,   1e-30f,   -1e-30f, 1e-8f,  -1e-8f, -1e-3f,
                             1e-3f,   FLT_MIN, -FLT_MIN, 87.0f,   -87.0f, -88.5f, -103.0f,
                             -104.0f, -105.0f, -150.0f,  30.0f,   -30.0f};
    int ns = (int)(sizeof special / sizeof special[0]);
    agave_tensor *t = tensor1(ctx, n + ns);
    float *d = agave_tensor_data(t);
    for (int i = 0; i < n; i++)
        d[i] = (float)(lo + (hi - lo) * i / (n - 1));
    memcpy(d + n, special, sizeof special);
    return t;
}

typedef agave_status (*unary_fn)(agave_context *, agave_tensor *, agave_tensor **);

/* Runs op on x and compares with ref(x) element by element. */
static void check_unary(agave_context *ctx, unary_fn op, double (*ref)(double), agave_tensor *x,
                        double atol, double rtol, const char *what)
{
    agave_tensor *y = NULL;
    assert_int_equal(op(ctx, x, &y), AGAVE_OK);
    size_t n = agave_tensor_numel(x);
    assert_int_equal(agave_tensor_numel(y), n);
    double *r = dalloc(n);
    for (size_t i = 0; i < n; i++)
        r[i] = ref(agave_tensor_data(x)[i]);
    expect_close(agave_tensor_data(y), r, n, atol, rtol, what);
    free(r);
}

/* elu and sigmoid use the library's own vectorised exp: within 2 ulp of the
 * double result (rtol 2.4e-7); elu near 0 is exp(x) - 1, whose absolute
 * error is that of exp near 1 (6e-8); sigmoid deep in the left tail is
 * subnormal, where only an absolute 1e-44 is meaningful. */
static void test_elu_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = sweep(ctx, -110, 30, 40001);
    check_unary(ctx, agave_elu, ref_elu, x, 1.2e-7, 2.4e-7, "elu");
    float v[5] = {NAN, INFINITY, -INFINITY, 3.0f, -FLT_MAX}, *o;
    agave_tensor *s = from_values(ctx, v, 5), *y;
    assert_int_equal(agave_elu(ctx, s, &y), AGAVE_OK);
    o = agave_tensor_data(y);
    assert_true(isnan(o[0]));
    assert_true(o[1] == INFINITY && o[2] == -1.0f && o[3] == 3.0f && o[4] == -1.0f);
    agave_tensor_free(x);
    agave_tensor_free(s);
}

static void test_sigmoid_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = sweep(ctx, -120, 120, 48001);
    check_unary(ctx, agave_sigmoid, ref_sigmoid, x, 1e-44, 2.4e-7, "sigmoid");
    float v[5] = {1000.0f, -1000.0f, INFINITY, -INFINITY, NAN}, *o;
    agave_tensor *s = from_values(ctx, v, 5), *y;
    assert_int_equal(agave_sigmoid(ctx, s, &y), AGAVE_OK);
    o = agave_tensor_data(y);
    assert_true(o[0] == 1.0f && o[1] == 0.0f && o[2] == 1.0f && o[3] == 0.0f);
    assert_true(isnan(o[4]));
    agave_tensor_free(x);
    agave_tensor_free(s);
}

/* gate: out = x + a * sigmoid(b), c = (a, b) along channels, against double
 * precision over b swept through [-120, 120] and the special values (a
 * sigmoid within 2.4e-7 of its value, plus the rounding of the sum); b = +-1000
 * and +-inf give exactly x + a and x. */
static void test_gate_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *bs = sweep(ctx, -120, 120, 4001);
    const int P = (int)agave_tensor_numel(bs), F = 2;
    agave_tensor *x, *c, *y;
    assert_int_equal(agave_tensor_create(ctx, 4, (int[]){1, F, 1, P}, &x), AGAVE_OK);
    assert_int_equal(agave_tensor_create(ctx, 4, (int[]){1, 2 * F, 1, P}, &c), AGAVE_OK);
    float *xv = agave_tensor_data(x), *cv = agave_tensor_data(c);
    for (int f = 0; f < F; f++)
        for (int i = 0; i < P; i++) {
            xv[f * P + i] = (float)(0.25 * (i % 7) - 0.5);
            cv[f * P + i] = (float)(1.5 - 0.5 * (i % 5) + f);       /* a */
            cv[(F + f) * P + i] = agave_tensor_data(bs)[(i + 97 * f) % P];   /* b */
        }
    assert_int_equal(agave_gate(ctx, x, c, &y), AGAVE_OK);
    const float *out = agave_tensor_data(y);
    for (int f = 0; f < F; f++)
        for (int i = 0; i < P; i++) {
            double a = cv[f * P + i], b = cv[(F + f) * P + i], xi = xv[f * P + i];
            double ref = xi + a * ref_sigmoid(b);
            double tol = 2.4e-7 * fabs(a) + 1.2e-7 * (fabs(xi) + fabs(a));
            if (!(fabs(out[f * P + i] - ref) <= tol))
                fail_msg("gate: x %g, a %g, b %g gives %.9g, expected %.9g", xi, a, b,
                         (double)out[f * P + i], ref);
        }
    const float big[4] = {1000.0f, -1000.0f, INFINITY, -INFINITY};
    for (int k = 0; k < 4; k++) {
        cv[F * P] = big[k];
        assert_int_equal(agave_gate(ctx, x, c, &y), AGAVE_OK);
        float want = k % 2 == 0 ? xv[0] + cv[0] : xv[0];
        assert_true(agave_tensor_data(y)[0] == want);
    }
    agave_tensor_free(bs), agave_tensor_free(x), agave_tensor_free(c);
}

/* concat_elu(x) = (elu(x), elu(-x)) along channels, for 4-D and 2-D x. */
static void check_concat_elu(agave_context *ctx, agave_tensor *x)
{
    agave_tensor *y = NULL;
    assert_int_equal(agave_concat_elu(ctx, x, &y), AGAVE_OK);
    int nd = agave_tensor_ndim(x), N = agave_tensor_dim(x, 0), C = agave_tensor_dim(x, 1);
    assert_int_equal(agave_tensor_ndim(y), nd);
    assert_int_equal(agave_tensor_dim(y, 1), 2 * C);
    for (int i = 2; i < nd; i++)
        assert_int_equal(agave_tensor_dim(y, i), agave_tensor_dim(x, i));
    size_t image = agave_tensor_numel(x) / (size_t)N;
    double *r = dalloc(2 * agave_tensor_numel(x));
    for (size_t n = 0; n < (size_t)N; n++)
        for (size_t i = 0; i < image; i++) {
            double v = agave_tensor_data(x)[n * image + i];
            r[n * 2 * image + i] = ref_elu(v);
            r[n * 2 * image + image + i] = ref_elu(-v);
        }
    expect_close(agave_tensor_data(y), r, agave_tensor_numel(y), 1.2e-7, 2.4e-7, "concat_elu");
    free(r);
}

static void test_concat_elu_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 5, 7), -4, 4);
    check_concat_elu(ctx, x);
    int d2[2] = {3, 5};
    agave_tensor *x2 = uniform(tensor_nd(ctx, 2, d2), -4, 4);
    check_concat_elu(ctx, x2);
    /* Images of 24500 floats: two blocks per image, and parallel with 2 threads. */
    agave_context_set_threads(ctx, 2);
    agave_tensor *big = uniform(tensor4(ctx, 3, 5, 70, 70), -6, 6);
    check_concat_elu(ctx, big);
    agave_tensor_free(x);
    agave_tensor_free(x2);
    agave_tensor_free(big);
}

static void test_tanh_exp_log_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = sweep(ctx, -20, 20, 4001);
    /* glibc's tanhf, expf and logf: within 3 ulp (rtol 3.6e-7). */
    check_unary(ctx, agave_tanh, tanh, x, 1e-44, 3.6e-7, "tanh");
    agave_tensor *e = sweep(ctx, -80, 80, 4001);
    check_unary(ctx, agave_exp, exp, e, 1e-44, 3.6e-7, "exp");
    agave_tensor *p = uniform(tensor4(ctx, 2, 3, 4, 5), 1e-6, 1e6);
    check_unary(ctx, agave_log, log, p, 1e-7, 3.6e-7, "log");
    /* The header: log needs x > 0 and behaves like logf otherwise. */
    float v[3] = {0.0f, -1.0f, INFINITY};
    agave_tensor *s = from_values(ctx, v, 3), *y;
    assert_int_equal(agave_log(ctx, s, &y), AGAVE_OK);
    assert_true(agave_tensor_data(y)[0] == -INFINITY);
    assert_true(isnan(agave_tensor_data(y)[1]));
    assert_true(agave_tensor_data(y)[2] == INFINITY);
    agave_tensor_free(x);
    agave_tensor_free(e);
    agave_tensor_free(p);
    agave_tensor_free(s);
}

/* softplus must not overflow: softplus(x) = x for large x, exp(x) for very
 * negative x (subnormal below -87, hence the absolute 1e-44). */
static void test_softplus_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = sweep(ctx, -100, 100, 20001);
    check_unary(ctx, agave_softplus, ref_softplus, x, 1e-44, 3.6e-7, "softplus");
    float v[4] = {1000.0f, -1000.0f, 100.0f, FLT_MAX};
    agave_tensor *s = from_values(ctx, v, 4), *y;
    assert_int_equal(agave_softplus(ctx, s, &y), AGAVE_OK);
    const float *o = agave_tensor_data(y);
    assert_true(o[0] == 1000.0f && o[1] == 0.0f && o[2] == 100.0f && o[3] == FLT_MAX);
    agave_tensor_free(x);
    agave_tensor_free(s);
}

/* ---- shape.c ------------------------------------------------------------------------- */
static float at4(agave_tensor *t, int n, int c, int h, int w)
{
    int C = agave_tensor_dim(t, 1), H = agave_tensor_dim(t, 2), W = agave_tensor_dim(t, 3);
    return agave_tensor_data(t)[(((size_t)n * C + c) * H + h) * W + w];
}

static void test_concat_split_roundtrip(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *a = uniform(tensor4(ctx, 2, 3, 4, 5), -1, 1);
    agave_tensor *b = uniform(tensor4(ctx, 2, 2, 4, 5), -1, 1);
    agave_tensor *y, *ra, *rb;
    assert_int_equal(agave_concat(ctx, a, b, &y), AGAVE_OK);
    expect_shape(y, 4, 2, 5, 4, 5);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 5; c++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 5; w++)
                    assert_true(at4(y, n, c, h, w) ==
                                (c < 3 ? at4(a, n, c, h, w) : at4(b, n, c - 3, h, w)));
    assert_int_equal(agave_split(ctx, y, 0, 3, &ra), AGAVE_OK);
    assert_int_equal(agave_split(ctx, y, 3, 2, &rb), AGAVE_OK);
    expect_shape(ra, 4, 2, 3, 4, 5);
    expect_shape(rb, 4, 2, 2, 4, 5);
    expect_equal(agave_tensor_data(ra), agave_tensor_data(a), agave_tensor_numel(a), "split a");
    expect_equal(agave_tensor_data(rb), agave_tensor_data(b), agave_tensor_numel(b), "split b");
    /* 2-D tensors: channels are columns. */
    int da[2] = {2, 1}, db[2] = {2, 2};
    agave_tensor *a2 = uniform(tensor_nd(ctx, 2, da), -1, 1),
                 *b2 = uniform(tensor_nd(ctx, 2, db), -1, 1);
    assert_int_equal(agave_concat(ctx, a2, b2, &y), AGAVE_OK);
    expect_shape(y, 2, 2, 3, 0, 0);
    const float *py = agave_tensor_data(y), *pa = agave_tensor_data(a2),
                *pb = agave_tensor_data(b2);
    float ref[6] = {pa[0], pb[0], pb[1], pa[1], pb[2], pb[3]};
    expect_equal(py, ref, 6, "2-D concat");
    agave_tensor_free(a);
    agave_tensor_free(b);
    agave_tensor_free(a2);
    agave_tensor_free(b2);
}

static void test_split_middle(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 3, 6, 2, 3), -1, 1), *y;
    assert_int_equal(agave_split(ctx, x, 2, 3, &y), AGAVE_OK);
    expect_shape(y, 4, 3, 3, 2, 3);
    for (int n = 0; n < 3; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 2; h++)
                for (int w = 0; w < 3; w++)
                    assert_true(at4(y, n, c, h, w) == at4(x, n, c + 2, h, w));
    agave_tensor_free(x);
}

static void test_shifts_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 4, 5), 1, 2), *d, *r;
    assert_int_equal(agave_down_shift(ctx, x, &d), AGAVE_OK);
    assert_int_equal(agave_right_shift(ctx, x, &r), AGAVE_OK);
    expect_shape(d, 4, 2, 3, 4, 5);
    expect_shape(r, 4, 2, 3, 4, 5);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 5; w++) {
                    assert_true(at4(d, n, c, h, w) == (h == 0 ? 0.0f : at4(x, n, c, h - 1, w)));
                    assert_true(at4(r, n, c, h, w) == (w == 0 ? 0.0f : at4(x, n, c, h, w - 1)));
                }
    /* A 1-row image shifts down to all zeros; a 1-column one right likewise. */
    agave_tensor *row = uniform(tensor4(ctx, 1, 2, 1, 3), 1, 2),
                 *col = uniform(tensor4(ctx, 1, 2, 3, 1), 1, 2);
    assert_int_equal(agave_down_shift(ctx, row, &d), AGAVE_OK);
    assert_int_equal(agave_right_shift(ctx, col, &r), AGAVE_OK);
    for (int i = 0; i < 6; i++)
        assert_true(agave_tensor_data(d)[i] == 0.0f && agave_tensor_data(r)[i] == 0.0f);
    agave_tensor_free(x);
    agave_tensor_free(row);
    agave_tensor_free(col);
}

static void test_upsample_avg_pool(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 3, 5), -1, 1), *u, *back;
    assert_int_equal(agave_upsample2x(ctx, x, &u), AGAVE_OK);
    expect_shape(u, 4, 2, 3, 6, 10);
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 6; h++)
                for (int w = 0; w < 10; w++)
                    assert_true(at4(u, n, c, h, w) == at4(x, n, c, h / 2, w / 2));
    /* The mean of four copies of v is v exactly. */
    assert_int_equal(agave_avg_pool(ctx, u, 2, &back), AGAVE_OK);
    expect_shape(back, 4, 2, 3, 3, 5);
    expect_equal(agave_tensor_data(back), agave_tensor_data(x), agave_tensor_numel(x),
                 "avg_pool(upsample2x(x), 2)");
    agave_tensor_free(x);
}

static void test_avg_pool_forward(void **state)
{
    agave_context *ctx = *state;
    /* A constant stays that constant (1.5: every partial sum is exact). */
    agave_tensor *k = tensor4(ctx, 2, 3, 12, 12), *y;
    agave_tensor_fill(k, 1.5f);
    for (int s = 1; s <= 12; s++) {
        if (12 % s)
            continue;
        assert_int_equal(agave_avg_pool(ctx, k, s, &y), AGAVE_OK);
        expect_shape(y, 4, 2, 3, 12 / s, 12 / s);
        for (size_t i = 0; i < agave_tensor_numel(y); i++)
            assert_true(agave_tensor_data(y)[i] == 1.5f);
    }
    /* Random values against a double mean, s = 3 on 6 x 9. */
    agave_tensor *x = uniform(tensor4(ctx, 2, 2, 6, 9), -1, 1);
    assert_int_equal(agave_avg_pool(ctx, x, 3, &y), AGAVE_OK);
    expect_shape(y, 4, 2, 2, 2, 3);
    double ref[24];
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 3; j++) {
                    double s = 0;
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++)
                            s += at4(x, n, c, 3 * i + a, 3 * j + b);
                    ref[((n * 2 + c) * 2 + i) * 3 + j] = s / 9;
                }
    expect_close(agave_tensor_data(y), ref, 24, 1e-7, 1e-6, "avg_pool s = 3");
    /* s = 1 is the identity. */
    assert_int_equal(agave_avg_pool(ctx, x, 1, &y), AGAVE_OK);
    expect_equal(agave_tensor_data(y), agave_tensor_data(x), agave_tensor_numel(x), "s = 1");
    agave_tensor_free(k);
    agave_tensor_free(x);
}

/* ---- dropout.c ----------------------------------------------------------------------- */
/* 100k elements in [1, 2] (never 0 before dropout): the number of zeros is
 * Binomial(n, p); 5 standard deviations would be exceeded once in 3.5 million
 * runs. The kept values are x / (1 - p) to within an ulp. */
static void check_dropout_stats(agave_context *ctx, float p)
{
    int n = 100000;
    agave_tensor *x = uniform(tensor1(ctx, n), 1, 2), *y;
    assert_int_equal(agave_dropout(ctx, x, p, &y), AGAVE_OK);
    int zeros = 0;
    double scale = 1.0 / (1.0 - (double)p);
    for (int i = 0; i < n; i++) {
        float v = agave_tensor_data(y)[i], xv = agave_tensor_data(x)[i];
        if (v == 0.0f) {
            zeros++;
            continue;
        }
        double want = xv * scale;
        if (fabs(v - want) > 2.4e-7 * want)
            fail_msg("dropout p = %g: kept %g became %.9g, expected %.9g", (double)p, (double)xv,
                     (double)v, want);
    }
    double mean = n * (double)p, sd = sqrt(n * (double)p * (1 - (double)p));
    if (fabs(zeros - mean) > 5 * sd)
        fail_msg("dropout p = %g: %d zeros of %d, expected %.0f +- %.0f", (double)p, zeros, n, mean,
                 5 * sd);
    agave_tensor_free(x);
}

static void test_dropout_statistics(void **state)
{
    agave_context *ctx = *state;
    check_dropout_stats(ctx, 0.5f);
    check_dropout_stats(ctx, 0.1f);
    check_dropout_stats(ctx, 0.9f);
    /* 1/(1-0.5) = 2 exactly. */
    agave_tensor *x = uniform(tensor1(ctx, 1000), 1, 2), *y;
    assert_int_equal(agave_dropout(ctx, x, 0.5f, &y), AGAVE_OK);
    for (int i = 0; i < 1000; i++) {
        float v = agave_tensor_data(y)[i];
        assert_true(v == 0.0f || v == 2.0f * agave_tensor_data(x)[i]);
    }
    agave_tensor_free(x);
}

/* Same seed, same mask, whatever the thread count; another seed, another mask. */
static void test_dropout_seeded(void **state)
{
    agave_context *ctx = *state;
    int n = 200000;
    agave_tensor *x = uniform(tensor1(ctx, n), 1, 2), *y1, *y2, *y3;
    float *first = malloc((size_t)n * sizeof *first);
    agave_context_seed(ctx, 7);
    assert_int_equal(agave_dropout(ctx, x, 0.5f, &y1), AGAVE_OK);
    memcpy(first, agave_tensor_data(y1), (size_t)n * sizeof *first);
    agave_context_set_threads(ctx, 2);
    agave_context_seed(ctx, 7);
    assert_int_equal(agave_dropout(ctx, x, 0.5f, &y2), AGAVE_OK);
    expect_equal(agave_tensor_data(y2), first, (size_t)n, "dropout, same seed");
    agave_context_seed(ctx, 8);
    assert_int_equal(agave_dropout(ctx, x, 0.5f, &y3), AGAVE_OK);
    int differ = 0;
    for (int i = 0; i < n; i++)
        differ += agave_tensor_data(y3)[i] != first[i];
    assert_true(differ > n / 4);
    free(first);
    agave_tensor_free(x);
}

/* The mask is the seeded stream's, value by value: xoshiro256** seeded
 * through splitmix64 (Blackman and Vigna's published algorithms, written out
 * here), one draw per value, u = ((x >> 40) + 0.5) / 2^24, kept where u >= p;
 * each call continues the stream where the last left it (value counts that
 * are not whole bytes or words), on 1 and 2 threads. */
static uint64_t ref_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t ref_xoshiro(uint64_t s[4])
{
    uint64_t result = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return result;
}

static void expect_mask_from_stream(agave_context *ctx, uint64_t s[4], int n, float p)
{
    agave_tensor *x = tensor1(ctx, n), *y;
    for (int i = 0; i < n; i++)   /* x drawn here: the context's stream is the mask's */
        agave_tensor_data(x)[i] = 1.0f + (float)(i % 1000) / 1000.0f;
    assert_int_equal(agave_dropout(ctx, x, p, &y), AGAVE_OK);
    const float scale = 1.0f / (1.0f - p);
    for (int i = 0; i < n; i++) {
        float u = ((float)(ref_xoshiro(s) >> 40) + 0.5f) * (1.0f / 16777216.0f);
        float want = u >= p ? agave_tensor_data(x)[i] * scale : 0.0f;
        if (memcmp(&agave_tensor_data(y)[i], &want, sizeof want) != 0)
            fail_msg("dropout p = %g, value %d of %d: %.9g, the stream gives %.9g", (double)p, i, n,
                     (double)agave_tensor_data(y)[i], (double)want);
    }
    agave_tensor_free(x);
}

static void test_dropout_mask_is_the_seeded_stream(void **state)
{
    agave_context *ctx = *state;
    for (int threads = 1; threads <= 2; threads++) {
        agave_context_set_threads(ctx, threads);
        agave_context_seed(ctx, 2026);
        uint64_t seed = 2026, s[4];
        for (int i = 0; i < 4; i++)
            s[i] = ref_splitmix64(&seed);
        expect_mask_from_stream(ctx, s, 1003, 0.3f);
        expect_mask_from_stream(ctx, s, 70001, 0.5f);
        expect_mask_from_stream(ctx, s, 77, 0.1f);
        expect_mask_from_stream(ctx, s, 100005, 0.7f);
    }
}

/* rng_bernoulli_threshold against the float test it replaces, for every one
 * of the 2^24 values a draw's top bits take: p on the grid's rounding region
 * (from 2^23 on, k + 0.5 rounds to even), between grid values, at 0, 1 and NaN. */
static void test_bernoulli_threshold_every_value(void **state)
{
    (void)state;
    const float step = 1.0f / 16777216.0f;
    float u_top = (8388609.0f + 0.5f) * step;   /* rounds up to 8388610 */
    const float ps[] = {0.0f, 1e-9f, 0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 0.99999994f, 1.0f,
                        u_top, nextafterf(u_top, 0.0f), nextafterf(u_top, 1.0f),
                        (100.0f + 0.5f) * step, NAN};
    for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++) {
        uint32_t threshold = rng_bernoulli_threshold(ps[t]);
        for (uint32_t k = 0; k < (1u << 24); k++) {
            int kept = ((float)k + 0.5f) * step >= ps[t];
            if (kept != (k >= threshold))
                fail_msg("p = %.9g: top bits %u kept %d by the float test, threshold %u", (double)ps[t],
                         k, kept, threshold);
        }
    }
}

/* p = 0 copies x and leaves the generator's stream where it was. */
static void test_dropout_p0_identity(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 4, 5), -1, 1), *y;
    agave_tensor *a = tensor1(ctx, 8), *b = tensor1(ctx, 8);
    agave_context_seed(ctx, 5);
    agave_tensor_fill_normal(a, 0, 1);
    agave_context_seed(ctx, 5);
    assert_int_equal(agave_dropout(ctx, x, 0.0f, &y), AGAVE_OK);
    agave_tensor_fill_normal(b, 0, 1);
    assert_ptr_not_equal(y, x);
    expect_equal(agave_tensor_data(y), agave_tensor_data(x), agave_tensor_numel(x), "p = 0");
    expect_equal(agave_tensor_data(b), agave_tensor_data(a), 8, "generator after p = 0");
    agave_tensor_free(x);
    agave_tensor_free(a);
    agave_tensor_free(b);
}

/* ---- weight_norm.c ------------------------------------------------------------------- */
static void test_weight_norm_forward(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *v = uniform(tensor4(ctx, 4, 3, 3, 3), -1, 1), *w;
    float gv[4] = {1.5f, -0.5f, 2.0f, 0.25f};
    agave_tensor *g = from_values(ctx, gv, 4);
    memset(agave_tensor_data(v) + 27, 0, 27 * sizeof(float)); /* row 1 all zeros */
    assert_int_equal(agave_weight_norm(ctx, v, g, &w), AGAVE_OK);
    expect_shape(w, 4, 4, 3, 3, 3);
    const float *pv = agave_tensor_data(v), *pw = agave_tensor_data(w);
    double ref[108];
    for (int o = 0; o < 4; o++) {
        double ss = 0, ws = 0;
        for (int k = 0; k < 27; k++)
            ss += (double)pv[o * 27 + k] * pv[o * 27 + k];
        for (int k = 0; k < 27; k++) {
            ref[o * 27 + k] = ss > 0 ? gv[o] * pv[o * 27 + k] / sqrt(ss) : 0.0;
            ws += (double)pw[o * 27 + k] * pw[o * 27 + k];
        }
        /* The rows have norm |g| (the zero row stays zero, not NaN). */
        if (o != 1 && fabs(sqrt(ws) - fabs(gv[o])) > 1e-6 * fabs(gv[o]))
            fail_msg("weight_norm: row %d has norm %.9g, expected |g| = %g", o, sqrt(ws),
                     (double)fabsf(gv[o]));
    }
    expect_close(pw, ref, 108, 1e-7, 1e-6, "weight_norm");
    agave_tensor_free(v);
    agave_tensor_free(g);
}

/* After the init pass, every channel of t has mean 0 and standard deviation
 * init_scale; g and bias follow the header's formulas from t's statistics. */
static void check_wn_init(agave_context *ctx, agave_tensor *t, float init_scale)
{
    int N = agave_tensor_dim(t, 0), C = agave_tensor_dim(t, 1);
    size_t plane = agave_tensor_numel(t) / ((size_t)N * C);
    float *d = agave_tensor_data(t);
    float *before = malloc(agave_tensor_numel(t) * sizeof *before);
    memcpy(before, d, agave_tensor_numel(t) * sizeof *before);
    agave_tensor *g = tensor1(ctx, C), *bias = tensor1(ctx, C);
    size_t tape = agave_tape_size(ctx);
    assert_int_equal(agave_weight_norm_init(ctx, t, init_scale, g, bias), AGAVE_OK);
    assert_int_equal(agave_tape_size(ctx), tape);
    for (int c = 0; c < C; c++) {
        double m0 = 0, v0 = 0, m1 = 0, v1 = 0, cnt = (double)N * plane;
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < plane; i++) {
                size_t j = ((size_t)n * C + c) * plane + i;
                m0 += before[j];
                m1 += d[j];
            }
        m0 /= cnt;
        m1 /= cnt;
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < plane; i++) {
                size_t j = ((size_t)n * C + c) * plane + i;
                v0 += (before[j] - m0) * (before[j] - m0);
                v1 += (d[j] - m1) * (d[j] - m1);
            }
        v0 /= cnt;
        v1 /= cnt;
        double gc = init_scale / sqrt(v0 + 1e-10), bc = -m0 * gc;
        expect_close(&agave_tensor_data(g)[c], &gc, 1, 0, 1e-6, "weight_norm_init g");
        expect_close(&agave_tensor_data(bias)[c], &bc, 1, 1e-7 * gc, 1e-6, "weight_norm_init bias");
        double zero = 0, sd = init_scale;
        expect_close((float[]){(float)m1}, &zero, 1, 1e-6 * init_scale, 0, "mean after init");
        expect_close((float[]){(float)sqrt(v1)}, &sd, 1, 0, 1e-5, "std after init");
        for (int n = 0; n < N; n++)
            for (size_t i = 0; i < plane; i++) {
                size_t j = ((size_t)n * C + c) * plane + i;
                double want = gc * before[j] + bc;
                expect_close(&d[j], &want, 1, 1e-6 * init_scale, 1e-6, "t after init");
            }
    }
    free(before);
    agave_tensor_free(g);
    agave_tensor_free(bias);
}

static void test_weight_norm_init(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *t = tensor4(ctx, 5, 4, 3, 3);
    float *d = agave_tensor_data(t);
    for (int n = 0; n < 5; n++) /* channel c: offset 3c - 4, spread c + 1 */
        for (int c = 0; c < 4; c++)
            for (int i = 0; i < 9; i++)
                d[(n * 4 + c) * 9 + i] = (float)(3 * c - 4 + (c + 1) * test_uniform(-1, 1));
    check_wn_init(ctx, t, 0.1f);
    int d2[2] = {16, 3};
    agave_tensor *t2 = uniform(tensor_nd(ctx, 2, d2), 5, 9);
    check_wn_init(ctx, t2, 1.0f);
    agave_tensor_free(t);
    agave_tensor_free(t2);
}

/* ---- error paths --------------------------------------------------------------------- */
/* Every op of the files under test in one shape: run(ctx, a, b, out). */
typedef agave_status (*op2_fn)(agave_context *, agave_tensor *, agave_tensor *, agave_tensor **);
enum b_kind { B_NONE, B_SAME, B_CHANNELS, B_ROWS };

#define OP1(fn, call)                                                                              \
    static agave_status run_##fn(agave_context *c, agave_tensor *a, agave_tensor *b,               \
                                 agave_tensor **o)                                                 \
    {                                                                                              \
        (void)b;                                                                                   \
        return call;                                                                               \
    }
#define OP2(fn)                                                                                    \
    static agave_status run_##fn(agave_context *c, agave_tensor *a, agave_tensor *b,               \
                                 agave_tensor **o)                                                 \
    {                                                                                              \
        return agave_##fn(c, a, b, o);                                                             \
    }
OP2(add)
OP2(sub)
OP2(mul)
OP2(bias_add)
OP2(concat)
OP2(weight_norm)
OP1(scale, agave_scale(c, a, 2.0f, o))
OP1(sum, agave_sum(c, a, o))
OP1(mean, agave_mean(c, a, o))
OP1(logsumexp, agave_logsumexp(c, a, 1, o))
OP1(elu, agave_elu(c, a, o))
OP1(concat_elu, agave_concat_elu(c, a, o))
OP1(sigmoid, agave_sigmoid(c, a, o))
OP1(tanh, agave_tanh(c, a, o))
OP1(exp, agave_exp(c, a, o))
OP1(log, agave_log(c, a, o))
OP1(softplus, agave_softplus(c, a, o))
OP1(split, agave_split(c, a, 1, 2, o))
OP1(down_shift, agave_down_shift(c, a, o))
OP1(right_shift, agave_right_shift(c, a, o))
OP1(upsample2x, agave_upsample2x(c, a, o))
OP1(avg_pool, agave_avg_pool(c, a, 2, o))
OP1(dropout, agave_dropout(c, a, 0.5f, o))

typedef struct op_entry {
    const char *name;
    op2_fn run;
    enum b_kind b;
    const char *a_name, *b_name;
} op_entry;

/* a is always (2,4,4,4); b is like a, (4) per channel, or (2) per row. */
static const op_entry all_ops[] = {
    {"add", run_add, B_SAME, "a", "b"},
    {"sub", run_sub, B_SAME, "a", "b"},
    {"mul", run_mul, B_SAME, "a", "b"},
    {"scale", run_scale, B_NONE, "x", NULL},
    {"bias_add", run_bias_add, B_CHANNELS, "x", "bias"},
    {"sum", run_sum, B_NONE, "x", NULL},
    {"mean", run_mean, B_NONE, "x", NULL},
    {"logsumexp", run_logsumexp, B_NONE, "x", NULL},
    {"elu", run_elu, B_NONE, "x", NULL},
    {"concat_elu", run_concat_elu, B_NONE, "x", NULL},
    {"sigmoid", run_sigmoid, B_NONE, "x", NULL},
    {"tanh", run_tanh, B_NONE, "x", NULL},
    {"exp", run_exp, B_NONE, "x", NULL},
    {"log", run_log, B_NONE, "x", NULL},
    {"softplus", run_softplus, B_NONE, "x", NULL},
    {"concat", run_concat, B_SAME, "a", "b"},
    {"split", run_split, B_NONE, "x", NULL},
    {"down_shift", run_down_shift, B_NONE, "x", NULL},
    {"right_shift", run_right_shift, B_NONE, "x", NULL},
    {"upsample2x", run_upsample2x, B_NONE, "x", NULL},
    {"avg_pool", run_avg_pool, B_NONE, "x", NULL},
    {"dropout", run_dropout, B_NONE, "x", NULL},
    {"weight_norm", run_weight_norm, B_ROWS, "v", "g"},
};
#define N_OPS ((int)(sizeof all_ops / sizeof all_ops[0]))

static agave_tensor *make_b(agave_context *ctx, enum b_kind kind)
{
    switch (kind) {
    case B_SAME: return uniform(tensor4(ctx, 2, 4, 4, 4), 0.5, 1.5);
    case B_CHANNELS: return uniform(tensor1(ctx, 4), 0.5, 1.5);
    case B_ROWS: return uniform(tensor1(ctx, 2), 0.5, 1.5);
    case B_NONE: break;
    }
    return NULL;
}

static void test_errors_null_and_context(void **state)
{
    agave_context *ctx = *state, *other = NULL;
    assert_int_equal(agave_context_create(&other, 1), AGAVE_OK);
    for (int i = 0; i < N_OPS; i++) {
        const op_entry *e = &all_ops[i];
        agave_tensor *a = uniform(tensor4(ctx, 2, 4, 4, 4), 0.5, 1.5), *b = make_b(ctx, e->b);
        agave_tensor *fa = uniform(tensor4(other, 2, 4, 4, 4), 0.5, 1.5), *fb = make_b(other, e->b);
        agave_tensor *out = (agave_tensor *)&out; /* a non-NULL sentinel */
        /* The valid call works, so each failure below is the one injected. */
        assert_int_equal(e->run(ctx, a, b, &out), AGAVE_OK);
        assert_non_null(out);
        assert_int_equal(e->run(NULL, a, b, &out), AGAVE_ERR_NULL);
        assert_int_equal(e->run(ctx, a, b, NULL), AGAVE_ERR_NULL);
        expect_message_has(ctx, e->name);
        expect_message_has(ctx, "out");
        out = (agave_tensor *)&out;
        assert_int_equal(e->run(ctx, NULL, b, &out), AGAVE_ERR_NULL);
        assert_null(out);
        expect_message_has(ctx, e->name);
        expect_message_has(ctx, e->a_name);
        assert_int_equal(e->run(ctx, fa, b, &out), AGAVE_ERR_CONTEXT);
        assert_null(out);
        expect_message_has(ctx, "another context");
        if (e->b != B_NONE) {
            out = (agave_tensor *)&out;
            assert_int_equal(e->run(ctx, a, NULL, &out), AGAVE_ERR_NULL);
            assert_null(out);
            expect_message_has(ctx, e->b_name);
            assert_int_equal(e->run(ctx, a, fb, &out), AGAVE_ERR_CONTEXT);
            expect_message_has(ctx, e->b_name);
        }
        /* The other context's error state is its own. */
        assert_string_equal(agave_context_last_error(other), "");
        agave_tensor_free(a);
        agave_tensor_free(b);
        agave_tensor_free(fa);
        agave_tensor_free(fb);
    }
    agave_context_free(other);
}

/* A shape error names both shapes (or the offending one) and leaves *out NULL. */
static void expect_shape_error(agave_context *ctx, agave_status st, agave_tensor *out,
                               const char *op, const char *s1, const char *s2)
{
    if (st != AGAVE_ERR_SHAPE)
        fail_msg("%s: expected a shape error, got %s (%s)", op, agave_status_string(st),
                 agave_context_last_error(ctx));
    assert_null(out);
    expect_message_has(ctx, op);
    expect_message_has(ctx, s1);
    if (s2)
        expect_message_has(ctx, s2);
}

static void test_errors_shapes(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *a = uniform(tensor4(ctx, 2, 3, 4, 4), 0.5, 1.5);
    agave_tensor *b = uniform(tensor4(ctx, 2, 3, 4, 5), 0.5, 1.5);
    agave_tensor *c5 = tensor1(ctx, 5), *n3 = tensor1(ctx, 3), *out = NULL;
    int d3[3] = {2, 3, 4}, d2[2] = {2, 3}, d1 = 6;
    agave_tensor *x3 = tensor_nd(ctx, 3, d3), *x2 = tensor_nd(ctx, 2, d2),
                 *x1 = tensor_nd(ctx, 1, &d1);
    expect_shape_error(ctx, agave_add(ctx, a, b, &out), out, "add", "(2,3,4,4)", "(2,3,4,5)");
    expect_shape_error(ctx, agave_sub(ctx, a, b, &out), out, "sub", "(2,3,4,4)", "(2,3,4,5)");
    expect_shape_error(ctx, agave_mul(ctx, a, x3, &out), out, "mul", "(2,3,4,4)", "(2,3,4)");
    expect_shape_error(ctx, agave_bias_add(ctx, a, c5, &out), out, "bias_add", "(2,3,4,4)", "(5)");
    expect_shape_error(ctx, agave_bias_add(ctx, x1, c5, &out), out, "bias_add", "(6)", "(5)");
    /* concat: all axes but 1 must agree, ranks too. */
    agave_tensor *c = tensor4(ctx, 3, 2, 4, 4);
    expect_shape_error(ctx, agave_concat(ctx, a, b, &out), out, "concat", "(2,3,4,4)", "(2,3,4,5)");
    expect_shape_error(ctx, agave_concat(ctx, a, c, &out), out, "concat", "(2,3,4,4)", "(3,2,4,4)");
    expect_shape_error(ctx, agave_concat(ctx, a, x3, &out), out, "concat", "(2,3,4,4)", "(2,3,4)");
    expect_shape_error(ctx, agave_concat(ctx, x1, x1, &out), out, "concat", "(6)", NULL);
    /* Ops that need a channel axis or a 4-D image. */
    expect_shape_error(ctx, agave_concat_elu(ctx, x1, &out), out, "concat_elu", "(6)", NULL);
    expect_shape_error(ctx, agave_split(ctx, x1, 0, 1, &out), out, "split", "(6)", NULL);
    expect_shape_error(ctx, agave_down_shift(ctx, x3, &out), out, "down_shift", "(2,3,4)", NULL);
    expect_shape_error(ctx, agave_right_shift(ctx, x2, &out), out, "right_shift", "(2,3)", NULL);
    expect_shape_error(ctx, agave_upsample2x(ctx, x3, &out), out, "upsample2x", "(2,3,4)", NULL);
    expect_shape_error(ctx, agave_avg_pool(ctx, x2, 1, &out), out, "avg_pool", "(2,3)", NULL);
    expect_shape_error(ctx, agave_avg_pool(ctx, b, 2, &out), out, "avg_pool", "(2,3,4,5)", "s = 2");
    expect_shape_error(ctx, agave_avg_pool(ctx, a, 8, &out), out, "avg_pool", "(2,3,4,4)", "s = 8");
    /* weight_norm: g must be (Cout) for v (Cout,...). */
    expect_shape_error(ctx, agave_weight_norm(ctx, a, n3, &out), out, "weight_norm", "(3)",
                       "(2,3,4,4)");
    expect_shape_error(ctx, agave_weight_norm(ctx, a, x2, &out), out, "weight_norm", "(2,3)",
                       "(2,3,4,4)");
    agave_tensor *g2 = tensor1(ctx, 2), *g3 = tensor1(ctx, 3);
    expect_shape_error(ctx, agave_weight_norm_init(ctx, a, 0.1f, g2, g3), NULL, "weight_norm_init",
                       "(2)", "(2,3,4,4)");
    expect_shape_error(ctx, agave_weight_norm_init(ctx, a, 0.1f, g3, g2), NULL, "weight_norm_init",
                       "(2)", "(2,3,4,4)");
    expect_shape_error(ctx, agave_weight_norm_init(ctx, x1, 0.1f, g3, g3), NULL, "weight_norm_init",
                       "(6)", NULL);
    agave_tensor *all[] = {a, b, c5, n3, x3, x2, x1, c, g2, g3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        agave_tensor_free(all[i]);
}

static void expect_invalid(agave_context *ctx, agave_status st, agave_tensor *out, const char *part)
{
    if (st != AGAVE_ERR_INVALID_ARG)
        fail_msg("expected an invalid-argument error mentioning \"%s\", got %s (%s)", part,
                 agave_status_string(st), agave_context_last_error(ctx));
    assert_null(out);
    expect_message_has(ctx, part);
}

static void test_errors_arguments(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 4, 4), 0.5, 1.5), *out = NULL;
    int d2[2] = {2, 3};
    agave_tensor *x2 = tensor_nd(ctx, 2, d2);
    expect_invalid(ctx, agave_logsumexp(ctx, x, -1, &out), out, "axis -1");
    expect_invalid(ctx, agave_logsumexp(ctx, x, 4, &out), out, "axis 4");
    expect_invalid(ctx, agave_logsumexp(ctx, x2, 2, &out), out, "axis 2");
    expect_invalid(ctx, agave_avg_pool(ctx, x, 0, &out), out, "s = 0");
    expect_invalid(ctx, agave_avg_pool(ctx, x, -2, &out), out, "s = -2");
    expect_invalid(ctx, agave_split(ctx, x, -1, 1, &out), out, "start -1");
    expect_invalid(ctx, agave_split(ctx, x, 0, 0, &out), out, "count 0");
    expect_invalid(ctx, agave_split(ctx, x, 2, 2, &out), out, "3");
    expect_invalid(ctx, agave_split(ctx, x, 1, INT_MAX, &out), out, "split");
    expect_invalid(ctx, agave_split(ctx, x, INT_MAX, 1, &out), out, "split");
    expect_invalid(ctx, agave_dropout(ctx, x, -0.1f, &out), out, "p = -0.1");
    expect_invalid(ctx, agave_dropout(ctx, x, 1.0f, &out), out, "p = 1");
    expect_invalid(ctx, agave_dropout(ctx, x, 1.5f, &out), out, "p = 1.5");
    expect_invalid(ctx, agave_dropout(ctx, x, NAN, &out), out, "p = nan");
    expect_invalid(ctx, agave_dropout(ctx, x, INFINITY, &out), out, "dropout");
    agave_tensor *g = tensor1(ctx, 3), *bias = tensor1(ctx, 3);
    agave_tensor_fill(g, 7.0f);
    agave_tensor_fill(bias, 7.0f);
    expect_invalid(ctx, agave_weight_norm_init(ctx, x, 0.0f, g, bias), NULL, "init_scale");
    expect_invalid(ctx, agave_weight_norm_init(ctx, x, -1.0f, g, bias), NULL, "init_scale");
    expect_invalid(ctx, agave_weight_norm_init(ctx, x, NAN, g, bias), NULL, "init_scale");
    expect_invalid(ctx, agave_weight_norm_init(ctx, x, INFINITY, g, bias), NULL, "init_scale");
    /* g and bias must be persistent parameters, not op outputs. */
    agave_tensor *v3 = uniform(tensor1(ctx, 3), 1, 2), *arena_g = NULL;
    assert_int_equal(agave_exp(ctx, v3, &arena_g), AGAVE_OK);
    expect_invalid(ctx, agave_weight_norm_init(ctx, x, 0.1f, arena_g, bias), NULL, "g and bias");
    expect_invalid(ctx, agave_weight_norm_init(ctx, x, 0.1f, g, arena_g), NULL, "g and bias");
    for (int i = 0; i < 3; i++) /* a refused call writes nothing */
        assert_true(agave_tensor_data(g)[i] == 7.0f && agave_tensor_data(bias)[i] == 7.0f);
    agave_tensor_free(x);
    agave_tensor_free(x2);
    agave_tensor_free(g);
    agave_tensor_free(bias);
    agave_tensor_free(v3);
}

static void test_weight_norm_init_null_and_context(void **state)
{
    agave_context *ctx = *state, *other = NULL;
    assert_int_equal(agave_context_create(&other, 1), AGAVE_OK);
    agave_tensor *t = uniform(tensor4(ctx, 2, 3, 2, 2), -1, 1), *g = tensor1(ctx, 3);
    agave_tensor *b = tensor1(ctx, 3), *fg = tensor1(other, 3);
    assert_int_equal(agave_weight_norm_init(NULL, t, 0.1f, g, b), AGAVE_ERR_NULL);
    assert_int_equal(agave_weight_norm_init(ctx, NULL, 0.1f, g, b), AGAVE_ERR_NULL);
    expect_message_has(ctx, "t is NULL");
    assert_int_equal(agave_weight_norm_init(ctx, t, 0.1f, NULL, b), AGAVE_ERR_NULL);
    expect_message_has(ctx, "g is NULL");
    assert_int_equal(agave_weight_norm_init(ctx, t, 0.1f, g, NULL), AGAVE_ERR_NULL);
    expect_message_has(ctx, "bias is NULL");
    assert_int_equal(agave_weight_norm_init(ctx, t, 0.1f, fg, b), AGAVE_ERR_CONTEXT);
    expect_message_has(ctx, "another context");
    assert_int_equal(agave_weight_norm_init(ctx, t, 0.1f, g, b), AGAVE_OK);
    assert_string_equal(agave_context_last_error(ctx), "");
    agave_tensor_free(t);
    agave_tensor_free(g);
    agave_tensor_free(b);
    agave_tensor_free(fg);
    agave_context_free(other);
}

/* A successful call clears the message a failed one left. */
static void test_error_then_success(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 1, 2, 2, 2), 1, 2), *out;
    assert_int_equal(agave_dropout(ctx, x, 2.0f, &out), AGAVE_ERR_INVALID_ARG);
    assert_true(agave_context_last_error(ctx)[0] != '\0');
    assert_int_equal(agave_elu(ctx, x, &out), AGAVE_OK);
    assert_string_equal(agave_context_last_error(ctx), "");
    agave_tensor_free(x);
}

/* ---- the tape ------------------------------------------------------------------------ */
static void run_every_op(agave_context *ctx, agave_tensor *a, agave_tensor *same,
                         agave_tensor *per_channel, agave_tensor *per_row)
{
    for (int i = 0; i < N_OPS; i++) {
        const op_entry *e = &all_ops[i];
        agave_tensor *b = e->b == B_SAME       ? same
                          : e->b == B_CHANNELS ? per_channel
                          : e->b == B_ROWS     ? per_row
                                               : NULL;
        agave_tensor *out = NULL;
        if (e->run(ctx, a, b, &out) != AGAVE_OK)
            fail_msg("%s failed: %s", e->name, agave_context_last_error(ctx));
    }
}

/* Each op records one node when an input needs a gradient and recording is
 * on; nothing otherwise. */
static void test_recording(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *a = uniform(tensor4(ctx, 2, 4, 4, 4), 0.5, 1.5), *b = make_b(ctx, B_SAME);
    agave_tensor *ch = make_b(ctx, B_CHANNELS), *rows = make_b(ctx, B_ROWS);
    run_every_op(ctx, a, b, ch, rows);
    assert_int_equal(agave_tape_size(ctx), 0); /* nothing requires a gradient */
    agave_tensor *all[4] = {a, b, ch, rows};
    for (int i = 0; i < 4; i++)
        agave_tensor_set_requires_grad(all[i], 1);
    run_every_op(ctx, a, b, ch, rows);
    assert_int_equal(agave_tape_size(ctx), N_OPS);
    agave_tape_reset(ctx);
    assert_int_equal(agave_tape_set_recording(ctx, 0), AGAVE_OK);
    run_every_op(ctx, a, b, ch, rows);
    assert_int_equal(agave_tape_size(ctx), 0);
    /* Recording off: log still computes, and backward from it is refused. */
    agave_tensor *y = NULL, *s = NULL;
    assert_int_equal(agave_log(ctx, a, &y), AGAVE_OK);
    assert_true(agave_tensor_data(y)[5] == logf(agave_tensor_data(a)[5]));
    assert_int_equal(agave_sum(ctx, y, &s), AGAVE_OK);
    assert_int_equal(agave_tape_size(ctx), 0);
    assert_int_equal(agave_backward(ctx, s), AGAVE_ERR_STATE);
    agave_tape_set_recording(ctx, 1);
    for (int i = 0; i < 4; i++)
        agave_tensor_free(all[i]);
}

static void test_backward_needs_scalar(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *x = uniform(tensor4(ctx, 2, 3, 2, 2), -1, 1), *y = NULL;
    agave_tensor_set_requires_grad(x, 1);
    assert_int_equal(agave_elu(ctx, x, &y), AGAVE_OK);
    assert_int_equal(agave_backward(ctx, y), AGAVE_ERR_SHAPE);
    expect_message_has(ctx, "24");
    assert_int_equal(agave_backward(ctx, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_backward(NULL, y), AGAVE_ERR_NULL);
    agave_tensor_free(x);
}

/* One training-like step through every op of these files, ending in backward. */
static float tape_step(agave_context *ctx, agave_tensor *x, agave_tensor *v, agave_tensor *g)
{
    agave_tensor *t, *u, *w, *l1, *l2, *loss;
    agave_tape_reset(ctx);
    agave_context_seed(ctx, 3);
    assert_int_equal(agave_concat_elu(ctx, x, &t), AGAVE_OK); /* (4,16,32,32) */
    assert_int_equal(agave_dropout(ctx, t, 0.5f, &t), AGAVE_OK);
    assert_int_equal(agave_split(ctx, t, 4, 8, &t), AGAVE_OK); /* (4,8,32,32) */
    assert_int_equal(agave_mul(ctx, t, x, &t), AGAVE_OK);
    assert_int_equal(agave_down_shift(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_right_shift(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_upsample2x(ctx, t, &t), AGAVE_OK);  /* (4,8,64,64) */
    assert_int_equal(agave_avg_pool(ctx, t, 4, &t), AGAVE_OK); /* (4,8,16,16) */
    assert_int_equal(agave_sigmoid(ctx, t, &u), AGAVE_OK);
    assert_int_equal(agave_log(ctx, u, &u), AGAVE_OK);
    assert_int_equal(agave_softplus(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_tanh(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_exp(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_elu(ctx, t, &t), AGAVE_OK);
    assert_int_equal(agave_add(ctx, t, u, &t), AGAVE_OK);
    assert_int_equal(agave_logsumexp(ctx, t, 1, &t), AGAVE_OK);
    assert_int_equal(agave_mean(ctx, t, &l1), AGAVE_OK);
    assert_int_equal(agave_weight_norm(ctx, v, g, &w), AGAVE_OK);
    assert_int_equal(agave_mul(ctx, w, w, &w), AGAVE_OK);
    assert_int_equal(agave_sum(ctx, w, &l2), AGAVE_OK);
    assert_int_equal(agave_add(ctx, l1, l2, &loss), AGAVE_OK);
    assert_int_equal(agave_backward(ctx, loss), AGAVE_OK);
    return agave_tensor_data(loss)[0];
}

/* After agave_tape_reset the same step reuses the arena: from the second step
 * on, its reserved size and the tape length no longer change, and the step
 * computes the same loss. */
static void test_tape_reset_reuses_arena(void **state)
{
    agave_context *ctx = *state;
    agave_context_set_threads(ctx, 2);
    agave_tensor *x = uniform(tensor4(ctx, 4, 8, 32, 32), -2, 2);
    agave_tensor *v = uniform(tensor4(ctx, 8, 4, 3, 3), -1, 1), *g = uniform(tensor1(ctx, 8), 1, 2);
    agave_tensor_set_requires_grad(x, 1);
    agave_tensor_set_requires_grad(v, 1);
    agave_tensor_set_requires_grad(g, 1);
    size_t bytes[6], tape[6];
    float loss[6];
    for (int step = 0; step < 6; step++) {
        loss[step] = tape_step(ctx, x, v, g);
        bytes[step] = agave_context_arena_bytes(ctx);
        tape[step] = agave_tape_size(ctx);
    }
    assert_true(bytes[0] > (size_t)1 << 20); /* more than one minimal chunk in step 1 */
    for (int step = 2; step < 6; step++) {
        if (bytes[step] != bytes[1])
            fail_msg("step %d reserved %zu arena bytes, step 2 %zu", step + 1, bytes[step],
                     bytes[1]);
        assert_int_equal(tape[step], tape[1]);
        assert_true(loss[step] == loss[1]);
    }
    assert_int_equal(tape[1], 21);
    agave_tensor_free(x);
    agave_tensor_free(v);
    agave_tensor_free(g);
}

/* ---- large tensors: blocked and threaded paths ---------------------------------------- */
/* Forward output and input gradient of L = sum(op(x) * R) for one op. */
static void forward_backward(agave_context *ctx, const op_entry *e, agave_tensor *a,
                             agave_tensor *b, agave_tensor *R, float *y_out, float *ga_out)
{
    agave_tape_reset(ctx);
    agave_context_seed(ctx, 11);
    agave_tensor_zero_grad(a);
    agave_tensor *y = NULL, *p = NULL, *l = NULL;
    assert_int_equal(e->run(ctx, a, b, &y), AGAVE_OK);
    assert_int_equal(agave_mul(ctx, y, R, &p), AGAVE_OK);
    assert_int_equal(agave_sum(ctx, p, &l), AGAVE_OK);
    assert_int_equal(agave_backward(ctx, l), AGAVE_OK);
    memcpy(y_out, agave_tensor_data(y), agave_tensor_numel(y) * sizeof *y_out);
    memcpy(ga_out, agave_tensor_grad(a), agave_tensor_numel(a) * sizeof *ga_out);
}

/* Every op, forward and backward, on tensors large enough to run in parallel:
 * 2 threads give the bits 1 thread gives, and a rerun gives them again. */
static void test_threads_give_identical_bits(void **state)
{
    agave_context *ctx = *state;
    agave_tensor *a = uniform(tensor4(ctx, 2, 4, 96, 96), 0.5, 1.5); /* 73728 floats */
    agave_tensor *same = uniform(tensor4(ctx, 2, 4, 96, 96), 0.5, 1.5);
    agave_tensor *ch = uniform(tensor1(ctx, 4), 0.5, 1.5), *rows = uniform(tensor1(ctx, 2), 1, 2);
    agave_tensor_set_requires_grad(a, 1);
    size_t n = agave_tensor_numel(a), ny = 4 * n; /* upsample2x's output is the largest */
    int Rd[4] = {2, 8, 96, 96};
    float *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2),
          *y3 = malloc(ny * sizeof *y3);
    float *g1 = malloc(n * sizeof *g1), *g2 = malloc(n * sizeof *g2), *g3 = malloc(n * sizeof *g3);
    for (int i = 0; i < N_OPS; i++) {
        const op_entry *e = &all_ops[i];
        agave_tensor *b = e->b == B_SAME       ? same
                          : e->b == B_CHANNELS ? ch
                          : e->b == B_ROWS     ? rows
                                               : NULL;
        agave_tensor *probe = NULL;
        agave_tape_set_recording(ctx, 0);
        assert_int_equal(e->run(ctx, a, b, &probe), AGAVE_OK);
        agave_tape_set_recording(ctx, 1);
        size_t m = agave_tensor_numel(probe);
        for (int k = 0; k < agave_tensor_ndim(probe); k++)
            Rd[k] = agave_tensor_dim(probe, k);
        agave_tensor *R = uniform(tensor_nd(ctx, agave_tensor_ndim(probe), Rd), -1, 1);
        agave_context_set_threads(ctx, 1);
        forward_backward(ctx, e, a, b, R, y1, g1);
        agave_context_set_threads(ctx, 2);
        forward_backward(ctx, e, a, b, R, y2, g2);
        forward_backward(ctx, e, a, b, R, y3, g3);
        char what[64];
        snprintf(what, sizeof what, "%s, 2 threads vs 1", e->name);
        expect_equal(y2, y1, m, what);
        expect_equal(g2, g1, n, what);
        snprintf(what, sizeof what, "%s, 2 threads twice", e->name);
        expect_equal(y3, y2, m, what);
        expect_equal(g3, g2, n, what);
        agave_tensor_free(R);
    }
    free(y1);
    free(y2);
    free(y3);
    free(g1);
    free(g2);
    free(g3);
    agave_tensor_free(a);
    agave_tensor_free(same);
    agave_tensor_free(ch);
    agave_tensor_free(rows);
}

/* The blocked kernels' backward on tensors of many blocks, against the
 * derivative written here: d/dx sum(R * f(x)) = R f'(x). */
static double d_elu(double x) { return x > 0 ? 1 : exp(x); }
static double d_sigmoid(double x) { return ref_sigmoid(x) * (1 - ref_sigmoid(x)); }

static void test_blocked_backward_values(void **state)
{
    agave_context *ctx = *state;
    agave_context_set_threads(ctx, 2);
    int N = 3, C = 5, H = 70, W = 70;
    agave_tensor *x = uniform(tensor4(ctx, N, C, H, W), -5, 5);
    agave_tensor *R2 = uniform(tensor4(ctx, N, 2 * C, H, W), -1, 1);
    agave_tensor *R1 = uniform(tensor4(ctx, N, C, H, W), -1, 1);
    agave_tensor_set_requires_grad(x, 1);
    size_t n = agave_tensor_numel(x), image = n / (size_t)N;
    const float *px = agave_tensor_data(x), *r1 = agave_tensor_data(R1),
                *r2 = agave_tensor_data(R2);
    double *ref = dalloc(n);
    for (int which = 0; which < 3; which++) {
        agave_tape_reset(ctx);
        agave_tensor_zero_grad(x);
        agave_tensor *y, *p, *l;
        unary_fn op = which == 0 ? agave_elu : which == 1 ? agave_sigmoid : agave_concat_elu;
        assert_int_equal(op(ctx, x, &y), AGAVE_OK);
        assert_int_equal(agave_mul(ctx, y, which == 2 ? R2 : R1, &p), AGAVE_OK);
        assert_int_equal(agave_sum(ctx, p, &l), AGAVE_OK);
        assert_int_equal(agave_backward(ctx, l), AGAVE_OK);
        for (size_t i = 0; i < n; i++) {
            size_t img = i / image, k = i % image;
            if (which == 0)
                ref[i] = r1[i] * d_elu(px[i]);
            else if (which == 1)
                ref[i] = r1[i] * d_sigmoid(px[i]);
            else
                ref[i] = r2[img * 2 * image + k] * d_elu(px[i]) -
                         r2[img * 2 * image + image + k] * d_elu(-px[i]);
        }
        expect_close(agave_tensor_grad(x), ref, n, 1e-6, 1e-5,
                     which == 0   ? "elu backward"
                     : which == 1 ? "sigmoid backward"
                                  : "concat_elu backward");
    }
    free(ref);
    agave_tensor_free(x);
    agave_tensor_free(R1);
    agave_tensor_free(R2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, ctx_setup, ctx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_add_sub_mul_forward),
        T(test_scale_forward),
        T(test_bias_add_forward),
        T(test_sum_mean_forward),
        T(test_sum_accumulates_in_double),
        T(test_logsumexp_forward),
        T(test_logsumexp_closed_forms),
        T(test_elu_forward),
        T(test_gate_forward),
        T(test_sigmoid_forward),
        T(test_concat_elu_forward),
        T(test_tanh_exp_log_forward),
        T(test_softplus_forward),
        T(test_concat_split_roundtrip),
        T(test_split_middle),
        T(test_shifts_forward),
        T(test_upsample_avg_pool),
        T(test_avg_pool_forward),
        T(test_dropout_statistics),
        T(test_dropout_seeded),
        T(test_dropout_mask_is_the_seeded_stream),
        cmocka_unit_test(test_bernoulli_threshold_every_value),
        T(test_dropout_p0_identity),
        T(test_weight_norm_forward),
        T(test_weight_norm_init),
        T(test_errors_null_and_context),
        T(test_errors_shapes),
        T(test_errors_arguments),
        T(test_weight_norm_init_null_and_context),
        T(test_error_then_success),
        T(test_recording),
        T(test_backward_needs_scalar),
        T(test_tape_reset_reuses_arena),
        T(test_threads_give_identical_bits),
        T(test_blocked_backward_values),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
