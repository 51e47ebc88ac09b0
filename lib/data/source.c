/* Byte sources: a plain file, a gzip file or a memory buffer, read front to
 * back. The readers never see the difference, and every failure (a read error,
 * a corrupt or truncated gzip stream, bytes after the last gzip member) comes
 * back as a status with the file's name in the context's message. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

static int name_ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

/* Stored (not decoded) bytes: from the file or the memory buffer. */
static agave_status raw_read(byte_source *s, uint8_t *dst, size_t n, size_t *got)
{
    if (!s->file) {
        size_t k = n < s->mem_left ? n : s->mem_left;
        memcpy(dst, s->mem, k);
        s->mem += k;
        s->mem_left -= k;
        *got = k;
        return AGAVE_OK;
    }
    *got = fread(dst, 1, n, s->file);
    if (*got < n && ferror(s->file)) {
        char why[128];
        return ctx_error(s->ctx, AGAVE_ERR_IO, "%s: read error: %s", s->name,
                         errno_text(errno, why, sizeof why));
    }
    return AGAVE_OK;
}

/* Looks at the first two stored bytes: gzip (1f 8b) is decoded through zlib.
 * A name ending in .gz must be gzip, so a mislabelled file is named as such
 * rather than failing later as a bad IDX or CIFAR file. */
static agave_status detect_gzip(byte_source *s)
{
    uint8_t magic[2] = {0, 0};
    size_t got = 0;
    if (s->file) {
        got = fread(magic, 1, 2, s->file);
        if (ferror(s->file) || fseek(s->file, 0, SEEK_SET) != 0) {
            char why[128];
            return ctx_error(s->ctx, AGAVE_ERR_IO, "%s: read error: %s", s->name,
                             errno_text(errno, why, sizeof why));
        }
    } else {
        got = s->mem_left < 2 ? s->mem_left : 2;
        memcpy(magic, s->mem, got);
    }
    s->gzip = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!s->gzip && name_ends_with(s->name, ".gz"))
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: named .gz but not gzip: expected the bytes 1f 8b, found %s",
                         s->name, got == 0 ? "an empty file" : "other bytes");
    if (!s->gzip)
        return AGAVE_OK;
    s->inbuf = malloc(SRC_INBUF);
    if (!s->inbuf)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "%s: out of memory for the gzip buffer",
                         s->name);
    /* 16 + MAX_WBITS: gzip framing only, with its CRC-32 and length checked. */
    if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
        return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "%s: cannot start the gzip decoder",
                         s->name);
    s->z_ready = 1;
    return AGAVE_OK;
}

agave_status src_open_file(byte_source *s, agave_context *ctx, const char *path)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->name = path;
    char why[128];
    int fd;
    uint64_t size;
    agave_status st = file_open_regular(ctx, "", path, 0, &fd, &size);
    if (st != AGAVE_OK)
        return st;
    s->file = fdopen(fd, "rb");
    if (!s->file) {
        int err = errno;
        close(fd);
        return ctx_error(ctx, AGAVE_ERR_IO, "%s: cannot open: %s", path,
                         errno_text(err, why, sizeof why));
    }
    s->raw_size = size;
    return detect_gzip(s);
}

agave_status src_open_memory(byte_source *s, agave_context *ctx, const char *name,
                             const void *data, size_t size)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->name = name;
    s->mem = data;
    s->mem_left = data ? size : 0;
    s->raw_size = s->mem_left;
    return detect_gzip(s);
}

void src_close(byte_source *s)
{
    if (s->z_ready)
        inflateEnd(&s->z);
    if (s->file)
        fclose(s->file);
    free(s->inbuf);
    memset(s, 0, sizeof *s);
}

/* Offset of the next compressed byte zlib will look at, for messages. */
static uint64_t raw_offset(const byte_source *s)
{
    uint64_t fed = s->file ? (uint64_t)ftello(s->file) : s->raw_size - s->mem_left;
    return fed - s->z.avail_in;
}

