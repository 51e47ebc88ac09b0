/* The public codec API (include/agave.h, "Lossless compression"): streaming
 * encoder and decoder objects around the bits-back coder (bitsback.c), the
 * chunks of the file format (docs/codec.md), and the in-memory forms. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../core/struct_size.h"
#include "codec.h"

#define CHUNK_FIXED 16      /* magic, index, images, chains */
#define CHAIN_ENTRY 12      /* final state (u64), words (u32) */
#define WORD_BLOCK 4096     /* words converted to little-endian at a time */

static agave_codec_options default_options(void)
{
    agave_codec_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.batch = 64;
    o.chunk = 4096;
    o.latent_bits = 8;
    o.image_crc = 1;
    return o;
}

void agave_codec_options_init_sized(agave_codec_options *opt, size_t struct_size)
{
    agave_codec_options d = default_options();
    if (opt)
        struct_init(opt, struct_size, &d, sizeof d);
}

/* The caller's options over the defaults (the struct_size rule). */
static agave_status read_options(agave_context *ctx, const agave_codec_options *opt,
                                 agave_codec_options *out)
{
    *out = default_options();
    char why[256];
    if (opt && !struct_read(out, sizeof *out, opt, STRUCT_END(agave_codec_options, struct_size),
                            "agave_codec_options", why, sizeof why))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "codec: %s", why);
    return AGAVE_OK;
}

/* The model in evaluation state (average weights, no dropout, no tape) for
 * the length of one call. */
typedef struct eval_state { int was_recording; } eval_state;

static eval_state eval_enter(agave_model *m)
{
    eval_state s = {agave_tape_recording(m->ctx)};
    agave_tape_set_recording(m->ctx, 0);
    model_set_training(m, 0);
    model_apply_average(m);
    return s;
}

static void eval_leave(agave_model *m, eval_state s)
{
    model_restore_params(m);
    model_set_training(m, 1);
    agave_tape_set_recording(m->ctx, s.was_recording);
    agave_tape_reset(m->ctx);
}

/* Writes what a header says into the caller's info (the struct_size rule). */
static agave_status fill_info(agave_context *ctx, const codec_plan *p, agave_codec_info *info)
{
    agave_codec_info full;
    memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    full.n_images = p->n_images;
    full.C = p->C, full.H = p->H, full.W = p->W;
    full.mode = p->mode;
    full.threads = p->threads;
    full.batch = p->batch, full.chunk = p->chunk;
    full.latent_bits = p->latent_bits, full.image_crc = p->image_crc;
    full.model_hash = p->model_hash;
    _Static_assert(sizeof full.environment == CODEC_ENV_MAX, "environment text size");
    memcpy(full.environment, p->env, CODEC_ENV_MAX);
    char why[256];
    if (!struct_write(info, &full, sizeof full, sizeof full.struct_size, "agave_codec_info", why,
                      sizeof why))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "codec: %s", why);
    return AGAVE_OK;
}

/* ---- the encoder ------------------------------------------------------------------- */
struct agave_codec_encoder {
    codec_core core;
    agave_codec_write_fn write;
    void *user;
    agave_codec_options opt;
    int64_t added, coded;     /* images received, coded */
    int64_t chunk_index;
    int chunk_n, chunk_done;  /* images of the current chunk (0: none started), coded */
    int batch_j;              /* the next batch's index in the chunk */
    uint8_t *pending;         /* images of the batch being filled */
    int n_pending;
    uint32_t chunk_crc;
    uint32_t *image_crc;      /* the chunk's images' CRCs */
    uint64_t bytes;
    double initial_bits;
    agave_status failed;      /* sticky */
};

static agave_status emit(agave_codec_encoder *e, const void *data, size_t len, uint32_t *crc)
{
    if (crc)
        *crc = (uint32_t)crc32(*crc, data, (uInt)len);
    agave_status st = e->write(data, len, e->user);
    if (st != AGAVE_OK)
        return ctx_error(e->core.ctx, st, "codec: the write function failed (%s)",
                         agave_status_string(st));
    e->bytes += len;
    return AGAVE_OK;
}

