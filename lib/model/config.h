/* Configurations inside the library: a caller's agave_config, of whatever
 * struct_size, is read into a full one (config_import) before any use. */
#ifndef AGAVE_MODEL_CONFIG_H
#define AGAVE_MODEL_CONFIG_H

#include "../core/core.h"

/* The smallest struct_size of a caller's agave_config: the architecture and
 * lambda, which have no default outside a named configuration. */
#define CONFIG_MIN_SIZE STRUCT_END(agave_config, lambda)

/* out = the caller's cfg over the defaults of every field it does not cover;
 * AGAVE_ERR_CONFIG with a sentence in msg when its struct_size is unusable. */
agave_status config_import(const agave_config *cfg, agave_config *out, char *msg, size_t len);

/* Checks a full configuration's fields (agave_config_validate after import). */
agave_status config_check(const agave_config *cfg, char *msg, size_t len);

/* sizeof(agave_config) in 0.1's agave.h, whose last field was max_bad_steps. */
size_t config_size_0_1(void);

/* config_import, then config_check: a caller's configuration, ready to use. */
agave_status config_read(const agave_config *cfg, agave_config *out, char *msg, size_t len);

#endif