/* Feeds zlib when its input is used up; sets raw_eof at the end of the file. */
static agave_status gz_refill(byte_source *s)
{
    if (s->z.avail_in > 0 || s->raw_eof)
        return AGAVE_OK;
    size_t got;
    agave_status st = raw_read(s, s->inbuf, SRC_INBUF, &got);
    if (st != AGAVE_OK)
        return st;
    s->z.next_in = s->inbuf;
    s->z.avail_in = (uInt)got;
    s->raw_eof = got == 0;
    return AGAVE_OK;
}

/* After a member ends: the stream is over, or another member starts (gzip
 * allows concatenation), or junk follows, which is refused. */
static agave_status gz_next_member(byte_source *s, int *at_end)
{
    *at_end = 0;
    agave_status st = gz_refill(s);
    if (st != AGAVE_OK)
        return st;
    if (s->z.avail_in == 0) {
        *at_end = 1;
        return AGAVE_OK;
    }
    if (s->z.next_in[0] != 0x1f)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                         "%s: unexpected bytes after the end of the gzip stream "
                         "(at compressed offset %llu)",
                         s->name, (unsigned long long)raw_offset(s));
    if (inflateReset(&s->z) != Z_OK)
        return ctx_error(s->ctx, AGAVE_ERR_FORMAT, "%s: cannot restart the gzip decoder",
                         s->name);
    s->z_member_done = 0;
    return AGAVE_OK;
}

static agave_status gz_read(byte_source *s, uint8_t *dst, size_t n, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        agave_status st;
        if (s->z_member_done) {
            int at_end;
            if ((st = gz_next_member(s, &at_end)) != AGAVE_OK)
                return st;
            if (at_end)
                break;
        }
        if ((st = gz_refill(s)) != AGAVE_OK)
            return st;
        size_t want = n - done;
        uInt chunk = want > UINT_MAX ? UINT_MAX : (uInt)want;
        s->z.next_out = dst + done;
        s->z.avail_out = chunk;
        int ret = inflate(&s->z, Z_NO_FLUSH);
        done += chunk - s->z.avail_out;
        switch (ret) {
        case Z_OK:
            break;
        case Z_STREAM_END:
            s->z_member_done = 1;
            break;
        case Z_BUF_ERROR:
            /* No progress possible: only an error once the file is used up. */
            if (s->z.avail_in == 0 && s->raw_eof)
                return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                                 "%s: truncated gzip stream: the file ends after %llu bytes, "
                                 "before the end of the compressed data",
                                 s->name, (unsigned long long)s->raw_size);
            break;
        case Z_MEM_ERROR:
            return ctx_error(s->ctx, AGAVE_ERR_NOMEM, "%s: out of memory in the gzip decoder",
                             s->name);
        default:
            return ctx_error(s->ctx, AGAVE_ERR_FORMAT,
                             "%s: corrupt gzip stream near compressed offset %llu: %s",
                             s->name, (unsigned long long)raw_offset(s),
                             s->z.msg ? s->z.msg : "invalid data");
        }
    }
    *got = done;
    return AGAVE_OK;
}

agave_status src_read(byte_source *s, void *dst, size_t n, size_t *got)
{
    uint8_t *out = dst;
    size_t from_peek = s->peek_len - s->peek_pos;
    if (from_peek > n)
        from_peek = n;
    memcpy(out, s->peek + s->peek_pos, from_peek);
    s->peek_pos += from_peek;
    size_t rest = 0;
    agave_status st = AGAVE_OK;
    if (n > from_peek)
        st = s->gzip ? gz_read(s, out + from_peek, n - from_peek, &rest)
                     : raw_read(s, out + from_peek, n - from_peek, &rest);
    *got = from_peek + rest;
    s->decoded += *got;
    return st;
}

agave_status src_peek(byte_source *s, void *dst, size_t n, size_t *got)
{
    *got = 0;
    if (n > sizeof s->peek || s->decoded != 0)
        return ctx_error(s->ctx, AGAVE_ERR_STATE, "%s: internal: peek after reading", s->name);
    agave_status st = src_read(s, s->peek, n, got);
    if (st != AGAVE_OK)
        return st;
    memcpy(dst, s->peek, *got);
    s->peek_len = *got;
    s->peek_pos = 0;
    s->decoded = 0;
    return AGAVE_OK;
}