/* A chain's words (bottom first) as little-endian bytes. */
static agave_status emit_words(agave_codec_encoder *e, const rans_stack *r, uint32_t *crc)
{
    uint8_t buf[4 * WORD_BLOCK];
    for (size_t at = 0; at < r->len; at += WORD_BLOCK) {
        size_t n = r->len - at < WORD_BLOCK ? r->len - at : WORD_BLOCK;
        for (size_t i = 0; i < n; i++)
            put_le32(buf + 4 * i, r->words[at + i]);
        TRY(emit(e, buf, 4 * n, crc));
    }
    return AGAVE_OK;
}

/* The finished chunk: its header, the chains' states and sizes, the CRCs of
 * its images, the words, and the CRC of all that. */
static agave_status write_chunk(agave_codec_encoder *e)
{
    const codec_plan *p = &e->core.plan;
    uint32_t crc = 0;
    uint8_t fixed[CHUNK_FIXED], entry[CHAIN_ENTRY], b4[4];
    memcpy(fixed, CODEC_CHUNK_MAGIC, 4);
    put_le32(fixed + 4, (uint32_t)e->chunk_index);
    put_le32(fixed + 8, (uint32_t)e->chunk_n);
    put_le32(fixed + 12, (uint32_t)p->chains);
    TRY(emit(e, fixed, sizeof fixed, &crc));
    for (int t = 0; t < p->chains; t++) {
        const rans_stack *r = &e->core.chain[t];
        put_le64(entry, r->state);
        put_le32(entry + 8, (uint32_t)r->len);
        TRY(emit(e, entry, sizeof entry, &crc));
        e->initial_bits += 32.0 * (double)r->virtual_used;
    }
    put_le32(b4, e->chunk_crc);
    TRY(emit(e, b4, 4, &crc));
    for (int i = 0; p->image_crc && i < e->chunk_n; i++) {
        put_le32(b4, e->image_crc[i]);
        TRY(emit(e, b4, 4, &crc));
    }
    for (int t = 0; t < p->chains; t++)
        TRY(emit_words(e, &e->core.chain[t], &crc));
    put_le32(b4, crc);
    return emit(e, b4, 4, NULL);
}

static int progress(const agave_codec_options *o, int64_t done, int64_t total)
{
    return o->progress && o->progress(done, total, o->progress_user) != 0;
}

/* Codes the pending batch; writes the chunk when it is complete. */
static agave_status encode_pending(agave_codec_encoder *e)
{
    codec_core *k = &e->core;
    TRY(codec_encode_batch(k, e->pending, e->n_pending));
    e->chunk_done += e->n_pending;
    e->coded += e->n_pending;
    e->batch_j++;
    e->n_pending = 0;
    if (e->chunk_done == e->chunk_n) {
        TRY(write_chunk(e));
        e->chunk_index++;
        e->chunk_n = e->chunk_done = 0;
    }
    if (progress(&e->opt, e->coded, k->plan.n_images))
        return ctx_error(k->ctx, AGAVE_ERR_INTERRUPTED, "codec: stopped by the progress function");
    return AGAVE_OK;
}

static void start_chunk(agave_codec_encoder *e)
{
    const codec_plan *p = &e->core.plan;
    int64_t left = p->n_images - e->chunk_index * (int64_t)p->chunk;
    e->chunk_n = left < p->chunk ? (int)left : p->chunk;
    e->chunk_done = e->batch_j = 0;
    e->chunk_crc = 0;
    codec_core_start_chunk(&e->core, e->chunk_index);
}

static agave_status encoder_add(agave_codec_encoder *e, const uint8_t *x, int n)
{
    const codec_plan *p = &e->core.plan;
    while (n > 0) {
        if (e->chunk_n == 0)
            start_chunk(e);
        int b = codec_batch_size(p, e->chunk_n, e->chunk_done, e->batch_j);
        int take = b - e->n_pending < n ? b - e->n_pending : n;
        for (int i = 0; i < take; i++) {
            const uint8_t *img = x + (size_t)i * p->D;
            e->image_crc[e->chunk_done + e->n_pending + i] = (uint32_t)crc32(0, img, (uInt)p->D);
            e->chunk_crc = (uint32_t)crc32(e->chunk_crc, img, (uInt)p->D);
        }
        memcpy(e->pending + (size_t)e->n_pending * p->D, x, (size_t)take * p->D);
        e->n_pending += take, e->added += take;
        x += (size_t)take * p->D, n -= take;
        if (e->n_pending == b)
            TRY(encode_pending(e));
    }
    return AGAVE_OK;
}

