/*
 * libagave: training, evaluating and sampling AGAVE models
 * (Auxiliary Guided Autoregressive Variational autoEncoders, Lucas & Verbeek 2018).
 *
 * Usage: a model from a named configuration, trained, evaluated and saved.
 *
 *     agave_context *ctx;
 *     agave_config cfg;
 *     agave_model *model;
 *     agave_context_create(&ctx, 42);                    // seed 42
 *     agave_config_init(&cfg, "fashion");                // docs/model.md, "Configurations"
 *     agave_config_set(&cfg, "lambda", "8");             // any key, as text
 *     if (agave_model_create(ctx, &cfg, &model) != AGAVE_OK)
 *         puts(agave_context_last_error(ctx));           // says what was wrong
 *     agave_step_stats s = {.struct_size = sizeof s};
 *     for (...)                                          // x: n images, (n,C,H,W) uint8
 *         agave_model_train_step(model, x, n, &s);       // s.loss_bpd, s.kl_bpd, ...
 *     agave_eval_stats e = {.struct_size = sizeof e};
 *     agave_model_evaluate(model, test, n_test, 10, &e); // e.elbo_bpd, e.iwae_bpd
 *     agave_model_save(model, "model.ckpt");
 *     agave_model_free(model);
 *     agave_context_free(ctx);
 *
 * The header has four parts:
 *  1. Basics: status codes, version, handles, the context.
 *  2. The model-level API: configuration, the model (training, evaluation,
 *     sampling, checkpoints), data sets, image grids.
 *  3. Building blocks, for models of your own: tensors, the gradient tape, ops,
 *     the auxiliary image, losses, bounds, layers, optimisers.
 *  4. Not yet stable, declared only when AGAVE_EXPERIMENTAL is defined before
 *     this header is included; then the names kept for compatibility.
 *
 * Conventions:
 *  - Every exported name starts with agave_ / AGAVE_. Handles are opaque.
 *  - Every fallible call returns agave_status; AGAVE_OK is 0. Status values are
 *    pinned: new ones are only ever appended. The library never aborts, exits or
 *    prints on bad input. After an error, agave_context_last_error() says what was
 *    wrong in words (which shape, which file, which offset).
 *  - Free functions accept NULL.
 *  - Structs a program allocates start with size_t struct_size, the size of the
 *    struct the program was compiled with: their _init macro sets it (or write
 *    {.struct_size = sizeof s} for the statistics a call fills in). Programs
 *    built against an older or a newer header keep working: the library reads
 *    and writes only the fields both know, and uses defaults for the others
 *    (docs/build.md, "ABI policy").
 *  - Tensors are float32, up to 4-D, NCHW. Shapes of fewer dimensions are (N),
 *    (N, C), (N, C, H); every op documents the shapes it takes as "x is (N,C,H,W)".
 *  - Units: log-probabilities and losses are in nats unless a name says bpd
 *    (bits per dimension = nats / (D ln 2)).
 *
 * Lifetimes:
 *  - A tensor made by agave_tensor_create() is owned by the caller until
 *    agave_tensor_free(), and must be freed before its context.
 *  - A tensor returned by an op (agave_conv2d, agave_add, ...) lives in the
 *    context's step arena: it is valid until the next agave_tape_reset() or
 *    agave_context_free(); agave_tensor_free() on it does nothing.
 *  - agave_tensor_data() and agave_tensor_grad() return pointers borrowed from the
 *    tensor, valid as long as the tensor is.
 *
 * Threads: a context, and everything created on it, is used by one thread at a
 * time. Different contexts may be used concurrently from different threads.
 *
 * Documentation: docs/api.md (this header as a reference page), docs/model.md
 * (the model this library implements), docs/build.md (the ABI policy).
 */
#ifndef AGAVE_H
#define AGAVE_H

#include <stddef.h>
#include <stdint.h>

#include "agave_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(AGAVE_BUILDING_LIBRARY) && defined(__GNUC__)
#define AGAVE_API __attribute__((visibility("default")))
#else
#define AGAVE_API
#endif

/* ---- Part 1: basics ----------------------------------------------------- */

/* ---- Status codes (pinned values; only ever appended) ------------------- */
typedef enum agave_status {
    AGAVE_OK = 0,
    AGAVE_ERR_NULL = 1,          /* a required pointer or handle was NULL */
    AGAVE_ERR_INVALID_ARG = 2,   /* an argument is out of its documented range */
    AGAVE_ERR_SHAPE = 3,         /* tensor shapes do not fit the operation */
    AGAVE_ERR_CONTEXT = 4,       /* handles belong to different contexts */
    AGAVE_ERR_NOMEM = 5,         /* an allocation failed */
    AGAVE_ERR_IO = 6,            /* a file could not be opened, read or written */
    AGAVE_ERR_FORMAT = 7,        /* a file is malformed, truncated or foreign */
    AGAVE_ERR_VERSION = 8,       /* a file has an unsupported format version */
    AGAVE_ERR_CHECKSUM = 9,      /* a file's checksum does not match its contents */
    AGAVE_ERR_CONFIG = 10,       /* a model configuration is invalid or mismatched */
    AGAVE_ERR_STATE = 11,        /* the call is not valid in the object's state */
    AGAVE_ERR_NUMERIC = 12,      /* a non-finite loss or gradient was produced */
    AGAVE_ERR_LIMIT = 13,        /* a size exceeds a documented limit */
    AGAVE_ERR_INTERRUPTED = 14,  /* work was stopped on request */
    AGAVE_ERR_UNKNOWN_KEY = 15   /* a configuration key that does not exist */
} agave_status;

/* Fixed English text for a status ("invalid argument", ...); never NULL. */
AGAVE_API const char *agave_status_string(agave_status status);

/* "MAJOR.MINOR.PATCH" of the library actually linked; compare with
 * AGAVE_VERSION_STRING from the header you compiled against. */
AGAVE_API const char *agave_version_string(void);
AGAVE_API unsigned agave_version_number(void);

/* ---- Handles ------------------------------------------------------------ */
/* Opaque; each is created by its _create (or _open, _load) function and freed
 * by its _free function, which accepts NULL. */
typedef struct agave_context agave_context;     /* threads, random generator, arena, tape */
typedef struct agave_model agave_model;         /* an AGAVE model with its optimiser state */
typedef struct agave_dataset agave_dataset;     /* images loaded into memory */
typedef struct agave_batcher agave_batcher;     /* shuffled minibatches of a data set */
typedef struct agave_tensor agave_tensor;       /* a float32 array of up to 4 dimensions */
typedef struct agave_layer agave_layer;         /* a parameterised building block */
typedef struct agave_optimizer agave_optimizer; /* Adamax or Adam over layers' parameters */

/* ---- Context ------------------------------------------------------------ */
/* Thread count, the seeded random generator, the step arena and the gradient
 * tape. No library state lives outside a context. */

/* Creates a context with 1 thread and the random generator seeded by seed.
 * AGAVE_ERR_NOMEM when memory or address space is short (each thread reserves
 * a BLAS work buffer when it is set up: docs/performance.md, "Threads"). */
AGAVE_API agave_status agave_context_create(agave_context **out, uint64_t seed);
AGAVE_API void agave_context_free(agave_context *ctx);

/* Threads used by this context's kernels; 1 <= n <= 1024. The same seed and
 * thread count reproduce results bit for bit. AGAVE_ERR_NOMEM (the count
 * unchanged) when the address space cannot hold n threads' BLAS work buffers.
 * docs/performance.md says how the threads are used. */
AGAVE_API agave_status agave_context_set_threads(agave_context *ctx, int n);
AGAVE_API int agave_context_threads(const agave_context *ctx);

/* A memory limit in bytes for the models of this context (0, the default: no
 * limit). agave_model_create refuses a configuration whose training step
 * would need more than the limit even at batch 1, and agave_model_init and
 * agave_model_train_step refuse a batch that would, all with
 * AGAVE_ERR_LIMIT before allocating anything, the message giving the
 * estimate and the largest batch that fits. The figure compared is
 * agave_config_estimate_bytes, plus on T > 1 threads what each training
 * replica beyond the first adds (its gradients and normalised weights, about
 * 10 bytes per parameter: docs/reliability.md). Evaluation sizes its forward passes (how many
 * image x sample rows each takes) to stay within the limit, and within about
 * 256 MiB of activations without one; sampling is not checked (it needs less
 * than a training step at batch 32). */
AGAVE_API agave_status agave_context_set_memory_limit(agave_context *ctx, size_t bytes);
AGAVE_API size_t agave_context_memory_limit(const agave_context *ctx);

/* Re-seeds the random generator (xoshiro256**, seeded through splitmix64). */
AGAVE_API agave_status agave_context_seed(agave_context *ctx, uint64_t seed);

/* The message of the last failed call on this context ("" if none). The
 * pointer is valid until the next call on the context. */
AGAVE_API const char *agave_context_last_error(const agave_context *ctx);

/* Bytes currently reserved by the step arena, and its peak since creation. */
AGAVE_API size_t agave_context_arena_bytes(const agave_context *ctx);
AGAVE_API size_t agave_context_arena_peak(const agave_context *ctx);

/* ---- Precision ---------------------------------------------------------- */
/* The arithmetic of the matrix products (convolutions, dense layers), which
 * are nearly all of a training step's work. FP32, the default, multiplies
 * float32 numbers and gives the same bits for the same seed and thread count
 * on the same machine. BF16 rounds both factors of every product to bfloat16
 * (8 bits of mantissa) and sums the products in float32, about twice as fast
 * on CPUs with AVX-512 BF16 (vdpbf16ps); parameters, gradients, the optimiser
 * and the losses stay float32. docs/performance.md compares both, speed and
 * training results. */
typedef enum agave_precision {
    AGAVE_PRECISION_FP32 = 0,
    AGAVE_PRECISION_BF16 = 1
} agave_precision;

/* Sets the precision of this context's matrix products. AGAVE_ERR_INVALID_ARG
 * for an unknown value, or for BF16 on a CPU without AVX-512 BF16 (the
 * message says so; the precision is then unchanged). */
AGAVE_API agave_status agave_context_set_precision(agave_context *ctx, agave_precision p);
/* The context's precision (AGAVE_PRECISION_FP32 for NULL). */
AGAVE_API agave_precision agave_context_precision(const agave_context *ctx);
/* 1 if this CPU can run precision p, else 0. */
AGAVE_API int agave_precision_available(agave_precision p);

/* ---- Part 2: the model-level API ---------------------------------------- */

/* ---- Configuration ------------------------------------------------------ */
/* A model is described by an agave_config: start from a named configuration
 * with agave_config_init, change it key by key with agave_config_set (as text,
 * the way a command line gives it), and give it to agave_model_create. The
 * keys, with their types, bounds, defaults and meanings, are listed by
 * agave_config_key_info; docs/model.md says what each one does. */

