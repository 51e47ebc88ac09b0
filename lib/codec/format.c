/* The compressed file's header (docs/codec.md, "File format"). All integers
 * little-endian. */
#include <string.h>
#include <zlib.h>

#include "codec.h"

/* Field offsets of the fixed part. */
enum {
    AT_MAGIC = 0, AT_VERSION = 8, AT_LENGTH = 12, AT_HASH = 16, AT_COUNT = 24, AT_C = 32,
    AT_H = 36, AT_W = 40, AT_MODE = 44, AT_BATCH = 48, AT_CHUNK = 52, AT_THREADS = 56,
    AT_CHAINS = 60, AT_LATENT = 64, AT_LATENT_BITS = 68, AT_PIXEL_PREC = 72,
    AT_LATENT_PREC = 76, AT_FLAGS = 80, AT_ARITH = 84, AT_ENV_LEN = 88, AT_ENV = 90
};
_Static_assert(AT_ENV == CODEC_HEADER_FIXED, "the fixed part ends where the text begins");

#define FLAG_IMAGE_CRC 1u
#define ARITH_FP32 0u   /* every GEMM in float32 */

size_t codec_header_write(const codec_plan *plan, uint8_t *out)
{
    size_t env_len = strlen(plan->env), len = CODEC_HEADER_FIXED + env_len + 4;
    memset(out, 0, len);
    memcpy(out + AT_MAGIC, CODEC_MAGIC, 8);
    put_le32(out + AT_VERSION, CODEC_VERSION);
    put_le32(out + AT_LENGTH, (uint32_t)len);
    put_le64(out + AT_HASH, plan->model_hash);
    put_le64(out + AT_COUNT, (uint64_t)plan->n_images);
    put_le32(out + AT_C, (uint32_t)plan->C);
    put_le32(out + AT_H, (uint32_t)plan->H);
    put_le32(out + AT_W, (uint32_t)plan->W);
    put_le32(out + AT_MODE, (uint32_t)plan->mode);
    put_le32(out + AT_BATCH, (uint32_t)plan->batch);
    put_le32(out + AT_CHUNK, (uint32_t)plan->chunk);
    put_le32(out + AT_THREADS, (uint32_t)plan->threads);
    put_le32(out + AT_CHAINS, (uint32_t)plan->chains);
    put_le32(out + AT_LATENT, (uint32_t)plan->latent);
    put_le32(out + AT_LATENT_BITS, (uint32_t)plan->latent_bits);
    put_le32(out + AT_PIXEL_PREC, CODEC_PIXEL_PREC);
    put_le32(out + AT_LATENT_PREC, CODEC_LATENT_PREC);
    put_le32(out + AT_FLAGS, plan->image_crc ? FLAG_IMAGE_CRC : 0);
    put_le32(out + AT_ARITH, ARITH_FP32);
    out[AT_ENV_LEN] = (uint8_t)env_len, out[AT_ENV_LEN + 1] = (uint8_t)(env_len >> 8);
    memcpy(out + AT_ENV, plan->env, env_len);
    put_le32(out + len - 4, (uint32_t)crc32(0, out, (uInt)(len - 4)));
    return len;
}

/* The fixed part's own consistency, before the CRC can be checked. */
static agave_status fixed_part(agave_context *ctx, const char *what, const uint8_t *d,
                               size_t *need)
{
    if (memcmp(d + AT_MAGIC, CODEC_MAGIC, 8) != 0)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s is not a libagave compressed file (no "
                         "%s magic)", what, CODEC_MAGIC);
    uint32_t version = get_le32(d + AT_VERSION);
    if (version != CODEC_VERSION)
        return ctx_error(ctx, AGAVE_ERR_VERSION, "%s has format version %u; this library "
                         "reads version %d", what, version, CODEC_VERSION);
    size_t env_len = (size_t)d[AT_ENV_LEN] | (size_t)d[AT_ENV_LEN + 1] << 8;
    size_t len = get_le32(d + AT_LENGTH);
    if (env_len >= CODEC_ENV_MAX || len != CODEC_HEADER_FIXED + env_len + 4)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: header length %zu does not fit its "
                         "%zu-byte environment text", what, len, env_len);
    *need = len;
    return AGAVE_OK;
}

