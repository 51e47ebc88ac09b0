/* Writes the seed corpora of the fuzz harnesses:
 *   DIR/idx/         IDX image files (for fuzz_idx)
 *   DIR/cifar/       CIFAR-10 batches (for fuzz_cifar)
 *   DIR/checkpoint/  checkpoints (for fuzz_checkpoint)
 *   DIR/codec/       compressed files of fuzz/codec_model.h's model (for fuzz_codec)
 *   DIR/config/      configuration texts (for fuzz_config)
 *   DIR/image/       PNG, JPEG, BMP and PGM/PPM files (for fuzz_image)
 * Each kind: small valid files, gzip variants (compressed here and compressed
 * by the harness, one and two members), truncations, trailing bytes and the
 * usual mistakes (an IDX label file, a bad CIFAR label, a wrong magic). The
 * data seeds start with the harness's control byte (fuzz/fuzz_common.h).
 * The seeds are small on purpose: libFuzzer's speed falls with input size,
 * and a few images reach every branch a large file would.
 *
 * usage: make_corpus DIR   (run by `make fuzz`; DIR/kind/ must not exist yet
 *                            or is added to) */
#include <errno.h>
#include <sys/stat.h>

#include "codec_model.h"
#include "fuzz_common.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

static const char *g_dir;
static int g_written;

static void fail(const char *what)
{
    fprintf(stderr, "make_corpus: %s\n", what);
    exit(1);
}

/* DIR/kind/name := ctl byte (if ctl >= 0) + bytes. */
static void seed(const char *kind, const char *name, int ctl, const uint8_t *bytes, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, kind);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        fail("cannot create the corpus directory");
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, kind, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        fail("cannot write a seed");
    if (ctl >= 0)
        fputc(ctl, f);
    if (len && fwrite(bytes, 1, len, f) != len)
        fail("cannot write a seed");
    if (fclose(f) != 0)
        fail("cannot write a seed");
    g_written++;
}

/* A gzip file of bytes: `members` members (1 or 2) at deflate level 6. */
static uint8_t *gzip_of(const uint8_t *bytes, size_t len, int members, size_t *out_len)
{
    uint8_t *gz = NULL;
    *out_len = 0;
    size_t cut = members == 2 ? len / 3 : len;
    if (!fuzz_gzip_append(&gz, out_len, bytes, cut, 6) ||
        (members == 2 && !fuzz_gzip_append(&gz, out_len, bytes + cut, len - cut, 6)))
        fail("zlib failed");
    return gz;
}

/* The variants every data format gets. */
static void data_seeds(const char *kind, const char *stem, const uint8_t *file, size_t len)
{
    char name[128];
    size_t gz_len, gz2_len;
    uint8_t *gz = gzip_of(file, len, 1, &gz_len), *gz2 = gzip_of(file, len, 2, &gz2_len);
    snprintf(name, sizeof name, "%s-plain", stem);
    seed(kind, name, 0x00, file, len);
    snprintf(name, sizeof name, "%s-guess", stem);          /* no hint in the name */
    seed(kind, name, 0x08, file, len);
    snprintf(name, sizeof name, "%s-gzip-here", stem);      /* the harness compresses */
    seed(kind, name, 0x61, file, len);
    snprintf(name, sizeof name, "%s-gzip-stored", stem);    /* level 0: stored blocks */
    seed(kind, name, 0x05, file, len);
    snprintf(name, sizeof name, "%s-gzip-two-members-here", stem);
    seed(kind, name, 0x96, file, len);
    snprintf(name, sizeof name, "%s-gz", stem);             /* a real .gz file */
    seed(kind, name, 0x04, gz, gz_len);
    snprintf(name, sizeof name, "%s-gz-two-members", stem);
    seed(kind, name, 0x04, gz2, gz2_len);
    snprintf(name, sizeof name, "%s-gz-truncated", stem);
    seed(kind, name, 0x04, gz, gz_len - 6);
    snprintf(name, sizeof name, "%s-gz-junk-after", stem);
    uint8_t *junk = malloc(gz_len + 3);
    memcpy(junk, gz, gz_len);
    memcpy(junk + gz_len, "\x00\x01\x02", 3);
    seed(kind, name, 0x00, junk, gz_len + 3);
    snprintf(name, sizeof name, "%s-truncated-half", stem);
    seed(kind, name, 0x00, file, len / 2);
    snprintf(name, sizeof name, "%s-truncated-3", stem);
    seed(kind, name, 0x00, file, 3);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, file, len);
    longer[len] = 7;
    snprintf(name, sizeof name, "%s-trailing-byte", stem);
    seed(kind, name, 0x00, longer, len + 1);
    free(longer);
    free(junk);
    free(gz);
    free(gz2);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX image file of n images of rows x cols (a simple pattern). */