/* The optimiser a model trains with (and agave_optimizer_create's kind). */
typedef enum agave_optimizer_kind {
    AGAVE_OPTIM_ADAMAX = 0,   /* Kingma & Ba 2015, the paper's choice */
    AGAVE_OPTIM_ADAM = 1
} agave_optimizer_kind;

/* Which terms of the objective are trained (docs/model.md, "Objective and modes"). */
typedef enum agave_mode {
    AGAVE_MODE_AGAVE = 0,     /* PixelCNN + auxiliary term + lambda * KL */
    AGAVE_MODE_VAE = 1,       /* auxiliary term + lambda * KL only */
    AGAVE_MODE_PIXELCNN = 2,  /* unconditional PixelCNN++ only */
    AGAVE_MODE_NAIVE = 3      /* PixelCNN conditioned on f(z), no auxiliary term */
} agave_mode;

/* Each field is the key of the same name. New keys are appended. */
typedef struct agave_config {
    size_t struct_size;   /* sizeof(agave_config), set by agave_config_init */
    int C, H, W;          /* image channels (1 or 3), height and width (multiples of 4) */
    int F, R, M;          /* PixelCNN++ filters, gated blocks per stage, mixture components */
    float dropout;        /* PixelCNN++ dropout */
    int Fv, Rv, Z, T;     /* VAE filters, residual blocks per stage, latent channels, IAF steps */
    int b, s;             /* auxiliary image: colour levels, pooling factor */
    float lambda;         /* KL weight */
    agave_mode mode;      /* default AGAVE */
    /* Training */
    agave_optimizer_kind optimizer;  /* default ADAMAX */
    float lr;             /* default 0.004 */
    float ema;            /* Polyak averaging decay, 0 = off; default 0.9995 */
    float grad_clip;      /* max gradient L2 norm, 0 = off; default 0 */
    int max_bad_steps;    /* consecutive non-finite steps tolerated; default 10 */
    /* Learning-rate schedule: step k (1, 2, ...) uses
     * lr * min(1, k / lr_warmup) * lr_decay^(k - 1) (docs/model.md). */
    int lr_warmup;        /* steps of linear warm-up, 0 = none; default 100 */
    float lr_decay;       /* decay per step, in (0, 1]; 1 = none; default 1 */
} agave_config;

/* Fills cfg with a named configuration (agave_config_preset_name lists them;
 * docs/model.md, "Configurations", has the table): the architecture keys and
 * lambda from the table, every other key its default. agave_config_init(cfg,
 * name) passes sizeof *cfg as struct_size. AGAVE_ERR_INVALID_ARG for an unknown
 * name or a struct_size that does not reach lambda (cfg is then untouched). */
AGAVE_API agave_status agave_config_init_sized(agave_config *cfg, size_t struct_size,
                                               const char *name);
#define agave_config_init(cfg, name) agave_config_init_sized((cfg), sizeof *(cfg), (name))
/* The names of the named configurations, index 0, 1, ...: "tiny", "fashion",
 * "cifar-small", "cifar-paper"; NULL past the last. */
AGAVE_API const char *agave_config_preset_name(int index);

/* Sets one key from text. The text must be of the key's type (an integer, a
 * finite number, or one of the key's words): AGAVE_ERR_INVALID_ARG otherwise.
 * AGAVE_ERR_UNKNOWN_KEY when key is not a key, or names a field that cfg's
 * struct_size does not reach. Ranges are checked by agave_config_validate and
 * agave_model_create, which say what is wrong. cfg is unchanged on error. */
AGAVE_API agave_status agave_config_set(agave_config *cfg, const char *key, const char *value);
/* Writes the key's value in cfg into buf as text that agave_config_set reads
 * back to the same value ("8", "0.002", "adamax"); a field past cfg's
 * struct_size reads as its default. AGAVE_CONFIG_VALUE_MAX bytes always
 * suffice. AGAVE_ERR_UNKNOWN_KEY, AGAVE_ERR_INVALID_ARG when len is too small
 * (buf is then ""), AGAVE_ERR_CONFIG when cfg's struct_size is unusable. */
#define AGAVE_CONFIG_VALUE_MAX 32
AGAVE_API agave_status agave_config_get(const agave_config *cfg, const char *key, char *buf,
                                        size_t len);
/* Checks every key; on failure writes a sentence into msg (if not NULL), such
 * as "F = 0: PixelCNN++ filters must be in 1..1024". */
AGAVE_API agave_status agave_config_validate(const agave_config *cfg, char *msg, size_t len);

/* What a key holds. */
typedef enum agave_key_type {
    AGAVE_KEY_INT = 0,      /* an integer */
    AGAVE_KEY_FLOAT = 1,    /* a finite real number */
    AGAVE_KEY_CHOICE = 2    /* one of the words of choices (an enum in agave_config) */
} agave_key_type;

/* Key flags. ARCHITECTURE: shapes the network; fixed once a model exists, and a
 * checkpoint's must match. TRAINING: agave_model_update_config may change it on
 * an existing model. A key with neither (optimizer) is fixed but not part of
 * the network's shape. */
#define AGAVE_KEY_ARCHITECTURE 0x1u
#define AGAVE_KEY_TRAINING 0x2u

/* One key, described by agave_config_key_info. The strings are the library's,
 * valid for as long as it is loaded. */
typedef struct agave_config_key {
    size_t struct_size;         /* set by the caller: sizeof(agave_config_key) */
    const char *name;           /* "lr": what agave_config_set and _get take */
    agave_key_type type;
    unsigned flags;             /* AGAVE_KEY_ARCHITECTURE, AGAVE_KEY_TRAINING */
    double min, max;            /* INT, FLOAT: values outside [min, max] are invalid (0 for CHOICE) */
    const char *range;          /* the valid values in words: "a power of two in 2..256" */
    const char *choices;        /* CHOICE: the words in enum order, "adamax|adam"; "" otherwise */
    const char *default_value;  /* as text; NULL when the named configuration sets it */
    const char *description;    /* "PixelCNN++ filters" */
} agave_config_key;

/* The keys, index 0 .. agave_config_key_count() - 1, in a fixed order (new
 * keys are appended). agave_config_key_info fills info (the struct_size rule;
 * AGAVE_ERR_INVALID_ARG for an index out of range); agave_config_key_index
 * gives a name's index, -1 if it is not a key. */
AGAVE_API int agave_config_key_count(void);
AGAVE_API agave_status agave_config_key_info(int index, agave_config_key *info);
AGAVE_API int agave_config_key_index(const char *name);

/* 1 when a and b hold the same value for every key whose flags include all of
 * `flags` (0: every key; AGAVE_KEY_ARCHITECTURE: the same network), 0 when
 * they differ or either cannot be read (NULL, an unusable struct_size). */
AGAVE_API int agave_config_equal(const agave_config *a, const agave_config *b, unsigned flags);

/* "agave", "vae", "pixelcnn", "naive" (the words of the mode key); NULL for a
 * value that is not a mode. */
AGAVE_API const char *agave_mode_name(agave_mode mode);

/* The exact number of parameter floats of cfg's model, without building it:
 * agave_model_param_numel of the model. AGAVE_ERR_CONFIG if cfg is invalid. */
AGAVE_API agave_status agave_config_param_numel(const agave_config *cfg, size_t *count);
/* An estimate, from cfg alone, of the peak bytes of a training step at batch
 * `batch`: parameters, gradients, optimiser moments, the average (when ema > 0),
 * the step's activations with their gradients, and convolution scratch. Fitted
 * to measured peaks and kept above them (docs/reliability.md says how well);
 * process overhead (libraries, OpenBLAS's buffers, data) is not included. */
AGAVE_API agave_status agave_config_estimate_bytes(const agave_config *cfg, int batch,
                                                   size_t *bytes);

/* ---- The model ---------------------------------------------------------- */
/* A model built from a validated configuration (AGAVE_ERR_CONFIG, with the
 * reason in the context's last error, otherwise), with its optimiser and,
 * when ema > 0, its parameter average. */
AGAVE_API agave_status agave_model_create(agave_context *ctx, const agave_config *cfg,
                                          agave_model **out);
AGAVE_API void agave_model_free(agave_model *model);
/* Fills cfg with the model's configuration, as agave_config_init would;
 * agave_model_get_config(model, cfg) passes sizeof *cfg as struct_size. */
AGAVE_API agave_status agave_model_get_config_sized(const agave_model *model, agave_config *cfg,
                                                    size_t struct_size);
#define agave_model_get_config(model, cfg)                                                  \
    agave_model_get_config_sized((model), (cfg), sizeof *(cfg))
/* Changes the training settings of a model (e.g. after loading a checkpoint):
 * the keys flagged AGAVE_KEY_TRAINING (mode, lambda, dropout, lr, lr_warmup,
 * lr_decay, grad_clip, ema, max_bad_steps) take cfg's values (the schedule is a
 * function of the step count, so the next step uses the new one at its step);
 * every other key must equal the model's (AGAVE_ERR_CONFIG otherwise); cfg is
 * validated first. Turning
 * averaging on starts a new average at the current parameters; turning it
 * off discards it. */
AGAVE_API agave_status agave_model_update_config(agave_model *model, const agave_config *cfg);
/* The number of parameter floats (the elements of all parameter tensors). */
AGAVE_API size_t agave_model_param_numel(const agave_model *model);
/* The number of parameter tensors, and tensor index (0 .. count - 1), in
 * checkpoint order with names such as "layer012.conv1.v" and "aux_log_scale";
 * borrowed from the model (they require gradients). */
AGAVE_API int agave_model_param_tensor_count(const agave_model *model);
AGAVE_API agave_status agave_model_param(agave_model *model, int index, const char **name,
                                         agave_tensor **param);
/* Training steps applied so far, and steps rejected as non-finite, since the
 * model was created (both are saved in and restored from checkpoints). */
AGAVE_API int64_t agave_model_step_count(const agave_model *model);
AGAVE_API int64_t agave_model_rejected_count(const agave_model *model);
/* The learning rate the next training step will use: the configuration's
 * schedule at step agave_model_step_count + 1; 0 for NULL. */
AGAVE_API double agave_model_learning_rate(const agave_model *model);

/* Data-dependent initialisation from a first batch x (n,C,H,W) uint8. */
AGAVE_API agave_status agave_model_init(agave_model *model, const uint8_t *x, int n);
/* 1 once the model's weights are initialised: by agave_model_init, by the
 * first training step (which initialises from its batch), or by loading a
 * checkpoint of an initialised model; 0 otherwise (and for NULL).
 * Evaluation, sampling and reconstruction need an initialised model. */
AGAVE_API int agave_model_is_initialized(const agave_model *model);

