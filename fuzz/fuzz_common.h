/* Shared by the libFuzzer harnesses (fuzz/fuzz_*.c) and fuzz/replay.c.
 *
 * The data harnesses (IDX, CIFAR-10) read their first input byte as a control
 * byte and the rest as a file. The control byte says how the file reaches
 * the reader, so that one corpus explores the plain reader, the gzip decoder
 * and the format guessing:
 *   bits 0-1  0, 3: the bytes as they are (a seed may itself be a gzip file)
 *             1: gzip-compressed here, one member (the fuzzer then mutates
 *                the decoded content, which it could not do through a CRC)
 *             2: gzip-compressed here as two members, split at a point
 *                taken from the second byte of the file
 *   bit  2    the name ends in ".gz" (the reader then insists on gzip)
 *   bit  3    a name without a format hint: the reader guesses from content
 *   bits 4-7  the deflate level (0-9; 10-15 mean 9): level 0 gives stored
 *             blocks, the others real Huffman streams
 * The harness builds that name and those bytes and hands them to
 * dataset_open_memory (lib/data/data.h), the same code path as a file opened
 * through agave_dataset_open_files. With FUZZ_DUMP=path in the environment it
 * also writes the bytes the reader saw (and prints the name), which is how a
 * crashing input becomes a regression file in tests/regress/.
 *
 * Every harness checks the library's promises, not only "no crash": a known
 * status, a message on every error, no handle on error, and on success a
 * data set whose every byte can be read (AddressSanitizer checks the reads).
 * A broken promise calls __builtin_trap(), which libFuzzer reports as a crash. */
#ifndef AGAVE_FUZZ_COMMON_H
#define AGAVE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "agave.h"
#include "data/data.h"

/* A library promise was broken: libFuzzer (or replay) reports it as a crash
 * with this line on stderr. */
#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz: promise broken at %s:%d: %s\n", __FILE__, __LINE__,     \
                    #cond);                                                                \
            __builtin_trap();                                                              \
        }                                                                                  \
    } while (0)

/* Status values are pinned 0..AGAVE_ERR_INTERRUPTED. */
static inline int fuzz_status_known(agave_status st)
{
    return (int)st >= AGAVE_OK && (int)st <= AGAVE_ERR_INTERRUPTED;
}

/* After a call that returned st on ctx: a known status, and an error comes
 * with a message a user can read. */
static inline void fuzz_check_status(agave_context *ctx, agave_status st)
{
    FUZZ_CHECK(fuzz_status_known(st));
    if (st != AGAVE_OK)
        FUZZ_CHECK(agave_context_last_error(ctx)[0] != '\0');
}

/* Appends the gzip member of n bytes at src to *dst (grown with realloc). */
static inline int fuzz_gzip_append(uint8_t **dst, size_t *len, const uint8_t *src, size_t n,
                                   int level)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* 16 + MAX_WBITS: gzip framing, as the data files use. */
    if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    size_t bound = deflateBound(&z, (uLong)n) + 64;
    uint8_t *p = realloc(*dst, *len + bound);
    if (!p) {
        deflateEnd(&z);
        return 0;
    }
    *dst = p;
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)n;
    z.next_out = p + *len;
    z.avail_out = (uInt)bound;
    int ret = deflate(&z, Z_FINISH);
    *len += bound - z.avail_out;
    deflateEnd(&z);
    return ret == Z_STREAM_END;
}

/* The file one data input stands for: its name and bytes (owned when
 * `owned` is set). */
typedef struct fuzz_file {
    char name[64];
    const uint8_t *bytes;
    size_t len;
    uint8_t *owned;
} fuzz_file;

/* Decodes the control byte (above). base is the name with a format hint
 * ("x-images-idx3-ubyte", "x.bin"); 0 if the input is empty or zlib failed. */
