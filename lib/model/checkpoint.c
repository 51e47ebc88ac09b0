/* Checkpoints: a versioned, checksummed little-endian file (docs/checkpoint.md)
 * holding the configuration, parameters, optimiser state, averaged parameters,
 * step counts and the random state. Written with file_write_atomic, so a
 * crash leaves the old file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "config.h"
#include "model.h"
#include "checkpoint.h"

#define CKPT_MAGIC "AGAVECKP"
/* Version 3: a run state section (flag bit 2) may end the payload; a file
 * without one is written as version 2, which older libraries read. Version 2:
 * the average section holds the averaged parameters themselves (warm-up
 * averaging, no bias correction); version 1 held the running sum of the old
 * bias-corrected rule, which the loader converts. */
#define CKPT_VERSION 3u
#define CKPT_VERSION_NO_RUN 2u
#define CKPT_HEADER 24          /* magic 8, version 4, flags 4, payload length 8 */
#define CKPT_FLAG_OPTIM 1u
#define CKPT_FLAG_AVERAGE 2u
#define CKPT_FLAG_RUN 4u
#define CKPT_MAX_BYTES ((uint64_t)16 << 30)
/* Step counters a run can reach, far from overflowing when incremented. */
#define CKPT_MAX_COUNT ((uint64_t)1 << 62)

/* ---- a growable little-endian byte buffer ------------------------------------------ */
typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
    int failed;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

/* The library targets little-endian machines (x86-64, aarch64): values are
 * stored in memory order, which is little-endian there. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoints assume little-endian");

static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_i32(bytes *b, int32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(bytes *b, float v) { put(b, &v, 4); }

/* ---- the configuration block, in a fixed field order ------------------------------ */
/* 22 fields since the learning-rate schedule (lr_warmup, lr_decay at the end);
 * files with the first 20 are read with the schedule off. */
#define CFG_FIELDS 22
#define CFG_FIELDS_NO_SCHEDULE 20
static void put_config(bytes *b, const agave_config *c)
{
    put_u32(b, CFG_FIELDS);
    int32_t ints1[] = {c->C, c->H, c->W, c->F, c->R, c->M};
    for (int i = 0; i < 6; i++)
        put_i32(b, ints1[i]);
    put_f32(b, c->dropout);
    int32_t ints2[] = {c->Fv, c->Rv, c->Z, c->T, c->b, c->s};
    for (int i = 0; i < 6; i++)
        put_i32(b, ints2[i]);
    put_f32(b, c->lambda);
    put_i32(b, (int32_t)c->mode);
    put_i32(b, (int32_t)c->optimizer);
    put_f32(b, c->lr);
    put_f32(b, c->ema);
    put_f32(b, c->grad_clip);
    put_i32(b, c->max_bad_steps);
    put_i32(b, c->lr_warmup);
    put_f32(b, c->lr_decay);
}

/* zlib's CRC32 over any length (crc32() takes at most 4 GiB per call). */
static uint32_t crc_of(const unsigned char *p, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < len; off += 1u << 30) {
        size_t n = len - off < (1u << 30) ? len - off : (1u << 30);
        crc = crc32(crc, p + off, (uInt)n);
    }
    return (uint32_t)crc;
}

static void put_floats(bytes *b, const float *p, size_t n) { put(b, p, n * sizeof(float)); }

/* The run state section: 6 x u64 in the field order of agave_run_state. */
static void put_run_state(bytes *b, const agave_run_state *r)
{
    put_u64(b, r->seed);
    put_u64(b, r->epoch);
    put_u64(b, r->index);
    put_u64(b, (uint64_t)r->batch);
    put_u64(b, (uint64_t)r->threads);
    put_u64(b, (uint64_t)r->images);
}

