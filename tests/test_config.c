/* Configuration by key: the key list and what it says about each key, values
 * read back as text, unknown keys told apart from bad values, comparison,
 * the named configurations, agave_mode_name and agave_model_is_initialized. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <agave.h>

static agave_context *ctx;

static int setup(void **state)
{
    (void)state;
    return agave_context_create(&ctx, 11) == AGAVE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    agave_context_free(ctx);
    return 0;
}

static agave_config_key key_info(int i)
{
    agave_config_key k = {.struct_size = sizeof k};
    assert_int_equal(agave_config_key_info(i, &k), AGAVE_OK);
    return k;
}

/* ---- the key list ---------------------------------------------------------------- */
static void test_key_list_describes_every_key(void **state)
{
    (void)state;
    int n = agave_config_key_count();
    assert_true(n >= 20);
    for (int i = 0; i < n; i++) {
        agave_config_key k = key_info(i);
        assert_non_null(k.name);
        assert_true(k.name[0] != '\0');
        assert_int_equal(agave_config_key_index(k.name), i);
        assert_true(k.type == AGAVE_KEY_INT || k.type == AGAVE_KEY_FLOAT ||
                    k.type == AGAVE_KEY_CHOICE);
        assert_non_null(k.range);
        assert_non_null(k.description);
        assert_non_null(k.choices);
        assert_true(k.range[0] && k.description[0]);
        assert_true((k.type == AGAVE_KEY_CHOICE) == (k.choices[0] != '\0'));
        assert_true(k.type == AGAVE_KEY_CHOICE || k.min <= k.max);
        /* The architecture cannot change on a model: no key is both. */
        assert_false((k.flags & AGAVE_KEY_ARCHITECTURE) && (k.flags & AGAVE_KEY_TRAINING));
    }
    agave_config_key k = {.struct_size = sizeof k};
    assert_int_equal(agave_config_key_info(n, &k), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_key_info(-1, &k), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_key_info(0, NULL), AGAVE_ERR_NULL);
    assert_int_equal(agave_config_key_index("depth"), -1);
    assert_int_equal(agave_config_key_index(NULL), -1);
    /* The keys docs/model.md names, with the architecture flag exactly on the
     * twelve that shape the network. */
    static const char *arch[] = {"C", "H", "W", "F", "R", "M", "Fv", "Rv", "Z", "T", "b", "s"};
    static const char *other[] = {"dropout", "lambda", "mode", "optimizer", "lr", "ema",
                                  "grad_clip", "max_bad_steps"};
    int n_arch = 0;
    for (int i = 0; i < n; i++)
        n_arch += (key_info(i).flags & AGAVE_KEY_ARCHITECTURE) != 0;
    assert_int_equal(n_arch, 12);
    for (size_t i = 0; i < sizeof arch / sizeof *arch; i++) {
        int at = agave_config_key_index(arch[i]);
        assert_true(at >= 0);
        assert_true(key_info(at).flags & AGAVE_KEY_ARCHITECTURE);
    }
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        int at = agave_config_key_index(other[i]);
        assert_true(at >= 0);
        assert_false(key_info(at).flags & AGAVE_KEY_ARCHITECTURE);
    }
}

/* The info struct follows the struct_size rule: a caller with a smaller one
 * gets the fields it has and nothing past them. */
static void test_key_info_writes_only_the_callers_fields(void **state)
{
    (void)state;
    struct {
        agave_config_key k;
        unsigned char canary[32];
    } w;
    memset(&w, 0xA5, sizeof w);
    w.k.struct_size = offsetof(agave_config_key, type);   /* struct_size and name only */
    assert_int_equal(agave_config_key_info(0, &w.k), AGAVE_OK);
    assert_string_equal(w.k.name, key_info(0).name);
    const unsigned char *p = (const unsigned char *)&w.k + offsetof(agave_config_key, type);
    for (size_t i = 0; i < sizeof w - offsetof(agave_config_key, type); i++)
        assert_int_equal(p[i], 0xA5);
    w.k.struct_size = 0;
    assert_int_equal(agave_config_key_info(0, &w.k), AGAVE_ERR_INVALID_ARG);
}

/* ---- values as text ---------------------------------------------------------------- */
/* get, then set of that text, gives back the same bits, for every key of
 * every named configuration. */