typedef struct agave_step_stats {
    size_t struct_size;       /* set by the caller: sizeof(agave_step_stats) */
    double loss_bpd;          /* the minimised objective -L / (D ln 2) */
    double pixelcnn_nll;      /* -log p(x|z), nats per image (0 in mode vae) */
    double aux_nll;           /* -log p(y|z), nats per image (0 in modes pixelcnn, naive) */
    double kl;                /* KL(q(z|x) || p(z)), nats per image (0 in mode pixelcnn) */
    double pixelcnn_bpd;      /* pixelcnn_nll / (D ln 2) */
    double aux_bpd;           /* aux_nll / (D_y ln 2), D_y = C*H*W/s^2 */
    double kl_bpd;            /* kl / (D ln 2) */
    double grad_norm;         /* L2 norm of the gradient before clipping */
    int rejected;             /* 1 if the step was not applied (non-finite) */
} agave_step_stats;

/* One training step on x (n,C,H,W) uint8: forward, the objective of
 * docs/model.md ("Objective and modes"), backward, optimiser update, parameter averaging. Runs the
 * data-dependent initialisation first if it has not run. A step whose loss or
 * gradient is not finite is rejected: parameters, optimiser state and the
 * step count stay untouched, stats->rejected is set and AGAVE_OK is returned
 * (the last-error message says why); after max_bad_steps consecutive rejected
 * steps it returns AGAVE_ERR_NUMERIC with a message saying training should stop.
 * On a context of T > 1 threads (and n > 1) the batch is cut into min(T, n)
 * slices, each run on its own thread by a one-thread replica of the model
 * (made at the first such step: its gradient block and its slice's share of
 * the step's memory); the gradients are summed in slice order. The result is
 * the one-thread step's up to the order of float sums, with the same random
 * numbers for every image (docs/performance.md, "Replicas"). */
AGAVE_API agave_status agave_model_train_step(agave_model *model, const uint8_t *x, int n,
                                              agave_step_stats *stats);

typedef struct agave_eval_stats {
    size_t struct_size;       /* set by the caller: sizeof(agave_eval_stats) */
    int n_images;
    double elbo_bpd;          /* -(E_q log p(x|z) - KL) / (D ln 2), lambda = 1, no aux term */
    double recon_bpd;         /* -E_q log p(x|z) / (D ln 2) */
    double kl_bpd;            /* KL / (D ln 2) */
    double aux_bpd;           /* -(E_q log p(y|z) - KL) / (D_y ln 2): the VAE's bound on y */
    double iwae_bpd;          /* -IWAE_K / (D ln 2); set to elbo_bpd when K = 0 */
    int iwae_samples;         /* K */
} agave_eval_stats;

/* Bounds on x (n,C,H,W) uint8, averaged over the n images, with the weights
 * agave_model_weights names. iwae_samples = K >= 1 importance samples
 * (0 skips IWAE). In mode pixelcnn the bounds are the exact PixelCNN NLL. */
AGAVE_API agave_status agave_model_evaluate(agave_model *model, const uint8_t *x, int n,
                                            int iwae_samples, agave_eval_stats *stats);

/* Sampling, seeded, with the weights agave_model_weights names: n images with
 * z ~ p(z). fz receives f(z) as an image (n,C,H/s,W/s) uint8 (the means mapped
 * to 0..255), x the PixelCNN samples (n,C,H,W). Either may be NULL. In mode
 * vae x receives f(z) upsampled; in mode pixelcnn fz is left untouched. */
AGAVE_API agave_status agave_model_sample(agave_model *model, int n, uint64_t seed,
                                          uint8_t *fz, uint8_t *x);
/* Reconstructions: z ~ q(z|x_in), then as agave_model_sample. */
AGAVE_API agave_status agave_model_reconstruct(agave_model *model, const uint8_t *x_in, int n,
                                               uint64_t seed, uint8_t *fz, uint8_t *x);

/* ---- Latent codes ------------------------------------------------------ */
/* The latent z of one image is (Z, H/4, W/4) floats, channel planes one after
 * the other (docs/model.md). Encoding and decoding use the weights
 * agave_model_weights names; mode pixelcnn has no latent code
 * (AGAVE_ERR_STATE), and the model must be initialised (AGAVE_ERR_STATE). */

/* z's channels, height and width (Z, H/4, W/4); 0, 0, 0 in mode pixelcnn. */
AGAVE_API agave_status agave_model_latent_shape(const agave_model *model, int *channels,
                                                int *height, int *width);

/* Encodes x (n,C,H,W) uint8, 1 <= n <= 4096, to z (n,Z,H/4,W/4): the mean of
 * q(z|x). With IAF steps (T > 0) it is the Gaussian's mean carried through the
 * flow (the noise set to 0), a point of high posterior density rather than the
 * flow's exact mean. Deterministic: no random number is drawn. */
AGAVE_API agave_status agave_model_encode(agave_model *model, const uint8_t *x, int n, float *z);

/* Decodes z (n,Z,H/4,W/4), finite floats (AGAVE_ERR_INVALID_ARG otherwise):
 * fz receives f(z) as an image (n,C,H/s,W/s) uint8 and x the PixelCNN sample
 * given f(z) (n,C,H,W), both as agave_model_sample gives them (mode vae: x is
 * f(z) upsampled). Either may be NULL. The PixelCNN's draws come from a stream
 * seeded by seed; the context's generator is left as it was. */
AGAVE_API agave_status agave_model_decode(agave_model *model, const float *z, int n,
                                          uint64_t seed, uint8_t *fz, uint8_t *x);

/* Checkpoints (docs/checkpoint.md): configuration, parameters, optimiser
 * state, averaged parameters, step count, random state and the run state
 * (agave_model_set_run_state) if one is set; written to a
 * temporary file, flushed and renamed over path. */
AGAVE_API agave_status agave_model_save(agave_model *model, const char *path);
/* Loads a checkpoint into a new model on ctx. If expect is not NULL, the stored
 * configuration's architecture must match it (AGAVE_ERR_CONFIG otherwise). */
AGAVE_API agave_status agave_model_load(agave_context *ctx, const char *path,
                                        const agave_config *expect, agave_model **out);

/* ---- The run's data order, kept in the checkpoint ----------------------- */
/* Where a training run's data order stood, for a resumed run to read exactly
 * the batches an uninterrupted one would (agave-train keeps it here). The
 * model holds it as the program last set it; agave_model_save writes it into
 * the checkpoint beside the step counts it belongs to and agave_model_load
 * restores it, so the two cannot disagree after a crash. Every field is
 * validated, on setting and on loading, with agave-train's command-line
 * limits. */
#define AGAVE_RUN_BATCH_MAX 4096     /* images per step */
#define AGAVE_RUN_THREADS_MAX 1024
typedef struct agave_run_state {
    size_t struct_size;    /* set by the caller: sizeof(agave_run_state) */
    uint64_t seed;         /* the data order's seed, 0..2^63-1 */
    uint64_t epoch, index; /* agave_batcher_position: index < images */
    int64_t batch;         /* images per step, 1..AGAVE_RUN_BATCH_MAX */
    int64_t threads;       /* the run's thread count, 1..AGAVE_RUN_THREADS_MAX */
    int64_t images;        /* images per epoch of the run's data, >= 1 */
} agave_run_state;

/* Keeps s (copied) for the next agave_model_save; NULL forgets it.
 * AGAVE_ERR_INVALID_ARG, the model's state unchanged, for a field out of
 * its limits. */
AGAVE_API agave_status agave_model_set_run_state(agave_model *model, const agave_run_state *s);
/* Fills s with the run state set or loaded; AGAVE_ERR_STATE when the model
 * has none (a new model, or a checkpoint of format version 1 or 2). */
AGAVE_API agave_status agave_model_run_state(const agave_model *model, agave_run_state *s);

/* ---- Weights: averaged or raw ------------------------------------------- */
/* With averaging on (cfg.ema > 0) a model holds two sets of parameters: the
 * raw ones the optimiser moves and their running average (docs/model.md: it
 * starts at the initialised parameters; after t earlier updates each step
 * applies avg <- d avg + (1 - d) params with d = min(ema, (1 + t) / (10 + t))).
 * Evaluation, sampling and reconstruction use the chosen set; the default is
 * the average whenever the model has one. Both sets are saved in
 * checkpoints; the choice itself is not (a loaded model starts at the
 * default). Training always moves the raw parameters. */
typedef enum agave_weights {
    AGAVE_WEIGHTS_AVERAGE = 0,   /* the averaged parameters (the default) */
    AGAVE_WEIGHTS_RAW = 1        /* the parameters as the last step left them */
} agave_weights;

/* AGAVE_ERR_STATE for AGAVE_WEIGHTS_AVERAGE when the model has no average
 * (agave_model_has_average is 0). */
AGAVE_API agave_status agave_model_set_weights(agave_model *model, agave_weights weights);
/* The set evaluation and sampling use now: AGAVE_WEIGHTS_AVERAGE only when it
 * was chosen (or left at the default) and the model has an average; RAW for
 * NULL. */
AGAVE_API agave_weights agave_model_weights(const agave_model *model);
/* 1 when the model holds averaged parameters: averaging is on and the model
 * is initialised (or was loaded from a checkpoint that holds them); 0 for NULL. */
AGAVE_API int agave_model_has_average(const agave_model *model);

/* ---- Evaluation: per-image figures, progress, stopping ------------------ */
/* agave_model_evaluate_scores is agave_model_evaluate with options: each
 * image's own figures (for outlier and novelty detection, or to gather a data
 * set's scores over several calls), and a progress function that is told how
 * far the call is and may stop it. agave_model_evaluate(m, x, n, K, s) is
 * agave_model_evaluate_scores(m, x, n, K, NULL, s). */

/* How far an evaluation call is, passed to the progress function. Samples
 * are the (image, importance sample) pairs the call scores: n * max(K, 1)
 * of them (n in mode pixelcnn, which draws none). */
typedef struct agave_eval_progress {
    size_t struct_size;       /* set by the library: sizeof(agave_eval_progress) */
    int images_done;          /* the first images_done images have their figures */
    int images;               /* n */
    int64_t samples_done;     /* samples scored so far */
    int64_t samples;          /* samples of the whole call */
} agave_eval_progress;

/* Called after every forward pass of the decoder and the PixelCNN (each
 * takes up to 64 image x sample rows, fewer for large models or under a
 * memory limit); a non-zero return stops the call there. It must not use the
 * model or its context. */
typedef int (*agave_eval_progress_fn)(const agave_eval_progress *progress, void *user);

typedef struct agave_eval_options {
    size_t struct_size;       /* set by agave_eval_options_init */
    /* Per-image figures, in the units and meaning of agave_eval_stats: each
     * NULL (not wanted) or an array of n doubles that receives image i's
     * figure in entry i. Their means over the images are the stats'. */
    double *elbo_bpd;
    double *recon_bpd;
    double *kl_bpd;
    double *aux_bpd;
    double *iwae_bpd;
    agave_eval_progress_fn progress;   /* NULL: none */
    void *progress_user;               /* passed to progress */
} agave_eval_options;