static void serialise(agave_model *m, bytes *b)
{
    uint32_t flags = (m->opt->m ? CKPT_FLAG_OPTIM : 0) | (m->ema.avg ? CKPT_FLAG_AVERAGE : 0) |
                     (m->has_run ? CKPT_FLAG_RUN : 0);
    put(b, CKPT_MAGIC, 8);
    put_u32(b, m->has_run ? CKPT_VERSION : CKPT_VERSION_NO_RUN);
    put_u32(b, flags);
    put_u64(b, 0);   /* payload length, patched below */
    put_config(b, &m->cfg);
    put_u64(b, (uint64_t)m->step);
    put_u64(b, (uint64_t)m->rejected);
    put_i32(b, m->bad_steps);
    put_i32(b, m->initialized);
    for (int i = 0; i < 4; i++)
        put_u64(b, m->ctx->rng.s[i]);
    put_u32(b, (uint32_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) {
        const agave_tensor *t = m->params[i];
        uint16_t len = (uint16_t)strlen(m->param_names[i]);
        put(b, &len, 2);
        put(b, m->param_names[i], len);
        put_u32(b, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            put_u32(b, (uint32_t)t->dims[d]);
        put_floats(b, t->data, t->numel);
    }
    if (flags & CKPT_FLAG_OPTIM) {
        put_u64(b, (uint64_t)m->opt->t);
        put_floats(b, m->opt->m, m->opt->total);
        put_floats(b, m->opt->u, m->opt->total);
    }
    if (flags & CKPT_FLAG_AVERAGE) {
        put_u64(b, (uint64_t)m->ema.t);
        put_floats(b, m->ema.avg, m->ema.total);
    }
    if (flags & CKPT_FLAG_RUN)
        put_run_state(b, &m->run);
    if (!b->failed) {
        uint64_t payload = b->len - CKPT_HEADER;
        memcpy(b->p + 16, &payload, 8);
        put_u32(b, crc_of(b->p, b->len));
    }
}

agave_status agave_model_save(agave_model *m, const char *path)
{
    if (!m)
        return AGAVE_ERR_NULL;
    ctx_clear_error(m->ctx);
    if (!path)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_model_save: path is NULL");
    bytes b = {0};
    serialise(m, &b);
    agave_status st = b.failed ? ctx_error(m->ctx, AGAVE_ERR_NOMEM,
                                           "checkpoint: cannot hold %zu bytes in memory", b.len)
                               : file_write_atomic(m->ctx, path, b.p, b.len);
    free(b.p);
    return st;
}

/* ---- loading --------------------------------------------------------------------- */
typedef struct reader {
    const unsigned char *p;
    size_t len, off;
    int short_read;
} reader;

static int get(reader *r, void *dst, size_t n)
{
    if (r->short_read || n > r->len - r->off) {
        r->short_read = 1;
        memset(dst, 0, n);
        return 0;
    }
    memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 1;
}

static uint32_t get_u32(reader *r)
{
    uint32_t v;
    get(r, &v, 4);
    return v;
}
static int32_t get_i32(reader *r)
{
    int32_t v;
    get(r, &v, 4);
    return v;
}
static uint64_t get_u64(reader *r)
{
    uint64_t v;
    get(r, &v, 8);
    return v;
}
static float get_f32(reader *r)
{
    float v;
    get(r, &v, 4);
    return v;
}

static void get_config(reader *r, agave_config *c)
{
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    uint32_t fields = get_u32(r);
    if (fields != CFG_FIELDS && fields != CFG_FIELDS_NO_SCHEDULE) {
        r->short_read = 1;
        return;
    }
    c->C = get_i32(r), c->H = get_i32(r), c->W = get_i32(r);
    c->F = get_i32(r), c->R = get_i32(r), c->M = get_i32(r);
    c->dropout = get_f32(r);
    c->Fv = get_i32(r), c->Rv = get_i32(r), c->Z = get_i32(r), c->T = get_i32(r);
    c->b = get_i32(r), c->s = get_i32(r);
    c->lambda = get_f32(r);
    c->mode = (agave_mode)get_i32(r);
    c->optimizer = (agave_optimizer_kind)get_i32(r);
    c->lr = get_f32(r), c->ema = get_f32(r), c->grad_clip = get_f32(r);
    c->max_bad_steps = get_i32(r);
    c->lr_warmup = 0;
    c->lr_decay = 1.0f;
    if (fields == CFG_FIELDS) {
        c->lr_warmup = get_i32(r);
        c->lr_decay = get_f32(r);
    }
}

/* Magic, version and length, in the order that gives the clearest message:
 * the first bytes p[0..len) of a file of file_len bytes (len may be less). */
static agave_status check_header(agave_context *ctx, const char *path, const unsigned char *p,
                                 size_t len, uint64_t file_len, uint32_t *version,
                                 uint32_t *flags)
{
    if (len < 8 || memcmp(p, CKPT_MAGIC, 8) != 0)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "%s is not a libagave checkpoint (wrong magic number)", path);
    if (len < CKPT_HEADER || file_len < CKPT_HEADER + 4)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "checkpoint %s is truncated: %llu bytes", path,
                         (unsigned long long)file_len);
    uint64_t payload;
    memcpy(version, p + 8, 4);
    memcpy(flags, p + 12, 4);
    memcpy(&payload, p + 16, 8);
    if (*version > CKPT_VERSION || *version == 0)
        return ctx_error(ctx, AGAVE_ERR_VERSION,
                         "checkpoint %s has format version %u; this library reads versions 1 to "
                         "%u (upgrade libagave)", path, *version, CKPT_VERSION);
    if (payload != file_len - CKPT_HEADER - 4)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s is truncated or has trailing bytes: the header promises "
                         "%llu bytes of payload, the file has %llu", path,
                         (unsigned long long)payload,
                         (unsigned long long)(file_len - CKPT_HEADER - 4));
    return AGAVE_OK;
}