agave_status agave_codec_encoder_create(agave_model *m, const agave_codec_options *opt,
                                        int64_t n_images, agave_codec_write_fn write,
                                        void *user, agave_codec_encoder **out)
{
    if (!m)
        return AGAVE_ERR_NULL;
    agave_context *ctx = m->ctx;
    ctx_clear_error(ctx);
    if (!write || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_codec_encoder_create: write or out is NULL");
    *out = NULL;
    if (!m->initialized)
        return ctx_error(ctx, AGAVE_ERR_STATE, "codec: the model is not initialised (train it "
                         "or load a checkpoint)");
    agave_codec_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "codec: out of memory");
    e->write = write, e->user = user;
    codec_plan plan;
    eval_state es = eval_enter(m);
    agave_status st = read_options(ctx, opt, &e->opt);
    if (st == AGAVE_OK)
        st = codec_plan_make(m, &e->opt, n_images, &plan);
    if (st == AGAVE_OK)
        st = codec_check_products(ctx);
    eval_leave(m, es);
    if (st == AGAVE_OK)
        st = codec_core_init(&e->core, m, &plan);
    if (st == AGAVE_OK) {
        e->pending = malloc((size_t)plan.batch * plan.D);
        e->image_crc = malloc((size_t)plan.chunk * sizeof *e->image_crc);
        if (!e->pending || !e->image_crc)
            st = ctx_error(ctx, AGAVE_ERR_NOMEM, "codec: out of memory");
    }
    if (st == AGAVE_OK) {
        uint8_t header[CODEC_HEADER_MAX];
        st = emit(e, header, codec_header_write(&plan, header), NULL);
    }
    if (st != AGAVE_OK) {
        agave_codec_encoder_free(e);
        return st;
    }
    *out = e;
    return AGAVE_OK;
}

static agave_status encoder_usable(agave_codec_encoder *e, const char *fn)
{
    if (e->failed != AGAVE_OK)
        return ctx_error(e->core.ctx, AGAVE_ERR_STATE, "%s: the encoder failed earlier (%s) "
                         "and its output is incomplete", fn, agave_status_string(e->failed));
    return AGAVE_OK;
}

agave_status agave_codec_encoder_add(agave_codec_encoder *e, const uint8_t *x, int n)
{
    if (!e)
        return AGAVE_ERR_NULL;
    agave_context *ctx = e->core.ctx;
    ctx_clear_error(ctx);
    TRY(encoder_usable(e, "agave_codec_encoder_add"));
    if (!x && n > 0)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_codec_encoder_add: x is NULL");
    if (n < 0 || n > e->core.plan.n_images - e->added)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "agave_codec_encoder_add: %d images, but "
                         "only %lld of the announced %lld are still to come", n,
                         (long long)(e->core.plan.n_images - e->added),
                         (long long)e->core.plan.n_images);
    eval_state es = eval_enter(e->core.m);
    agave_status st = encoder_add(e, x, n);
    eval_leave(e->core.m, es);
    if (st != AGAVE_OK)
        e->failed = st;
    return st;
}

agave_status agave_codec_encoder_finish(agave_codec_encoder *e)
{
    if (!e)
        return AGAVE_ERR_NULL;
    ctx_clear_error(e->core.ctx);
    TRY(encoder_usable(e, "agave_codec_encoder_finish"));
    if (e->added != e->core.plan.n_images)
        return ctx_error(e->core.ctx, AGAVE_ERR_STATE, "agave_codec_encoder_finish: %lld of the "
                         "announced %lld images were added", (long long)e->added,
                         (long long)e->core.plan.n_images);
    return AGAVE_OK;
}

