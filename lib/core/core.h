/* Internal core: the context, step arena, tensors, gradient tape and RNG.
 * Everything here is private to the library (hidden visibility). */
#ifndef AGAVE_CORE_H
#define AGAVE_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* The library's own headers see the whole API, the experimental part too
 * (tests compile them without AGAVE_BUILDING_LIBRARY). */
#ifndef AGAVE_EXPERIMENTAL
#define AGAVE_EXPERIMENTAL
#endif
#include "agave.h"

#define AGAVE_ERRMSG_LEN 512

/* ---- arena: bump allocator for one step's activations --------------------- */
typedef struct arena_chunk arena_chunk;
typedef struct arena_block arena_block;
typedef struct agave_arena {
    arena_chunk *head;   /* newest chunk; older ones chained through ->prev */
    arena_block *free;   /* given back by arena_recycle, until the next reset */
    size_t used;         /* bytes handed out since the last reset */
    size_t reserved;     /* bytes held in all chunks */
    size_t peak;         /* largest `used` ever seen */
    size_t touched;      /* largest `used` since the chunk was mapped or trimmed */
} agave_arena;

void *arena_alloc(agave_arena *a, size_t bytes);  /* 64-byte aligned, NULL on failure */
void arena_reset(agave_arena *a);                 /* coalesces into one chunk */
/* Gives back p (from arena_alloc of `bytes`) before the reset: a later
 * arena_alloc of between half its size and its size may return it. */
void arena_recycle(agave_arena *a, void *p, size_t bytes);
void arena_release(agave_arena *a);
/* An arena without chunks takes one of `bytes` (mapped, untouched): a first
 * step that needs about that much then does not grow it chunk by chunk, each
 * chunk's unused tail resident. No-op otherwise, or if it cannot be mapped. */
void arena_reserve(agave_arena *a, size_t bytes);
/* Gives the pages of a reset arena back to the system (they read as zero
 * when next touched), keeping its chunks: after a pass larger than what
 * the arena serves next (a whole-batch evaluation before a replica's
 * slice), so that the larger pass does not stay resident. */
void arena_trim(agave_arena *a);

/* ---- random generator: xoshiro256** ---------------------------------------- */
typedef struct agave_rng { uint64_t s[4]; } agave_rng;

void rng_seed(agave_rng *r, uint64_t seed);
uint64_t rng_next(agave_rng *r);
double rng_uniform_double(agave_rng *r);    /* in (0, 1) */
float rng_normal(agave_rng *r);             /* N(0, 1) */
/* Advances the generator by n draws of rng_next. rng_uniform_double takes
 * one draw, rng_normal two (RNG_NORMAL_DRAWS). */
#define RNG_NORMAL_DRAWS 2
void rng_skip(agave_rng *r, uint64_t n);

/* Where the n items on axis 0 of a tensor sit in the batch whose random
 * numbers a random op draws: items [first, first + n) of a batch of total
 * items that several processes share (data-parallel training,
 * agave_model_set_batch_slice). A process draws for its items exactly what
 * one process on the whole batch draws for them, skipping the draws of the
 * others. RNG_WHOLE_BATCH (total 0): the tensor is the whole batch. Random
 * ops take it as an argument and draw only through the rng_items_ functions,
 * which do the skipping. */
typedef struct rng_span {
    int64_t first, total;
} rng_span;
#define RNG_WHOLE_BATCH ((rng_span){0, 0})
/* Bit i of bits (bit i % 8 of byte i / 8) = (u >= p) for the n * per_item
 * values, one draw x each, in order, u = ((float)(x >> 40) + 0.5f) / 2^24;
 * bits holds (n * per_item + 7) / 8 bytes, the last one's unused bits zero. */
void rng_items_bernoulli(agave_rng *r, rng_span span, int n, size_t per_item, float p,
                         unsigned char *bits);
/* The least k in [0, 2^24] with ((float)k + 0.5f) / 2^24 >= p (2^24: none):
 * a draw x has u >= p exactly when x >> 40 >= it. */
uint32_t rng_bernoulli_threshold(float p);
/* out[i] = rng_normal for the n * per_item values, in order. */
void rng_items_normal(agave_rng *r, rng_span span, int n, size_t per_item, float *out);
/* Skips the draws of the span's items before the tensor's (draws per item),
 * and those after its n items: for a caller whose per-item draws happen
 * deeper down (evaluation's latent samples). */
