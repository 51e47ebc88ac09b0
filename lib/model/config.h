/* Configurations inside the library: a caller's agave_config, of whatever
 * struct_size, is read into a full one (config_import) before any use. */
#ifndef AGAVE_MODEL_CONFIG_H
#define AGAVE_MODEL_CONFIG_H

#include "../core/core.h"
#include "../core/struct_size.h"

/* The smallest struct_size of a caller's agave_config: the architecture and
 * lambda, which have no default outside a named configuration. */
#define CONFIG_MIN_SIZE STRUCT_END(agave_config, lambda)

/* out = the caller's cfg over the defaults of every field it does not cover;
 * AGAVE_ERR_CONFIG with a sentence in msg when its struct_size is unusable. */
agave_status config_import(const agave_config *cfg, agave_config *out, char *msg, size_t len);

/* Checks a full configuration's keys (agave_config_validate after import). */
agave_status config_check(const agave_config *cfg, char *msg, size_t len);

/* config_import, then config_check: a caller's configuration, ready to use. */
agave_status config_read(const agave_config *cfg, agave_config *out, char *msg, size_t len);

/* sizeof(agave_config) in 0.1's agave.h, whose last field was max_bad_steps. */
size_t config_size_0_1(void);

/* 1 when full configurations a and b agree on every key whose flags include
 * all of `want` and none of `avoid` (AGAVE_KEY_* flags). */
int config_equal(const agave_config *a, const agave_config *b, unsigned want, unsigned avoid);
/* config_equal on the architecture keys. */
int config_same_architecture(const agave_config *a, const agave_config *b);
/* "mode, lambda, ...": the names of the keys whose flags include all of want. */
void config_key_names(unsigned want, char *buf, size_t len);
/* Copies the keys whose flags include all of `want` from one full
 * configuration to another. */
void config_copy_keys(agave_config *to, const agave_config *from, unsigned want);

#endif