agave_status agave_codec_encoder_stats(const agave_codec_encoder *e, agave_codec_stats *stats)
{
    if (!e || !stats)
        return AGAVE_ERR_NULL;
    agave_codec_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    s.n_images = e->coded;
    s.bytes = e->bytes;
    for (int t = 0; t < e->core.plan.chains; t++) {
        const codec_counts *c = &e->core.counts[t];
        s.pixel_bits += c->pixel_bits;
        s.pixel_model_bits += c->pixel_model_bits;
        s.latent_prior_bits += c->prior_bits;
        s.latent_posterior_bits += c->posterior_bits;
    }
    s.initial_bits = e->initial_bits;
    char why[256];
    if (!struct_write(stats, &s, sizeof s, sizeof s.struct_size, "agave_codec_stats", why,
                      sizeof why))
        return ctx_error(e->core.ctx, AGAVE_ERR_INVALID_ARG, "codec: %s", why);
    return AGAVE_OK;
}

void agave_codec_encoder_free(agave_codec_encoder *e)
{
    if (!e)
        return;
    codec_core_free(&e->core);
    free(e->pending), free(e->image_crc);
    free(e);
}

/* ---- the decoder ------------------------------------------------------------------- */
struct agave_codec_decoder {
    codec_core core;
    agave_codec_read_fn read;
    void *user;
    agave_codec_options opt;
    int64_t served, decoded, chunk_index;
    uint8_t *images;          /* the decoded chunk */
    int chunk_n, chunk_served;
    uint32_t chunk_crc;       /* stored CRC of the chunk's images */
    uint32_t *image_crc;      /* stored CRCs of each image */
    uint64_t *states;         /* per chain: the stored final state */
    size_t *counts;           /* per chain: its words */
    uint32_t *words;          /* the chunk's words, chain after chain */
    size_t words_cap;
    int at_end;               /* every image served and the stream's end seen */
    agave_status failed;      /* sticky */
};

/* Exactly len bytes, or AGAVE_ERR_FORMAT naming where the stream ended. */
static agave_status read_exact(agave_codec_decoder *d, void *buf, size_t len, uint32_t *crc,
                               const char *where)
{
    uint8_t *p = buf;
    size_t have = 0;
    while (have < len) {
        size_t got = 0;
        agave_status st = d->read(p + have, len - have, &got, d->user);
        if (st != AGAVE_OK)
            return ctx_error(d->core.ctx, st, "codec: the read function failed (%s)",
                             agave_status_string(st));
        if (got == 0)
            return ctx_error(d->core.ctx, AGAVE_ERR_FORMAT, "codec: the stream is truncated: "
                             "it ends inside %s", where);
        if (got > len - have)
            return ctx_error(d->core.ctx, AGAVE_ERR_INVALID_ARG, "codec: the read function "
                             "returned more bytes than asked for");
        have += got;
    }
    if (crc && len)   /* zlib's crc32 restarts at 0 when buf is NULL */
        *crc = (uint32_t)crc32(*crc, buf, (uInt)len);
    return AGAVE_OK;
}

static agave_status read_header(agave_codec_decoder *d, codec_plan *plan)
{
    agave_context *ctx = d->core.ctx;
    uint8_t h[CODEC_HEADER_MAX];
    size_t need = 0;
    TRY(read_exact(d, h, CODEC_HEADER_FIXED, NULL, "the header"));
    TRY(codec_header_read(ctx, "the stream", h, CODEC_HEADER_FIXED, &need, plan));
    TRY(read_exact(d, h + CODEC_HEADER_FIXED, need - CODEC_HEADER_FIXED, NULL, "the header"));
    return codec_header_read(ctx, "the stream", h, need, &need, plan);
}

static agave_status decoder_alloc(agave_codec_decoder *d)
{
    const codec_plan *p = &d->core.plan;
    d->images = malloc((size_t)p->chunk * p->D);
    d->image_crc = malloc((size_t)p->chunk * sizeof *d->image_crc);
    d->states = malloc((size_t)p->chains * sizeof *d->states);
    d->counts = malloc((size_t)p->chains * sizeof *d->counts);
    if (!d->images || !d->image_crc || !d->states || !d->counts)
        return ctx_error(d->core.ctx, AGAVE_ERR_NOMEM, "codec: out of memory for a chunk of %d "
                         "images", p->chunk);
    return AGAVE_OK;
}

