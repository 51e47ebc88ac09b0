/* libFuzzer harness: the codec's decoder (agave_codec_decode and the
 * streaming agave_codec_decoder_*), on a fixed micro model
 * (fuzz/codec_model.h).
 *
 * The input is a control byte and a compressed file:
 *   bit 0  repair the CRCs first (the header's and every chunk's, found by
 *          walking the chunks' framing): a mutation almost never keeps a CRC
 *          valid, and this lets it reach the bits-back decoding itself;
 *   bit 1  decode through the streaming decoder, reading 1 to 7 bytes at a
 *          time, instead of agave_codec_decode.
 * Promises checked: a known status, a message on every error, no images
 * reported on error; and on success, the decoded images compress back to
 * exactly the input (encoding is deterministic and decoding inverts it, so a
 * file the decoder accepts is the one the encoder writes for its images).
 * Seeds: fuzz/make_corpus.c. Run: make fuzz (docs/reliability.md). */
#include <zlib.h>

#include "codec_model.h"
#include "fuzz_common.h"

static agave_context *ctx;
static agave_model *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_crc(uint8_t *p, const uint8_t *from, size_t len)
{
    uint32_t c = (uint32_t)crc32(0, from, (uInt)len);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(c >> (8 * i));
}

/* docs/codec.md's layout: the header's CRC, then chunk after chunk. */
static void repair(uint8_t *b, size_t len)
{
    if (len < 94)
        return;
    size_t header = le32(b + 12);
    if (header < 94 || header > len)
        return;
    put_crc(b + header - 4, b, header - 4);
    int image_crc = le32(b + 80) & 1;
    size_t at = header;
    while (at + 16 <= len) {
        uint64_t n = le32(b + at + 8), chains = le32(b + at + 12);
        uint64_t need = 16 + 12 * chains + 4 + (image_crc ? 4 * n : 0);
        if (chains > 4096 || at + need > len)
            return;
        for (uint64_t t = 0; t < chains; t++)
            need += 4ull * le32(b + at + 16 + 12 * t + 8);
        need += 4;
        if (need > len - at)
            return;
        put_crc(b + at + need - 4, b + at, (size_t)need - 4);
        at += need;
    }
}

typedef struct trickle { const uint8_t *p; size_t len, at; unsigned step; } trickle;

static agave_status trickle_read(void *buf, size_t len, size_t *got, void *user)
{
    trickle *t = user;
    size_t n = 1 + t->step++ % 7;
    n = n < len ? n : len;
    n = n < t->len - t->at ? n : t->len - t->at;
    memcpy(buf, t->p + t->at, n);
    t->at += n;
    *got = n;
    return AGAVE_OK;
}

/* The streaming decoder over the whole input; the images in x. */
static agave_status decode_streaming(const uint8_t *b, size_t len, uint8_t *x, int64_t *n)
{
    trickle t = {b, len, 0, 0};
    agave_codec_decoder *d = (agave_codec_decoder *)(uintptr_t)1;
    agave_status st = agave_codec_decoder_create(model, NULL, trickle_read, &t, &d);
    *n = 0;
    if (st != AGAVE_OK) {
        FUZZ_CHECK(d == NULL);
        return st;
    }
    int got = 1;
    while (st == AGAVE_OK && got > 0) {
        int room = FUZZ_CODEC_MAX_IMAGES - (int)*n;
        st = agave_codec_decoder_read(d, x + *n * 64, room > 0 ? room : 1, &got);
        if (st == AGAVE_OK && got > 0 && room <= 0)
            st = AGAVE_ERR_LIMIT;   /* more images than this harness has room for */
        *n += st == AGAVE_OK ? got : 0;
    }
    agave_codec_decoder_free(d);
    return st;
}

/* A file the decoder accepted is exactly what the encoder writes. */
static void check_reencodes(const uint8_t *b, size_t len, const uint8_t *x, int64_t n)
{
    agave_codec_info info = {.struct_size = sizeof info};
    FUZZ_CHECK(agave_codec_peek(ctx, b, len, &info) == AGAVE_OK);
    FUZZ_CHECK(info.n_images == n);
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.batch = info.batch, opt.chunk = info.chunk, opt.latent_bits = info.latent_bits;
    opt.image_crc = info.image_crc;
    uint8_t *again = malloc(len);
    size_t size = 0;
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(agave_codec_encode(model, &opt, x, n, again, len, &size) == AGAVE_OK);
    FUZZ_CHECK(size == len && memcmp(again, b, len) == 0);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx && (agave_context_create(&ctx, 1) != AGAVE_OK || !(model = fuzz_codec_model(ctx))))
        __builtin_trap();
    if (size == 0)
        return 0;
    unsigned ctl = data[0];
    size_t len = size - 1;
    uint8_t *b = malloc(len ? len : 1), *x = malloc(FUZZ_CODEC_MAX_IMAGES * 64);
    FUZZ_CHECK(b && x);
    memcpy(b, data + 1, len);
    if (ctl & 1)
        repair(b, len);
    fuzz_dump("fuzz.agz", b, len);
    int64_t n = -1;
    agave_status st = (ctl & 2) ? decode_streaming(b, len, x, &n)
                                : agave_codec_decode(model, b, len, x, FUZZ_CODEC_MAX_IMAGES, &n);
    fuzz_check_status(ctx, st);
    if (st != AGAVE_OK)
        FUZZ_CHECK((ctl & 2) || n == 0);
    else
        check_reencodes(b, len, x, n);
    free(b), free(x);
    return 0;
}
