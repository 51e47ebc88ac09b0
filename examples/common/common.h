/* Helpers around library calls that more than one program makes: a context
 * with a thread count, data sets, checkpoints, configuration text. Each
 * returns EXIT_OK or prints one line (the library's own message) and returns
 * EXIT_ERROR. */
#ifndef AGAVE_EXAMPLES_COMMON_H
#define AGAVE_EXAMPLES_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The programs use the data-parallel hooks, which are not yet stable. */
#define AGAVE_EXPERIMENTAL
#include "agave.h"
#include "cli.h"
#include "dist.h"
#include "files.h"
#include "progress.h"
#include "signals.h"

/* A context seeded with seed, using threads threads. */
int open_context(const char *prog, uint64_t seed, int threads, agave_context **ctx);

/* agave_dataset_open with the library's message on failure. */
int open_dataset(const char *prog, agave_context *ctx, const char *path, agave_data_split split,
                 agave_dataset **ds);

/* agave_model_load; refuses a checkpoint that is not initialised (nothing to
 * evaluate or sample). */
int load_checkpoint(const char *prog, agave_context *ctx, const char *path,
                    agave_model **model);

/* Checks that the data set's images have the model's shape. */
int check_image_shape(const char *prog, const agave_config *cfg, const agave_dataset *ds,
                      const char *data_path);

/* --weights average|raw on a loaded model; choice NULL keeps the library's
 * default (the average when the checkpoint has one). Refuses "average" for
 * a checkpoint without averaged parameters, and any other word. */
int choose_weights(const char *prog, agave_model *model, const char *choice, const char *path);
/* "average" or "raw": the set the model's evaluation and sampling use now. */
const char *weights_name(const agave_model *model);

/* A PNG grid (written atomically by the library) of n samples, f(z) beside
 * the PixelCNN sample, or with input not NULL of reconstructions, rows of
 * input / f(z) / sample; a mode without f(z) or without a PixelCNN leaves
 * that set out (grid.c). cols 0: 8; scale 0: 2 for images up to 32 pixels,
 * else 1. */
int write_sample_grid(const char *prog, agave_context *ctx, const char *path,
                      const agave_config *cfg, const uint8_t *input, const uint8_t *fz,
                      const uint8_t *x, int n, int cols, int scale);

/* "key=value key=value ...": the configuration's keys whose flags include
 * all of flags (0: every key), from the library's key list. */
void describe_config(const agave_config *c, unsigned flags, char *buf, size_t len);
/* "C, H, W, ...": the configuration keys; "tiny, fashion, ...": the named
 * configurations (from the library). */
void list_keys(char *buf, size_t len);
void list_presets(char *buf, size_t len);

#endif