agave_status agave_codec_decoder_create(agave_model *m, const agave_codec_options *opt,
                                        agave_codec_read_fn read, void *user,
                                        agave_codec_decoder **out)
{
    if (!m)
        return AGAVE_ERR_NULL;
    agave_context *ctx = m->ctx;
    ctx_clear_error(ctx);
    if (!read || !out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_codec_decoder_create: read or out is NULL");
    *out = NULL;
    if (!m->initialized)
        return ctx_error(ctx, AGAVE_ERR_STATE, "codec: the model is not initialised (load "
                         "the checkpoint the file was compressed with)");
    agave_codec_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "codec: out of memory");
    d->read = read, d->user = user;
    d->core.ctx = ctx;
    codec_plan plan;
    agave_status st = read_options(ctx, opt, &d->opt);
    if (st == AGAVE_OK)
        st = read_header(d, &plan);
    if (st == AGAVE_OK) {
        eval_state es = eval_enter(m);
        st = codec_plan_check(m, &plan);
        eval_leave(m, es);
    }
    if (st == AGAVE_OK)
        st = codec_core_init(&d->core, m, &plan);
    if (st == AGAVE_OK)
        st = decoder_alloc(d);
    if (st != AGAVE_OK) {
        agave_codec_decoder_free(d);
        return st;
    }
    *out = d;
    return AGAVE_OK;
}

agave_status agave_codec_decoder_info(const agave_codec_decoder *d, agave_codec_info *info)
{
    if (!d || !info)
        return AGAVE_ERR_NULL;
    return fill_info(d->core.ctx, &d->core.plan, info);
}

/* The chunk's framing: which chunk, how many images, the chains' states and
 * sizes, the stored CRCs. */
static agave_status read_chunk_head(agave_codec_decoder *d, int n, uint32_t *crc,
                                    size_t *total_words)
{
    codec_core *k = &d->core;
    const codec_plan *p = &k->plan;
    uint8_t fixed[CHUNK_FIXED], entry[CHAIN_ENTRY], b4[4];
    TRY(read_exact(d, fixed, sizeof fixed, crc, "a chunk's header"));
    if (memcmp(fixed, CODEC_CHUNK_MAGIC, 4) != 0 ||
        get_le32(fixed + 4) != (uint32_t)d->chunk_index || get_le32(fixed + 8) != (uint32_t)n ||
        get_le32(fixed + 12) != (uint32_t)p->chains)
        return ctx_error(k->ctx, AGAVE_ERR_FORMAT, "codec: chunk %lld's header is not the one "
                         "expected there (%d images, %d chains): the stream is damaged",
                         (long long)d->chunk_index, n, p->chains);
    size_t max_words = codec_chain_max_words(p, n);
    *total_words = 0;
    for (int t = 0; t < p->chains; t++) {
        TRY(read_exact(d, entry, sizeof entry, crc, "a chunk's header"));
        d->states[t] = get_le64(entry);
        d->counts[t] = get_le32(entry + 8);
        if (d->counts[t] > max_words)
            return ctx_error(k->ctx, AGAVE_ERR_FORMAT, "codec: chunk %lld claims %zu words for "
                             "a stream, more than %d images can need: the stream is damaged",
                             (long long)d->chunk_index, d->counts[t], n);
        *total_words += d->counts[t];
    }
    TRY(read_exact(d, b4, 4, crc, "a chunk's header"));
    d->chunk_crc = get_le32(b4);
    for (int i = 0; p->image_crc && i < n; i++) {
        TRY(read_exact(d, b4, 4, crc, "a chunk's image checksums"));
        d->image_crc[i] = get_le32(b4);
    }
    return AGAVE_OK;
}