void rng_span_skip_before(agave_rng *r, rng_span span, uint64_t draws_per_item);
void rng_span_skip_after(agave_rng *r, rng_span span, int n, uint64_t draws_per_item);

/* ---- tape ------------------------------------------------------------------ */
#define TAPE_MAX_INPUTS 4
typedef struct tape_node tape_node;
typedef agave_status (*op_backward_fn)(agave_context *ctx, const tape_node *node);

/* A differentiable op's entry: its name and its backward. Each folder with
 * ops lists its own (lib/ops/ops_list.h, lib/loss/loss_ops.h); the table of
 * them all lives above both (lib/model/op_table.h). */
typedef struct op_def {
    const char *name;
    op_backward_fn backward;
} op_def;

struct tape_node {
    const op_def *op;
    agave_tensor *out;
    agave_tensor *in[TAPE_MAX_INPUTS];    /* NULL where unused */
    void *saved;                          /* op-specific, in the arena (tape_save) */
};

/* ---- scratch: per-op temporary buffers reused by every op ------------------- */
#define SCRATCH_SLOTS 6
typedef struct scratch_slot {
    void *p;
    size_t bytes;
} scratch_slot;

/* Where tensor_new_param puts parameters while a model is being built: n
 * floats of values and of gradients, `used` of them handed out. */
typedef struct param_pool {
    float *data;
    float *grad;
    size_t n, used;
} param_pool;

/* ---- context ---------------------------------------------------------------- */
struct agave_context {
    int threads;
    agave_rng rng;
    agave_arena arena;
    tape_node *nodes;       /* growable array, kept across resets */
    size_t n_nodes, cap_nodes;
    int recording;
    uint64_t gemm_flops;    /* 2*M*N*K summed over every GEMM (benchmarks read it) */
    agave_precision precision;  /* of the GEMMs, as requested (agave_context_set_precision) */
    int gemm_engine;            /* enum gemm_engine: benchmarks and tests compare engines */
    int conv_plain;             /* 1: every conv2d by im2col, none by Winograd (tests, benchmarks) */
    float **gemm_buf;           /* per OpenMP thread number: the AVX-512 GEMM's work buffer */
    int gemm_buf_count;         /* slots in gemm_buf: the thread count, at least 1 */
    scratch_slot scratch[SCRATCH_SLOTS];
    size_t memory_limit;    /* bytes a model on this context may need; 0: none */
    param_pool pool;        /* set by a model under construction, else empty */
    int replica_steps_off;  /* 1: a training step on T threads runs op by op, without
                               replicas (lib/model/replicas.c; benchmarks' A/B, tests) */
    int team_level;         /* omp_get_level() the context's calls run at: 0, or 1 for a
                               training replica's or a sampler lane's (ctx_thread_slot) */
    int tape_releasing;     /* 1 while tape_backward gives each node's output back after
                               its backward: a dead output's gradient may be moved */
    char last_error[AGAVE_ERRMSG_LEN];
};

/* Returns the status of expr from the enclosing function unless it is AGAVE_OK:
 * the library's one early return. */
#define TRY(expr)                                                                          \
    do {                                                                                   \
        agave_status try_st_ = (expr);                                                     \
        if (try_st_ != AGAVE_OK)                                                           \
            return try_st_;                                                                \
    } while (0)