static uint8_t *idx_file(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t *len)
{
    *len = 16 + (size_t)n * rows * cols;
    uint8_t *p = malloc(*len);
    put_be32(p, magic);
    put_be32(p + 4, n);
    put_be32(p + 8, rows);
    put_be32(p + 12, cols);
    for (size_t i = 16; i < *len; i++)
        p[i] = (uint8_t)(i * 37);
    return p;
}

static void idx_seeds(void)
{
    size_t len;
    uint8_t *p = idx_file(0x00000803u, 3, 4, 4, &len);
    data_seeds("idx", "idx-3x4x4", p, len);
    seed("idx", "idx-header-only", 0x00, p, 16);
    free(p);
    p = idx_file(0x00000803u, 1, 28, 28, &len);
    seed("idx", "idx-1x28x28", 0x00, p, len);
    free(p);
    p = idx_file(0x00000801u, 3, 4, 4, &len);   /* a label file's magic */
    seed("idx", "idx-label-magic", 0x00, p, len);
    free(p);
    p = idx_file(0x00000803u, 0, 4, 4, &len);   /* zero images */
    seed("idx", "idx-zero-images", 0x00, p, len);
    free(p);
    seed("idx", "empty", 0x00, NULL, 0);
}

static void cifar_seeds(void)
{
    enum { RECORD = 3073 };
    uint8_t *p = malloc(2 * RECORD);
    for (size_t i = 0; i < 2 * RECORD; i++)
        p[i] = (uint8_t)(i * 13);
    p[0] = 3, p[RECORD] = 9;   /* labels */
    data_seeds("cifar", "cifar-2", p, 2 * RECORD);
    seed("cifar", "cifar-1", 0x00, p, RECORD);
    p[RECORD] = 10;            /* a label out of 0..9 */
    seed("cifar", "cifar-bad-label", 0x00, p, 2 * RECORD);
    free(p);
    seed("cifar", "empty", 0x00, NULL, 0);
}

/* ---- checkpoints ---------------------------------------------------------------- */
static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail("cannot read back a checkpoint");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? (size_t)n : 1);
    if (n < 0 || fread(p, 1, (size_t)n, f) != (size_t)n)
        fail("cannot read back a checkpoint");
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* A model of the smallest sizes the configuration allows, saved fresh or
 * after `steps` training steps (which adds the optimiser and averaging
 * sections); the overrides are "key=value" pairs. */