static void test_get_set_round_trip(void **state)
{
    (void)state;
    for (int p = 0; agave_config_preset_name(p); p++) {
        agave_config a, b;
        assert_int_equal(agave_config_init(&a, agave_config_preset_name(p)), AGAVE_OK);
        memset(&b, 0, sizeof b);
        b.struct_size = sizeof b;
        for (int i = 0; i < agave_config_key_count(); i++) {
            char text[AGAVE_CONFIG_VALUE_MAX];
            const char *name = key_info(i).name;
            assert_int_equal(agave_config_get(&a, name, text, sizeof text), AGAVE_OK);
            assert_int_equal(agave_config_set(&b, name, text), AGAVE_OK);
        }
        assert_memory_equal(&a, &b, sizeof a);
    }
}

/* Floats come back as text that gives the same float, values that need 9
 * digits included, and short values stay short. */
static void test_float_text_is_exact_and_short(void **state)
{
    (void)state;
    agave_config c;
    agave_config_init(&c, "tiny");
    char text[AGAVE_CONFIG_VALUE_MAX];
    static const char *values[] = {"0.002", "0.1", "1e-07", "0.00123456789", "3.14159274",
                                   "123456792"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        assert_int_equal(agave_config_set(&c, "lr", values[i]), AGAVE_OK);
        float want = strtof(values[i], NULL);
        assert_true(c.lr == want);
        assert_int_equal(agave_config_get(&c, "lr", text, sizeof text), AGAVE_OK);
        assert_true(strtof(text, NULL) == want);
    }
    assert_int_equal(agave_config_set(&c, "lr", "0.002"), AGAVE_OK);
    assert_int_equal(agave_config_get(&c, "lr", text, sizeof text), AGAVE_OK);
    assert_string_equal(text, "0.002");
    assert_int_equal(agave_config_get(&c, "mode", text, sizeof text), AGAVE_OK);
    assert_string_equal(text, "agave");
    assert_int_equal(agave_config_get(&c, "F", text, sizeof text), AGAVE_OK);
    assert_string_equal(text, "8");
    /* Too small a buffer: refused, and the buffer holds "". */
    char tiny[3] = "xx";
    assert_int_equal(agave_config_get(&c, "optimizer", tiny, sizeof tiny), AGAVE_ERR_INVALID_ARG);
    assert_string_equal(tiny, "");
    assert_int_equal(agave_config_get(&c, "depth", text, sizeof text), AGAVE_ERR_UNKNOWN_KEY);
    assert_int_equal(agave_config_get(NULL, "F", text, sizeof text), AGAVE_ERR_NULL);
    c.struct_size = 3;
    assert_int_equal(agave_config_get(&c, "F", text, sizeof text), AGAVE_ERR_CONFIG);
}

/* The defaults the list gives are what agave_config_init sets, for every
 * named configuration. */
static void test_defaults_are_what_init_sets(void **state)
{
    (void)state;
    int with_default = 0;
    for (int p = 0; agave_config_preset_name(p); p++) {
        agave_config c;
        agave_config_init(&c, agave_config_preset_name(p));
        for (int i = 0; i < agave_config_key_count(); i++) {
            agave_config_key k = key_info(i);
            if (!k.default_value)
                continue;
            with_default++;
            agave_config d = c;
            assert_int_equal(agave_config_set(&d, k.name, k.default_value), AGAVE_OK);
            assert_memory_equal(&c, &d, sizeof c);
        }
    }
    assert_true(with_default >= 4 * 6);   /* mode, optimizer, lr, ema, grad_clip, max_bad_steps */
}

/* ---- unknown keys and bad values ---------------------------------------------------- */
static void test_unknown_key_is_not_a_bad_value(void **state)
{
    (void)state;
    agave_config c, before;
    agave_config_init(&c, "tiny");
    before = c;
    assert_int_equal(agave_config_set(&c, "depth", "3"), AGAVE_ERR_UNKNOWN_KEY);
    assert_int_equal(agave_config_set(&c, "f", "3"), AGAVE_ERR_UNKNOWN_KEY);   /* case matters */
    assert_int_equal(agave_config_set(&c, "", "3"), AGAVE_ERR_UNKNOWN_KEY);
    assert_int_equal(agave_config_set(&c, "F", "three"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "F", "3.5"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "F", "99999999999"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "lr", "inf"), AGAVE_ERR_INVALID_ARG);
    assert_int_equal(agave_config_set(&c, "lr", "1e39"), AGAVE_ERR_INVALID_ARG);   /* not a float */
    assert_int_equal(agave_config_set(&c, "mode", "2"), AGAVE_ERR_INVALID_ARG);
    assert_memory_equal(&c, &before, sizeof c);
    assert_string_not_equal(agave_status_string(AGAVE_ERR_UNKNOWN_KEY),
                            agave_status_string(AGAVE_ERR_INVALID_ARG));
    assert_non_null(strstr(agave_status_string(AGAVE_ERR_UNKNOWN_KEY), "key"));
}

