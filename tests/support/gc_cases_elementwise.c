/* Gradient-check cases for the element-wise, reduction, shape, dropout and
 * weight-norm ops. Shapes use odd sizes and batch > 1. */
#include "gradcheck.h"

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
};
const int gc_n_cases_elementwise = sizeof gc_cases_elementwise / sizeof gc_cases_elementwise[0];
