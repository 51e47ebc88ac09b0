/* Gradient-check cases for ops outside the conv, element-wise and loss families. */
#include "gradcheck.h"

static agave_status run_transpose01(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_transpose01(ctx, in[0], out);
}

static agave_status run_sum_items(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_sum_items(ctx, in[0], out);
}

static agave_status run_gate(agave_context *ctx, agave_tensor **in, agave_tensor **out)
{
    return agave_gate(ctx, in[0], in[1], out);
}

const gc_case gc_cases_misc[] = {
    {"gate", "x (3,5,3,7), c (3,10,3,7)", 2, {{4, {3, 5, 3, 7}, -2, 2, 0}, {4, {3, 10, 3, 7}, -3, 3, 0}},
     run_gate, NULL, 0, 0, 0, 0},
    {"sum_items", "(3,5,3,7)", 1, {{4, {3, 5, 3, 7}, -2, 2, 0}}, run_sum_items, NULL, 0, 0, 0, 0},
    {"transpose01", "(3,5,2,3)", 1, {{4, {3, 5, 2, 3}, -2, 2, 0}}, run_transpose01, NULL, 0, 0,
     0, 0},
    {"transpose01", "(4,7)", 1, {{2, {4, 7}, -2, 2, 0}}, run_transpose01, NULL, 0, 0, 0, 0},
};
const int gc_n_cases_misc = sizeof gc_cases_misc / sizeof gc_cases_misc[0];