/* The header, then the CRC-32 of a whole checkpoint in memory. */
static agave_status check_envelope(agave_context *ctx, const char *path,
                                   const unsigned char *p, size_t len, uint32_t *version,
                                   uint32_t *flags)
{
    agave_status st = check_header(ctx, path, p, len, len, version, flags);
    if (st != AGAVE_OK)
        return st;
    uint32_t stored, crc = crc_of(p, len - 4);
    memcpy(&stored, p + len - 4, 4);
    if (crc != stored)
        return ctx_error(ctx, AGAVE_ERR_CHECKSUM,
                         "checkpoint %s is damaged: CRC32 %08x does not match the stored "
                         "%08x", path, (unsigned)crc, (unsigned)stored);
    return AGAVE_OK;
}

/* Reads the header first, so that a large file that is no checkpoint (or a
 * checkpoint whose length does not match its header) is refused before
 * memory is taken for all of it; then the whole file. */
static agave_status read_file(agave_context *ctx, const char *path, unsigned char **data,
                              size_t *len)
{
    int fd;
    uint64_t size;
    agave_status st = file_open_regular(ctx, "checkpoint ", path, 0, &fd, &size);
    if (st != AGAVE_OK)
        return st;
    unsigned char head[CKPT_HEADER];
    long long got = file_read_full(fd, head, sizeof head);
    uint32_t version, flags;
    if (got < 0)
        st = ctx_error(ctx, AGAVE_ERR_IO, "cannot read checkpoint %s: %s", path, strerror(errno));
    else
        st = check_header(ctx, path, head, (size_t)got, size, &version, &flags);
    if (st == AGAVE_OK && size > CKPT_MAX_BYTES)
        st = ctx_error(ctx, AGAVE_ERR_LIMIT, "checkpoint %s is %llu bytes, over the 16 GiB "
                       "limit", path, (unsigned long long)size);
    if (st == AGAVE_OK && !(*data = malloc((size_t)size)))
        st = ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot hold checkpoint %s (%llu bytes) in memory",
                       path, (unsigned long long)size);
    if (st == AGAVE_OK) {
        memcpy(*data, head, sizeof head);
        got = file_read_full(fd, *data + sizeof head, (size_t)size - sizeof head);
        if (got != (long long)(size - sizeof head)) {
            st = ctx_error(ctx, AGAVE_ERR_IO, "short read on checkpoint %s (did it change while "
                           "being read?)", path);
            free(*data);
            *data = NULL;
        }
    }
    close(fd);
    *len = (size_t)size;
    return st;
}

