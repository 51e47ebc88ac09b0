/* A program built against a variant of agave.h, linked to the library of
 * this tree (tests/struct_size.sh). The variants: the header itself; every
 * size-prefixed struct shorter (as if built against an older header); every
 * one with a field more, agave_test_extra (a newer header). It prints the
 * figures that depend on what the library read from its structs, which must
 * be the same whatever the variant, and checks on its own that the library
 * never wrote past a struct (each sits before a canary) and, with the field
 * more, that a set unknown field is refused and never overwritten.
 *
 * usage: program OUT.png [KEY,KEY,...]   (keys the short agave_config lacks) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agave.h"

#define CANARY 0xA5
#define N_IMAGES 4

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "struct_size program: FAIL: %s\n", what);
        failures++;
    }
}

/* A struct followed by 64 canary bytes; the whole is first filled with them. */
#define WRAPPED(type) struct { type s; unsigned char canary[64]; }
#define FILL(w) memset(&(w), CANARY, sizeof(w))

static int canary_ok(const unsigned char *c)
{
    for (int i = 0; i < 64; i++)
        if (c[i] != CANARY)
            return 0;
    return 1;
}

#ifdef AGAVE_TEST_LONG
/* A field the library does not know, set: refused by a reader. */
#define SET_EXTRA(s) ((s).agave_test_extra = 1)
#define CLEAR_EXTRA(s) ((s).agave_test_extra = 0)
#else
#define SET_EXTRA(s) ((void)0)
#define CLEAR_EXTRA(s) ((void)0)
#endif

static void images(uint8_t *x)
{
    for (int i = 0; i < N_IMAGES * 64; i++)
        x[i] = (uint8_t)(i * 37 % 251);
}

typedef struct sink { uint8_t bytes[1 << 16]; size_t len; } sink;

static agave_status sink_write(const void *data, size_t len, void *user)
{
    sink *k = user;
    if (len > sizeof k->bytes - k->len)
        return AGAVE_ERR_LIMIT;
    memcpy(k->bytes + k->len, data, len);
    k->len += len;
    return AGAVE_OK;
}

/* The codec: options read (the short struct's missing fields are the
 * defaults), the header's info and the encoder's statistics written. */
static void codec(agave_context *ctx, agave_model *m, const uint8_t *x)
{
    WRAPPED(agave_codec_options) o;
    FILL(o);
    agave_codec_options_init(&o.s);
    check(canary_ok(o.canary), "agave_codec_options_init wrote past the caller's struct");
    o.s.batch = 3, o.s.chunk = 3;
    static sink k;
    agave_codec_encoder *e = NULL;
    SET_EXTRA(o.s);
#ifdef AGAVE_TEST_LONG
    check(agave_codec_encoder_create(m, &o.s, N_IMAGES, sink_write, &k, &e) ==
              AGAVE_ERR_INVALID_ARG,
          "agave_codec_encoder_create accepted a set field it does not know");
#endif
    CLEAR_EXTRA(o.s);
    k.len = 0;
    if (agave_codec_encoder_create(m, &o.s, N_IMAGES, sink_write, &k, &e) != AGAVE_OK) {
        check(0, agave_context_last_error(ctx));
        return;
    }
    check(agave_codec_encoder_add(e, x, N_IMAGES) == AGAVE_OK, "agave_codec_encoder_add");
    check(agave_codec_encoder_finish(e) == AGAVE_OK, "agave_codec_encoder_finish");
    WRAPPED(agave_codec_stats) st;
    FILL(st);
    st.s.struct_size = sizeof st.s;
    SET_EXTRA(st.s);
    check(agave_codec_encoder_stats(e, &st.s) == AGAVE_OK, "agave_codec_encoder_stats");
    check(canary_ok(st.canary), "agave_codec_encoder_stats wrote past agave_codec_stats");
#ifdef AGAVE_TEST_LONG
    check(st.s.agave_test_extra == 1, "the codec's stats overwrote a field they do not know");
#endif
    printf("codec: %zu bytes; images %lld pixel bits %.9g prior %.9g posterior %.9g\n", k.len,
           (long long)st.s.n_images, st.s.pixel_bits, st.s.latent_prior_bits,
           st.s.latent_posterior_bits);
    agave_codec_encoder_free(e);
    WRAPPED(agave_codec_info) info;
    FILL(info);
    info.s.struct_size = sizeof info.s;
    SET_EXTRA(info.s);
    check(agave_codec_peek(ctx, k.bytes, k.len, &info.s) == AGAVE_OK, "agave_codec_peek");
    check(canary_ok(info.canary), "agave_codec_peek wrote past agave_codec_info");
#ifdef AGAVE_TEST_LONG
    check(info.s.agave_test_extra == 1, "agave_codec_peek overwrote a field it does not know");
#endif
    printf("codec info: images %lld %dx%dx%d batch %d chunk %d latent_bits %d image_crc %d\n",
           (long long)info.s.n_images, info.s.C, info.s.H, info.s.W, info.s.batch, info.s.chunk,
           info.s.latent_bits, info.s.image_crc);
    uint8_t y[N_IMAGES * 64];
    int64_t n = 0;
    check(agave_codec_decode(m, k.bytes, k.len, y, N_IMAGES, &n) == AGAVE_OK &&
              n == N_IMAGES && memcmp(x, y, sizeof y) == 0,
          "agave_codec_decode did not give the images back");
}