/* Reads chunk d->chunk_index whole, checks its CRC, and loads the chains. */
static agave_status read_chunk(agave_codec_decoder *d, int n)
{
    codec_core *k = &d->core;
    uint32_t crc = 0;
    size_t total = 0;
    uint8_t b4[4];
    TRY(read_chunk_head(d, n, &crc, &total));
    if (total > d->words_cap) {
        uint32_t *w = realloc(d->words, total * sizeof *w);
        if (!w)
            return ctx_error(k->ctx, AGAVE_ERR_NOMEM, "codec: out of memory for a chunk of "
                             "%zu words", total);
        d->words = w, d->words_cap = total;
    }
    TRY(read_exact(d, d->words, total * 4, &crc, "a chunk's data"));
    TRY(read_exact(d, b4, 4, NULL, "a chunk's checksum"));
    if (get_le32(b4) != crc)
        return ctx_error(k->ctx, AGAVE_ERR_CHECKSUM, "codec: chunk %lld is damaged: CRC32 %08x "
                         "does not match the stored %08x", (long long)d->chunk_index, crc,
                         get_le32(b4));
    uint8_t *bytes = (uint8_t *)d->words;
    for (size_t i = 0; i < total; i++)   /* little-endian to native, in place */
        d->words[i] = get_le32(bytes + 4 * i);
    size_t at = 0, limit = 2 * codec_chain_max_words(&k->plan, n);
    for (int t = 0; t < k->plan.chains; t++) {
        rans_free(&k->chain[t]);
        if (d->states[t] < RANS_L || d->states[t] >> 63)
            return ctx_error(k->ctx, AGAVE_ERR_FORMAT, "codec: chunk %lld: a stream's state "
                             "is out of range", (long long)d->chunk_index);
        const uint32_t *words = d->counts[t] ? d->words + at : NULL;   /* no words: maybe no buffer */
        if (!rans_load(&k->chain[t], d->states[t], words, d->counts[t],
                       codec_chain_seed(&k->plan, d->chunk_index, t), limit))
            return ctx_error(k->ctx, AGAVE_ERR_NOMEM, "codec: out of memory for a stream");
        at += d->counts[t];
    }
    return AGAVE_OK;
}

/* Checks the images of a decoded batch against their stored CRCs. */
static agave_status check_images(agave_codec_decoder *d, const uint8_t *x, int first, int n)
{
    const codec_plan *p = &d->core.plan;
    for (int i = 0; p->image_crc && i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, x + (size_t)i * p->D, (uInt)p->D);
        if (crc != d->image_crc[first + i])
            return ctx_error(d->core.ctx, AGAVE_ERR_CHECKSUM, "codec: image %lld decoded "
                             "differently from the one compressed (CRC32 %08x, stored %08x): "
                             "the stream is damaged, or this machine computes differently "
                             "from the one that compressed it",
                             (long long)(d->chunk_index * p->chunk + first + i), crc,
                             d->image_crc[first + i]);
    }
    return AGAVE_OK;
}

/* Decodes chunk d->chunk_index: its batches last to first, each checked. */
static agave_status decode_chunk(agave_codec_decoder *d)
{
    codec_core *k = &d->core;
    const codec_plan *p = &k->plan;
    int64_t left = p->n_images - d->chunk_index * (int64_t)p->chunk;
    int n = left < p->chunk ? (int)left : p->chunk;
    TRY(read_chunk(d, n));
    int batches = 0, done = 0, b;
    while ((b = codec_batch_size(p, n, done, batches)) > 0)
        done += b, batches++;
    for (int j = batches - 1; j >= 0; j--) {
        int first = 0;
        for (int i = 0; i < j; i++)
            first += codec_batch_size(p, n, first, i);
        b = codec_batch_size(p, n, first, j);
        TRY(codec_decode_batch(k, b));
        TRY(check_images(d, k->x, first, b));
        memcpy(d->images + (size_t)first * p->D, k->x, (size_t)b * p->D);
        d->decoded += b;
        if (progress(&d->opt, d->decoded, p->n_images))
            return ctx_error(k->ctx, AGAVE_ERR_INTERRUPTED, "codec: stopped by the progress "
                             "function");
    }
    for (int t = 0; t < p->chains; t++)
        if (!rans_is_initial(&k->chain[t]))
            return ctx_error(k->ctx, AGAVE_ERR_CHECKSUM, "codec: chunk %lld did not decode back "
                             "to its start: the stream is damaged, or this machine computes "
                             "differently from the one that compressed it",
                             (long long)d->chunk_index);
    if ((uint32_t)crc32(0, d->images, (uInt)((size_t)n * p->D)) != d->chunk_crc)
        return ctx_error(k->ctx, AGAVE_ERR_CHECKSUM, "codec: chunk %lld decoded differently "
                         "from the images compressed", (long long)d->chunk_index);
    d->chunk_n = n, d->chunk_served = 0;
    d->chunk_index++;
    return AGAVE_OK;
}

