/* Internal view of the AGAVE model: the VAE (encoder, optional IAF, decoder),
 * the auxiliary log-scales, the conditioning stream and the PixelCNN++. */
#ifndef AGAVE_MODEL_H
#define AGAVE_MODEL_H

#include "../core/core.h"
#include "../loss/loss.h"
#include "../nn/nn.h"
#include "../train/train.h"
#include "topology.h"

#define MODEL_MAX_R 32
#define MODEL_MAX_T 16
#define MODEL_MAX_LAYERS 512
/* The constant added to an IAF step's gate pre-activation s, so that
 * sigma = sigmoid(s + 2) starts near 0.88 rather than 0.5 (docs/model.md, The VAE;
 * Kingma et al. 2016). */
#define IAF_FORGET_BIAS 2.0f

typedef struct vae_net {
    agave_layer *enc_in;                          /* conv3x3 C -> Fv */
    agave_layer *enc_res[2][MODEL_MAX_R];         /* Rv residual blocks per stage */
    agave_layer *enc_down[2];                     /* conv3x3 stride 2 */
    agave_layer *enc_out;                         /* conv3x3 Fv -> 2Z (+Z context if T > 0) */
    agave_layer *iaf_in[MODEL_MAX_T];             /* masked conv Z -> 2Z (strict) */
    agave_layer *iaf_ctx[MODEL_MAX_T];            /* conv Z -> 2Z from the context h */
    agave_layer *iaf_out[MODEL_MAX_T];            /* masked conv 2Z -> 2Z (inclusive): m, s */
    agave_layer *dec_in;                          /* conv3x3 Z -> Fv */
    agave_layer *dec_up[2];                       /* conv3x3 after each x2 upsampling */
    agave_layer *dec_res[2][MODEL_MAX_R];
    agave_layer *dec_out;                         /* conv3x3 Fv -> C: f(z) */
    int n_up;                                     /* 2 for s = 1, 1 for s = 2, 0 for s = 4 */
} vae_net;

typedef struct pixelcnn_net {
    agave_layer *cond;                            /* conditioning stream C -> F */
    agave_layer *u_init, *ul_init_a, *ul_init_b;  /* first shifted convs on [x, 1] */
    agave_layer *up_u[3][MODEL_MAX_R], *up_ul[3][MODEL_MAX_R];
    agave_layer *down_u[2], *down_ul[2];          /* stride-2 shifted convs */
    agave_layer *dn_u[3][MODEL_MAX_R + 1], *dn_ul[3][MODEL_MAX_R + 1];
    agave_layer *upsample_u[2], *upsample_ul[2];  /* stride-2 shifted deconvs */
    agave_layer *out;                             /* nin(elu(ul)) F -> P */
} pixelcnn_net;

struct agave_model {
    agave_context *ctx;
    agave_config cfg;
    vae_net vae;
    pixelcnn_net pcnn;
    agave_tensor *aux_log_scale;                  /* (C), one per channel, starts at 0 */
    agave_layer *layers[MODEL_MAX_LAYERS];        /* every layer, in creation order */
    int n_layers;
    agave_tensor **params;                        /* every parameter, checkpoint order */
    char (*param_names)[96];
    int n_params;
    /* The parameters' values and gradients, each one block in checkpoint
     * order (params[i] are views into them): the optimiser, the average and
     * the reducer each run one loop over a block. grad_block has
     * REDUCE_EXTRA more floats, the sums the reducer adds up with them. */
    float *param_block, *grad_block;
    size_t param_total;
    agave_optimizer *opt;
    param_average ema;
    agave_weights weights;    /* what evaluation and sampling use (default: the average) */
    int64_t step;
    int bad_steps;            /* consecutive rejected steps */
    int64_t rejected;         /* rejected steps in all */
    int initialized;
    /* Data parallelism (agave_model_set_batch_slice / _set_grad_reducer). */
    agave_run_state run;     /* the run's data order, saved with the model (run_state.c) */
    int has_run;
    rng_span slice;          /* this process's items of each batch; RNG_WHOLE_BATCH: no slice */
    rng_span span;           /* of the forward running now: the slice during a step */
    agave_grad_reduce_fn reduce_fn;
    void *reduce_user;
    /* Training on several threads (replicas.c): one-thread replicas, made
     * at the first step that needs them. */
    agave_model **replicas;
    int n_replicas;
};

/* The floats after the gradients in the reducer's buffer: per-process sums
 * that the reduction turns into the batch's. */
enum {
    REDUCE_NLL_X,      /* sum over images of -log p(x|z) */
    REDUCE_NLL_Y,      /* of -log p(y|z) */
    REDUCE_KL,         /* of the KL term */
    REDUCE_IMAGES,     /* images */
    REDUCE_BAD_LOSS,   /* 1 if the process's loss was not finite */
    REDUCE_EXTRA
};

