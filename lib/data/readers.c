/* The two image formats. Each reader trusts nothing in a file: sizes are
 * checked against the limits before any allocation, against the file size
 * before reading (plain files), and against the decoded stream while reading
 * (gzip, where a lying header can only cost the memory of the data actually
 * present, never more than the stated limit).
 *
 * IDX (LeCun's MNIST format, big-endian):
 *   magic 00 00 08 03 (unsigned bytes, 3 dims), count, rows, cols (u32 each),
 *   then count*rows*cols pixels, row-major; or magic 00 00 08 04 (4 dims),
 *   count, channels (1 or 3), rows, cols, then the images channel plane by
 *   plane (NCHW: what agave-convert writes for colour images).
 * CIFAR-10 binary: records of 1 label byte (0..9) + 1024 R + 1024 G + 1024 B,
 *   each plane 32x32 row-major; no header, so the file size must be a
 *   multiple of 3073. */
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "image.h"

#define IDX_HEADER 16
#define IDX_HEADER_4D 20
#define IDX_IMAGE_MAGIC 0x00000803u
#define IDX_IMAGE4_MAGIC 0x00000804u   /* (count, channels 1 or 3, rows, cols): colour */
#define IDX_LABEL_MAGIC 0x00000801u
#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)   /* 3072 */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)               /* 3073 */
#define CIFAR_CLASSES 10
#define CIFAR_RECORDS_PER_READ 256
#define READ_CHUNK ((size_t)4 << 20)

typedef unsigned long long ull;

agave_status pixels_reserve(pixel_buffer *pb, agave_context *ctx, const char *name,
                            uint64_t more)
{
    uint64_t need = (uint64_t)pb->len + more;
    if (more > pb->limit || need > pb->limit || need > SIZE_MAX)
        return ctx_error(ctx, AGAVE_ERR_LIMIT,
                         "%s: the images would need more than %llu bytes in memory "
                         "(the data set limit)",
                         name, (ull)pb->limit);
    if (need <= pb->cap)
        return AGAVE_OK;
    /* Geometric growth so a stream read in chunks costs O(n) copies. */
    uint64_t cap = (uint64_t)pb->cap + pb->cap / 2;
    if (cap < need)
        cap = need;
    if (cap > pb->limit)
        cap = pb->limit;
    uint8_t *bytes = realloc(pb->bytes, (size_t)cap);
    if (!bytes)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "%s: out of memory for %llu bytes of images",
                         name, (ull)cap);
    pb->bytes = bytes;
    pb->cap = (size_t)cap;
    return AGAVE_OK;
}

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

data_format format_from_name(const char *path)
{
    char base[256];
    snprintf(base, sizeof base, "%s", base_name(path));
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".gz") == 0)
        base[n -= 3] = '\0';
    if (strstr(base, "idx"))
        return FORMAT_IDX;
    if (n > 4 && strcmp(base + n - 4, ".bin") == 0)
        return FORMAT_CIFAR;
    return FORMAT_UNKNOWN;
}

/* Reads exactly n decoded bytes into pb (growing it chunk by chunk, so a
 * gzip stream that ends early never made us allocate what its header
 * promised). *got < n means the stream ended first. */
static agave_status read_pixels(byte_source *s, pixel_buffer *pb, uint64_t n, uint64_t *got)
{
    *got = 0;
    while (*got < n) {
        uint64_t left = n - *got;
        size_t chunk = left < READ_CHUNK ? (size_t)left : READ_CHUNK;
        agave_status st = pixels_reserve(pb, s->ctx, s->name, chunk);
        if (st != AGAVE_OK)
            return st;
        size_t k;
        if ((st = src_read(s, pb->bytes + pb->len, chunk, &k)) != AGAVE_OK)
            return st;
        pb->len += k;
        *got += k;
        if (k < chunk)
            break;
    }
    return AGAVE_OK;
}

/* ---- IDX ----------------------------------------------------------------- */

