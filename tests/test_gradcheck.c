/* Gradient check of every op in the op table against central finite
 * differences (tests/support/gradcheck.h states the tolerance). The test walks
 * the op table: an op with no case here fails the suite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "model/op_table.h"
#include "support/gradcheck.h"

typedef struct family {
    const gc_case *cases;
    const int *n;
} family;

static const family families[] = {
    {gc_cases_conv, &gc_n_cases_conv},
    {gc_cases_elementwise, &gc_n_cases_elementwise},
    {gc_cases_loss, &gc_n_cases_loss},
    {gc_cases_misc, &gc_n_cases_misc},
};

static void run_op_cases(int op, int *n_found)
{
    *n_found = 0;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (int i = 0; i < *families[f].n; i++) {
            const gc_case *c = &families[f].cases[i];
            if (strcmp(c->op, op_table[op]->name) != 0)
                continue;
            (*n_found)++;
            for (unsigned seed = 1; seed <= 2; seed++) {
                gc_result r;
                agave_status st = gc_run_case(c, seed, &r);
                if (st != AGAVE_OK)
                    fail_msg("%s [%s]: the op failed: %s", c->op, c->label,
                             agave_status_string(st));
                if (r.failed)
                    fail_msg("%d of %d gradient elements wrong; first: %s", r.failed, r.checked,
                             r.first_failure);
                assert_true(r.checked > 0);
            }
        }
}

/* One test per op of the table; initial state carries the op index. */
static void test_op_gradient(void **state)
{
    int op = (int)(intptr_t)*state;
    int found;
    run_op_cases(op, &found);
    if (!found)
        fail_msg("op '%s' has no gradient-check case", op_table[op]->name);
}

static void test_op_table_is_complete(void **state)
{
    (void)state;
    for (int op = 0; op < OP_COUNT; op++) {
        assert_non_null(op_table[op]->name);
        assert_non_null(op_table[op]->backward);
        for (int other = 0; other < op; other++)
            assert_string_not_equal(op_table[op]->name, op_table[other]->name);
    }
}

/* Every case must name a real op, so a typo cannot silently skip a check. */
static void test_every_case_names_an_op(void **state)
{
    (void)state;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (int i = 0; i < *families[f].n; i++) {
            int known = 0;
            for (int op = 0; op < OP_COUNT; op++)
                known |= strcmp(families[f].cases[i].op, op_table[op]->name) == 0;
            if (!known)
                fail_msg("case '%s' names no op", families[f].cases[i].op);
        }
}

int main(void)
{
    struct CMUnitTest tests[OP_COUNT + 2];
    static char names[OP_COUNT][64];
    tests[0] = (struct CMUnitTest)cmocka_unit_test(test_op_table_is_complete);
    tests[1] = (struct CMUnitTest)cmocka_unit_test(test_every_case_names_an_op);
    for (int op = 0; op < OP_COUNT; op++) {
        snprintf(names[op], sizeof names[op], "gradcheck_%s", op_table[op]->name);
        tests[op + 2] = (struct CMUnitTest){names[op], test_op_gradient, NULL, NULL,
                                            (void *)(intptr_t)op};
    }
    return _cmocka_run_group_tests("gradcheck", tests, OP_COUNT + 2, NULL, NULL);
}