/* The per-image terms of one forward pass, each (N) in nats (NULL if absent). */
typedef struct model_terms {
    agave_tensor *nll_x;      /* -log p(x|z) (or -log p(x) in mode pixelcnn) */
    agave_tensor *nll_y;      /* -log p(y|z) */
    agave_tensor *kl;         /* analytic KL (T = 0) or log q(z|x) - log p(z) (T > 0) */
    agave_tensor *log_q;      /* log q(z|x) of the sample (for IWAE) */
    agave_tensor *log_p_z;    /* log p(z) of the sample */
    agave_tensor *f;          /* f(z), (N,C,H/s,W/s) */
} model_terms;

/* Which parts a forward pass runs. */
typedef struct forward_plan {
    int vae;        /* encoder, sample, decoder, KL */
    int aux;        /* auxiliary likelihood of y */
    int pixelcnn;   /* PixelCNN likelihood of x */
    int condition;  /* PixelCNN conditioned on f(z) */
} forward_plan;

forward_plan plan_for_mode(agave_mode mode);

/* 1 if a and b build the same network (C H W F R M Fv Rv Z T b s). */

/* x~ = x / 127.5 - 1 as an arena tensor (N,C,H,W). */
agave_tensor *image_tensor(agave_context *ctx, const uint8_t *x, int n, int c, int h, int w);

/* Network pieces (lib/model/vae.c, lib/model/pixelcnn.c). */
agave_status vae_encode(agave_model *m, agave_tensor *x, agave_tensor **mean,
                        agave_tensor **log_std, agave_tensor **context);
/* z ~ q(z|x) through the IAF: returns z, log q(z|x) and log p(z) per image. */
agave_status vae_posterior_sample(agave_model *m, agave_tensor *mean, agave_tensor *log_std,
                                  agave_tensor *context, agave_tensor **z,
                                  agave_tensor **log_q, agave_tensor **log_p_z);
/* z at noise 0: the mean itself when T = 0, else the mean through the IAF. */
agave_status vae_posterior_mean(agave_model *m, agave_tensor *mean, agave_tensor *context,
                                agave_tensor **z);
agave_status vae_decode(agave_model *m, agave_tensor *z, agave_tensor **f);
/* x~ (N,C,H,W), f (N,C,H/s,W/s) or NULL: mixture parameters (N,P,H,W). */
agave_status pixelcnn_forward(agave_model *m, agave_tensor *x, agave_tensor *f,
                              agave_tensor **params);

/* The whole forward of docs/model.md for a batch, with the given plan. */
agave_status model_forward(agave_model *m, const uint8_t *x, int n, forward_plan plan,
                           model_terms *terms);

/* The scalar the training step minimises: the batch mean of
 * nll_x + nll_y + lambda * kl over the terms present. */
agave_status model_objective(agave_model *m, const model_terms *t, agave_tensor **loss);

/* loss = (sum over this slice's images of the per-image objective) / total:
 * this process's share of the mean over a batch of total images. */
agave_status model_slice_objective(agave_model *m, const model_terms *t, int64_t total,
                                   agave_tensor **loss);

/* AGAVE_ERR_NULL / AGAVE_ERR_INVALID_ARG (named after fn) unless x is an
 * image buffer and n in 1..2^20 (lib/model/init.c). */
agave_status model_check_batch(agave_model *m, const uint8_t *x, int n, const char *fn);

/* lib/model/parallel.c. AGAVE_ERR_INVALID_ARG (named after fn) if n images
 * from the model's slice offset overrun its slice total. */
agave_status model_check_slice(agave_model *m, int n, const char *fn);
/* Has the reducer sum grad_block and sums (which cross as floats after it)
 * over the processes. */
agave_status model_reduce_step(agave_model *m, double sums[REDUCE_EXTRA]);

/* lib/model/step.c. Forward over the model's n images (its batch slice's
 * place in the random stream when it has one), the objective, its sums
 * (model_local_sums) and, unless the loss is not finite, backward. */
agave_status model_forward_backward(agave_model *m, const uint8_t *x, int n,
                                    double sums[REDUCE_EXTRA], double *loss_value);
/* lib/model/replicas.c. How many replicas a training step of n images on
 * m's threads runs on: 1 (none: the step runs op by op on the threads) or
 * min(threads, n). */
int model_step_replicas(const agave_model *m, int n);
/* Forward and backward of n images on R replicas of m, their gradients
 * summed into m's gradient block, sums and loss over the batch (as
 * model_forward_backward's for the whole batch), m's random state advanced
 * past the batch. */
agave_status model_replicas_forward_backward(agave_model *m, const uint8_t *x, int n, int R,
                                             double sums[REDUCE_EXTRA], double *loss);