/* After the last image: the stream must end there. */
static agave_status expect_end(agave_codec_decoder *d)
{
    uint8_t extra;
    size_t got = 0;
    agave_status st = d->read(&extra, 1, &got, d->user);
    if (st != AGAVE_OK)
        return ctx_error(d->core.ctx, st, "codec: the read function failed (%s)",
                         agave_status_string(st));
    if (got)
        return ctx_error(d->core.ctx, AGAVE_ERR_FORMAT, "codec: bytes follow the last chunk "
                         "(%lld images): the stream is damaged or not one file",
                         (long long)d->core.plan.n_images);
    d->at_end = 1;
    return AGAVE_OK;
}

static agave_status decoder_read(agave_codec_decoder *d, uint8_t *x, int max_n, int *got)
{
    const codec_plan *p = &d->core.plan;
    if (d->chunk_served == d->chunk_n) {
        if (d->served == p->n_images)
            return d->at_end ? AGAVE_OK : expect_end(d);
        TRY(decode_chunk(d));
    }
    int n = d->chunk_n - d->chunk_served < max_n ? d->chunk_n - d->chunk_served : max_n;
    memcpy(x, d->images + (size_t)d->chunk_served * p->D, (size_t)n * p->D);
    d->chunk_served += n, d->served += n;
    *got = n;
    return AGAVE_OK;
}

agave_status agave_codec_decoder_read(agave_codec_decoder *d, uint8_t *x, int max_n, int *got)
{
    if (!d)
        return AGAVE_ERR_NULL;
    agave_context *ctx = d->core.ctx;
    ctx_clear_error(ctx);
    if (!x || !got)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_codec_decoder_read: x or got is NULL");
    *got = 0;
    if (d->failed != AGAVE_OK)
        return ctx_error(ctx, AGAVE_ERR_STATE, "agave_codec_decoder_read: the decoder failed "
                         "earlier (%s)", agave_status_string(d->failed));
    if (max_n < 1)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "agave_codec_decoder_read: max_n = %d",
                         max_n);
    eval_state es = eval_enter(d->core.m);
    agave_status st = decoder_read(d, x, max_n, got);
    eval_leave(d->core.m, es);
    if (st != AGAVE_OK) {
        d->failed = st;
        *got = 0;
    }
    return st;
}

void agave_codec_decoder_free(agave_codec_decoder *d)
{
    if (!d)
        return;
    codec_core_free(&d->core);
    free(d->images), free(d->image_crc), free(d->states), free(d->counts), free(d->words);
    free(d);
}

/* ---- in memory --------------------------------------------------------------------- */
agave_status agave_codec_peek(agave_context *ctx, const void *data, size_t size,
                              agave_codec_info *info)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!data || !info)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_codec_peek: data or info is NULL");
    codec_plan plan;
    size_t need = 0;
    TRY(codec_header_read(ctx, "the buffer", data, size, &need, &plan));
    if (size < need)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "the buffer is truncated: %zu bytes, its "
                         "header alone has %zu", size, need);
    return fill_info(ctx, &plan, info);
}

agave_status agave_codec_bound(const agave_model *m, const agave_codec_options *opt,
                               int64_t n, size_t *bytes)
{
    if (!m)
        return AGAVE_ERR_NULL;
    agave_context *ctx = m->ctx;
    ctx_clear_error(ctx);
    if (!bytes)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_codec_bound: bytes is NULL");
    agave_codec_options o;
    TRY(read_options(ctx, opt, &o));
    codec_plan p;
    /* the plan without the hash: only sizes are needed */
    TRY(codec_plan_make((agave_model *)m, &o, n, &p));
    int64_t chunks = (n + p.chunk - 1) / p.chunk;
    double chain_bits = (double)p.D * (CODEC_PIXEL_PREC + 1) +
                        (double)p.latent * ((p.latent_bits > CODEC_LATENT_PREC
                                                 ? p.latent_bits : CODEC_LATENT_PREC) + 1);
    double total = CODEC_HEADER_MAX +
                   (double)chunks * (CHUNK_FIXED + CHAIN_ENTRY * p.chains + 8 + 4 * 5.0 * p.chains) +
                   (double)n * (p.image_crc ? 4 : 0) + 4.0 * ((double)n * chain_bits / 32 + chunks);
    if (total > (double)SIZE_MAX / 2)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "agave_codec_bound: %lld images need more bytes "
                         "than this machine can address", (long long)n);
    *bytes = (size_t)total;
    return AGAVE_OK;
}