/* Every field NULL; agave_eval_options_init(options) passes sizeof *options
 * as struct_size. */
AGAVE_API void agave_eval_options_init_sized(agave_eval_options *options, size_t struct_size);
#define agave_eval_options_init(options)                                                    \
    agave_eval_options_init_sized((options), sizeof *(options))

/* agave_model_evaluate with options (NULL: none). The images are scored in
 * order; each image's figures are final once its last sample is scored. If
 * the progress function returns non-zero, the call stops after the forward
 * pass it was told about and returns AGAVE_OK with stats over the images
 * finished so far (stats->n_images of them, the first ones: possibly 0, all
 * figures then 0); the per-image entries of unfinished images are NaN, and
 * the random generator stays where the call stopped (under a batch slice it
 * is not moved past the batch). options follows the struct_size rule: the
 * fields a program's older header lacks keep agave_eval_options_init's
 * values, and a field of a newer header that this library does not know must
 * be left at its _init value (AGAVE_ERR_INVALID_ARG otherwise, as for a
 * struct_size below sizeof(size_t)). */
AGAVE_API agave_status agave_model_evaluate_scores(agave_model *model, const uint8_t *x, int n,
                                                   int iwae_samples,
                                                   const agave_eval_options *options,
                                                   agave_eval_stats *stats);

/* ---- Data sets ---------------------------------------------------------- */
/* Images are uint8 values 0..255 in NCHW order: image i of a data set is the
 * C*H*W bytes at offset i*C*H*W, channel planes one after the other.
 * C is 1 (IDX files: MNIST, Fashion-MNIST) or 3 (CIFAR-10). */

typedef enum agave_data_split {
    AGAVE_SPLIT_TRAIN = 0,   /* CIFAR-10 data_batch_N.bin; IDX train-images-idx3-ubyte */
    AGAVE_SPLIT_TEST = 1     /* CIFAR-10 test_batch.bin;   IDX t10k-images-idx3-ubyte */
} agave_data_split;

/* Limits checked before anything is allocated: the decompressed pixels of
 * one data set (all its files together), and each image's height and width. */
#define AGAVE_DATASET_MAX_BYTES ((uint64_t)4 << 30)   /* 4 GiB */
#define AGAVE_DATASET_MAX_SIDE 65535

/* Opens a data set and loads all its images into memory.
 * path is either
 *  - a directory in one of two layouts, detected from the file names:
 *      CIFAR-10 binary: data_batch_1.bin .. data_batch_N.bin (train, all N
 *        present, in numeric order) and test_batch.bin (test);
 *      IDX (MNIST, Fashion-MNIST): train-images-idx3-ubyte and
 *        t10k-images-idx3-ubyte (also *-images.idx3-ubyte, test-images-...,
 *        names with a prefix such as emnist-digits-train-images-idx3-ubyte,
 *        and *-images-idx4-ubyte for colour IDX files, as agave-convert writes);
 *    each name optionally with ".gz"; when both foo and foo.gz exist, foo is
 *    read. split picks the training or the test files. A directory holding
 *    both layouts, or several IDX files for one split, is refused as
 *    ambiguous: pass the files to agave_dataset_open_files instead.
 *  - or one file (split is then ignored), read as agave_dataset_open_files;
 *  - or a folder of image files, as agave_dataset_open_v2 (below) describes.
 * Every file is checked: IDX magic 0x00000803 (unsigned bytes, 3 dims: count,
 * rows, cols) or 0x00000804 (4 dims: count, channels 1 or 3, rows, cols; label
 * files, 0x00000801, are refused), non-zero dimensions, file size exactly as
 * the header promises; CIFAR-10 records of exactly 1 label byte (0..9) + 3072
 * pixels; gzip streams intact. Errors: AGAVE_ERR_IO (missing, unreadable, not
 * a regular file or directory, no data set files in the directory),
 * AGAVE_ERR_FORMAT (malformed, truncated, trailing bytes, mismatched files,
 * corrupt gzip), AGAVE_ERR_LIMIT (above the limits above), AGAVE_ERR_NOMEM.
 * The context's last error names the file and what was expected and found.
 * The data set is owned by the caller; free it with agave_dataset_free before
 * the context. */
AGAVE_API agave_status agave_dataset_open(agave_context *ctx, const char *path,
                                          agave_data_split split, agave_dataset **out);

/* Opens n_paths >= 1 files as one data set, images in the order given. Each
 * file's format is taken from its name ("idx" in it: IDX; ending in .bin or
 * .bin.gz: CIFAR-10) or else from its first bytes (00 00 08 01..04: IDX,
 * otherwise CIFAR-10); gzip is recognised by its magic bytes 1f 8b (and required for
 * names ending in .gz). All files must hold images of the same C, H and W. */
AGAVE_API agave_status agave_dataset_open_files(agave_context *ctx, const char *const *paths,
                                                int n_paths, agave_dataset **out);
AGAVE_API void agave_dataset_free(agave_dataset *ds);

/* Number of images, and their channels, height and width (0 for NULL). */
AGAVE_API size_t agave_dataset_count(const agave_dataset *ds);
AGAVE_API int agave_dataset_channels(const agave_dataset *ds);
AGAVE_API int agave_dataset_height(const agave_dataset *ds);
AGAVE_API int agave_dataset_width(const agave_dataset *ds);

/* Copies images [first, first+count) into dst, which receives (count,C,H,W)
 * bytes. AGAVE_ERR_INVALID_ARG if the range leaves the data set. */
AGAVE_API agave_status agave_dataset_copy_images(const agave_dataset *ds, size_t first,
                                                 size_t count, uint8_t *dst);
/* Borrowed pointer to all images, (count,C,H,W) bytes, valid until
 * agave_dataset_free; NULL for NULL. */
AGAVE_API const uint8_t *agave_dataset_pixels(const agave_dataset *ds);

/* ---- Image folders, crop and resize ------------------------------------- */
/* agave_dataset_open_v2 also reads folders of image files (PNG, JPEG, BMP,
 * binary PGM/PPM; docs/data.md) and gives every image one size:
 *  - a directory with no CIFAR-10 or IDX file is an image folder: DIR/train
 *    and DIR/test when either exists, otherwise every image under DIR, a file
 *    being a test image when the FNV-1a 64-bit hash of its path relative to
 *    DIR, modulo 100, is below test_percent. Subfolders are searched (up to
 *    16 deep), names starting with "." skipped, images taken in the byte
 *    order of their paths. Grey files (with or without alpha) give 1
 *    channel, colour files 3; alpha is dropped, 16-bit samples keep their
 *    high byte. All images must have the same channels and, after the crop
 *    and resize below, the same size: the first that does not is named in
 *    the error (AGAVE_ERR_FORMAT), as is a file of a format not read (GIF,
 *    TIFF, WebP, ...). One file may have at most 256 MiB and 64 Mi pixels.
 *  - every data set, image folder or not, is then cropped and resized:
 *    first the centred crop window (top = (h - crop_height) / 2, left =
 *    (w - crop_width) / 2, rounded down), then area-average resampling to
 *    resize_height x resize_width (each output pixel the mean of the source
 *    over its footprint, computed exactly in integers, rounded half up). */
#define AGAVE_CROP_ASPECT (-1)

typedef struct agave_dataset_options {
    size_t struct_size;      /* sizeof(agave_dataset_options), set by _init */
    /* 0 x 0 (default): no crop. > 0: the centred window of that size (an
     * image smaller than it is refused). AGAVE_CROP_ASPECT in both: the
     * largest centred window with the aspect ratio of the resize size. */
    int crop_height, crop_width;
    /* 0 x 0 (default): no resize; 1..AGAVE_DATASET_MAX_SIDE: the size every
     * image (after the crop) is resampled to. */
    int resize_height, resize_width;
    /* One image folder without train/ and test/: the percent of its files
     * in the test split, 1..99; default 10. */
    int test_percent;
} agave_dataset_options;

/* agave_dataset_options_init(opt) passes sizeof *opt as struct_size. */
AGAVE_API void agave_dataset_options_init_sized(agave_dataset_options *opt, size_t struct_size);
#define agave_dataset_options_init(opt) agave_dataset_options_init_sized((opt), sizeof *(opt))

/* agave_dataset_open with options (NULL: the defaults, which is
 * agave_dataset_open): image folders besides CIFAR-10 and IDX, and the crop
 * and resize above. AGAVE_ERR_INVALID_ARG for options out of range. */
AGAVE_API agave_status agave_dataset_open_v2(agave_context *ctx, const char *path,
                                             agave_data_split split,
                                             const agave_dataset_options *options,
                                             agave_dataset **out);

/* The name of image i when the data set came from an image folder: its path
 * relative to the folder opened ("train/cats/001.png", or "001.png" for one
 * folder split by name), valid until agave_dataset_free. NULL for other data
 * sets, for NULL and for i out of range. */
AGAVE_API const char *agave_dataset_image_name(const agave_dataset *ds, size_t i);

/* ---- Minibatches -------------------------------------------------------- */
/* Shuffled minibatches. An epoch visits every image of the (sub)set once, in
 * an order that is a function of (seed, epoch) only: Fisher-Yates with a
 * private xoshiro256** generator, so neither the context's generator nor
 * earlier epochs matter. Batches always hold batch_size images: a batch that
 * reaches the end of an epoch continues with the next epoch's order. */

typedef enum agave_subset_mode {
    AGAVE_SUBSET_FIRST = 0,    /* the first subset_size images of the data set */
    AGAVE_SUBSET_RANDOM = 1    /* subset_size images drawn without replacement from the seed */
} agave_subset_mode;

/* Creates a batcher at epoch 0, index 0. batch_size >= 1 (it may exceed the
 * subset: a batch then spans several epochs). subset_size 0 means every image,
 * otherwise 1..count. ds must outlive the batcher; free it before the context. */
AGAVE_API agave_status agave_batcher_create(agave_context *ctx, const agave_dataset *ds,
                                            int batch_size, uint64_t seed, size_t subset_size,
                                            agave_subset_mode subset_mode, agave_batcher **out);
AGAVE_API void agave_batcher_free(agave_batcher *b);

/* Fills images with the next batch, (batch_size,C,H,W) bytes, and, if indices
 * is not NULL, indices[k] with the data set index of image k. */
AGAVE_API agave_status agave_batcher_next(agave_batcher *b, uint8_t *images, size_t *indices);

/* Images per epoch (the subset size, or the data set size), 0 for NULL. */
AGAVE_API size_t agave_batcher_epoch_size(const agave_batcher *b);

/* The position as plain integers, to store in a checkpoint: the next image is
 * number index (0 <= index < epoch_size) of epoch epoch's order for seed seed.
 * Any pointer may be NULL. */
AGAVE_API agave_status agave_batcher_position(const agave_batcher *b, uint64_t *epoch,
                                              uint64_t *index, uint64_t *seed);