static agave_status idx_check_magic(byte_source *s, const uint8_t *head)
{
    uint32_t magic = read_be32(head);
    if (magic == IDX_IMAGE_MAGIC || magic == IDX_IMAGE4_MAGIC)
        return AGAVE_OK;
    if (magic == IDX_LABEL_MAGIC)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: an IDX label file (magic 0x%08x), not images: expected magic "
                         "0x%08x; use the matching *-images-idx3-ubyte file",
                         s->name, magic, IDX_IMAGE_MAGIC);
    if (head[0] == 0 && head[1] == 0)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: unsupported IDX file (magic 0x%08x: element type 0x%02x, %u "
                         "dimensions): expected magic 0x%08x (unsigned bytes, 3 dimensions) "
                         "or 0x%08x (4 dimensions, colour)",
                         s->name, magic, head[2], head[3], IDX_IMAGE_MAGIC, IDX_IMAGE4_MAGIC);
    return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                     "%s: not an IDX image file: magic number 0x%08x, expected 0x%08x",
                     s->name, magic, IDX_IMAGE_MAGIC);
}

/* What an IDX header says. */
typedef struct idx_header {
    uint32_t count, channels, rows, cols;
    uint64_t length;         /* bytes of the header: 16, or 20 with 4 dimensions */
} idx_header;

/* "28x28", or "3x32x32" for a file of 4 dimensions. */
static const char *idx_shape(const idx_header *h, char *buf, size_t len)
{
    if (h->length == IDX_HEADER)
        snprintf(buf, len, "%ux%u", h->rows, h->cols);
    else
        snprintf(buf, len, "%ux%ux%u", h->channels, h->rows, h->cols);
    return buf;
}

/* Validates the dimensions; *payload gets the pixel bytes they promise. */
static agave_status idx_check_dims(byte_source *s, const pixel_buffer *pb, const idx_header *h,
                                   uint64_t *payload)
{
    char shape[48];
    if (h->count == 0)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT, "%s: holds zero images (header count 0)",
                         s->name);
    if (h->channels != 1 && h->channels != 3)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: %u channels in the header; expected 1 or 3", s->name, h->channels);
    if (h->rows == 0 || h->cols == 0 || h->rows > AGAVE_DATASET_MAX_SIDE ||
        h->cols > AGAVE_DATASET_MAX_SIDE)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: image size %ux%u in the header is out of range "
                         "(1..%d on each side)",
                         s->name, h->rows, h->cols, AGAVE_DATASET_MAX_SIDE);
    /* count < 2^32 and channels*rows*cols < 2^34: the product fits in 64 bits. */
    *payload = (uint64_t)h->count * ((uint64_t)h->channels * h->rows * h->cols);
    if (*payload > pb->limit - pb->len)
        return ctx_error(s->ctx, AGAVE_ERR_LIMIT,
                         "%s: header promises %u images of %s (%llu bytes), more than the "
                         "data set limit of %llu bytes",
                         s->name, h->count, idx_shape(h, shape, sizeof shape), (ull)*payload,
                         (ull)pb->limit);
    if (src_size_known(s) && s->raw_size != h->length + *payload)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: %s: header promises %u images of %s, %llu bytes with the "
                         "header, but the file has %llu bytes",
                         s->name, s->raw_size < h->length + *payload ? "truncated"
                                                                      : "trailing bytes",
                         h->count, idx_shape(h, shape, sizeof shape),
                         (ull)(h->length + *payload), (ull)s->raw_size);
    return AGAVE_OK;
}

/* One more byte after the promised data means the file is not what it says. */
static agave_status check_at_end(byte_source *s, const char *what)
{
    uint8_t extra;
    size_t k;
    agave_status st = src_read(s, &extra, 1, &k);
    if (st != AGAVE_OK)
        return st;
    if (k != 0)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: trailing bytes: more data after the %llu bytes %s",
                         s->name, (ull)(s->decoded - 1), what);
    return AGAVE_OK;
}

