/* What a compressed file fixes (lib/codec/codec.h): the model's hash, the
 * machine's description, the batch schedule and the stacks' seeds. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>
#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#include "../ops/winograd.h"
#include "codec.h"

/* ---- the model's hash ---------------------------------------------------------- */
/* FNV-1a over 32-bit words, then splitmix64's finaliser. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_u32(uint64_t h, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return hash_bytes(h, b, 4);
}

/* Values of z per image: the length of each image's latent code. */
static size_t latent_size(const agave_config *c)
{
    return c->mode == AGAVE_MODE_PIXELCNN ? 0 : (size_t)c->Z * (c->H / 4) * (c->W / 4);
}

uint64_t codec_model_hash(const agave_model *m)
{
    const agave_config *c = &m->cfg;
    const int arch[] = {c->C, c->H, c->W, c->F, c->R, c->M, c->Fv, c->Rv, c->Z, c->T, c->b, c->s,
                        (int)c->mode};
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof arch / sizeof *arch; i++)
        h = hash_u32(h, (uint32_t)arch[i]);
    for (int t = 0; t < m->n_params; t++) {
        const agave_tensor *p = m->params[t];
        h = hash_bytes(h, m->param_names[t], strlen(m->param_names[t]));
        for (size_t i = 0; i < p->numel; i++) {
            uint32_t bits;
            memcpy(&bits, &p->data[i], 4);
            h = hash_u32(h, bits);
        }
    }
    h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27, h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* ---- the machine ---------------------------------------------------------------- */
/* The widest of the library's SIMD clones this CPU runs (lib/core/simd.h),
 * and whether it has FMA (libm picks its code paths by it). */
static const char *vector_level(void)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f"))
        return __builtin_cpu_supports("fma") ? "avx512f+fma" : "avx512f";
    if (__builtin_cpu_supports("avx2"))
        return __builtin_cpu_supports("fma") ? "avx2+fma" : "avx2";
    return "x86-64";
#else
    return "generic";
#endif
}

void codec_environment(char env[CODEC_ENV_MAX])
{
#if defined(__GLIBC__)
    const char *libc = gnu_get_libc_version();
#else
    const char *libc = "unknown";
#endif
#if defined(__VERSION__)
    const char *compiler = __VERSION__;
#else
    const char *compiler = "unknown";
#endif
    snprintf(env, CODEC_ENV_MAX, "libagave %s; cc %s; OpenBLAS %s; gemm %s; %s; libc %s; "
             "pixelcnn %s; conv %s", agave_version_string(), compiler, openblas_get_corename(),
             gemm_fp32_engine_name(), vector_level(), libc,
             codec_fixed_products() ? "fixed products by row" : "blas by pixel",
             winograd_available() ? "winograd f(4,3)" : "im2col");
}

int codec_fixed_products(void) { return cached_sampler_fixed_products_available(); }

/* ---- plans ------------------------------------------------------------------------ */
agave_status codec_check_products(agave_context *ctx)
{
    if (ctx->precision == AGAVE_PRECISION_FP32)
        return AGAVE_OK;
    return ctx_error(ctx, AGAVE_ERR_CONFIG, "codec: the codec computes its tables with float32 "
                     "products only; this context is set to bf16 (agave_context_set_precision"
                     "(ctx, AGAVE_PRECISION_FP32))");
}