/* agave_eval_progress comes from the library: only what its struct_size
 * covers is read (short headers lack the last field, samples). */
static int progress_calls, progress_last_done;

static int on_progress(const agave_eval_progress *p, void *user)
{
    /* never set: the default, also when a short header's struct lacks it */
    check(user == NULL, "agave_eval_options.progress_user read past the caller's struct");
    check(p->struct_size >= sizeof(size_t) + 2 * sizeof(int), "agave_eval_progress too small");
    progress_calls++;
    progress_last_done = p->images_done;
    return 0;
}

/* agave_run_state: every field is needed (it is new in 1.0, where it has
 * 56 bytes), so a shorter one is refused; the library writes nothing past
 * the caller's struct and refuses a set field it does not know. */
#define RUN_STATE_1_0_SIZE 56
#define RUN_IMAGES_AT 48
static void run_state(agave_model *m)
{
    WRAPPED(agave_run_state) r;
    FILL(r);
    memset(&r.s, 0, sizeof r.s);
    r.s.struct_size = sizeof r.s;
    r.s.seed = 5, r.s.batch = 4, r.s.threads = 1;
    int whole = sizeof r.s >= RUN_STATE_1_0_SIZE;
    if (whole)   /* images, the last field of 1.0, which a shorter header lacks */
        memcpy((char *)&r.s + RUN_IMAGES_AT, &(int64_t){64}, 8);
    SET_EXTRA(r.s);
#ifdef AGAVE_TEST_LONG
    check(agave_model_set_run_state(m, &r.s) == AGAVE_ERR_INVALID_ARG,
          "agave_model_set_run_state accepted a set field it does not know");
#endif
    CLEAR_EXTRA(r.s);
    agave_status st = agave_model_set_run_state(m, &r.s);
    check(whole ? st == AGAVE_OK : st == AGAVE_ERR_INVALID_ARG, "agave_model_set_run_state");
    if (!whole)
        return;
    FILL(r);
    r.s.struct_size = sizeof r.s;
    SET_EXTRA(r.s);
    check(agave_model_run_state(m, &r.s) == AGAVE_OK, "agave_model_run_state");
    check(canary_ok(r.canary), "agave_model_run_state wrote past agave_run_state");
#ifdef AGAVE_TEST_LONG
    check(r.s.agave_test_extra == 1, "agave_model_run_state overwrote a field it does not know");
#endif
    int64_t images;
    memcpy(&images, (char *)&r.s + RUN_IMAGES_AT, 8);
    check(r.s.seed == 5 && r.s.batch == 4 && r.s.threads == 1 && images == 64,
          "agave_model_run_state gave back other values");
}