/* The header after the magic: 12 or 16 more bytes. */
static agave_status idx_read_header(byte_source *s, const uint8_t *magic, idx_header *h)
{
    uint8_t head[IDX_HEADER_4D];
    int four = read_be32(magic) == IDX_IMAGE4_MAGIC;
    h->length = four ? IDX_HEADER_4D : IDX_HEADER;
    size_t got;
    agave_status st = src_read(s, head, (size_t)h->length - 4, &got);
    if (st != AGAVE_OK)
        return st;
    if (got < h->length - 4)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: truncated IDX header: %zu bytes, expected %llu", s->name, got + 4,
                         (ull)h->length);
    h->count = read_be32(head);
    h->channels = four ? read_be32(head + 4) : 1;
    h->rows = read_be32(head + (four ? 8 : 4));
    h->cols = read_be32(head + (four ? 12 : 8));
    return AGAVE_OK;
}

agave_status idx_read(byte_source *s, pixel_buffer *pb, image_geometry *geo)
{
    uint8_t magic[4];
    size_t got;
    agave_status st = src_read(s, magic, 4, &got);
    if (st != AGAVE_OK)
        return st;
    if (got < 4)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: truncated IDX header: %zu bytes, expected at least 4", s->name, got);
    if ((st = idx_check_magic(s, magic)) != AGAVE_OK)
        return st;
    idx_header h = {0, 0, 0, 0, 0};
    if ((st = idx_read_header(s, magic, &h)) != AGAVE_OK)
        return st;
    uint64_t payload = 0, read = 0;
    char shape[48];
    if ((st = idx_check_dims(s, pb, &h, &payload)) != AGAVE_OK)
        return st;
    if ((st = read_pixels(s, pb, payload, &read)) != AGAVE_OK)
        return st;
    if (read < payload)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: truncated: header promises %u images of %s (%llu pixel bytes) "
                         "but the data ends after %llu",
                         s->name, h.count, idx_shape(&h, shape, sizeof shape), (ull)payload,
                         (ull)read);
    if ((st = check_at_end(s, "the header promises")) != AGAVE_OK)
        return st;
    geo->channels = (int)h.channels;
    geo->height = (int)h.rows;
    geo->width = (int)h.cols;
    geo->count = h.count;
    return AGAVE_OK;
}

/* ---- CIFAR-10 ------------------------------------------------------------- */

/* Plain files: the size alone says whether the records fit, before reading. */
static agave_status cifar_check_size(byte_source *s, const pixel_buffer *pb)
{
    if (!src_size_known(s))
        return AGAVE_OK;
    if (s->raw_size == 0)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT, "%s: empty file: no CIFAR-10 records",
                         s->name);
    if (s->raw_size % CIFAR_RECORD != 0)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: %llu bytes is not a whole number of CIFAR-10 records of %d bytes "
                         "(1 label + %d pixels): %llu records and %llu bytes over",
                         s->name, (ull)s->raw_size, CIFAR_RECORD, CIFAR_PIXELS,
                         (ull)(s->raw_size / CIFAR_RECORD), (ull)(s->raw_size % CIFAR_RECORD));
    uint64_t pixels = s->raw_size / CIFAR_RECORD * CIFAR_PIXELS;
    if (pixels > pb->limit - pb->len)
        return ctx_error(s->ctx, AGAVE_ERR_LIMIT,
                         "%s: %llu records need %llu bytes, more than the data set limit of "
                         "%llu bytes",
                         s->name, (ull)(s->raw_size / CIFAR_RECORD), (ull)pixels, (ull)pb->limit);
    return AGAVE_OK;
}

/* Checks the labels of n records in rec and appends their pixels to pb. */
static agave_status cifar_take_records(byte_source *s, pixel_buffer *pb, const uint8_t *rec,
                                       size_t n, uint64_t first_record)
{
    for (size_t r = 0; r < n; r++) {
        uint8_t label = rec[r * CIFAR_RECORD];
        if (label >= CIFAR_CLASSES)
            return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                             "%s: record %llu (byte offset %llu) has label %u, expected 0..%d",
                             s->name, (ull)(first_record + r),
                             (ull)((first_record + r) * CIFAR_RECORD), label, CIFAR_CLASSES - 1);
    }
    agave_status st = pixels_reserve(pb, s->ctx, s->name, (uint64_t)n * CIFAR_PIXELS);
    if (st != AGAVE_OK)
        return st;
    for (size_t r = 0; r < n; r++)
        memcpy(pb->bytes + pb->len + r * CIFAR_PIXELS, rec + r * CIFAR_RECORD + 1, CIFAR_PIXELS);
    pb->len += n * CIFAR_PIXELS;
    return AGAVE_OK;
}