/* What the list says of a key's bounds holds: a value just outside them is
 * refused by validation, with a message that starts with the key's name. */
static void test_bounds_are_enforced(void **state)
{
    (void)state;
    int checked = 0;
    for (int i = 0; i < agave_config_key_count(); i++) {
        agave_config_key k = key_info(i);
        double outside[2] = {k.min - (k.type == AGAVE_KEY_INT ? 1 : 1e-3 * (1 + fabs(k.min))),
                             k.max + (k.type == AGAVE_KEY_INT ? 1 : 1e-3 * (1 + fabs(k.max)))};
        for (int side = 0; side < 2 && k.type != AGAVE_KEY_CHOICE; side++) {
            double v = outside[side];
            if (!isfinite(v) || fabs(v) > (k.type == AGAVE_KEY_INT ? INT_MAX : 1e30))
                continue;
            char text[64];
            snprintf(text, sizeof text, k.type == AGAVE_KEY_INT ? "%.0f" : "%.9g", v);
            agave_config c;
            agave_config_init(&c, "tiny");
            assert_int_equal(agave_config_set(&c, k.name, text), AGAVE_OK);
            char msg[256], want[64];
            assert_int_equal(agave_config_validate(&c, msg, sizeof msg), AGAVE_ERR_CONFIG);
            snprintf(want, sizeof want, "%s = ", k.name);
            if (strncmp(msg, want, strlen(want)) != 0)
                fail_msg("%s=%s: the message '%s' does not start with '%s'", k.name, text, msg,
                         want);
            checked++;
        }
    }
    assert_true(checked >= 30);
    /* A word that is not one of the choices (an enum value out of range). */
    agave_config c;
    agave_config_init(&c, "tiny");
    c.mode = (agave_mode)7;
    char msg[256];
    assert_int_equal(agave_config_validate(&c, msg, sizeof msg), AGAVE_ERR_CONFIG);
    assert_non_null(strstr(msg, "mode = 7"));
}

/* ---- comparison, named configurations, names ---------------------------------------- */
static void test_equal(void **state)
{
    (void)state;
    agave_config a, b;
    agave_config_init(&a, "fashion");
    agave_config_init(&b, "fashion");
    assert_int_equal(agave_config_equal(&a, &b, 0), 1);
    agave_config_set(&b, "lr", "0.01");
    assert_int_equal(agave_config_equal(&a, &b, 0), 0);
    assert_int_equal(agave_config_equal(&a, &b, AGAVE_KEY_ARCHITECTURE), 1);
    assert_int_equal(agave_config_equal(&a, &b, AGAVE_KEY_TRAINING), 0);
    agave_config_set(&b, "Z", "9");
    assert_int_equal(agave_config_equal(&a, &b, AGAVE_KEY_ARCHITECTURE), 0);
    agave_config_init(&b, "cifar-small");
    assert_int_equal(agave_config_equal(&a, &b, AGAVE_KEY_ARCHITECTURE), 0);
    assert_int_equal(agave_config_equal(&a, NULL, 0), 0);
    b = a;
    b.struct_size = 2;
    assert_int_equal(agave_config_equal(&a, &b, 0), 0);
}

static void test_presets(void **state)
{
    (void)state;
    static const char *names[] = {"tiny", "fashion", "cifar-small", "cifar-paper"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(agave_config_preset_name(i), names[i]);
        agave_config c;
        assert_int_equal(agave_config_init(&c, names[i]), AGAVE_OK);
        assert_int_equal(agave_config_validate(&c, NULL, 0), AGAVE_OK);
    }
    assert_null(agave_config_preset_name(4));
    assert_null(agave_config_preset_name(-1));
    agave_config c;
    assert_int_equal(agave_config_init(&c, "huge"), AGAVE_ERR_INVALID_ARG);
}

/* agave_mode_name gives the words of the mode key, each of which sets its mode. */
static void test_mode_name(void **state)
{
    (void)state;
    for (int m = AGAVE_MODE_AGAVE; m <= AGAVE_MODE_NAIVE; m++) {
        const char *name = agave_mode_name((agave_mode)m);
        assert_non_null(name);
        agave_config c;
        agave_config_init(&c, "tiny");
        assert_int_equal(agave_config_set(&c, "mode", name), AGAVE_OK);
        assert_int_equal(c.mode, m);
    }
    assert_string_equal(agave_mode_name(AGAVE_MODE_PIXELCNN), "pixelcnn");
    assert_null(agave_mode_name((agave_mode)4));
    assert_null(agave_mode_name((agave_mode)-1));
}

