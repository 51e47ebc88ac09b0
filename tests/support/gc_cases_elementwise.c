/* Gradient-check cases for the element-wise, reduction, shape, dropout and
 * weight-norm ops. Shapes use odd sizes and batch > 1. */
#include "gradcheck.h"
#include "ops/fused.h"

#define SHAPE4(n, c, h, w) 4, {n, c, h, w}

static agave_status run_add(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_add(ctx, in[0], in[1], out);
}
static agave_status run_sub(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_sub(ctx, in[0], in[1], out);
}
static agave_status run_mul(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_mul(ctx, in[0], in[1], out);
}
static agave_status run_scale(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_scale(ctx, in[0], -1.75f, out);
}
static agave_status run_bias_add(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_bias_add(ctx, in[0], in[1], out);
}
static agave_status run_sum(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_sum(ctx, in[0], out);
}
static agave_status run_mean(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_mean(ctx, in[0], out);
}
static agave_status run_lse1(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_logsumexp(ctx, in[0], 1, out);
}
static agave_status run_lse3(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_logsumexp(ctx, in[0], 3, out);
}

/* ---- nonlinearities ---- */
#define RUN_UNARY(fn)                                                                      \
    static agave_status run_##fn(agave_context *ctx, agave_tensor **in, agave_tensor **out) \
    {                                                                                      \
        return agave_##fn(ctx, in[0], out);                                                \
    }
RUN_UNARY(elu)
RUN_UNARY(concat_elu)
RUN_UNARY(sigmoid)
RUN_UNARY(tanh)
RUN_UNARY(exp)
RUN_UNARY(log)
RUN_UNARY(softplus)
RUN_UNARY(down_shift)
RUN_UNARY(right_shift)
RUN_UNARY(upsample2x)

/* elu's second derivative jumps at 0 (from 1 to 0), so a central difference
 * straddling 0 has an O(eps) error instead of the O(eps^2) that gradcheck.h's
 * tolerance budget assumes. Inputs are kept at |x| >= 0.05, five eps away. */
static void away_from_zero(agave_tensor **in)
{
    float *x = agave_tensor_data(in[0]);
    for (size_t i = 0; i < agave_tensor_numel(in[0]); i++)
        if (x[i] > -0.05f && x[i] < 0.05f)
            x[i] = x[i] < 0 ? x[i] - 0.05f : x[i] + 0.05f;
}

/* ---- shape ops ---- */
static agave_status run_concat(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_concat(ctx, in[0], in[1], out);
}
/* The same tensor on both sides: both halves of the gradient add up in it. */
static agave_status run_concat_self(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_concat(ctx, in[0], in[0], out);
}
static agave_status run_split(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_split(ctx, in[0], 1, 3, out);
}
static agave_status run_avg_pool2(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_avg_pool(ctx, in[0], 2, out);
}
static agave_status run_avg_pool3(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_avg_pool(ctx, in[0], 3, out);
}

/* ---- dropout and weight norm ---- */
static agave_status run_dropout(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_dropout(ctx, in[0], 0.3f, out);
}
static agave_status run_dropout0(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_dropout(ctx, in[0], 0.0f, out);
}
static agave_status run_concat_elu_dropout(agave_context *ctx, agave_tensor **in,
                                          agave_tensor **out)
{
    return concat_elu_dropout(ctx, in[0], 0.3f, RNG_WHOLE_BATCH, out);
}
static agave_status run_weight_norm(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_weight_norm(ctx, in[0], in[1], out);
}