/* Per-image figures and a progress function through agave_eval_options. */
static void scores(agave_context *ctx, agave_model *m, const uint8_t *x)
{
    WRAPPED(agave_eval_options) o;
    FILL(o);
    agave_eval_options_init(&o.s);
    check(canary_ok(o.canary), "agave_eval_options_init wrote past the caller's struct");
    check(o.s.elbo_bpd == NULL && o.s.progress == NULL, "agave_eval_options_init defaults");
    double elbo[N_IMAGES], iwae[N_IMAGES];
    o.s.elbo_bpd = elbo;
    o.s.iwae_bpd = iwae;
    o.s.progress = on_progress;
    agave_eval_stats st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    SET_EXTRA(o.s);
#ifdef AGAVE_TEST_LONG
    check(agave_model_evaluate_scores(m, x, N_IMAGES, 3, &o.s, &st) == AGAVE_ERR_INVALID_ARG,
          "agave_model_evaluate_scores accepted a set field it does not know");
#endif
    CLEAR_EXTRA(o.s);
    agave_context_seed(ctx, 3);
    check(agave_model_evaluate_scores(m, x, N_IMAGES, 3, &o.s, &st) == AGAVE_OK,
          agave_context_last_error(ctx));
    check(progress_calls > 0 && progress_last_done == N_IMAGES, "the progress function");
    printf("scores: elbo %.9g %.9g %.9g %.9g iwae %.9g %.9g %.9g %.9g mean iwae %.9g\n", elbo[0],
           elbo[1], elbo[2], elbo[3], iwae[0], iwae[1], iwae[2], iwae[3], st.iwae_bpd);
}

static void config_and_model(agave_context *ctx, const char *missing_keys)
{
    WRAPPED(agave_config) c, got;
    FILL(c);
    check(agave_config_init(&c.s, "tiny") == AGAVE_OK, "agave_config_init");
    check(canary_ok(c.canary), "agave_config_init wrote past the caller's agave_config");
    check(c.s.struct_size == sizeof c.s, "agave_config_init: struct_size is not sizeof");
    check(agave_config_set(&c.s, "lr", "0.001") == AGAVE_OK, "agave_config_set lr");
    /* Keys of fields this struct lacks cannot be set, and nothing is written. */
    char keys[256];
    snprintf(keys, sizeof keys, "%s", missing_keys ? missing_keys : "");
    for (char *k = strtok(keys, ","); k; k = strtok(NULL, ","))
        check(agave_config_set(&c.s, k, "1") == AGAVE_ERR_UNKNOWN_KEY && canary_ok(c.canary),
              "agave_config_set of a field the struct lacks is not AGAVE_ERR_UNKNOWN_KEY");
    /* Every key as the library reads this struct: the defaults for the
     * fields it lacks. */
    printf("config:");
    for (int i = 0; i < agave_config_key_count(); i++) {
        WRAPPED(agave_config_key) k;
        FILL(k);
        k.s.struct_size = sizeof k.s;
        SET_EXTRA(k.s);
        check(agave_config_key_info(i, &k.s) == AGAVE_OK, "agave_config_key_info");
        check(canary_ok(k.canary), "agave_config_key_info wrote past agave_config_key");
#ifdef AGAVE_TEST_LONG
        check(k.s.agave_test_extra == 1, "agave_config_key_info overwrote a field it does not know");
#endif
        char value[AGAVE_CONFIG_VALUE_MAX];
        check(agave_config_get(&c.s, k.s.name, value, sizeof value) == AGAVE_OK,
              "agave_config_get");
        printf(" %s=%s", k.s.name, value);
    }
    printf("\n");
    char msg[256];
    check(agave_config_validate(&c.s, msg, sizeof msg) == AGAVE_OK, msg);

    agave_model *m = NULL;
    SET_EXTRA(c.s);
#ifdef AGAVE_TEST_LONG
    check(agave_model_create(ctx, &c.s, &m) == AGAVE_ERR_CONFIG,
          "agave_model_create accepted a set field it does not know");
    check(strstr(agave_context_last_error(ctx), "newer agave.h") != NULL,
          "the refusal does not say the header is newer");
#endif
    CLEAR_EXTRA(c.s);
    if (agave_model_create(ctx, &c.s, &m) != AGAVE_OK) {
        check(0, agave_context_last_error(ctx));
        return;
    }
    FILL(got);
    check(agave_model_get_config(m, &got.s) == AGAVE_OK, "agave_model_get_config");
    check(canary_ok(got.canary), "agave_model_get_config wrote past the caller's struct");
#ifdef AGAVE_TEST_LONG
    check(got.s.agave_test_extra == 0, "agave_model_get_config left a field it does not know set");
#endif
    check(memcmp(&got.s, &c.s, sizeof c.s) == 0,
          "agave_model_get_config differs from the configuration given");

    uint8_t x[N_IMAGES * 64];
    images(x);
    for (int step = 1; step <= 2; step++) {
        WRAPPED(agave_step_stats) st;
        FILL(st);
        st.s.struct_size = sizeof st.s;
        SET_EXTRA(st.s);
        check(agave_model_train_step(m, x, N_IMAGES, &st.s) == AGAVE_OK, "train step");
        check(canary_ok(st.canary), "agave_model_train_step wrote past agave_step_stats");
#ifdef AGAVE_TEST_LONG
        check(st.s.agave_test_extra == 1, "the train step overwrote a field it does not know");
#endif
        check(st.s.struct_size == sizeof st.s, "the train step changed struct_size");
        printf("step %d: loss %.9g pixelcnn %.9g aux %.9g kl %.9g grad_norm %.9g\n", step,
               st.s.loss_bpd, st.s.pixelcnn_bpd, st.s.aux_bpd, st.s.kl_bpd, st.s.grad_norm);
    }
    WRAPPED(agave_eval_stats) ev;
    FILL(ev);
    ev.s.struct_size = sizeof ev.s;
    SET_EXTRA(ev.s);
    check(agave_model_evaluate(m, x, N_IMAGES, 3, &ev.s) == AGAVE_OK, "evaluate");
    check(canary_ok(ev.canary), "agave_model_evaluate wrote past agave_eval_stats");
#ifdef AGAVE_TEST_LONG
    check(ev.s.agave_test_extra == 1, "evaluate overwrote a field it does not know");
#endif
    printf("eval: images %d elbo %.9g recon %.9g kl %.9g aux %.9g iwae %.9g\n", ev.s.n_images,
           ev.s.elbo_bpd, ev.s.recon_bpd, ev.s.kl_bpd, ev.s.aux_bpd, ev.s.iwae_bpd);
    scores(ctx, m, x);
    codec(ctx, m, x);
    run_state(m);
    agave_model_free(m);
}