/* Records a message on ctx (may be NULL) and returns status. */
agave_status ctx_error(agave_context *ctx, agave_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ctx_clear_error(agave_context *ctx);

/* ---- reading files (file_read.c) ------------------------------------------------- */
/* strerror_r into buf; returns buf. */
const char *errno_text(int err, char *buf, size_t len);

enum { FILE_NO_SYMLINK = 1u << 0 };   /* refuse a symbolic link as the last component */

/* Opens path for reading if it is a regular file, without blocking on a FIFO;
 * anything else (directory, FIFO, device, with FILE_NO_SYMLINK a link) is
 * AGAVE_ERR_IO with a message "<what><path>: is a directory, not a regular
 * file". On success *fd is a blocking descriptor and *size the file's size. */
agave_status file_open_regular(agave_context *ctx, const char *what, const char *path,
                               unsigned flags, int *fd, uint64_t *size);

/* Reads up to n bytes, fewer only at the end of the file; -1 on an error. */
long long file_read_full(int fd, void *buf, size_t n);

/* ---- tensors ------------------------------------------------------------------ */
enum {
    TENSOR_REQUIRES_GRAD = 1u << 0,
    TENSOR_IN_ARENA = 1u << 1,     /* struct and buffers live in the step arena */
    TENSOR_OWNS_DATA = 1u << 2,    /* data/grad were malloc'ed by the tensor */
    TENSOR_VIEW = 1u << 3          /* data/grad borrowed from a larger buffer */
};

struct agave_tensor {
    agave_context *ctx;
    int ndim;
    int dims[AGAVE_MAX_DIMS];  /* unused trailing dims are 1 */
    size_t numel;
    float *data;
    float *grad;               /* NULL until a gradient is needed */
    unsigned flags;
};

/* Shape helpers: dims beyond ndim are 1, so every tensor reads as (N,C,H,W). */
static inline int tN(const agave_tensor *t) { return t->dims[0]; }
static inline int tC(const agave_tensor *t) { return t->dims[1]; }
static inline int tH(const agave_tensor *t) { return t->dims[2]; }
static inline int tW(const agave_tensor *t) { return t->dims[3]; }

/* Formats "(2,3,4,4)" into buf for error messages. */
const char *shape_str(const agave_tensor *t, char *buf, size_t len);
#define SHAPE_BUF 64

/* A new uninitialised arena tensor (op output). NULL on failure, with the error set. */
agave_tensor *tensor_new_arena(agave_context *ctx, int ndim, const int *dims);
/* Same shape as t. */
agave_tensor *tensor_new_like(agave_context *ctx, const agave_tensor *t);
/* A persistent tensor that requires a gradient, values and gradient zero:
 * a view into ctx's parameter pool while it has room, else a tensor of its
 * own (agave_tensor_create). */
agave_status tensor_new_param(agave_context *ctx, int ndim, const int *dims, agave_tensor **out);
/* p[0..n) = 0, on ctx's threads when n is large. */
void floats_zero(const agave_context *ctx, float *p, size_t n);
/* Returns t's gradient buffer, making a zeroed one (arena or heap) if missing. */
float *tensor_grad_buffer(agave_tensor *t);
/* The same, but a new buffer is not zeroed: *fresh says whether it is new
 * (the caller then writes every value) or holds gradient already (add). */
float *tensor_grad_buffer_fresh(agave_tensor *t, int *fresh);
/* 1 for a tensor whose data and gradient are step-arena buffers of its own
 * (not a view into another's): what the arena may take back or hand on. */
int tensor_owns_arena_buffers(const agave_tensor *t);
/* Gives an arena tensor's data and gradient back to the arena (core/arena.c)
 * and sets both to NULL; other tensors are left alone. For tensors nothing
 * will read again before the next reset (tape_backward's release). */
void tensor_release_buffers(agave_tensor *t);
/* Gives an arena tensor's data (not its gradient) back and sets it to NULL:
 * for an op output whose values no later op and no backward reads, only
 * its gradient (a gated block's conv2 output once nin_h has added to it). */
void tensor_release_data(agave_tensor *t);
static inline int tensor_needs_grad(const agave_tensor *t)
{
    return t && (t->flags & TENSOR_REQUIRES_GRAD);
}

/* ---- op entry checks ---------------------------------------------------------- */
/* NULL/context checks shared by the ops: every tensor must be non-NULL (except
 * those marked optional by passing them through check_same_ctx_opt) and belong
 * to ctx. */
agave_status check_tensor(agave_context *ctx, const agave_tensor *t, const char *op,
                          const char *name);
agave_status check_tensor_opt(agave_context *ctx, const agave_tensor *t, const char *op,
                              const char *name);

/* ---- recording -------------------------------------------------------------- */
/* True when an op with these inputs must be recorded. */
int tape_should_record(agave_context *ctx, agave_tensor *const *in, int n_in);
/* agave_backward; with `release`, each node's output data and gradient go back
 * to the arena as soon as the node's backward has run (no later node reads
 * them), so the gradients reuse the activations' memory. Afterwards only leaf
 * gradients and tensors made outside the tape are readable: for callers that
 * read nothing else, such as a training step. */
agave_status tape_backward(agave_context *ctx, agave_tensor *scalar, int release);
/* Appends a node; out gets TENSOR_REQUIRES_GRAD. Returns NULL (error set) on failure. */
tape_node *tape_record(agave_context *ctx, const op_def *op, agave_tensor *out,
                       agave_tensor *const *in, int n_in);
/* What node's backward needs besides its tensors, as an op-specific struct
 * (e.g. conv2d_saved in lib/ops/conv2d.c): `bytes` of zeroed arena memory,
 * also stored in node->saved, valid until the tape is reset. NULL (error
 * set) on failure. */
void *tape_save(agave_context *ctx, tape_node *node, size_t bytes);

/* Threads for a parallel region started here: the context's, or 1 inside
 * another region. Every kernel's region takes its threads from this: the
 * convolution family runs blocks of images on the threads at once
 * (lib/ops/conv_blocks.h) and the cached sampler runs lanes on them, and the kernels
 * they call must then run on their own thread, whatever OMP_NESTED or
 * OMP_MAX_ACTIVE_LEVELS say, or 2 threads would become 4. */
int ctx_region_threads(const agave_context *ctx);
/* The calling thread's slot in ctx's per-thread buffers (GEMM work buffers,
 * thread_scratch pieces): its number in a team the context's own code
 * started, 0 outside one. A one-thread context that runs inside a team it
 * did not start (a training replica's, a sampler lane's: team_level 1)
 * always has slot 0, whatever thread of that team calls it. */
int ctx_thread_slot(const agave_context *ctx);

/* A buffer of at least `bytes` (64-byte aligned) for slot 0..SCRATCH_SLOTS-1,
 * valid until the next ctx_scratch call on the same slot. Ops use it for data
 * that lives only during one forward or backward call (im2col matrices,
 * permuted operands): unlike the step arena it does not grow with the number
 * of ops, so a step's memory stays close to its activations. NULL (with the
 * error set) on allocation failure. */
void *ctx_scratch(agave_context *ctx, int slot, size_t bytes);


/* ---- writing files (file.c) ------------------------------------------------- */
/* Writes len bytes to path atomically (a temporary file beside it, flushed,
 * renamed over it; mode 0666 less the umask): the one writer of checkpoints,
 * image grids and the programs' files. AGAVE_ERR_IO, with a message naming
 * the path, the failed step and the reason, leaves any old file intact. */
agave_status file_write_atomic(agave_context *ctx, const char *path, const void *bytes,
                               size_t len);

/* ---- BLAS ------------------------------------------------------------------- */
/* C (M x N) = alpha * op(A) op(B) + beta * C, row-major, using ctx's thread count
 * and precision (lib/core/blas.c). */
void gemm(agave_context *ctx, int trans_a, int trans_b, int M, int N, int K, float alpha,
          const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Which code multiplies. GEMM_AUTO (the default) and GEMM_OWN: the library's
 * AVX-512 kernels (lib/core/gemm_avx512.c) where the CPU has AVX-512F (for
 * bf16, AVX-512 BF16), else OpenBLAS. GEMM_OPENBLAS: OpenBLAS for every
 * product, whatever the precision (1.0.0's fp32 bits; for tests and
 * benchmarks). */
enum gemm_engine { GEMM_AUTO = 0, GEMM_OPENBLAS = 1, GEMM_OWN = 2 };

/* What multiplies fp32 by default on this machine: "agave-avx512" or
 * "openblas" (the codec's environment text and the golden test record it). */
const char *gemm_fp32_engine_name(void);

/* The precision gemm() uses on ctx: BF16 only when requested and the CPU has
 * AVX-512 BF16. */
agave_precision ctx_gemm_precision(const agave_context *ctx);

/* Makes room for n threads' GEMM work buffers (each made on first use);
 * AGAVE_ERR_NOMEM with the error set. Frees them with n = 0. */
agave_status gemm_buffers_reserve(agave_context *ctx, int n);

/* Makes OpenBLAS map its work buffers for `threads` concurrent callers now
 * (lib/core/blas_reserve.c says why); AGAVE_ERR_NOMEM, with the error set,
 * when the address space cannot hold them. Cheap once done for this many. */
agave_status blas_reserve(agave_context *ctx, int threads);

#endif