/* ---- agave_model_is_initialized ---------------------------------------------------- */
static void images(uint8_t *x, int n)
{
    for (int i = 0; i < n * 64; i++)
        x[i] = (uint8_t)(i * 29 % 253);
}

static void test_model_is_initialized(void **state)
{
    (void)state;
    agave_config cfg;
    agave_config_init(&cfg, "tiny");
    uint8_t x[4 * 64];
    images(x, 4);
    assert_int_equal(agave_model_is_initialized(NULL), 0);

    /* by agave_model_init, with no step made */
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    assert_int_equal(agave_model_is_initialized(m), 0);
    char path[] = "/tmp/agave_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(agave_model_save(m, path), AGAVE_OK);
    assert_int_equal(agave_model_init(m, x, 4), AGAVE_OK);
    assert_int_equal(agave_model_is_initialized(m), 1);
    assert_int_equal(agave_model_step_count(m), 0);
    agave_model_free(m);

    /* a checkpoint saved before initialisation loads uninitialised */
    assert_int_equal(agave_model_load(ctx, path, NULL, &m), AGAVE_OK);
    assert_int_equal(agave_model_is_initialized(m), 0);
    /* by the first training step */
    agave_step_stats s = {.struct_size = sizeof s};
    assert_int_equal(agave_model_train_step(m, x, 4, &s), AGAVE_OK);
    assert_int_equal(agave_model_is_initialized(m), 1);
    assert_int_equal(agave_model_save(m, path), AGAVE_OK);
    agave_model_free(m);
    assert_int_equal(agave_model_load(ctx, path, NULL, &m), AGAVE_OK);
    assert_int_equal(agave_model_is_initialized(m), 1);
    agave_model_free(m);
    unlink(path);
}

/* ---- agave_model_update_config follows the flags -------------------------------------- */
static void test_update_config_follows_flags(void **state)
{
    (void)state;
    agave_config cfg;
    agave_config_init(&cfg, "tiny");
    agave_model *m;
    assert_int_equal(agave_model_create(ctx, &cfg, &m), AGAVE_OK);
    for (int i = 0; i < agave_config_key_count(); i++) {
        agave_config_key k = key_info(i);
        agave_config c;
        agave_model_get_config(m, &c);
        /* another valid value of the key */
        const char *value = k.type == AGAVE_KEY_CHOICE                       ? "adam"
                            : strcmp(k.name, "C") == 0                      ? "3"
                            : strcmp(k.name, "H") == 0 || !strcmp(k.name, "W") ? "12"
                            : strcmp(k.name, "b") == 0 || !strcmp(k.name, "s") ? "2"
                            : k.type == AGAVE_KEY_FLOAT                      ? "0.25"
                                                                             : "3";
        if (strcmp(k.name, "mode") == 0)
            value = "vae";
        assert_int_equal(agave_config_set(&c, k.name, value), AGAVE_OK);
        char msg[256];
        if (agave_config_validate(&c, msg, sizeof msg) != AGAVE_OK)
            fail_msg("%s=%s is not valid: %s", k.name, value, msg);
        agave_status st = agave_model_update_config(m, &c);
        if (k.flags & AGAVE_KEY_TRAINING) {
            assert_int_equal(st, AGAVE_OK);
            agave_config now;
            agave_model_get_config(m, &now);
            assert_int_equal(agave_config_equal(&now, &c, 0), 1);
            agave_model_update_config(m, &cfg);   /* back */
        } else {
            if (st != AGAVE_ERR_CONFIG)
                fail_msg("%s=%s changed a model's configuration", k.name, value);
        }
    }
    agave_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_list_describes_every_key),
        cmocka_unit_test(test_key_info_writes_only_the_callers_fields),
        cmocka_unit_test(test_get_set_round_trip),
        cmocka_unit_test(test_float_text_is_exact_and_short),
        cmocka_unit_test(test_defaults_are_what_init_sets),
        cmocka_unit_test(test_unknown_key_is_not_a_bad_value),
        cmocka_unit_test(test_bounds_are_enforced),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_mode_name),
        cmocka_unit_test(test_model_is_initialized),
        cmocka_unit_test(test_update_config_follows_flags),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
