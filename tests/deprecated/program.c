/* Calls every name kept for compatibility (agave.h, "Compatibility") next to
 * its replacement and checks that both give the same answer. Built by
 * tests/check_deprecated.sh with AGAVE_NO_DEPRECATION_WARNINGS, against the
 * shared library. */
#include <stdio.h>
#include <string.h>

#include "agave.h"

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "deprecated program: FAIL: %s\n", what);
        failures++;
    }
}

int main(void)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 3) != AGAVE_OK)
        return 1;
    /* 0.1's _init functions and agave_model_get_config, called as functions:
     * they fill the struct as the macros do, for a struct of 0.1's size
     * (today's: the fields 0.1 had are its first part). */
    agave_config old_cfg, new_cfg;
    memset(&old_cfg, 0x5A, sizeof old_cfg);
    check((agave_config_init)(&old_cfg, "tiny") == AGAVE_OK, "agave_config_init as a function");
    check(agave_config_init(&new_cfg, "tiny") == AGAVE_OK, "agave_config_init");
    check(agave_config_equal(&old_cfg, &new_cfg, 0), "the old agave_config_init differs");
    agave_model *m;
    check(agave_model_create(ctx, &new_cfg, &m) == AGAVE_OK, "agave_model_create");
    agave_config got;
    memset(&got, 0x5A, sizeof got);
    check((agave_model_get_config)(m, &got) == AGAVE_OK, "agave_model_get_config as a function");
    check(agave_config_equal(&got, &new_cfg, 0), "the old agave_model_get_config differs");

    agave_layer_options lo_old, lo_new;
    check((agave_layer_options_init)(&lo_old) == AGAVE_OK, "agave_layer_options_init");
    agave_layer_options_init(&lo_new);
    check(lo_old.kernel_h == lo_new.kernel_h && lo_old.init_scale == lo_new.init_scale,
          "the old agave_layer_options_init differs");
    agave_grid_options go_old, go_new;
    (agave_grid_options_init)(&go_old);
    agave_grid_options_init(&go_new);
    check(go_old.gap == go_new.gap && go_old.background[2] == go_new.background[2],
          "the old agave_grid_options_init differs");

    /* The counts before 1.0. */
    size_t floats_old = 0, floats_new = 0;
    check(agave_config_param_count(&new_cfg, &floats_old) == AGAVE_OK &&
              agave_config_param_numel(&new_cfg, &floats_new) == AGAVE_OK &&
              floats_old == floats_new && floats_new > 0,
          "agave_config_param_count differs from agave_config_param_numel");
    check(agave_model_param_count(m) == agave_model_param_numel(m) &&
              agave_model_param_numel(m) == floats_new,
          "agave_model_param_count differs from agave_model_param_numel");
    check(agave_model_param_tensors(m) == agave_model_param_tensor_count(m) &&
              agave_model_param_tensor_count(m) > 1,
          "agave_model_param_tensors differs from agave_model_param_tensor_count");
    lo_new.in_channels = lo_new.out_channels = 2;
    agave_layer *l;
    check(agave_layer_create(ctx, AGAVE_LAYER_CONV, &lo_new, &l) == AGAVE_OK, "layer");
    check(agave_layer_param_count(l) == agave_layer_param_tensor_count(l) &&
              agave_layer_param_tensor_count(l) == 3,
          "agave_layer_param_count differs from agave_layer_param_tensor_count");
    agave_layer_free(l);
    agave_model_free(m);
    agave_context_free(ctx);
    if (!failures)
        printf("deprecated program: all old names agree with their replacements\n");
    return failures ? 1 : 0;
}
