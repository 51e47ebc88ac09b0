/* custom_model: a small autoregressive image model composed from libagave's
 * public layers, trained with the public optimiser and loss.
 *
 * The model sees only the rows above each pixel (PixelCNN++'s u stream):
 *   u = down_shift(conv_2x3_down(x~)); two gated residual blocks; nin(elu(u))
 * gives a mixture of logistics per pixel, scored by agave_dmol_nll.
 *
 * usage: custom_model [IDX-or-CIFAR data directory] [steps]
 * Without a directory it trains on synthetic striped 1x8x8 images. */
#include <stdio.h>
#include <stdlib.h>

#include <agave.h>

#define CHECK(call)                                                                        \
    do {                                                                                   \
        agave_status st_ = (call);                                                         \
        if (st_ != AGAVE_OK) {                                                             \
            fprintf(stderr, "custom_model: %s: %s\n", agave_status_string(st_),             \
                    agave_context_last_error(ctx));                                        \
            exit(2);                                                                       \
        }                                                                                  \
    } while (0)

enum { BATCH = 16, FILTERS = 16, MIX = 3 };

typedef struct model {
    agave_layer *first, *block[2], *out;
    agave_tensor *input;   /* x~, reused every step: the tape reads it during backward */
} model;

static agave_layer *make_layer(agave_context *ctx, agave_layer_kind kind, int in, int out,
                               int kh, int kw, float init_scale)
{
    agave_layer_options o;
    agave_layer_options_init(&o);
    o.in_channels = in, o.out_channels = out, o.kernel_h = kh, o.kernel_w = kw;
    o.shift = kind == AGAVE_LAYER_NIN ? AGAVE_SHIFT_NONE : AGAVE_SHIFT_DOWN;
    o.init_scale = init_scale;
    agave_layer *l;
    CHECK(agave_layer_create(ctx, kind, &o, &l));
    return l;
}

/* x is (N,C,H,W) uint8; returns the mean negative log-likelihood in nats. */
static agave_tensor *loss_of(agave_context *ctx, model *m, const uint8_t *x, int C, int H, int W)
{
    agave_tensor *u, *nll, *loss;
    float *d = agave_tensor_data(m->input);
    for (int i = 0; i < BATCH * C * H * W; i++)
        d[i] = x[i] / 127.5f - 1.0f;
    CHECK(agave_layer_forward(m->first, m->input, &u));
    CHECK(agave_down_shift(ctx, u, &u));
    for (int b = 0; b < 2; b++)
        CHECK(agave_layer_forward(m->block[b], u, &u));
    CHECK(agave_elu(ctx, u, &u));
    CHECK(agave_layer_forward(m->out, u, &u));
    CHECK(agave_dmol_nll(ctx, x, C, u, MIX, &nll));
    CHECK(agave_mean(ctx, nll, &loss));
    return loss;
}

int main(int argc, char **argv)
{
    agave_context *ctx;
    if (agave_context_create(&ctx, 1) != AGAVE_OK)
        return 2;
    int C = 1, H = 8, W = 8, steps = argc > 2 ? atoi(argv[2]) : 200;
    agave_dataset *ds = NULL;
    agave_batcher *batches = NULL;
    if (argc > 1) {
        CHECK(agave_dataset_open(ctx, argv[1], AGAVE_SPLIT_TRAIN, &ds));
        C = agave_dataset_channels(ds), H = agave_dataset_height(ds), W = agave_dataset_width(ds);
        CHECK(agave_batcher_create(ctx, ds, BATCH, 1, 0, AGAVE_SUBSET_FIRST, &batches));
    }
    int P = (C == 1 ? 3 : 10) * MIX;
    model m = {make_layer(ctx, AGAVE_LAYER_CONV, C, FILTERS, 2, 3, 1.0f),
               {make_layer(ctx, AGAVE_LAYER_GATED_RESNET, FILTERS, FILTERS, 2, 3, 1.0f),
                make_layer(ctx, AGAVE_LAYER_GATED_RESNET, FILTERS, FILTERS, 2, 3, 1.0f)},
               make_layer(ctx, AGAVE_LAYER_NIN, FILTERS, P, 1, 1, 0.1f), NULL};
    int dims[4] = {BATCH, C, H, W};
    CHECK(agave_tensor_create(ctx, 4, dims, &m.input));
    agave_optimizer *opt;
    CHECK(agave_optimizer_create(ctx, AGAVE_OPTIM_ADAMAX, 0.002f, &opt));
    agave_layer *all[4] = {m.first, m.block[0], m.block[1], m.out};
    for (int i = 0; i < 4; i++)
        CHECK(agave_optimizer_add_layer(opt, all[i]));
    uint8_t *x = malloc((size_t)BATCH * C * H * W);
    for (int step = 1; step <= steps; step++) {
        if (batches)
            CHECK(agave_batcher_next(batches, x, NULL));
        else   /* stripes whose phase varies per image: predictable from the row above */
            for (int i = 0; i < BATCH * H * W; i++)
                x[i] = (uint8_t)(((i % W) + i / (H * W)) % 4 < 2 ? 40 : 220);
        agave_tensor *loss = loss_of(ctx, &m, x, C, H, W);   /* the first call initialises */
        float nats = agave_tensor_data(loss)[0];
        CHECK(agave_backward(ctx, loss));
        CHECK(agave_optimizer_step(opt, 0.0f));
        CHECK(agave_tape_reset(ctx));
        if (step % 50 == 0 || step == 1)
            printf("step %4d  %.3f bits/dim\n", step, agave_nats_to_bpd(nats, C * H * W));
    }
    free(x);
    agave_tensor_free(m.input);
    agave_optimizer_free(opt);
    for (int i = 0; i < 4; i++)
        agave_layer_free(all[i]);
    agave_batcher_free(batches);
    agave_dataset_free(ds);
    agave_context_free(ctx);
    return 0;
}