agave_status codec_plan_make(agave_model *m, const agave_codec_options *opt, int64_t n,
                             codec_plan *plan)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    if (c->mode == AGAVE_MODE_VAE)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "codec: a mode vae model has no model of the "
                         "image itself (only of y); use mode agave, naive or pixelcnn");
    if (c->mode != AGAVE_MODE_PIXELCNN && c->T > 0)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "codec: T = %d: bits-back coding here needs a "
                         "factorised posterior (T = 0, no IAF)", c->T);
    if (c->M > CODEC_MAX_MIX)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "codec: M = %d mixture components (at most %d)",
                         c->M, CODEC_MAX_MIX);
    if (opt->batch < 1 || opt->batch > CODEC_MAX_BATCH || opt->chunk < opt->batch ||
        opt->chunk > CODEC_MAX_CHUNK || opt->latent_bits < CODEC_MIN_LATENT_BITS ||
        opt->latent_bits > CODEC_MAX_LATENT_BITS || (opt->image_crc != 0 && opt->image_crc != 1))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG,
                         "codec options: batch %d (1..%d), chunk %d (batch..%d), latent_bits %d "
                         "(%d..%d), image_crc %d (0 or 1)", opt->batch, CODEC_MAX_BATCH,
                         opt->chunk, CODEC_MAX_CHUNK, opt->latent_bits, CODEC_MIN_LATENT_BITS,
                         CODEC_MAX_LATENT_BITS, opt->image_crc);
    if (n < 0 || n > CODEC_MAX_IMAGES)
        return ctx_error(ctx, AGAVE_ERR_LIMIT, "codec: %lld images (0..2^40)", (long long)n);
    memset(plan, 0, sizeof *plan);
    plan->C = c->C, plan->H = c->H, plan->W = c->W;
    plan->D = (size_t)c->C * c->H * c->W;
    plan->mode = c->mode;
    plan->latent = latent_size(c);
    plan->latent_bits = opt->latent_bits;
    plan->batch = opt->batch, plan->chunk = opt->chunk;
    plan->threads = ctx->threads;
    plan->chains = ctx->threads < opt->batch ? ctx->threads : opt->batch;
    plan->image_crc = opt->image_crc;
    plan->n_images = n;
    plan->model_hash = codec_model_hash(m);
    codec_environment(plan->env);
    return AGAVE_OK;
}

agave_status codec_plan_check(agave_model *m, const codec_plan *plan)
{
    agave_context *ctx = m->ctx;
    const agave_config *c = &m->cfg;
    if (plan->C != c->C || plan->H != c->H || plan->W != c->W)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "the file holds %dx%dx%d images, the model "
                         "takes %dx%dx%d", plan->C, plan->H, plan->W, c->C, c->H, c->W);
    uint64_t hash = codec_model_hash(m);
    if (plan->mode != c->mode || plan->model_hash != hash)
        return ctx_error(ctx, AGAVE_ERR_CONFIG, "the file was written with another model "
                         "(parameter hash %016llx, this model's %016llx): decode it with the "
                         "checkpoint and weights (average or raw) it was compressed with",
                         (unsigned long long)plan->model_hash, (unsigned long long)hash);
    size_t latent = latent_size(c);
    if (plan->latent != latent)
        return ctx_error(ctx, AGAVE_ERR_FORMAT, "the file's header says %zu latent values per "
                         "image, this model has %zu: the header is damaged", plan->latent, latent);
    TRY(codec_check_products(ctx));
    if (plan->threads != ctx->threads)
        return ctx_error(ctx, AGAVE_ERR_STATE, "the file was compressed with %d threads and is "
                         "decoded exactly only with as many (agave_context_set_threads(ctx, "
                         "%d)); this context has %d", plan->threads, plan->threads,
                         ctx->threads);
    char env[CODEC_ENV_MAX];
    codec_environment(env);
    if (strcmp(env, plan->env) != 0)
        return ctx_error(ctx, AGAVE_ERR_STATE, "the file was compressed by [%s], this is [%s]: "
                         "decoding is exact only with the same library build, BLAS kernels and "
                         "CPU vector width (docs/codec.md)", plan->env, env);
    return AGAVE_OK;
}

int codec_batch_size(const codec_plan *plan, int n, int done, int j)
{
    if (done >= n)
        return 0;
    /* per chain 1, 2, 3, 5, 8, 12, ... (x1.5 rounded up): a chain's first
     * images pop their latent codes from few bits, and each batch pushes
     * more than the next one pops (docs/codec.md, "Initial bits") */
    long per_chain = 1;
    for (int i = 0; i < j && per_chain * plan->chains < plan->batch; i++)
        per_chain += (per_chain + 1) / 2;
    long b = per_chain * plan->chains;
    if (b > plan->batch)
        b = plan->batch;
    if (b > n - done)
        b = n - done;
    return (int)b;
}

uint64_t codec_chain_seed(const codec_plan *plan, int64_t k, int t)
{
    return plan->model_hash ^ ((uint64_t)k << 13) ^ (uint64_t)(t + 1);
}

size_t codec_chain_max_words(const codec_plan *plan, int n)
{
    /* A push adds at most prec + 1 bits to the stack and the state; the stack
     * is empty whenever a virtual word comes in. */
    int zprec = plan->latent_bits > CODEC_LATENT_PREC ? plan->latent_bits : CODEC_LATENT_PREC;
    double bits = 95.0 + (double)n * ((double)plan->D * (CODEC_PIXEL_PREC + 1) +
                                      (double)plan->latent * (zprec + 1));
    return (size_t)(bits / 32) + 2;
}
