/* Internal data layer: byte sources (plain files, gzip, memory), the IDX and
 * CIFAR-10 readers and the data set handle. Private to the library. */
#ifndef AGAVE_DATA_H
#define AGAVE_DATA_H

#include <stdio.h>
#include <zlib.h>

#include "../core/core.h"

/* ---- byte source: one input read front to back ------------------------------
 * Plain files, gzip files (one or more members) and memory buffers look the
 * same to the readers: src_read gives the next bytes of the decoded stream. */
#define SRC_INBUF 65536

typedef struct byte_source {
    agave_context *ctx;
    const char *name;        /* for messages: the path as the user gave it */
    FILE *file;              /* NULL for memory sources */
    const uint8_t *mem;      /* memory source: all bytes, and how many are left */
    size_t mem_left;
    uint64_t raw_size;       /* bytes of the file or buffer as stored */
    int gzip;                /* 1: decoded through zlib */
    int z_ready;             /* inflateInit2 succeeded: inflateEnd is due */
    int z_member_done;       /* the current gzip member ended (Z_STREAM_END) */
    int raw_eof;             /* no stored bytes left to feed zlib */
    z_stream z;
    uint8_t peek[8];         /* bytes read ahead by src_peek, served first */
    size_t peek_len, peek_pos;
    uint64_t decoded;        /* decoded bytes handed out so far */
    uint8_t *inbuf;          /* SRC_INBUF compressed bytes read from file */
} byte_source;

/* Opens path (regular files only; a FIFO or device is refused without blocking). */
agave_status src_open_file(byte_source *s, agave_context *ctx, const char *path);
/* A source over size bytes at data (not copied; must outlive the source). */
agave_status src_open_memory(byte_source *s, agave_context *ctx, const char *name,
                             const void *data, size_t size);
/* Reads up to n decoded bytes; *got < n only at the end of the stream. */
agave_status src_read(byte_source *s, void *dst, size_t n, size_t *got);
/* Reads up to n <= 8 bytes that the next src_read returns again. Only valid
 * before the first src_read. */
agave_status src_peek(byte_source *s, void *dst, size_t n, size_t *got);
/* 1 if the decoded size is known up front (plain file or memory). */
static inline int src_size_known(const byte_source *s) { return !s->gzip; }
void src_close(byte_source *s);

/* ---- pixel buffer: all images of a data set, grown as files are read ------- */
typedef struct pixel_buffer {
    uint8_t *bytes;
    size_t len, cap;
    uint64_t limit;          /* refuse to grow beyond this many bytes */
} pixel_buffer;

/* Makes room for `more` bytes after len. AGAVE_ERR_LIMIT past limit (message
 * naming `name`), AGAVE_ERR_NOMEM if malloc fails. */
agave_status pixels_reserve(pixel_buffer *pb, agave_context *ctx, const char *name,
                            uint64_t more);

/* ---- readers ---------------------------------------------------------------- */
typedef enum data_format { FORMAT_UNKNOWN = 0, FORMAT_IDX, FORMAT_CIFAR } data_format;

/* What one file held: images appended to the pixel buffer. */
typedef struct image_geometry {
    int channels, height, width;
    size_t count;
} image_geometry;

/* Format from a file name alone ("idx" in it, or *.bin / *.bin.gz), or UNKNOWN. */
data_format format_from_name(const char *path);
/* Reads a whole IDX image file / CIFAR-10 batch from s, appending to pb. */
agave_status idx_read(byte_source *s, pixel_buffer *pb, image_geometry *geo);
agave_status cifar_read(byte_source *s, pixel_buffer *pb, image_geometry *geo);
/* Reads s in the format its name or its first bytes say. */
agave_status read_any(byte_source *s, pixel_buffer *pb, image_geometry *geo);

/* ---- the data set handle ------------------------------------------------------ */
struct agave_dataset {
    agave_context *ctx;
    size_t count;
    int channels, height, width;
    size_t image_bytes;      /* channels * height * width */
    uint8_t *pixels;         /* (count,channels,height,width) */
    char *name_block;        /* image folders: the images' names, NUL-terminated, ... */
    size_t *name_at;         /* ... image i's at name_block + name_at[i]; NULL otherwise */
};

/* An empty pixel buffer with the data set limit. */
void pixels_init(pixel_buffer *pb);
/* Hands pb's bytes to a new data set of count images of geo's shape (pb no
 * longer owns them). */
agave_status dataset_from_pixels(agave_context *ctx, pixel_buffer *pb, const image_geometry *geo,
                                 size_t count, agave_dataset **out);

/* Opens one in-memory file as a data set (what the fuzzers drive); name picks
 * the format as a path would. */
agave_status dataset_open_memory(agave_context *ctx, const char *name, const void *data,
                                 size_t size, agave_dataset **out);

#endif