static void checkpoint_seed(agave_context *ctx, const char *name, int steps,
                            const char *const *sets, int n_sets)
{
    agave_config cfg;
    agave_config_init(&cfg, "tiny");
    static const char *const micro[] = {"H=4", "W=4", "F=1", "R=0", "M=1", "Fv=1", "Rv=0",
                                        "Z=1", "T=0", "ema=0"};
    for (size_t i = 0; i < sizeof micro / sizeof *micro; i++) {
        char kv[32];
        snprintf(kv, sizeof kv, "%s", micro[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        agave_config_set(&cfg, kv, eq + 1);
    }
    for (int i = 0; i < n_sets; i++) {
        char kv[32];
        snprintf(kv, sizeof kv, "%s", sets[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        if (agave_config_set(&cfg, kv, eq + 1) != AGAVE_OK)
            fail("bad override");
    }
    agave_model *m;
    if (agave_model_create(ctx, &cfg, &m) != AGAVE_OK)
        fail(agave_context_last_error(ctx));
    uint8_t x[2 * 3 * 8 * 8];
    for (size_t i = 0; i < sizeof x; i++)
        x[i] = (uint8_t)(i * 29);
    for (int s = 0; s < steps; s++) {
        agave_step_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof st;
        if (agave_model_train_step(m, x, 2, &st) != AGAVE_OK)
            fail(agave_context_last_error(ctx));
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/checkpoint/%s", g_dir, name);
    if (agave_model_save(m, path) != AGAVE_OK)
        fail(agave_context_last_error(ctx));
    agave_model_free(m);
    g_written++;
}

static void checkpoint_seeds(void)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 7) != AGAVE_OK)
        fail("cannot create a context");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/checkpoint", g_dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        fail("cannot create the corpus directory");
    checkpoint_seed(ctx, "fresh", 0, NULL, 0);
    static const char *const ema[] = {"ema=0.9"};
    checkpoint_seed(ctx, "trained-ema", 1, ema, 1);
    static const char *const adam[] = {"optimizer=adam", "mode=vae"};
    checkpoint_seed(ctx, "trained-adam-vae", 1, adam, 2);
    static const char *const iaf[] = {"C=3", "T=1", "s=2", "R=1", "mode=naive"};
    checkpoint_seed(ctx, "iaf-rgb", 0, iaf, 5);
    /* Cut and damaged copies of the fresh one (the harness also loads each
     * with its length and CRC repaired, which reaches the parser's checks). */
    size_t len;
    snprintf(dir, sizeof dir, "%s/checkpoint/fresh", g_dir);
    uint8_t *p = read_all(dir, &len);
    seed("checkpoint", "cut-28", -1, p, 28);
    seed("checkpoint", "cut-half", -1, p, len / 2);
    seed("checkpoint", "cut-4", -1, p, len - 4);
    p[9] ^= 1;   /* version v -> v + 0x100 */
    seed("checkpoint", "version", -1, p, len);
    p[9] ^= 1;
    p[len / 2] ^= 0x40;   /* a flipped bit: CRC mismatch */
    seed("checkpoint", "bit-flip", -1, p, len);
    p[0] = 'X';
    seed("checkpoint", "magic", -1, p, len);
    free(p);
    agave_context_free(ctx);
}

/* A compressed file of n of the fixed images, with a control byte ctl. */
static void codec_seed(agave_model *m, const char *name, int n, int batch, int chunk, int bits,
                       int image_crc, int ctl)
{
    agave_codec_options opt;
    agave_codec_options_init(&opt);
    opt.batch = batch, opt.chunk = chunk, opt.latent_bits = bits, opt.image_crc = image_crc;
    uint8_t x[FUZZ_CODEC_MAX_IMAGES * 64], out[1 << 16];
    fuzz_codec_images(x, n);
    size_t len;
    if (agave_codec_encode(m, &opt, x, n, out, sizeof out, &len) != AGAVE_OK)
        fail("cannot compress a codec seed");
    seed("codec", name, ctl, out, len);
    if (n > 1) {   /* damaged copies: cut, a flipped bit (with CRCs repaired: ctl bit 0) */
        char cut[128];
        snprintf(cut, sizeof cut, "%s-cut", name);
        seed("codec", cut, ctl, out, len * 2 / 3);
        out[len / 2] ^= 0x08;
        snprintf(cut, sizeof cut, "%s-flip-repaired", name);
        seed("codec", cut, ctl | 1, out, len);
    }
}

static void codec_seeds(void)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 1) != AGAVE_OK)
        fail("cannot create a context");
    agave_model *m = fuzz_codec_model(ctx);
    if (!m)
        fail("cannot create the codec's model");
    codec_seed(m, "empty", 0, 4, 4, 8, 1, 0);
    codec_seed(m, "one", 1, 4, 4, 8, 1, 0);
    codec_seed(m, "six", 6, 4, 4, 8, 1, 2);
    codec_seed(m, "twelve-chunks", 12, 3, 5, 4, 0, 0);
    codec_seed(m, "nine-16-bits", 9, 9, 9, 16, 1, 2);
    agave_model_free(m);
    agave_context_free(ctx);
}

/* ---- images: a control byte (the fit, fuzz/fuzz_image.c) and a file -------- */

/* Small images of every kind the decoders take, written by stb_image_write
 * (an encoder, not the decoder under test) or byte by byte. */
static void image_seed(const char *name, int ctl, const uint8_t *bytes, size_t len)
{
    seed("image", name, ctl, bytes, len);
}

typedef struct mem_buf {
    uint8_t *bytes;
    size_t len;
} mem_buf;

static void to_mem(void *user, void *data, int size)
{
    mem_buf *m = user;
    uint8_t *p = realloc(m->bytes, m->len + (size_t)size);
    if (!p)
        fail("out of memory");
    memcpy(p + m->len, data, (size_t)size);
    m->bytes = p;
    m->len += (size_t)size;
}

