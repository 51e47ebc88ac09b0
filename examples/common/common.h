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

/* How a data set's images are read: the programs' --resize, --crop and
 * --test-percent (docs/data.md, "Image folders"). */
typedef struct data_opts {
    const char *resize, *crop;   /* "HxW" (or "N" for N x N), crop also "aspect"; NULL: none */
    long long test_percent;      /* 1..99 */
} data_opts;

/* The three options, for a program's option table (d: a data_opts *, which
 * data_opts_init has set). */
#define DATA_OPTIONS(d)                                                                        {"resize", CLI_STRING, &(d)->resize, "HxW",                                                "resample every image to H x W pixels by area averaging (after --crop)", NULL, 0, 0, 0},     {"crop", CLI_STRING, &(d)->crop, "HxW|aspect",                                             "cut the centred H x W window out of every image; aspect: the largest centred "           "window of --resize's shape", NULL, 0, 0, 0},                                            {"test-percent", CLI_INT, &(d)->test_percent, "P",                                         "one image folder without train/ and test/: the percent of its files (chosen by a "       "hash of their names) that form the test split", "10", 1, 99, 0}

void data_opts_init(data_opts *d);
/* The library's options for d; on a malformed --resize or --crop prints one
 * line and returns EXIT_ERROR. */
int data_opts_make(const char *prog, const data_opts *d, agave_dataset_options *out);

/* agave_dataset_open_v2 with d's options (NULL: none), the library's
 * message on failure. */
int open_dataset(const char *prog, agave_context *ctx, const char *path, agave_data_split split,
                 const data_opts *d, agave_dataset **ds);

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

/* A picture grid (written atomically by the library, in the format path's
 * name says) of n samples, f(z) beside the PixelCNN sample, or with input
 * not NULL of reconstructions, rows of input / f(z) / sample; a mode without
 * f(z) or without a PixelCNN leaves that set out (grid.c). cols 0: 8; scale
 * 0: 2 for images up to 32 pixels, else 1; caption NULL: none. */
int write_sample_grid(const char *prog, agave_context *ctx, const char *path,
                      const agave_config *cfg, const uint8_t *input, const uint8_t *fz,
                      const uint8_t *x, int n, int cols, int scale, const char *caption);
/* The grid options write_sample_grid uses (scale and caption as there). */
void sample_grid_options(const agave_config *cfg, int scale, const char *caption,
                         agave_grid_options *opt);

/* "key=value key=value ...": the configuration's keys whose flags include
 * all of flags (0: every key), from the library's key list. */
void describe_config(const agave_config *c, unsigned flags, char *buf, size_t len);
/* "C, H, W, ...": the configuration keys; "tiny, fashion, ...": the named
 * configurations (from the library). */
void list_keys(char *buf, size_t len);
void list_presets(char *buf, size_t len);

#endif