typedef struct mem_out { uint8_t *p; size_t cap, len; int full; } mem_out;

static agave_status mem_write(const void *data, size_t len, void *user)
{
    mem_out *o = user;
    if (len > o->cap - o->len) {
        o->full = 1;
        return AGAVE_ERR_LIMIT;
    }
    memcpy(o->p + o->len, data, len);
    o->len += len;
    return AGAVE_OK;
}

agave_status agave_codec_encode(agave_model *m, const agave_codec_options *opt,
                                const uint8_t *x, int64_t n, void *dst, size_t capacity,
                                size_t *size)
{
    if (!m)
        return AGAVE_ERR_NULL;
    if ((!x && n > 0) || !dst || !size)
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_codec_encode: x, dst or size is NULL");
    *size = 0;
    mem_out o = {dst, capacity, 0, 0};
    agave_codec_encoder *e = NULL;
    agave_status st = agave_codec_encoder_create(m, opt, n, mem_write, &o, &e);
    const size_t D = e ? e->core.plan.D : 0;
    for (int64_t at = 0; at < n && st == AGAVE_OK; at += CODEC_MAX_BATCH) {
        int k = n - at < CODEC_MAX_BATCH ? (int)(n - at) : CODEC_MAX_BATCH;
        st = agave_codec_encoder_add(e, x + (size_t)at * D, k);
    }
    if (st == AGAVE_OK)
        st = agave_codec_encoder_finish(e);
    agave_codec_encoder_free(e);
    if (o.full)
        return ctx_error(m->ctx, AGAVE_ERR_LIMIT, "agave_codec_encode: the output does not fit "
                         "in %zu bytes (agave_codec_bound gives a size that always does)",
                         capacity);
    if (st == AGAVE_OK)
        *size = o.len;
    return st;
}

typedef struct mem_in { const uint8_t *p; size_t len, at; } mem_in;

static agave_status mem_read(void *data, size_t len, size_t *got, void *user)
{
    mem_in *in = user;
    size_t n = in->len - in->at < len ? in->len - in->at : len;
    memcpy(data, in->p + in->at, n);
    in->at += n;
    *got = n;
    return AGAVE_OK;
}

agave_status agave_codec_decode(agave_model *m, const void *data, size_t size, uint8_t *x,
                                int64_t capacity, int64_t *n)
{
    if (!m)
        return AGAVE_ERR_NULL;
    if (!data || !n || (!x && capacity > 0))
        return ctx_error(m->ctx, AGAVE_ERR_NULL, "agave_codec_decode: data, x or n is NULL");
    *n = 0;
    mem_in in = {data, size, 0};
    agave_codec_decoder *d;
    TRY(agave_codec_decoder_create(m, NULL, mem_read, &in, &d));
    const codec_plan *p = &d->core.plan;
    agave_status st = AGAVE_OK;
    if (p->n_images > capacity)
        st = ctx_error(m->ctx, AGAVE_ERR_LIMIT, "agave_codec_decode: the buffer holds %lld "
                       "images, x has room for %lld", (long long)p->n_images,
                       (long long)capacity);
    int64_t done = 0;
    int got = 1;
    uint8_t spare[1];   /* where the last read, which finds the end, may point */
    while (st == AGAVE_OK && got > 0) {
        int64_t room = capacity - done;
        uint8_t *at = room > 0 ? x + (size_t)done * p->D : spare;
        int max_n = room > CODEC_MAX_CHUNK ? CODEC_MAX_CHUNK : room > 0 ? (int)room : 1;
        st = agave_codec_decoder_read(d, at, max_n, &got);
        done += got;
    }
    agave_codec_decoder_free(d);
    if (st == AGAVE_OK)
        *n = done;
    return st;
}