static void image_seeds(void)
{
    uint8_t px[4 * 12 * 10];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 29 % 256);
    for (int comp = 1; comp <= 4; comp++) {
        char name[32];
        int len;
        unsigned char *png = stbi_write_png_to_mem(px, 10 * comp, 10, 12, comp, &len);
        if (!png)
            fail("stb_image_write failed");
        snprintf(name, sizeof name, "png-%d", comp);
        image_seed(name, comp - 1, png, (size_t)len);
        STBIW_FREE(png);
        if (comp == 2)
            continue;   /* BMP and JPEG have no grey + alpha */
        mem_buf m = {NULL, 0};
        if (!stbi_write_jpg_to_func(to_mem, &m, 10, 12, comp, px, 90))
            fail("stb_image_write failed");
        snprintf(name, sizeof name, "jpeg-%d", comp);
        image_seed(name, comp % 4, m.bytes, m.len);
        free(m.bytes);
        m = (mem_buf){NULL, 0};
        if (!stbi_write_bmp_to_func(to_mem, &m, 10, 12, comp, px))
            fail("stb_image_write failed");
        snprintf(name, sizeof name, "bmp-%d", comp);
        image_seed(name, 1, m.bytes, m.len);
        free(m.bytes);
    }
    static const char pgm[] = "P5\n3 2\n255\n\1\2\3\4\5\6";
    static const char ppm[] = "P6 2 1 65535 \0\1\0\2\0\3\0\4\0\5\0\6";
    image_seed("pgm", 0, (const uint8_t *)pgm, sizeof pgm - 1);
    image_seed("ppm-16bit", 1, (const uint8_t *)ppm, sizeof ppm - 1);
    image_seed("gif", 0, (const uint8_t *)"GIF89a", 6);
    image_seed("empty", 0, NULL, 0);
}

/* Text seeds of fuzz_config: each named configuration with edits, every key
 * with a good and a bad value, the edges the validation draws, and the
 * hostile spellings a command line may bring (hex, spaces, NaN, inf, huge). */
static void config_seeds(void)
{
    static const char *const texts[][2] = {
        {"tiny", "tiny\n"},
        {"fashion", "fashion\nlambda=8\nb=32\n"},
        {"cifar-small", "cifar-small\nmode=naive\nlr=0.001\n"},
        {"cifar-paper", "cifar-paper\nT=0\nR=0\ndropout=0\n"},
        {"unknown-name", "huge\nF=16\n"},
        {"edges", "tiny\nR=0\nRv=0\ns=4\nM=1\nT=2\nb=2\nC=3\n"},
        {"every-int", "tiny\nC=3\nH=12\nW=16\nF=4\nR=2\nM=3\nFv=4\nRv=2\nZ=2\nT=1\n"
                      "b=64\ns=2\nmax_bad_steps=3\n"},
        {"every-float", "tiny\ndropout=0.25\nlambda=0\nlr=1e-4\nema=0\ngrad_clip=1.5\n"},
        {"words", "tiny\nmode=vae\nmode=pixelcnn\noptimizer=adam\noptimizer=sgd\n"},
        {"bad-values", "tiny\nF=x\nF=\nF= 8\nF=8 \nF=0x10\nF=99999999999\nlr=nan\n"
                       "lr=inf\nlambda=-1\ndropout=1\nema=1\ns=3\nb=3\nH=10\n"},
        {"no-equals", "tiny\nF\n=8\n==\nlambda==2\n"},
        {"too-large", "tiny\nF=1024\nR=32\nH=1024\nW=1024\nM=64\nZ=1024\nT=16\n"},
        {"invalid", "tiny\nC=2\n"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        seed("config", texts[i][0], -1, (const uint8_t *)texts[i][1], strlen(texts[i][1]));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    g_dir = argv[1];
    if (mkdir(g_dir, 0777) != 0 && errno != EEXIST)
        fail("cannot create DIR");
    idx_seeds();
    cifar_seeds();
    checkpoint_seeds();
    codec_seeds();
    config_seeds();
    image_seeds();
    printf("make_corpus: %d seeds in %s/{idx,cifar,checkpoint,codec,config,image}\n", g_written,
           g_dir);
    return 0;
}