/* A masked convolution: its output depends on every mask field the library reads. */
static void layer(agave_context *ctx)
{
    WRAPPED(agave_layer_options) o;
    FILL(o);
    check(agave_layer_options_init(&o.s) == AGAVE_OK, "agave_layer_options_init");
    check(canary_ok(o.canary), "agave_layer_options_init wrote past the caller's struct");
    o.s.in_channels = o.s.out_channels = 4;
    o.s.mask_degrees = 2;
    agave_layer *l = NULL;
    SET_EXTRA(o.s);
#ifdef AGAVE_TEST_LONG
    check(agave_layer_create(ctx, AGAVE_LAYER_CONV, &o.s, &l) == AGAVE_ERR_INVALID_ARG,
          "agave_layer_create accepted a set field it does not know");
#endif
    CLEAR_EXTRA(o.s);
    if (agave_layer_create(ctx, AGAVE_LAYER_CONV, &o.s, &l) != AGAVE_OK) {
        check(0, agave_context_last_error(ctx));
        return;
    }
    int dims[4] = {2, 4, 4, 4};
    agave_tensor *t = NULL, *y = NULL;
    check(agave_tensor_create(ctx, 4, dims, &t) == AGAVE_OK, "tensor");
    float *d = agave_tensor_data(t);
    for (int i = 0; i < 128; i++)
        d[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    check(agave_layer_forward(l, t, &y) == AGAVE_OK, "layer forward");
    const float *yd = agave_tensor_data(y);
    double sum = 0, weighted = 0;
    for (size_t i = 0; y && i < agave_tensor_numel(y); i++)
        sum += yd[i], weighted += yd[i] * (double)(i % 17);
    printf("masked conv: sum %.9g weighted %.9g\n", sum, weighted);
    agave_tensor_free(t);
    agave_layer_free(l);
}

static void grid(agave_context *ctx, const char *png)
{
    WRAPPED(agave_grid_options) g;
    FILL(g);
    agave_grid_options_init(&g.s);
    check(canary_ok(g.canary), "agave_grid_options_init wrote past the caller's struct");
    g.s.gap = 3;
    uint8_t x[N_IMAGES * 64];
    images(x);
    SET_EXTRA(g.s);
#ifdef AGAVE_TEST_LONG
    check(agave_image_grid_write(ctx, png, x, N_IMAGES, 1, 8, 8, 2, &g.s) == AGAVE_ERR_INVALID_ARG,
          "agave_image_grid_write accepted a set field it does not know");
#endif
    CLEAR_EXTRA(g.s);
    check(agave_image_grid_write(ctx, png, x, N_IMAGES, 1, 8, 8, 2, &g.s) == AGAVE_OK,
          agave_context_last_error(ctx));
}

/* A folder of three 6x6 PGM images beside the PNG, opened with a crop and a
 * resize (the fields before test_percent, which the short header lacks and
 * the library then takes at its default). */
static void data(agave_context *ctx, const char *png)
{
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s.images", png);
    check(mkdir(dir, 0777) == 0, "cannot make the image folder");
    for (int k = 0; k < 3; k++) {
        unsigned char bytes[16 + 36];
        int n = snprintf((char *)bytes, 16, "P5 6 6 255\n");
        for (int i = 0; i < 36; i++)
            bytes[n + i] = (unsigned char)(i * 7 + k * 50);
        snprintf(path, sizeof path, "%s/%d.pgm", dir, k);
        FILE *f = fopen(path, "wb");
        check(f && fwrite(bytes, 1, (size_t)n + 36, f) == (size_t)n + 36 && fclose(f) == 0,
              "cannot write an image");
    }
    WRAPPED(agave_dataset_options) o;
    FILL(o);
    agave_dataset_options_init(&o.s);
    check(canary_ok(o.canary), "agave_dataset_options_init wrote past the caller's struct");
    o.s.crop_height = o.s.crop_width = 4;
    o.s.resize_height = o.s.resize_width = 2;
    agave_dataset *ds = NULL;
    SET_EXTRA(o.s);
#ifdef AGAVE_TEST_LONG
    check(agave_dataset_open_v2(ctx, dir, AGAVE_SPLIT_TRAIN, &o.s, &ds) == AGAVE_ERR_INVALID_ARG,
          "agave_dataset_open_v2 accepted a set field it does not know");
#endif
    CLEAR_EXTRA(o.s);
    check(agave_dataset_open_v2(ctx, dir, AGAVE_SPLIT_TRAIN, &o.s, &ds) == AGAVE_OK,
          agave_context_last_error(ctx));
    unsigned sum = 0;
    size_t n = agave_dataset_count(ds);
    for (size_t i = 0; i < n * 4; i++)
        sum += agave_dataset_pixels(ds)[i];
    printf("data: %zu images of %dx%d, pixel sum %u\n", n, agave_dataset_height(ds),
           agave_dataset_width(ds), sum);
    agave_dataset_free(ds);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    agave_context *ctx;
    if (agave_context_create(&ctx, 7) != AGAVE_OK)
        return 1;
    config_and_model(ctx, argc > 2 ? argv[2] : NULL);
    layer(ctx);
    grid(ctx, argv[1]);
    data(ctx, argv[1]);
    agave_context_free(ctx);
    printf("sizes: config %zu step_stats %zu eval_stats %zu layer_options %zu grid_options %zu "
           "codec_options %zu codec_info %zu codec_stats %zu\n",
           sizeof(agave_config), sizeof(agave_step_stats), sizeof(agave_eval_stats),
           sizeof(agave_layer_options), sizeof(agave_grid_options), sizeof(agave_codec_options),
           sizeof(agave_codec_info), sizeof(agave_codec_stats));
    return failures ? 1 : 0;
}