/* Refuses a value that is NaN or infinite (or, with non_negative, below 0):
 * a run that diverged must not come back as a model that samples garbage. */
static agave_status check_values(agave_context *ctx, const char *path, const char *what,
                                 const char *name, const float *p, size_t n, int non_negative)
{
    for (size_t i = 0; i < n; i++) {
        int finite = isfinite(p[i]);
        if (finite && !(non_negative && p[i] < 0))
            continue;
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s: %s%s holds %s value (%g at element %zu): it cannot "
                         "be used", path, what, name, finite ? "a negative" : "a non-finite",
                         (double)p[i], i);
    }
    return AGAVE_OK;
}

static agave_status read_params(agave_model *m, reader *r, const char *path)
{
    if (get_u32(r) != (uint32_t)m->n_params)
        return ctx_error(m->ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s holds a different number of parameter tensors", path);
    for (int i = 0; i < m->n_params; i++) {
        agave_tensor *t = m->params[i];
        uint16_t len = 0;
        char name[96] = {0};
        get(r, &len, 2);
        if (len >= sizeof name || !get(r, name, len) || strcmp(name, m->param_names[i]) != 0)
            return ctx_error(m->ctx, AGAVE_ERR_FORMAT,
                             "checkpoint %s: parameter %d is '%.*s', expected '%s'", path, i,
                             (int)(len < 95 ? len : 95), name, m->param_names[i]);
        uint32_t ndim = get_u32(r);
        int shape_ok = ndim == (uint32_t)t->ndim;
        for (uint32_t d = 0; shape_ok && d < ndim; d++)
            shape_ok = get_u32(r) == (uint32_t)t->dims[d];
        if (!shape_ok || !get(r, t->data, t->numel * sizeof(float)))
            return ctx_error(m->ctx, AGAVE_ERR_FORMAT,
                             "checkpoint %s: parameter '%s' has the wrong shape or is cut short",
                             path, m->param_names[i]);
        agave_status st = check_values(m->ctx, path, "parameter ", m->param_names[i], t->data,
                                       t->numel, 0);
        if (st != AGAVE_OK)
            return st;
    }
    return AGAVE_OK;
}

/* A version-1 file holds the old rule's running sum s, which started at 0
 * and was used as s / (1 - ema^t): that quotient is the average the model
 * evaluated with, and the new rule continues from it. With no update yet
 * (t = 0) the average is the parameters. */
static void average_from_v1(agave_model *m)
{
    param_average *a = &m->ema;
    if (a->t == 0) {
        memcpy(a->avg, m->param_block, a->total * sizeof(float));
        return;
    }
    double correction = 1.0 / (1.0 - pow((double)m->cfg.ema, (double)a->t));
    for (size_t j = 0; j < a->total; j++)
        a->avg[j] = (float)(a->avg[j] * correction);
}

/* The run state section, validated as agave_model_set_run_state validates. */
static agave_status read_run_state(agave_model *m, reader *r, const char *path)
{
    agave_run_state s = {.struct_size = sizeof s};
    s.seed = get_u64(r);
    s.epoch = get_u64(r);
    s.index = get_u64(r);
    s.batch = (int64_t)get_u64(r);
    s.threads = (int64_t)get_u64(r);
    s.images = (int64_t)get_u64(r);
    char why[192];
    if (r->short_read)
        return AGAVE_OK;   /* reported with the other sections */
    if (!run_state_check(&s, why, sizeof why))
        return ctx_error(m->ctx, AGAVE_ERR_FORMAT, "checkpoint %s: impossible run state: %s",
                         path, why);
    m->run = s;
    m->has_run = 1;
    return AGAVE_OK;
}

static agave_status read_state(agave_model *m, reader *r, uint32_t version, uint32_t flags,
                               const char *path)
{
    if (flags & CKPT_FLAG_OPTIM) {
        m->opt->m = calloc(m->opt->total ? m->opt->total : 1, sizeof(float));
        m->opt->u = calloc(m->opt->total ? m->opt->total : 1, sizeof(float));
        if (!m->opt->m || !m->opt->u)
            return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate optimizer state");
        m->opt->t = (int64_t)get_u64(r);
        get(r, m->opt->m, m->opt->total * sizeof(float));
        get(r, m->opt->u, m->opt->total * sizeof(float));
    }
    if (flags & CKPT_FLAG_AVERAGE) {
        if (average_init(&m->ema, m->param_block, m->param_total) != AGAVE_OK)
            return ctx_error(m->ctx, AGAVE_ERR_NOMEM, "cannot allocate the parameter average");
        m->ema.t = (int64_t)get_u64(r);
        get(r, m->ema.avg, m->ema.total * sizeof(float));
    }
    if ((flags & CKPT_FLAG_RUN) && version < 3)
        return ctx_error(m->ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s: format version %u cannot hold a run state (flag 4)",
                         path, version);
    if (flags & CKPT_FLAG_RUN)
        TRY(read_run_state(m, r, path));
    if (r->short_read || r->off != r->len - 4)
        return ctx_error(m->ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s: the optimiser, averaging or run state section does not "
                         "fit", path);
    if ((uint64_t)m->opt->t >= CKPT_MAX_COUNT || (uint64_t)m->ema.t >= CKPT_MAX_COUNT)
        return ctx_error(m->ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s: impossible optimiser or averaging step count", path);
    if ((flags & CKPT_FLAG_AVERAGE) && version == 1)
        average_from_v1(m);
    agave_status st = AGAVE_OK;
    if (flags & CKPT_FLAG_OPTIM) {
        st = check_values(m->ctx, path, "the optimiser's first moment", "", m->opt->m,
                          m->opt->total, 0);
        if (st == AGAVE_OK)   /* Adam's mean square and Adamax's norm are never negative */
            st = check_values(m->ctx, path, "the optimiser's second moment", "", m->opt->u,
                              m->opt->total, 1);
    }
    if (st == AGAVE_OK && (flags & CKPT_FLAG_AVERAGE))
        st = check_values(m->ctx, path, "the parameter average", "", m->ema.avg, m->ema.total,
                          0);
    return st;
}

/* The parameter values the configuration's model holds, counted from its
 * topology (topology.c) without building it: a file must carry at least
 * these. The loader compares it with the file's size before
 * agave_model_create, so that a small file with a large configuration cannot
 * make it build a model of gigabytes and only then find the parameters
 * missing (docs/reliability.md, the fuzzing findings). */
uint64_t checkpoint_min_param_floats(const agave_config *c)
{
    return topology_param_numel(c);
}

static agave_status parse(agave_context *ctx, const char *path, const unsigned char *p,
                          size_t len, uint32_t version, uint32_t flags,
                          const agave_config *expect, agave_model **out)
{
    reader r = {p, len, CKPT_HEADER, 0};
    agave_config cfg;
    get_config(&r, &cfg);
    char msg[256];
    if (r.short_read || agave_config_validate(&cfg, msg, sizeof msg) != AGAVE_OK)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "checkpoint %s: invalid configuration block%s%s",
                         path, r.short_read ? "" : ": ", r.short_read ? "" : msg);
    if (expect && !config_same_architecture(&cfg, expect))
        return ctx_error(ctx, AGAVE_ERR_CONFIG,
                         "checkpoint %s was made for another architecture (C,H,W %d,%d,%d F %d R "
                         "%d M %d Fv %d Rv %d Z %d T %d b %d s %d)", path, cfg.C, cfg.H, cfg.W,
                         cfg.F, cfg.R, cfg.M, cfg.Fv, cfg.Rv, cfg.Z, cfg.T, cfg.b, cfg.s);
    uint64_t min_bytes = 4 * checkpoint_min_param_floats(&cfg);
    if (min_bytes > len - CKPT_HEADER - 4)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s is too small for its configuration: F %d R %d M %d Fv %d "
                         "Rv %d Z %d T %d need at least %llu bytes of parameters, the file has "
                         "%zu", path, cfg.F, cfg.R, cfg.M, cfg.Fv, cfg.Rv, cfg.Z, cfg.T,
                         (unsigned long long)min_bytes, len);
    uint64_t step = get_u64(&r), rejected = get_u64(&r);
    int32_t bad_steps = get_i32(&r);
    int initialized = get_i32(&r) != 0;
    agave_rng rng;
    for (int i = 0; i < 4; i++)
        rng.s[i] = get_u64(&r);
    /* Counts a run can reach (the next step must not overflow them), and a
     * random state xoshiro256** can be in (never all zero). */
    if (step >= CKPT_MAX_COUNT || rejected >= CKPT_MAX_COUNT || bad_steps < 0 ||
        bad_steps > cfg.max_bad_steps || (rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) == 0)
        return ctx_error(ctx, AGAVE_ERR_FORMAT,
                         "checkpoint %s: impossible training state (step %llu, rejected %llu, "
                         "%d bad steps in a row of at most %d, random state %s)", path,
                         (unsigned long long)step, (unsigned long long)rejected, (int)bad_steps,
                         cfg.max_bad_steps,
                         (rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) ? "set" : "all zero");
    agave_model *m;
    TRY(agave_model_create(ctx, &cfg, &m));
    m->step = (int64_t)step;
    m->rejected = (int64_t)rejected;
    m->bad_steps = bad_steps;
    m->initialized = initialized;
    agave_status st = read_params(m, &r, path);
    if (st == AGAVE_OK)
        st = read_state(m, &r, version, flags, path);
    if (st != AGAVE_OK) {
        agave_model_free(m);
        return st;
    }
    for (int i = 0; i < m->n_layers; i++)
        agave_layer_skip_init(m->layers[i]);
    ctx->rng = rng;   /* the run continues with the random stream it had */
    *out = m;
    return AGAVE_OK;
}