const gc_case gc_cases_elementwise[] = {
    {"add", "(3,5,7,3)", 2, {{SHAPE4(3, 5, 7, 3), -2, 2, 0}, {SHAPE4(3, 5, 7, 3), -2, 2, 0}},
     run_add, NULL, 0, 0, 0, 0},
    {"sub", "(3,5,7,3)", 2, {{SHAPE4(3, 5, 7, 3), -2, 2, 0}, {SHAPE4(3, 5, 7, 3), -2, 2, 0}},
     run_sub, NULL, 0, 0, 0, 0},
    {"mul", "(3,5,7,3)", 2, {{SHAPE4(3, 5, 7, 3), -2, 2, 0}, {SHAPE4(3, 5, 7, 3), -2, 2, 0}},
     run_mul, NULL, 0, 0, 0, 0},
    {"scale", "(2,3,5,5) by -1.75", 1, {{SHAPE4(2, 3, 5, 5), -2, 2, 0}}, run_scale, NULL, 0, 0,
     0, 0},
    {"bias_add", "(3,5,3,7) + (5)", 2, {{SHAPE4(3, 5, 3, 7), -2, 2, 0}, {1, {5}, -1, 1, 0}},
     run_bias_add, NULL, 0, 0, 0, 0},
    {"sum", "(3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -2, 2, 0}}, run_sum, NULL, 0, 0, 0, 0},
    {"mean", "(3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -2, 2, 0}}, run_mean, NULL, 0, 0, 0, 0},
    {"logsumexp", "axis 1 of (3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -3, 3, 0}}, run_lse1, NULL, 0,
     0, 0, 0},
    {"logsumexp", "axis 3 of (3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -3, 3, 0}}, run_lse3, NULL, 0,
     0, 0, 0},
    {"elu", "(3,5,4,3), |x| >= 0.05", 1, {{SHAPE4(3, 5, 4, 3), -2, 2, 0}}, run_elu,
     away_from_zero, 0, 0, 0, 0},
    {"concat_elu", "(2,3,5,3), |x| >= 0.05", 1, {{SHAPE4(2, 3, 5, 3), -2, 2, 0}},
     run_concat_elu, away_from_zero, 0, 0, 0, 0},
    {"concat_elu", "2-D (3,7), |x| >= 0.05", 1, {{2, {3, 7}, -3, 3, 0}}, run_concat_elu,
     away_from_zero, 0, 0, 0, 0},
    {"concat_elu_dropout", "(2,3,5,3), p = 0.3, |x| >= 0.05", 1, {{SHAPE4(2, 3, 5, 3), -2, 2, 0}},
     run_concat_elu_dropout, away_from_zero, 1, 0, 0, 0},
    {"sigmoid", "(3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -4, 4, 0}}, run_sigmoid, NULL, 0, 0, 0, 0},
    {"sigmoid", "tails (2,3,5,3)", 1, {{SHAPE4(2, 3, 5, 3), -20, 20, 0}}, run_sigmoid, NULL, 0,
     0, 0, 0},
    {"tanh", "(3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -2, 2, 0}}, run_tanh, NULL, 0, 0, 0, 0},
    {"exp", "(3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -2, 2, 0}}, run_exp, NULL, 0, 0, 0, 0},
    {"log", "(3,5,3,7) on [0.5, 3]", 1, {{SHAPE4(3, 5, 3, 7), 0.5f, 3, 0}}, run_log, NULL, 0, 0,
     0, 0},
    {"softplus", "(3,5,3,7)", 1, {{SHAPE4(3, 5, 3, 7), -5, 5, 0}}, run_softplus, NULL, 0, 0, 0,
     0},
    {"softplus", "large |x| (2,3,5,3)", 1, {{SHAPE4(2, 3, 5, 3), -40, 40, 0}}, run_softplus,
     NULL, 0, 0, 0, 0},
    {"concat", "(2,3,4,5) + (2,2,4,5)", 2,
     {{SHAPE4(2, 3, 4, 5), -2, 2, 0}, {SHAPE4(2, 2, 4, 5), -2, 2, 0}}, run_concat, NULL, 0, 0, 0,
     0},
    {"concat", "x with itself (3,2,3,5)", 1, {{SHAPE4(3, 2, 3, 5), -2, 2, 0}}, run_concat_self,
     NULL, 0, 0, 0, 0},
    {"concat", "2-D (3,4) + (3,5), b constant", 2, {{2, {3, 4}, -2, 2, 0}, {2, {3, 5}, -2, 2, 1}},
     run_concat, NULL, 0, 0, 0, 0},
    {"split", "channels 1..3 of (3,5,2,3)", 1, {{SHAPE4(3, 5, 2, 3), -2, 2, 0}}, run_split, NULL,
     0, 0, 0, 0},
    {"down_shift", "(2,3,4,5)", 1, {{SHAPE4(2, 3, 4, 5), -2, 2, 0}}, run_down_shift, NULL, 0, 0,
     0, 0},
    {"right_shift", "(2,3,5,4)", 1, {{SHAPE4(2, 3, 5, 4), -2, 2, 0}}, run_right_shift, NULL, 0,
     0, 0, 0},
    {"upsample2x", "(2,3,3,5)", 1, {{SHAPE4(2, 3, 3, 5), -2, 2, 0}}, run_upsample2x, NULL, 0, 0,
     0, 0},
    {"avg_pool", "s = 2 on (2,3,4,6)", 1, {{SHAPE4(2, 3, 4, 6), -2, 2, 0}}, run_avg_pool2, NULL,
     0, 0, 0, 0},
    {"avg_pool", "s = 3 on (3,2,6,3)", 1, {{SHAPE4(3, 2, 6, 3), -2, 2, 0}}, run_avg_pool3, NULL,
     0, 0, 0, 0},
    {"dropout", "p = 0.3 on (3,5,7,3)", 1, {{SHAPE4(3, 5, 7, 3), -2, 2, 0}}, run_dropout, NULL,
     1, 0, 0, 0},
    {"dropout", "p = 0 on (2,3,5,3)", 1, {{SHAPE4(2, 3, 5, 3), -2, 2, 0}}, run_dropout0, NULL,
     1, 0, 0, 0},
    {"weight_norm", "v (5,3,3,2), g (5)", 2,
     {{SHAPE4(5, 3, 3, 2), -1, 1, 0}, {1, {5}, 0.5f, 1.5f, 0}}, run_weight_norm, NULL, 0, 0, 0,
     0},
    {"weight_norm", "v (4,7), g (4) of both signs", 2,
     {{2, {4, 7}, -1, 1, 0}, {1, {4}, -1.5f, 1.5f, 0}}, run_weight_norm, NULL, 0, 0, 0, 0},
};
const int gc_n_cases_elementwise = sizeof gc_cases_elementwise / sizeof gc_cases_elementwise[0];