void model_replicas_free(agave_model *m);
/* The replicas' arenas' pages back to the system (arena_trim): between
 * training steps, before work that runs in m's own arena. */
void model_replicas_trim(agave_model *m);
/* Sets every gated block's dropout to p (lib/model/model.c). */
void model_set_dropout(agave_model *m, float p);
/* lib/model/step_stats.c. This process's sums over its n images of the
 * terms t, in the reducer's layout (rounded to floats with a slice or a
 * reducer, as the processes exchange them). */
void model_local_sums(const agave_model *m, const model_terms *t, int n, int bad_loss,
                      double sums[REDUCE_EXTRA]);
/* The step figures from the batch's sums; loss is the objective's value
 * (used when the process saw the whole batch). */
void model_step_stats(const agave_model *m, const double sums[REDUCE_EXTRA], double loss,
                      double grad_norm, agave_step_stats *s);

/* Registers a layer (owned by the model from then on); model.c builds
 * every layer of the topology (topology.h) with it. */
agave_status model_add_layer(agave_model *m, agave_layer_kind kind,
                             const agave_layer_options *o, agave_layer **out);

/* Which sampler draws the pixels: the cached one (lib/model/sample_cached.c,
 * the default) or the naive one (a full PixelCNN forward per pixel, the
 * reference). Both draw the same random numbers in the same order. */
typedef enum model_sampler { MODEL_SAMPLER_CACHED = 0, MODEL_SAMPLER_NAIVE = 1 } model_sampler;

/* agave_model_sample (x_in NULL) or agave_model_reconstruct (x_in given)
 * with the chosen sampler (lib/model/sample.c). */
agave_status model_sample_with(agave_model *m, model_sampler sampler, const uint8_t *x_in, int n,
                               uint64_t seed, uint8_t *fz, uint8_t *x);
/* agave_model_decode: as agave_model_sample, with z (n,Z,H/4,W/4) given
 * instead of drawn (lib/model/sample.c). */
agave_status model_sample_from_z(agave_model *m, const float *z, int n, uint64_t seed, uint8_t *fz,
                                 uint8_t *x);

/* lib/model/eval.c. What an evaluation reports per image besides the means,
 * and whom it tells of its progress (agave_eval_options without the ABI
 * concerns). Each array is NULL or holds n figures. */
typedef struct model_eval_out {
    double *elbo_bpd, *recon_bpd, *kl_bpd, *aux_bpd, *iwae_bpd;
    agave_eval_progress_fn progress;
    void *progress_user;
} model_eval_out;

/* agave_model_evaluate with per-image figures and progress (out may be NULL),
 * into the library's own stats struct. */
agave_status model_evaluate(agave_model *m, const uint8_t *x, int n, int iwae_samples,
                            const model_eval_out *out, agave_eval_stats *stats);
/* Rows (image x sample pairs) per forward pass of an evaluation of m. */
int eval_chunk_rows(const agave_model *m);

/* Puts the chosen weights in place for evaluation or sampling (the
 * averaged parameters when the model has them and the choice is
 * AGAVE_WEIGHTS_AVERAGE, lib/model/weights.c), and the live ones back.
 * model_apply_average also gives the training replicas' arena pages back
 * (model_replicas_trim): evaluation and sampling run in m's own arena. */
void model_apply_average(agave_model *m);
void model_restore_params(agave_model *m);
void model_set_training(agave_model *m, int training);
/* Where the batch of the forward about to run sits in the random stream:
 * the model's batch slice for a data-parallel training step, else
 * RNG_WHOLE_BATCH. Given to every layer (dropout) and the posterior sample. */
void model_set_span(agave_model *m, rng_span span);

/* lib/model/run_state.c: 1 if every field of s is within agave-train's
 * command-line limits (agave.h), else 0 with a sentence in why. */
int run_state_check(const agave_run_state *s, char *why, size_t len);

/* lib/model/estimate.c: sizes from a configuration alone. */
uint64_t config_param_count(const agave_config *c);
double config_step_bytes(const agave_config *c, int batch);
/* Bytes a model holds whatever it does (parameters, optimiser state, average). */
double config_model_bytes(const agave_config *c);
/* Step-arena and scratch bytes per image of a forward pass without the tape
 * (evaluation), including its share of the conv scratch. */
double config_forward_bytes_per_image(const agave_config *c);
/* AGAVE_ERR_LIMIT (error set) when a training step of cfg at batch n on
 * ctx's threads (each training replica adds its gradient block and its
 * arena's normalised weights) would exceed ctx's memory limit; fn names the
 * caller in the message. */
agave_status model_check_memory(agave_context *ctx, const agave_config *cfg, int n,
                                const char *fn);

#endif