/* Moves to a stored position; a batcher made on the same data set with the same
 * batch_size, subset_size and subset_mode then continues exactly as the one
 * the position was read from. A different seed redraws a random subset. */
AGAVE_API agave_status agave_batcher_set_position(agave_batcher *b, uint64_t epoch,
                                                  uint64_t index, uint64_t seed);

/* ---- A baseline to beat ------------------------------------------------- */
/* Per-pixel marginal-histogram baseline. For every (channel,row,col) it counts
 * the 256 values over train (n_train images), adds one to every count
 * (Laplace smoothing: p(v) = (count(v) + 1) / (n_train + 256)) and returns in
 * *bpd the mean negative log2-probability of the n_test images test: bits per
 * dimension, the figure a model must beat. Both are (n,channels,height,width)
 * uint8; n_train may be 0 (then 8 bits exactly); n_test >= 1.
 * AGAVE_ERR_LIMIT if the 256 counts per dimension would exceed 1 GiB. */
AGAVE_API agave_status agave_marginal_baseline_bpd(agave_context *ctx, const uint8_t *train,
                                                   size_t n_train, const uint8_t *test,
                                                   size_t n_test, int channels, int height,
                                                   int width, double *bpd);

/* ---- Image grids -------------------------------------------------------- */
/* Image grids (PNG, BMP, PGM/PPM). Call agave_grid_options_init first, then
 * change fields. Passing NULL options means the defaults. */
typedef struct agave_grid_options {
    size_t struct_size;     /* sizeof(agave_grid_options), set by _init */
    int gap;                /* pixels between cells and around the border, 0..256; default 2 */
    int group_gap;          /* extra pixels between groups of a multi-set grid, 0..256; default 4 */
    int scale;              /* each image pixel becomes scale x scale, 1..64; default 1 */
    uint8_t background[3];  /* RGB of gaps and empty cells; default 255,255,255 (white) */
    /* Text drawn above the grid (NULL, the default: none), saying what the
     * rows and columns show: printable ASCII in a 5x7 bitmap font (twice that
     * size when scale >= 2), black on a light background and white on a dark
     * one; "\n" starts a line and lines wrap at spaces to the picture's width
     * (widened to hold 24 characters a line); at most 4096 characters. The
     * text is read during the call only. */
    const char *caption;
} agave_grid_options;

/* agave_grid_options_init(opt) passes sizeof *opt as struct_size. */
AGAVE_API void agave_grid_options_init_sized(agave_grid_options *opt, size_t struct_size);
#define agave_grid_options_init(opt) agave_grid_options_init_sized((opt), sizeof *(opt))

/* Writes n images (n,channels,height,width) uint8, channels 1 or 3, as a grid
 * of min(cols,n) columns and ceil(n/cols) rows, row-major, to a picture at
 * path: a BMP for a name ending in .bmp, PPM for .ppm, PGM for .pgm, PNM (PGM
 * or PPM) for .pnm, PNG otherwise; a name ending in .jpg, .jpeg, .gif, .tif,
 * .tiff or .webp is refused (AGAVE_ERR_INVALID_ARG: those formats are not
 * written), as is .pgm for a colour picture. The picture is grey when
 * channels is 1 and the background is grey, RGB otherwise.
 * The file is written under a temporary name in the same directory, flushed
 * to disk and renamed over path, so path is either the old file or the whole
 * new one. AGAVE_ERR_IO if the directory does not exist or is not writable;
 * AGAVE_ERR_LIMIT if the PNG would be larger than 32768 pixels on a side or
 * 1 GiB of pixels. */
AGAVE_API agave_status agave_image_grid_write(agave_context *ctx, const char *path,
                                              const uint8_t *images, int n, int channels,
                                              int height, int width, int cols,
                                              const agave_grid_options *opt);

/* AGAVE_OK when agave_image_grid_write can write a picture of `channels`
 * channels (1 or 3; a grid of grey images on a grey background is grey) under
 * path's name: the same refusal and message as the write, nothing written. A
 * program calls it before the work that makes the picture. */
AGAVE_API agave_status agave_image_grid_check_name(agave_context *ctx, const char *path,
                                                   int channels);

typedef enum agave_grid_layout {
    /* Set s is a row: for each block of cols images, row s of the block shows
     * set s (e.g. test images / reconstructions / conditional samples, the
     * paper's Figure 3). Blocks are separated by group_gap. */
    AGAVE_GRID_SETS_AS_ROWS = 0,
    /* Image i of every set side by side in one group (e.g. f(z) beside its
     * PixelCNN sample, the paper's Figure 1c); cols groups per row, groups
     * separated by group_gap. */
    AGAVE_GRID_SETS_SIDE_BY_SIDE = 1
} agave_grid_layout;

/* Writes n_sets (1..16) arrays of n images each, arranged by layout, as
 * agave_image_grid_write. sets[s] is (n,channels,heights[s],widths[s]) uint8;
 * every image is scaled by nearest neighbour to the largest height and width
 * among the sets (times opt->scale), so f(z) at H/s sits beside a sample at H. */
AGAVE_API agave_status agave_image_grid_write_sets(agave_context *ctx, const char *path,
                                                   const uint8_t *const *sets, int n_sets,
                                                   int n, int channels, const int *heights,
                                                   const int *widths, int cols,
                                                   agave_grid_layout layout,
                                                   const agave_grid_options *opt);

/* ---- Lossless compression (docs/codec.md) ------------------------------- */
/* A trained model as a lossless image codec: bits-back coding with rANS
 * (Townsend, Bird & Barber 2019). Per image the file costs about the model's
 * negative ELBO in bits (docs/codec.md measures it, overheads itemised).
 * Images have the model's shape (n,C,H,W) uint8; the model's mode is agave or
 * naive with T = 0, or pixelcnn (AGAVE_ERR_CONFIG otherwise). The evaluation
 * weights are used (those of agave_model_evaluate).
 *
 * Exactness: the decoder recomputes every probability the encoder used, so a
 * file decodes only with the same model (its parameters' hash is in the file:
 * AGAVE_ERR_CONFIG otherwise), the same thread count (agave_codec_info gives
 * it; AGAVE_ERR_STATE otherwise) and the same library build, BLAS kernels and
 * CPU vector width (AGAVE_ERR_STATE otherwise, naming both). Both sides need
 * float32 products: a context set to AGAVE_PRECISION_BF16 is refused
 * (AGAVE_ERR_CONFIG). A damaged or
 * truncated file is refused (AGAVE_ERR_CHECKSUM, AGAVE_ERR_FORMAT), and every
 * image is checked against its CRC before it is handed out: decoding never
 * returns an image that differs from the one compressed.
 *
 * Memory is bounded by the chunk (options below), whatever the number of
 * images. The model must not change while an encoder or decoder uses it. */
typedef struct agave_codec_encoder agave_codec_encoder;
typedef struct agave_codec_decoder agave_codec_decoder;

/* Receives the next len bytes of the compressed stream; anything but
 * AGAVE_OK stops the encoder with that status. */
typedef agave_status (*agave_codec_write_fn)(const void *data, size_t len, void *user);
/* Fills data with up to len next bytes of the stream and sets *got (0 only at
 * its end); anything but AGAVE_OK stops the decoder with that status. */
typedef agave_status (*agave_codec_read_fn)(void *data, size_t len, size_t *got, void *user);
/* Called after every batch with the images done and the total; a nonzero
 * return stops the work with AGAVE_ERR_INTERRUPTED. */
typedef int (*agave_codec_progress_fn)(int64_t done, int64_t total, void *user);

typedef struct agave_codec_options {
    size_t struct_size;    /* sizeof(agave_codec_options), set by _init */
    int batch;             /* images coded at once, 1..4096; default 64 */
    int chunk;             /* images per independently coded chunk, batch..2^20: what
                              memory is bounded by; default 4096 */
    int latent_bits;       /* each latent dimension in 2^latent_bits buckets, 2..16; default 8 */
    int image_crc;         /* 1: a CRC-32 of every image in the file (4 bytes each); 0: one
                              per chunk only; default 1 */
    agave_codec_progress_fn progress;   /* NULL: none (default) */
    void *progress_user;
} agave_codec_options;

/* The defaults (decoders read only progress and progress_user).
 * agave_codec_options_init(opt) passes sizeof *opt as struct_size. */
AGAVE_API void agave_codec_options_init_sized(agave_codec_options *opt, size_t struct_size);
#define agave_codec_options_init(opt) agave_codec_options_init_sized((opt), sizeof *(opt))

/* What a file's header says. */
typedef struct agave_codec_info {
    size_t struct_size;    /* set by the caller: sizeof(agave_codec_info) */
    int64_t n_images;
    int C, H, W;
    agave_mode mode;
    int threads;           /* the thread count decoding needs */
    int batch, chunk, latent_bits, image_crc;
    uint64_t model_hash;   /* of the parameters compressed with */
    char environment[160]; /* the build and machine that compressed it */
} agave_codec_info;

/* Code lengths of what an encoder coded so far, in bits. */
typedef struct agave_codec_stats {
    size_t struct_size;             /* set by the caller: sizeof(agave_codec_stats) */
    int64_t n_images;
    uint64_t bytes;                 /* handed to the write function so far */
    double pixel_bits;              /* -log2 of the integer tables' probabilities of the pixels */
    double pixel_model_bits;        /* the same under the model's floats (before quantisation) */
    double latent_prior_bits;       /* -log2 p(z) of the latent buckets pushed */
    double latent_posterior_bits;   /* -log2 q(z|x) of the buckets popped: the bits got back */
    double initial_bits;            /* bits popped from below the empty stacks (32 per word) */
} agave_codec_stats;

/* ---- Streaming: images in, bytes out, and back ---- */
/* An encoder of exactly n_images images (0..2^40) for model; writes the header
 * through write at once, then a chunk whenever one is complete. opt may be NULL
 * (the defaults). The context's thread count is recorded in the file. */
AGAVE_API agave_status agave_codec_encoder_create(agave_model *model,
                                                  const agave_codec_options *opt,
                                                  int64_t n_images, agave_codec_write_fn write,
                                                  void *user, agave_codec_encoder **out);
/* Adds n images (n,C,H,W); codes each batch as it fills. More images than
 * announced is AGAVE_ERR_INVALID_ARG. After an error the encoder refuses
 * everything (AGAVE_ERR_STATE). */
AGAVE_API agave_status agave_codec_encoder_add(agave_codec_encoder *enc, const uint8_t *x,
                                               int n);
/* Checks that every announced image was added and written (AGAVE_ERR_STATE
 * otherwise). */
AGAVE_API agave_status agave_codec_encoder_finish(agave_codec_encoder *enc);
AGAVE_API agave_status agave_codec_encoder_stats(const agave_codec_encoder *enc,
                                                 agave_codec_stats *stats);
AGAVE_API void agave_codec_encoder_free(agave_codec_encoder *enc);

/* A decoder for model: reads and checks the header through read now. opt may
 * be NULL; only its progress function is used. */