/* Everything after reading the bytes; ctx, name and out are not NULL. */
static agave_status load_bytes(agave_context *ctx, const char *name, const unsigned char *p,
                               size_t len, const agave_config *expect, agave_model **out)
{
    uint32_t version = 0, flags = 0;
    agave_status st = check_envelope(ctx, name, p, len, &version, &flags);
    if (st == AGAVE_OK)
        st = parse(ctx, name, p, len, version, flags, expect, out);
    return st;
}

agave_status checkpoint_load_memory(agave_context *ctx, const char *name, const void *data,
                                    size_t len, const agave_config *expect, agave_model **out)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!name || !out || (!data && len > 0))
        return ctx_error(ctx, AGAVE_ERR_NULL, "checkpoint_load_memory: NULL argument");
    *out = NULL;
    static const unsigned char empty[1];
    return load_bytes(ctx, name, data ? data : empty, len, expect, out);
}

agave_status agave_model_load(agave_context *ctx, const char *path, const agave_config *expect,
                              agave_model **out)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!path || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_model_load: NULL path or out");
    *out = NULL;
    agave_config want;
    char msg[256];
    if (expect && config_import(expect, &want, msg, sizeof msg) != AGAVE_OK)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "agave_model_load: expect: %s", msg);
    unsigned char *p = NULL;
    size_t len = 0;
    TRY(read_file(ctx, path, &p, &len));
    agave_status st = load_bytes(ctx, path, p, len, expect ? &want : NULL, out);
    free(p);
    return st;
}