static inline int fuzz_make_file(const uint8_t *data, size_t size, const char *base,
                                 fuzz_file *f)
{
    memset(f, 0, sizeof *f);
    if (size == 0)
        return 0;
    unsigned ctl = data[0];
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    snprintf(f->name, sizeof f->name, "%s%s", (ctl & 8) ? "fuzz-input" : base,
             (ctl & 4) ? ".gz" : "");
    int level = (int)(ctl >> 4) > 9 ? 9 : (int)(ctl >> 4);
    switch (ctl & 3) {
    case 1:
        if (!fuzz_gzip_append(&f->owned, &f->len, body, n, level))
            return 0;
        break;
    case 2: {
        size_t cut = n > 1 ? (size_t)body[0] * n / 256 : 0;
        if (!fuzz_gzip_append(&f->owned, &f->len, body, cut, level) ||
            !fuzz_gzip_append(&f->owned, &f->len, body + cut, n - cut, level))
            return 0;
        break;
    }
    default:
        f->bytes = body;
        f->len = n;
        return 1;
    }
    f->bytes = f->owned;
    return 1;
}

/* FUZZ_DUMP=path: the reader's view of the input, for tests/regress/. */
static inline void fuzz_dump(const char *name, const void *bytes, size_t len)
{
    const char *path = getenv("FUZZ_DUMP");
    if (!path)
        return;
    FILE *out = fopen(path, "wb");
    if (out) {
        fwrite(bytes, 1, len, out);
        fclose(out);
    }
    fprintf(stderr, "fuzz: reader input (%zu bytes, named %s) written to %s\n", len, name, path);
}

/* Opens one data input through the reader and checks every promise. */
static inline void fuzz_data_input(agave_context *ctx, const uint8_t *data, size_t size,
                                   const char *base)
{
    fuzz_file f;
    if (!fuzz_make_file(data, size, base, &f))
        return;
    fuzz_dump(f.name, f.bytes, f.len);
    agave_dataset *ds = (agave_dataset *)(uintptr_t)1;   /* must be reset to NULL */
    /* A zero-length file is a valid (empty) input: any non-NULL pointer will do. */
    static const uint8_t none[1];
    agave_status st = dataset_open_memory(ctx, f.name, f.len ? f.bytes : none, f.len, &ds);
    fuzz_check_status(ctx, st);
    if (st != AGAVE_OK) {
        FUZZ_CHECK(ds == NULL);
    } else {
        size_t count = agave_dataset_count(ds);
        int c = agave_dataset_channels(ds), h = agave_dataset_height(ds),
            w = agave_dataset_width(ds);
        FUZZ_CHECK(count >= 1 && (c == 1 || c == 3) && h >= 1 && w >= 1);
        FUZZ_CHECK(h <= AGAVE_DATASET_MAX_SIDE && w <= AGAVE_DATASET_MAX_SIDE);
        size_t bytes = count * (size_t)c * (size_t)h * (size_t)w;
        FUZZ_CHECK(bytes <= AGAVE_DATASET_MAX_BYTES);
        /* Every pixel is readable (ASan) and the last image can be copied. */
        const uint8_t *px = agave_dataset_pixels(ds);
        unsigned sum = 0;
        for (size_t i = 0; i < bytes; i++)
            sum += px[i];
        uint8_t *one = malloc(bytes / count);
        FUZZ_CHECK(one != NULL);
        FUZZ_CHECK(agave_dataset_copy_images(ds, count - 1, 1, one) == AGAVE_OK);
        FUZZ_CHECK(agave_dataset_copy_images(ds, count, 1, one) == AGAVE_ERR_INVALID_ARG);
        /* A plain IDX file of this shape has exactly this size. */
        if (c == 1 && f.len >= 2 && !(f.bytes[0] == 0x1f && f.bytes[1] == 0x8b))
            FUZZ_CHECK(f.len == 16 + bytes);
        /* A batch of 3 from it: the batcher reads the pixels too. */
        agave_batcher *b = NULL;
        uint8_t *batch = malloc(3 * (bytes / count));
        FUZZ_CHECK(batch != NULL);
        FUZZ_CHECK(agave_batcher_create(ctx, ds, 3, sum, 0, AGAVE_SUBSET_FIRST, &b) ==
                   AGAVE_OK);
        FUZZ_CHECK(agave_batcher_next(b, batch, NULL) == AGAVE_OK);
        agave_batcher_free(b);
        free(batch);
        free(one);
        agave_dataset_free(ds);
    }
    free(f.owned);
}

#endif
