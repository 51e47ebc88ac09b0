/* The random generator's skip (lib/core/rng.c): jumping n draws ahead by
 * the characteristic polynomial must land on exactly the state n calls of
 * rng_next reach, on both sides of the length where it stops stepping and
 * starts jumping, and jumps must compose. The reference is stepping, written
 * here. A wrong coefficient of the polynomial, a dropped carry or an
 * off-by-one in the power lands on an unrelated state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

static void step(agave_rng *r, uint64_t n)
{
    while (n--)
        (void)rng_next(r);
}

static void assert_same_state(const agave_rng *a, const agave_rng *b, uint64_t n)
{
    if (memcmp(a->s, b->s, sizeof a->s))
        fail_msg("after %llu draws: skip gives state %016llx..., stepping %016llx...",
                 (unsigned long long)n, (unsigned long long)a->s[0],
                 (unsigned long long)b->s[0]);
}

static void test_skip_equals_stepping(void **state)
{
    (void)state;
    static const uint64_t lengths[] = {0,     1,     2,      255,      256,    257,
                                       1000,  65535, 65536,  65537,    100003, 1u << 20,
                                       3000017};
    for (uint64_t seed = 1; seed <= 3; seed++)
        for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
            agave_rng a, b;
            rng_seed(&a, seed * 7919);
            rng_seed(&b, seed * 7919);
            rng_skip(&a, lengths[i]);
            step(&b, lengths[i]);
            assert_same_state(&a, &b, lengths[i]);
            assert_int_equal(rng_next(&a), rng_next(&b));
        }
}

/* Past what a test can step through: skips compose, and a skip from a
 * skipped state is the skip of the sum. */
static void test_skips_compose(void **state)
{
    (void)state;
    static const uint64_t parts[][2] = {{1ull << 40, 1ull << 40},
                                        {123456789012ull, 987654321ull},
                                        {5, (1ull << 62) + 12345},
                                        {(1ull << 63) - 1, 1}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        agave_rng a, b;
        rng_seed(&a, 42);
        rng_seed(&b, 42);
        rng_skip(&a, parts[i][0]);
        rng_skip(&a, parts[i][1]);
        rng_skip(&b, parts[i][0] + parts[i][1]);
        assert_same_state(&a, &b, parts[i][0] + parts[i][1]);
    }
    agave_rng a, b;   // 2^64 - 1 draws then one more: four skips of 2^62 and none
    rng_seed(&a, 9);
    rng_seed(&b, 9);
    for (int k = 0; k < 4; k++)
        rng_skip(&b, 1ull << 62);
    rng_skip(&a, UINT64_MAX);
    rng_skip(&a, 1);
    assert_same_state(&a, &b, 0);
    assert_true(a.s[0] | a.s[1] | a.s[2] | a.s[3]);   // not the fixed point
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skip_equals_stepping),
        cmocka_unit_test(test_skips_compose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