/* The fields, after the CRC matched. */
static agave_status fields(agave_context *ctx, const char *what, const uint8_t *d,
                           codec_plan *p)
{
    memset(p, 0, sizeof *p);
    p->model_hash = get_le64(d + AT_HASH);
    uint64_t count = get_le64(d + AT_COUNT);
    uint32_t C = get_le32(d + AT_C), H = get_le32(d + AT_H), W = get_le32(d + AT_W);
    uint32_t mode = get_le32(d + AT_MODE), batch = get_le32(d + AT_BATCH);
    uint32_t chunk = get_le32(d + AT_CHUNK), threads = get_le32(d + AT_THREADS);
    uint32_t chains = get_le32(d + AT_CHAINS), latent = get_le32(d + AT_LATENT);
    uint32_t bits = get_le32(d + AT_LATENT_BITS), flags = get_le32(d + AT_FLAGS);
    int ok = count <= (uint64_t)CODEC_MAX_IMAGES && (C == 1 || C == 3) && H >= 4 && H <= 4096 &&
             W >= 4 && W <= 4096 && H % 4 == 0 && W % 4 == 0 &&
             (mode == AGAVE_MODE_AGAVE || mode == AGAVE_MODE_NAIVE ||
              mode == AGAVE_MODE_PIXELCNN) &&
             batch >= 1 && batch <= CODEC_MAX_BATCH && chunk >= batch && chunk <= CODEC_MAX_CHUNK &&
             threads >= 1 && threads <= 1024 && chains >= 1 &&
             chains == (threads < batch ? threads : batch) &&
             (mode == AGAVE_MODE_PIXELCNN ? latent == 0 : latent >= 1) &&
             latent <= (uint32_t)(H / 4) * (W / 4) * 4096u && bits >= CODEC_MIN_LATENT_BITS &&
             bits <= CODEC_MAX_LATENT_BITS && get_le32(d + AT_PIXEL_PREC) == CODEC_PIXEL_PREC &&
             get_le32(d + AT_LATENT_PREC) == CODEC_LATENT_PREC && (flags & ~FLAG_IMAGE_CRC) == 0 &&
             get_le32(d + AT_ARITH) == ARITH_FP32;
    if (!ok)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s: the header's fields are out of range "
                         "(a file this library did not write)", what);
    p->n_images = (int64_t)count;
    p->C = (int)C, p->H = (int)H, p->W = (int)W;
    p->D = (size_t)C * H * W;
    p->mode = (agave_mode)mode;
    p->batch = (int)batch, p->chunk = (int)chunk, p->threads = (int)threads;
    p->chains = (int)chains, p->latent = latent, p->latent_bits = (int)bits;
    p->image_crc = (flags & FLAG_IMAGE_CRC) != 0;
    size_t env_len = (size_t)d[AT_ENV_LEN] | (size_t)d[AT_ENV_LEN + 1] << 8;
    memcpy(p->env, d + AT_ENV, env_len);
    p->env[env_len] = '\0';
    return AGAVE_OK;
}

agave_status codec_header_read(agave_context *ctx, const char *what, const uint8_t *data,
                               size_t len, size_t *need, codec_plan *plan)
{
    if (len < CODEC_HEADER_FIXED)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "%s is truncated: %zu bytes, shorter than a "
                         "header", what, len);
    agave_status st = fixed_part(ctx, what, data, need);
    if (st != AGAVE_OK || len < *need)
        return st;
    uint32_t stored = get_le32(data + *need - 4), crc = (uint32_t)crc32(0, data, (uInt)(*need - 4));
    if (stored != crc)
        return ctx_error(ctx, AGAVE_ERR_CHECKSUM, "%s: the header is damaged: CRC32 %08x does "
                         "not match the stored %08x", what, crc, stored);
    return fields(ctx, what, data, plan);
}
