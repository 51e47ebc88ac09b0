/* Prints docs/model.md's two generated tables from the library itself: the
 * named configurations (every key they set) and the configuration keys (name,
 * type, valid values, default, flags, meaning), so that the page cannot
 * disagree with agave_config_key_info. Built and run by scripts/config-doc.sh. */
#include <stdio.h>
#include <string.h>

#include "agave.h"

static agave_config_key key(int i)
{
    agave_config_key k = {.struct_size = sizeof k};
    agave_config_key_info(i, &k);
    return k;
}

static void presets(void)
{
    printf("| name |");
    for (int i = 0; i < agave_config_key_count(); i++)
        if (!key(i).default_value)
            printf(" %s |", key(i).name);
    printf("\n|---|");
    for (int i = 0; i < agave_config_key_count(); i++)
        if (!key(i).default_value)
            printf("---|");
    printf("\n");
    for (int p = 0; agave_config_preset_name(p); p++) {
        agave_config cfg;
        agave_config_init(&cfg, agave_config_preset_name(p));
        printf("| %s |", agave_config_preset_name(p));
        for (int i = 0; i < agave_config_key_count(); i++) {
            char value[AGAVE_CONFIG_VALUE_MAX];
            if (key(i).default_value)
                continue;
            agave_config_get(&cfg, key(i).name, value, sizeof value);
            printf(" %s |", value);
        }
        printf("\n");
    }
}

static void keys(void)
{
    static const char *types[] = {"integer", "number", "word"};
    printf("| key | type | valid values | default | changes on a model | meaning |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int i = 0; i < agave_config_key_count(); i++) {
        agave_config_key k = key(i);
        char valid[160];
        if (k.type == AGAVE_KEY_CHOICE) {
            snprintf(valid, sizeof valid, "`%s`", k.choices);
            for (char *bar; (bar = strchr(valid, '|'));)
                memmove(bar + 4, bar + 1, strlen(bar + 1) + 1), memcpy(bar, "`, `", 4);
        } else {
            snprintf(valid, sizeof valid, "%s", k.range);
        }
        const char *changes = (k.flags & AGAVE_KEY_ARCHITECTURE) ? "no (architecture)"
                              : (k.flags & AGAVE_KEY_TRAINING)   ? "yes"
                                                                 : "no";
        printf("| `%s` | %s | %s | %s | %s | %s |\n", k.name, types[k.type], valid,
               k.default_value ? k.default_value : "named configuration", changes,
               k.description);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "presets") == 0)
        presets();
    else if (argc == 2 && strcmp(argv[1], "keys") == 0)
        keys();
    else
        return 2;
    return 0;
}