AGAVE_API agave_status agave_codec_decoder_create(agave_model *model,
                                                  const agave_codec_options *opt,
                                                  agave_codec_read_fn read, void *user,
                                                  agave_codec_decoder **out);
AGAVE_API agave_status agave_codec_decoder_info(const agave_codec_decoder *dec,
                                                agave_codec_info *info);
/* The next images, in order, into x (max_n images of room): *got of them, 0
 * once all were read (the stream must then end: AGAVE_ERR_FORMAT if bytes
 * follow). A chunk is decoded whole and checked before any of its images is
 * handed out. After an error the decoder refuses everything. */
AGAVE_API agave_status agave_codec_decoder_read(agave_codec_decoder *dec, uint8_t *x, int max_n,
                                                int *got);
AGAVE_API void agave_codec_decoder_free(agave_codec_decoder *dec);

/* ---- In memory ---- */
/* The header of a compressed buffer, without a model (size >= the header). */
AGAVE_API agave_status agave_codec_peek(agave_context *ctx, const void *data, size_t size,
                                        agave_codec_info *info);
/* Bytes that always hold n images compressed with model and opt (NULL: the
 * defaults): the capacity agave_codec_encode needs at most. */
AGAVE_API agave_status agave_codec_bound(const agave_model *model, const agave_codec_options *opt,
                                         int64_t n_images, size_t *bytes);
/* Compresses n images (n,C,H,W) into dst (capacity bytes; AGAVE_ERR_LIMIT if
 * too small) and sets *size. */
AGAVE_API agave_status agave_codec_encode(agave_model *model, const agave_codec_options *opt,
                                          const uint8_t *x, int64_t n, void *dst,
                                          size_t capacity, size_t *size);
/* Decompresses the whole buffer into x (room for capacity images;
 * AGAVE_ERR_LIMIT if the file holds more) and sets *n. */
AGAVE_API agave_status agave_codec_decode(agave_model *model, const void *data, size_t size,
                                          uint8_t *x, int64_t capacity, int64_t *n);
/* ---- Files written atomically ------------------------------------------- */
/* The writer behind agave_model_save and the image grids, for programs' own
 * files (logs, reports): len bytes at data go to a new temporary file beside
 * path (path.tmp.XXXXXX), which is flushed to disk, closed and renamed over
 * path; the directory is then synced. An interrupted write leaves the old
 * file or the new one, never half of one (at worst a path.tmp.* file beside
 * it). The file gets mode 0666 less the process's umask. AGAVE_ERR_IO (the
 * message names the path, the failed step and the reason) leaves any old
 * file intact; data may be NULL when len is 0. */
AGAVE_API agave_status agave_file_write_atomic(agave_context *ctx, const char *path,
                                               const void *data, size_t len);

/* ---- Part 3: building blocks -------------------------------------------- */

/* ---- Tensors ------------------------------------------------------------ */
#define AGAVE_MAX_DIMS 4

/* A zero-filled persistent tensor of ndim (1..4) dims, each >= 1. */
AGAVE_API agave_status agave_tensor_create(agave_context *ctx, int ndim, const int *dims,
                                           agave_tensor **out);
/* Frees a tensor made by agave_tensor_create; NULL and op outputs are ignored. */
AGAVE_API void agave_tensor_free(agave_tensor *t);

AGAVE_API int agave_tensor_ndim(const agave_tensor *t);
/* Size of axis 0..ndim-1; 0 for a NULL tensor or an axis out of range. */
AGAVE_API int agave_tensor_dim(const agave_tensor *t, int axis);
AGAVE_API size_t agave_tensor_numel(const agave_tensor *t);
AGAVE_API agave_context *agave_tensor_context(const agave_tensor *t);

/* Copy n floats in or out; n must equal agave_tensor_numel(t). */
AGAVE_API agave_status agave_tensor_copy_in(agave_tensor *t, const float *src, size_t n);
AGAVE_API agave_status agave_tensor_copy_out(const agave_tensor *t, float *dst, size_t n);
AGAVE_API agave_status agave_tensor_fill(agave_tensor *t, float value);
/* Fills with N(mean, std^2) draws from the context's generator. */
AGAVE_API agave_status agave_tensor_fill_normal(agave_tensor *t, float mean, float std);

/* Borrowed pointer to the numel floats of t (NCHW, row-major), or NULL. */
AGAVE_API float *agave_tensor_data(agave_tensor *t);

/* Gradients. A persistent tensor collects gradients once it requires them;
 * gradients accumulate over agave_backward() calls until zeroed. */
AGAVE_API agave_status agave_tensor_set_requires_grad(agave_tensor *t, int requires_grad);
AGAVE_API int agave_tensor_requires_grad(const agave_tensor *t);
/* Borrowed pointer to the gradient (numel floats), or NULL if none was made. */
AGAVE_API float *agave_tensor_grad(agave_tensor *t);
AGAVE_API agave_status agave_tensor_zero_grad(agave_tensor *t);

/* ---- Gradient tape (reverse mode) --------------------------------------- */
/* Ops record themselves while recording is on (the default) and one of their
 * inputs requires a gradient. */
AGAVE_API agave_status agave_tape_set_recording(agave_context *ctx, int on);
AGAVE_API int agave_tape_recording(const agave_context *ctx);
/* Number of ops recorded since the last reset. */
AGAVE_API size_t agave_tape_size(const agave_context *ctx);
/* Forgets the recorded ops and frees every op output (the arena is kept, so
 * a training loop allocates nothing after its first step). */
AGAVE_API agave_status agave_tape_reset(agave_context *ctx);
/* Back-propagates from a tensor of one element: fills the gradient of every
 * tensor it depends on that requires one. Run it once per tape. */
AGAVE_API agave_status agave_backward(agave_context *ctx, agave_tensor *scalar);

/* ---- Differentiable ops ------------------------------------------------- */
/* Each writes a new arena tensor to *out. Inputs must come from the same
 * context. */

/* 2-D convolution (cross-correlation), dilation 1, zero padding.
 * x is (N,Cin,H,W), w is (Cout,Cin,KH,KW), bias is (Cout) or NULL;
 * out is (N,Cout,Ho,Wo) with Ho = (H + pad_top + pad_bottom - KH) / stride + 1,
 * Wo likewise; stride >= 1, paddings >= 0, Ho and Wo >= 1. In fp32 on CPUs
 * with AVX-512F, a 3-wide kernel at stride 1 with Wo = W (12 <= W <= 64,
 * Ho >= 12) runs by Winograd minimal filtering, F(4,3): the same function
 * with half the multiply-adds, rounded differently (docs/performance.md). */
AGAVE_API agave_status agave_conv2d(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                                    agave_tensor *bias, int stride, int pad_top,
                                    int pad_bottom, int pad_left, int pad_right,
                                    agave_tensor **out);

/* Transposed 2-D convolution, cropped. x is (N,Cin,H,W), w is (Cin,Cout,KH,KW),
 * bias (Cout) or NULL. The uncropped output F has F[n,o,i*stride+kh,j*stride+kw]
 * += x[n,c,i,j] w[c,o,kh,kw] over an unbounded plane (zero elsewhere); out is
 * (N,Cout,out_h,out_w) with out[n,o,r,c] = F[n,o,r+crop_top,c+crop_left] + bias[o].
 * PixelCNN++'s stride-2 shifted deconvolutions are crop_top = 0 with
 * crop_left = (KW-1)/2 (down-shifted) or 0 (down-right-shifted), out 2H x 2W.
 * Crops must be >= 0 and out_h, out_w >= 1 (AGAVE_ERR_INVALID_ARG otherwise).
 * The convolution family returns AGAVE_ERR_LIMIT when an output would exceed
 * 2^40 elements or a GEMM dimension INT_MAX/2. */
AGAVE_API agave_status agave_conv2d_transpose(agave_context *ctx, agave_tensor *x,
                                              agave_tensor *w, agave_tensor *bias, int stride,
                                              int crop_top, int crop_left, int out_h, int out_w,
                                              agave_tensor **out);

/* Network-in-network (1x1 convolution): x is (N,Cin,H,W), w is (Cout,Cin),
 * bias (Cout) or NULL; out is (N,Cout,H,W). */
AGAVE_API agave_status agave_nin(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                                 agave_tensor *bias, agave_tensor **out);

/* Dense layer: x is (N,K) (or any (N,...) with K = numel/N; at least 2-D), w is
 * (M,K), bias (M) or NULL; out is (N,M) = x w^T + bias. */
AGAVE_API agave_status agave_dense(agave_context *ctx, agave_tensor *x, agave_tensor *w,
                                   agave_tensor *bias, agave_tensor **out);

/* Adds bias (C) along axis 1 of x (N,C,...). */
AGAVE_API agave_status agave_bias_add(agave_context *ctx, agave_tensor *x, agave_tensor *bias,
                                      agave_tensor **out);

/* Element-wise on equal shapes. */
AGAVE_API agave_status agave_add(agave_context *ctx, agave_tensor *a, agave_tensor *b,
                                 agave_tensor **out);
AGAVE_API agave_status agave_sub(agave_context *ctx, agave_tensor *a, agave_tensor *b,
                                 agave_tensor **out);
AGAVE_API agave_status agave_mul(agave_context *ctx, agave_tensor *a, agave_tensor *b,
                                 agave_tensor **out);
/* out = s * x for a constant s. */
AGAVE_API agave_status agave_scale(agave_context *ctx, agave_tensor *x, float s,
                                   agave_tensor **out);

/* Channel concatenation of a (N,Ca,H,W) and b (N,Cb,H,W) into (N,Ca+Cb,H,W). */
AGAVE_API agave_status agave_concat(agave_context *ctx, agave_tensor *a, agave_tensor *b,
                                    agave_tensor **out);
/* Channels [start, start+count) of x (N,C,H,W): out is (N,count,H,W). */
AGAVE_API agave_status agave_split(agave_context *ctx, agave_tensor *x, int start, int count,
                                   agave_tensor **out);

/* Element-wise nonlinearities. elu(x) = x for x > 0, exp(x) - 1 otherwise.
 * concat_elu(x) = concat(elu(x), elu(-x)) along channels: (N,C,H,W) -> (N,2C,H,W).
 * log needs x > 0 (it returns -inf or NaN otherwise, like logf).
 * softplus(x) = log(1 + exp(x)), computed without overflow. */