/* Reads records in groups until the stream ends; *records counts them. */
static agave_status cifar_read_records(byte_source *s, pixel_buffer *pb, uint8_t *rec,
                                       uint64_t *records)
{
    const size_t group = (size_t)CIFAR_RECORDS_PER_READ * CIFAR_RECORD;
    for (;;) {
        size_t got;
        agave_status st = src_read(s, rec, group, &got);
        if (st != AGAVE_OK)
            return st;
        if (got % CIFAR_RECORD != 0)
            return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                             "%s: %llu decoded bytes is not a whole number of CIFAR-10 records "
                             "of %d bytes (1 label + %d pixels): the last record has %zu",
                             s->name, (ull)s->decoded, CIFAR_RECORD, CIFAR_PIXELS,
                             got % CIFAR_RECORD);
        size_t n = got / CIFAR_RECORD;
        if ((st = cifar_take_records(s, pb, rec, n, *records)) != AGAVE_OK)
            return st;
        *records += n;
        if (got < group)
            return AGAVE_OK;
    }
}

agave_status cifar_read(byte_source *s, pixel_buffer *pb, image_geometry *geo)
{
    agave_status st = cifar_check_size(s, pb);
    if (st != AGAVE_OK)
        return st;
    uint8_t *rec = malloc((size_t)CIFAR_RECORDS_PER_READ * CIFAR_RECORD);
    if (!rec)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "%s: out of memory for a read buffer",
                         s->name);
    uint64_t records = 0;
    st = cifar_read_records(s, pb, rec, &records);
    free(rec);
    if (st != AGAVE_OK)
        return st;
    if (records == 0)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT, "%s: no CIFAR-10 records (empty stream)",
                         s->name);
    geo->channels = 3;
    geo->height = CIFAR_SIDE;
    geo->width = CIFAR_SIDE;
    geo->count = (size_t)records;
    return AGAVE_OK;
}

/* ---- either ----------------------------------------------------------------- */

/* An image file where a data file was expected (a PNG passed as a CIFAR-10
 * batch) is named as what it is, not as a file of the wrong size. */
static agave_status refuse_image(byte_source *s, data_format format, const uint8_t *head,
                                 size_t got)
{
    image_kind kind = image_kind_of(head, got);
    if (kind == IMAGE_NONE)
        return AGAVE_OK;
    return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                     "%s: a %s image, not %s: image files are read from a folder (open the "
                     "folder that holds them; docs/data.md)",
                     s->name, image_kind_name(kind),
                     format == FORMAT_IDX     ? "an IDX file"
                     : format == FORMAT_CIFAR ? "a CIFAR-10 batch"
                                              : "a CIFAR-10 batch or an IDX file");
}

agave_status read_any(byte_source *s, pixel_buffer *pb, image_geometry *geo)
{
    data_format format = format_from_name(s->name);
    uint8_t head[8];
    size_t got;
    agave_status st = src_peek(s, head, sizeof head, &got);
    if (st == AGAVE_OK)
        st = refuse_image(s, format, head, got);
    if (st != AGAVE_OK)
        return st;
    if (format == FORMAT_UNKNOWN) {
        /* No telling name: an IDX file of bytes starts 00 00 08 <1..4 dims>; CIFAR-10
         * has no magic (a record would need label 0 and red pixels 0, 8, 1..4). */
        int idx_like = got >= 4 && head[0] == 0 && head[1] == 0 && head[2] == 0x08 &&
                       head[3] >= 1 && head[3] <= 4;
        format = idx_like ? FORMAT_IDX : FORMAT_CIFAR;
    }
    return format == FORMAT_IDX ? idx_read(s, pb, geo) : cifar_read(s, pb, geo);
}
