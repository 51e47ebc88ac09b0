/* Internal view of the lossless codec (lib/codec): the plan a file fixes, the
 * bits-back coder of a batch, the file format. The public API is in
 * include/agave.h ("Lossless compression"), the format in docs/codec.md.
 *
 * lib/codec is the top layer: it uses lib/model (the VAE, the cached
 * sampler) and below; nothing below includes it. */
#ifndef AGAVE_CODEC_H
#define AGAVE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "../model/model.h"
#include "../model/sample_cached.h"
#include "rans.h"
#include "tables.h"

#define CODEC_ENV_MAX 160          /* environment text, terminator included */
#define CODEC_MAX_BATCH 4096
#define CODEC_MAX_CHUNK (1 << 20)  /* images per chunk */
#define CODEC_MAX_IMAGES (1ll << 40)

/* What the file's header fixes: everything both sides must agree on. */
typedef struct codec_plan {
    int C, H, W;
    size_t D;                  /* C*H*W */
    agave_mode mode;
    size_t latent;             /* Z*(H/4)*(W/4); 0 in mode pixelcnn (no latent code) */
    int latent_bits;
    int batch, chunk, threads, chains;
    int image_crc;
    int64_t n_images;
    uint64_t model_hash;
    char env[CODEC_ENV_MAX];
} codec_plan;

/* Code lengths (bits) of what was coded, for agave_codec_stats. */
typedef struct codec_counts {
    double pixel_bits, pixel_model_bits, prior_bits, posterior_bits;
} codec_counts;

/* Why a lane stopped (lanes cannot write the context's message themselves). */
typedef struct lane_failure {
    agave_status status;
    int image, pixel, channel;   /* image within the batch */
} lane_failure;

/* The bits-back coder of one model: its stacks (one per lane of the cached
 * sampler) and the buffers of one batch. */
typedef struct codec_core {
    agave_model *m;
    agave_context *ctx;
    codec_plan plan;
    latent_grid grid;
    rans_stack *chain;         /* plan.chains stacks of the current chunk */
    cached_sampler *sampler;   /* made once for the plan's batch (sampler_for) */
    uint32_t *zidx;            /* (batch, latent) bucket of each latent dimension */
    float *qmu, *qls;          /* (batch, latent) posterior mean and log-std */
    float *f;                  /* (batch, C, H/s, W/s) f(z) */
    uint32_t *rec;             /* encoder: (batch, H*W, C) start and freq of each sub-pixel */
    uint8_t *x;                /* decoder: the batch's pixels */
    const uint8_t *x_enc;      /* encoder: the batch being coded */
    codec_counts *counts;      /* per chain */
    lane_failure *fail;        /* per chain */
} codec_core;

/* ---- lib/codec/plan.c ------------------------------------------------------------ */
/* The model's hash: architecture, mode and the parameters in use (call with
 * the evaluation weights in place). */
uint64_t codec_model_hash(const agave_model *m);
/* This build and machine, as text: what decoding must find the same. */
void codec_environment(char env[CODEC_ENV_MAX]);
/* 1 when the PixelCNN's products are fixed (AVX-512F: the sampler's products
 * do not depend on how many positions run at once), so that the encoder runs
 * each image row at once and the decoder pixel by pixel with the same bits;
 * 0: both pixel by pixel. The environment text says which. */
int codec_fixed_products(void);
/* The plan of an encoder of n images of model m with options opt. */
agave_status codec_plan_make(agave_model *m, const agave_codec_options *opt, int64_t n,
                             codec_plan *plan);
/* The file's arithmetic is float32 products (its header says so): a context
 * set to bf16 would compute other tables, so the encoder and the decoder
 * refuse it (AGAVE_ERR_CONFIG, the message says how to set it back). */
agave_status codec_check_products(agave_context *ctx);
/* Checks that model m (evaluation weights in place) and this machine can
 * decode a file of this plan; the message says what differs. */
agave_status codec_plan_check(agave_model *m, const codec_plan *plan);
/* Size of batch j of a chunk of n images (0 when the chunk is done after
 * `done` images). */
int codec_batch_size(const codec_plan *plan, int n, int done, int j);
/* Seed of chain t's stack in chunk k. */
uint64_t codec_chain_seed(const codec_plan *plan, int64_t k, int t);
/* Most 32-bit words a chain of a chunk of n images can hold. */
size_t codec_chain_max_words(const codec_plan *plan, int n);

/* ---- lib/codec/bitsback.c -------------------------------------------------------- */
agave_status codec_core_init(codec_core *k, agave_model *m, const codec_plan *plan);
void codec_core_free(codec_core *k);
/* Starts a chunk: fresh stacks (encoder) seeded for chunk index. */
agave_status codec_core_start_chunk(codec_core *k, int64_t index);
/* Codes n images (n,C,H,W) onto the stacks: the encoder's batch. */
agave_status codec_encode_batch(codec_core *k, const uint8_t *x, int n);
/* Decodes the batch of n images on top of the stacks into k->x. */
agave_status codec_decode_batch(codec_core *k, int n);

/* ---- lib/codec/format.c ---------------------------------------------------------- */
#define CODEC_MAGIC "AGAVEAGZ"
#define CODEC_CHUNK_MAGIC "AGZC"
#define CODEC_VERSION 1
#define CODEC_HEADER_FIXED 90      /* header bytes before the environment text */
#define CODEC_HEADER_MAX (CODEC_HEADER_FIXED + CODEC_ENV_MAX + 4)

/* The header of plan into out (CODEC_HEADER_MAX bytes); returns its length. */
size_t codec_header_write(const codec_plan *plan, uint8_t *out);
/* Parses a header: first the CODEC_HEADER_FIXED bytes (*need receives the
 * whole header's length), then, called again with all of it, the rest.
 * Errors (format, version, checksum) on ctx, naming `what`. */
agave_status codec_header_read(agave_context *ctx, const char *what, const uint8_t *data,
                               size_t len, size_t *need, codec_plan *plan);

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#endif