AGAVE_API agave_status agave_elu(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_concat_elu(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_sigmoid(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_tanh(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_exp(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_log(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_softplus(agave_context *ctx, agave_tensor *x, agave_tensor **out);

/* log(sum(exp(x))) over one axis (0..ndim-1); that axis has size 1 in out. */
AGAVE_API agave_status agave_logsumexp(agave_context *ctx, agave_tensor *x, int axis,
                                       agave_tensor **out);
/* Per-item sum: x (N,...) -> (N), summing everything but axis 0. */
AGAVE_API agave_status agave_sum_items(agave_context *ctx, agave_tensor *x, agave_tensor **out);
/* Sum and mean of all elements: out has one element, shape (1). */
AGAVE_API agave_status agave_sum(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_mean(agave_context *ctx, agave_tensor *x, agave_tensor **out);

/* PixelCNN++ shifts on (N,C,H,W): down_shift drops the last row and puts a row
 * of zeros on top; right_shift drops the last column and puts zeros on the left. */
AGAVE_API agave_status agave_down_shift(agave_context *ctx, agave_tensor *x, agave_tensor **out);
AGAVE_API agave_status agave_right_shift(agave_context *ctx, agave_tensor *x, agave_tensor **out);

/* Nearest-neighbour x2 upsampling: (N,C,H,W) -> (N,C,2H,2W). */
AGAVE_API agave_status agave_upsample2x(agave_context *ctx, agave_tensor *x, agave_tensor **out);
/* s x s average pooling, s >= 1 dividing H and W: (N,C,H,W) -> (N,C,H/s,W/s). */
AGAVE_API agave_status agave_avg_pool(agave_context *ctx, agave_tensor *x, int s,
                                      agave_tensor **out);

/* PixelCNN++'s gated residual output, fused: x is (N,F,H,W), c is (N,2F,H,W);
 * out = x + c[:, :F] * sigmoid(c[:, F:]). */
AGAVE_API agave_status agave_gate(agave_context *ctx, agave_tensor *x, agave_tensor *c,
                                  agave_tensor **out);

/* Swaps the first two axes: x (A,B,...) -> (B,A,...), e.g. a (Cout,Cin,KH,KW)
 * weight into the (Cin,Cout,KH,KW) layout of agave_conv2d_transpose. */
AGAVE_API agave_status agave_transpose01(agave_context *ctx, agave_tensor *x, agave_tensor **out);

/* Inverted dropout: each element is zeroed with probability p (0 <= p < 1) and
 * the others are scaled by 1/(1-p); the mask comes from the context's
 * generator. p = 0 is the identity. */
AGAVE_API agave_status agave_dropout(agave_context *ctx, agave_tensor *x, float p,
                                     agave_tensor **out);

/* Weight normalisation: v is (Cout, ...), g is (Cout);
 * out[o,...] = g[o] * v[o,...] / ||v[o,...]||_2. */
AGAVE_API agave_status agave_weight_norm(agave_context *ctx, agave_tensor *v, agave_tensor *g,
                                         agave_tensor **out);

/* Data-dependent initialisation (Salimans & Kingma 2016), not recorded on the tape.
 * t is a layer's pre-activation (N,C,...) computed with g = 1 and bias = 0;
 * per channel c with mean m_c and variance s2_c over every axis but 1:
 *   g[c] = init_scale / sqrt(s2_c + 1e-10),  bias[c] = -m_c * g[c],
 * and t is overwritten with g[c] * t + bias[c]. g and bias are (C), persistent.
 * A channel that is constant on the batch (s2_c <= 1e-12, e.g. a fully masked
 * row) gets g[c] = 1 instead of an enormous gain. */
AGAVE_API agave_status agave_weight_norm_init(agave_context *ctx, agave_tensor *t,
                                              float init_scale, agave_tensor *g,
                                              agave_tensor *bias);

/* ---- Auxiliary image y = Q_b(P_s(x)) (the paper's Eq. 8) ---------------- */
/* P_s: x is (n,c,h,w) uint8; y is (n,c,h/s,w/s) uint8, each value the mean of an
 * s x s block rounded halves up, floor(mean + 0.5). s in {1,2,4} dividing h, w. */
AGAVE_API agave_status agave_image_pool(const uint8_t *x, int n, int c, int h, int w, int s,
                                        uint8_t *y);
/* Q_b: level[i] = floor(x[i] / (256/levels)), levels a power of two in 2..256. */
AGAVE_API agave_status agave_image_quantize(const uint8_t *x, size_t count, int levels,
                                            uint8_t *level);

/* ---- Losses on plain buffers -------------------------------------------- */
/* Discretized logistic with `levels` bins (docs/model.md, "The auxiliary image y"):
 * element-wise, y[i] in 0..255 is mapped to level k = floor(y*levels/256); level k
 * covers [k*c - 0.5, (k+1)*c - 0.5) on the 0..255 scale (c = 256/levels), edges
 * mapped by e/127.5 - 1, the lowest lower edge -inf and highest upper edge +inf;
 * logp[i] = log(sigmoid((hi - mean)/s) - sigmoid((lo - mean)/s)), s = exp(log_scale[i]),
 * in nats, computed stably. levels is a power of two in 2..256. */
AGAVE_API agave_status agave_dlogistic_logprob(const uint8_t *y, const float *mean,
                                               const float *log_scale, size_t n, int levels,
                                               float *logp);

/* Discretized mixture of logistics (PixelCNN++): x is (n,channels,height,width)
 * uint8, params (n,P,height,width) in docs/model.md's layout (P = 3*n_mix for
 * channels 1, 10*n_mix for channels 3); logp receives n*height*width per-pixel
 * log-probabilities in nats (the sum over the pixel's channels). Invalid
 * arguments return a non-OK status and write nothing. */
AGAVE_API agave_status agave_dmol_logprob(const uint8_t *x, const float *params, int n,
                                          int channels, int height, int width, int n_mix,
                                          float *logp);

/* Draws one value per sub-pixel from the mixture: for each pixel a component by
 * Gumbel-max on the logits, then R, G, B in order, a logistic sample with the
 * coupled mean (coupling on the already rounded R and G), clipped to [-1, 1] and
 * rounded to the nearest of 256 levels. Layouts as agave_dmol_logprob; x receives
 * (n,channels,height,width) uint8. Uses the context's generator. */
AGAVE_API agave_status agave_dmol_sample(agave_context *ctx, const float *params, int n,
                                         int channels, int height, int width, int n_mix,
                                         uint8_t *x);

/* ---- Losses on the tape ------------------------------------------------ */
/* Per-image negative log-likelihoods: out is (N). */

/* Discretized logistic NLL: y is (N,C,H,W) uint8 values 0..255 (copied), mean is
 * (N,C,H,W), log_scale is (C): out[n] = -sum over c,h,w of the log-probability. */
AGAVE_API agave_status agave_dlogistic_nll(agave_context *ctx, const uint8_t *y,
                                           agave_tensor *mean, agave_tensor *log_scale,
                                           int levels, agave_tensor **out);

/* Mixture of logistics NLL: x is (N,C,H,W) uint8 (copied, C = 1 or 3), params is
 * (N,P,H,W) as agave_dmol_logprob: out[n] = -sum over pixels of the log-probability. */
AGAVE_API agave_status agave_dmol_nll(agave_context *ctx, const uint8_t *x, int channels,
                                      agave_tensor *params, int n_mix, agave_tensor **out);

/* Diagonal Gaussians with mean and log_std of equal shape (N,...).
 * gaussian_sample: z = mean + exp(log_std) * eps, eps ~ N(0,1) from the context.
 * gaussian_logprob: out[n] = sum log N(z; mean, exp(log_std)^2).
 * gaussian_kl: out[n] = KL(N(mean, exp(log_std)^2) || N(0, I)) summed per image
 *            = sum 0.5 * (mean^2 + exp(2 log_std) - 1) - log_std. */
AGAVE_API agave_status agave_gaussian_sample(agave_context *ctx, agave_tensor *mean,
                                             agave_tensor *log_std, agave_tensor **z);
AGAVE_API agave_status agave_gaussian_logprob(agave_context *ctx, agave_tensor *z,
                                              agave_tensor *mean, agave_tensor *log_std,
                                              agave_tensor **out);
AGAVE_API agave_status agave_gaussian_kl(agave_context *ctx, agave_tensor *mean,
                                         agave_tensor *log_std, agave_tensor **out);

/* ---- Bounds ------------------------------------------------------------- */
/* log_w is (n, k) row-major: k log-weights log p(x,z_j) - log q(z_j|x) per image.
 * elbo[i] = mean_j log_w[i,j];
 * iwae[i] = log((1/k) sum_j exp(log_w[i,j])), by log-sum-exp. */
AGAVE_API agave_status agave_elbo_from_log_weights(const double *log_w, int n, int k,
                                                   double *elbo);
AGAVE_API agave_status agave_iwae_from_log_weights(const double *log_w, int n, int k,
                                                   double *iwae);
/* Bits per dimension of a negative log-likelihood in nats over `dims` dimensions:
 * nll / (dims * ln 2). Returns NaN for dims <= 0. */
AGAVE_API double agave_nats_to_bpd(double nll_nats, double dims);

/* ---- Layers: parameterised building blocks ------------------------------ */
/* Every convolution is weight-normalised (w = g * v / ||v|| per output channel,
 * plus a bias) and initialised from data: the first forward of a new layer
 * sets g and bias so that its outputs on that batch have mean 0 and standard
 * deviation init_scale per channel (Salimans & Kingma 2016); a DECONV layer
 * takes these statistics on its full output before the crop,
 * (H*stride + KH - 1) x (W*stride + KW - 1). v starts as
 * N(0, 0.05^2) draws from the context's generator. */

typedef enum agave_layer_kind {
    AGAVE_LAYER_CONV = 0,         /* x (N,in,H,W) -> (N,out,Ho,Wo), kernel KH x KW, stride */
    AGAVE_LAYER_DECONV = 1,       /* transposed conv: (N,in,H,W) -> (N,out,stride*H,stride*W) */
    AGAVE_LAYER_NIN = 2,          /* 1x1 conv: (N,in,H,W) -> (N,out,H,W) */
    AGAVE_LAYER_DENSE = 3,        /* (N,in) -> (N,out) */
    AGAVE_LAYER_GATED_RESNET = 4, /* PixelCNN++ gated residual block, in = out channels */
    AGAVE_LAYER_RESNET = 5,       /* VAE residual block: x + conv(elu(conv(elu(x)))) */
    AGAVE_LAYER_COND_STREAM = 6   /* AGAVE conditioning stream: f -> elu(g1), elu(g2), elu(g3) */
} agave_layer_kind;

/* Where a convolution may look. NONE: centred ("same") padding.
 * DOWN: pad KH-1 rows on top and (KW-1)/2 columns each side: an output sees
 * only its own row and those above (PixelCNN++'s down_shifted_conv2d).
 * DOWN_RIGHT: pad KH-1 rows on top, KW-1 columns on the left: it sees only
 * rows above and columns to the left, inclusive (down_right_shifted_conv2d).
 * Deconvolutions crop as documented at agave_conv2d_transpose. */
typedef enum agave_shift {
    AGAVE_SHIFT_NONE = 0,
    AGAVE_SHIFT_DOWN = 1,
    AGAVE_SHIFT_DOWN_RIGHT = 2
} agave_shift;

typedef struct agave_layer_options {
    size_t struct_size;      /* sizeof(agave_layer_options), set by _init */
    int in_channels;         /* required */
    int out_channels;        /* required except GATED_RESNET/RESNET (= in_channels) */
    int kernel_h, kernel_w;  /* default 3 x 3 */
    int stride;              /* default 1; CONV 1 or more, DECONV 1 or 2 */
    agave_shift shift;       /* default NONE */
    float init_scale;        /* default 1.0 */
    float dropout;           /* GATED_RESNET: dropout on the inner activation, default 0 */
    int shortcut_channels;   /* GATED_RESNET: channels of the short-cut input a (0 = none) */
    int cond_channels;       /* GATED_RESNET: channels of the conditioning h (0 = none) */
    int mask_degrees;        /* CONV: 0 = no mask; D > 0: autoregressive over channels (IAF):
                                channel c (input or output) has degree c mod D, and output o
                                uses input i only if deg(i) < deg(o) ... */
    int mask_inclusive;      /* ... or deg(i) <= deg(o) when this is 1 */
    int mask_reverse;        /* 1: degrees run backwards, deg(c) = D - 1 - (c mod D) */
} agave_layer_options;

/* agave_layer_options_init(opt) passes sizeof *opt as struct_size. */
AGAVE_API agave_status agave_layer_options_init_sized(agave_layer_options *opt,
                                                      size_t struct_size);
#define agave_layer_options_init(opt) agave_layer_options_init_sized((opt), sizeof *(opt))

/* A new layer on ctx (options validated: AGAVE_ERR_INVALID_ARG names the field). */
AGAVE_API agave_status agave_layer_create(agave_context *ctx, agave_layer_kind kind,
                                          const agave_layer_options *opt, agave_layer **out);
AGAVE_API void agave_layer_free(agave_layer *layer);

/* Forward of one-input layers (CONV, DECONV, NIN, DENSE, RESNET, and
 * GATED_RESNET without short-cut or conditioning). The output is an arena tensor. */
AGAVE_API agave_status agave_layer_forward(agave_layer *layer, agave_tensor *x,
                                           agave_tensor **out);
/* GATED_RESNET: c1 = conv(ce(x)) [+ nin(ce(a))]; c1 = dropout(ce(c1));
 * c2 = conv(c1) [+ nin(h)]; out = x + c2[:F] * sigmoid(c2[F:]), ce = concat_elu.
 * a is (N,shortcut,H,W), required when shortcut_channels > 0 and refused otherwise;
 * h is (N,cond,H,W) or NULL (no conditioning in this pass, e.g. an unconditional
 * model), refused when cond_channels is 0. */
AGAVE_API agave_status agave_layer_forward_gated(agave_layer *layer, agave_tensor *x,
                                                 agave_tensor *a, agave_tensor *h,
                                                 agave_tensor **out);
/* COND_STREAM: f (N,in,H,W) -> out[0] (N,F,H,W), out[1] (N,F,H/2,W/2),
 * out[2] (N,F,H/4,W/4), each elu(g_l). */
AGAVE_API agave_status agave_layer_forward_cond(agave_layer *layer, agave_tensor *f,
                                                agave_tensor *out[3]);

/* Dropout is applied only in training mode (the default is on). */
AGAVE_API agave_status agave_layer_set_training(agave_layer *layer, int training);
/* 1 once the data-dependent initialisation has run (or was skipped). */
AGAVE_API int agave_layer_initialized(const agave_layer *layer);
/* Marks the layer initialised without a data pass (e.g. after loading weights). */
AGAVE_API agave_status agave_layer_skip_init(agave_layer *layer);

/* The number of parameter tensors, and tensor index, depth-first with dotted
 * names ("conv1.v", "conv1.g", "conv1.b"). The tensors are owned by the layer
 * and require gradients. */
AGAVE_API int agave_layer_param_tensor_count(const agave_layer *layer);
AGAVE_API agave_status agave_layer_param(agave_layer *layer, int index, const char **name,
                                         agave_tensor **param);

/* ---- Optimisers --------------------------------------------------------- */
/* beta1 0.95, beta2 0.9995 as in PixelCNN++; lr > 0. */
AGAVE_API agave_status agave_optimizer_create(agave_context *ctx, agave_optimizer_kind kind,
                                              float lr, agave_optimizer **out);
AGAVE_API void agave_optimizer_free(agave_optimizer *opt);
/* Registers every parameter of a layer (call before the first step). */
AGAVE_API agave_status agave_optimizer_add_layer(agave_optimizer *opt, agave_layer *layer);
/* One update from the accumulated gradients, which are then zeroed. If
 * max_grad_norm > 0 the gradient is first scaled to at most that L2 norm.
 * A non-finite gradient leaves every parameter untouched and returns
 * AGAVE_ERR_NUMERIC. */
AGAVE_API agave_status agave_optimizer_step(agave_optimizer *opt, float max_grad_norm);

/* ---- Part 4: not yet stable; compatibility ------------------------------ */
/* Declarations behind AGAVE_EXPERIMENTAL are exported by the library but are
 * not covered by the ABI promise (docs/build.md): they may change, or go, in
 * any release, and the CHANGELOG says when they do. Define AGAVE_EXPERIMENTAL
 * before including agave.h to use them. */

#if defined(AGAVE_EXPERIMENTAL) || defined(AGAVE_BUILDING_LIBRARY)
/* ---- Experimental: data-parallel training (e.g. MPI ranks) -------------- */
/* P processes hold the same model (same configuration, seed and parameters)
 * and each trains on its own slice of a global batch. Two settings make them
 * compute what one process computes on the whole batch, and keep their
 * parameters bit-identical; the library itself does no communication and
 * links no MPI (examples/common/dist_mpi.c is an MPI_Allreduce reducer). */

/* The images of the following agave_model_train_step and agave_model_evaluate
 * calls are images [offset, offset + n) of a batch of `total` images that
 * other processes share (n being each call's image count):
 *  - random numbers (the z samples, dropout masks) are drawn for the whole
 *    batch, in one process's order, and each process keeps its slice's: every
 *    image gets the noise it would get if one process took the whole batch,
 *    and the generator ends every call in the same state in every process;
 *  - a training step minimises the sum of its images' losses divided by
 *    total, so that the sum over the processes of the gradients (what the
 *    reducer below computes) is the gradient of the mean over the batch.
 * total = 0 (the default) turns slicing off; offset must then be 0. Otherwise
 * 0 <= offset <= total <= 2^40 (offset = total: an empty slice), and each call
 * checks that offset + n <= total (AGAVE_ERR_INVALID_ARG). Slices may differ
 * in size. With a slice set, a
 * training step refuses an uninitialised model (AGAVE_ERR_STATE): call
 * agave_model_init with the whole batch in every process first, so that the
 * data-dependent initialisation is the same everywhere; and
 * agave_model_evaluate accepts n = 0 (a process with no image in this batch:
 * it only moves the generator past the batch's draws). */
AGAVE_API agave_status agave_model_set_batch_slice(agave_model *model, int64_t offset,
                                                   int64_t total);

/* Sums a buffer over the processes: on return every one of the n floats of
 * buf must hold its sum over all processes, the same bits in every process
 * (MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm)). Anything
 * but AGAVE_OK fails the training step with that status. */
typedef agave_status (*agave_grad_reduce_fn)(float *buf, size_t n, void *user);

/* Installs fn (NULL removes it). From then on every agave_model_train_step,
 * after its backward pass, packs into ONE buffer every parameter's gradient
 * (in checkpoint order: agave_model_param_numel floats) followed by a few
 * floats of the step's loss sums, image count and a non-finite flag, calls
 * fn(buf, n, user) exactly once, and continues with the sums: the
 * non-finite check (a non-finite loss or gradient in any process rejects the
 * step in every process alike), the step figures of the whole batch in
 * stats, clipping, the update and the averaging. A process whose own loss is
 * not finite skips its backward but still calls fn, so the processes stay in
 * step. A step that fails with an error before that point (out of memory,
 * an invalid argument) returns without calling fn: with several processes
 * the caller must then stop them all (MPI_Abort), since the others wait in
 * their reduction. The buffer belongs to the model (allocated at the first
 * such step, freed with the model); fn must not keep it. Use with
 * agave_model_set_batch_slice; without a slice each process's contribution is
 * its own mean, and the sum would be P times the mean. */
AGAVE_API agave_status agave_model_set_grad_reducer(agave_model *model, agave_grad_reduce_fn fn,
                                                    void *user);
#endif /* AGAVE_EXPERIMENTAL */

/* ---- Compatibility ------------------------------------------------------ */
/* Names kept so that programs built against an earlier agave.h still build
 * and link. Each is declared with AGAVE_DEPRECATED(replacement): using it warns
 * and names its replacement (define AGAVE_NO_DEPRECATION_WARNINGS before
 * including agave.h to silence the warnings). They stay for all of 1.x. */
#if defined(AGAVE_BUILDING_LIBRARY) || defined(AGAVE_NO_DEPRECATION_WARNINGS)
#define AGAVE_DEPRECATED(replacement)
#elif defined(__GNUC__)
#define AGAVE_DEPRECATED(replacement) __attribute__((deprecated("use " #replacement)))
#elif defined(_MSC_VER)
#define AGAVE_DEPRECATED(replacement) __declspec(deprecated("use " #replacement))
#else
#define AGAVE_DEPRECATED(replacement)
#endif

/* 0.1's header declared these four as functions (now they are macros that
 * pass sizeof): they fill the fields 0.1's structs had. */
AGAVE_DEPRECATED(agave_config_init_sized)
AGAVE_API agave_status (agave_config_init)(agave_config *cfg, const char *name);
AGAVE_DEPRECATED(agave_layer_options_init_sized)
AGAVE_API agave_status (agave_layer_options_init)(agave_layer_options *opt);
AGAVE_DEPRECATED(agave_grid_options_init_sized)
AGAVE_API void (agave_grid_options_init)(agave_grid_options *opt);
AGAVE_DEPRECATED(agave_model_get_config_sized)
AGAVE_API agave_status (agave_model_get_config)(const agave_model *model, agave_config *cfg);

/* The names before 1.0 of the parameter counts, which did not say what they
 * count: floats for the model and the configuration, tensors for the layer. */
AGAVE_DEPRECATED(agave_model_param_numel)
AGAVE_API size_t agave_model_param_count(const agave_model *model);
AGAVE_DEPRECATED(agave_model_param_tensor_count)
AGAVE_API int agave_model_param_tensors(const agave_model *model);
AGAVE_DEPRECATED(agave_layer_param_tensor_count)
AGAVE_API int agave_layer_param_count(const agave_layer *layer);
AGAVE_DEPRECATED(agave_config_param_numel)
AGAVE_API agave_status agave_config_param_count(const agave_config *cfg, size_t *count);

#ifdef __cplusplus
}
#endif

#endif /* AGAVE_H */
