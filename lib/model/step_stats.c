/* A training step's figures: this process's sums over its images, in the
 * reducer's layout, and the statistics of agave_step_stats from the
 * batch's. */
#include "model.h"

static double sum_of(const agave_tensor *t)
{
    double s = 0;
    for (size_t i = 0; t && i < t->numel; i++)
        s += t->data[i];
    return s;
}

/* This process's sums over its n images, in the reducer's layout; with a
 * slice or a reducer, rounded to the floats that the processes exchange. */
void model_local_sums(const agave_model *m, const model_terms *t, int n, int bad_loss,
                      double sums[REDUCE_EXTRA])
{
    sums[REDUCE_NLL_X] = sum_of(t->nll_x);
    sums[REDUCE_NLL_Y] = sum_of(t->nll_y);
    sums[REDUCE_KL] = sum_of(t->kl);
    sums[REDUCE_IMAGES] = n;
    sums[REDUCE_BAD_LOSS] = bad_loss;
    if (m->reduce_fn || m->slice.total > 0)
        for (int k = 0; k < REDUCE_EXTRA; k++)
            sums[k] = (float)sums[k];
}

/* The step figures from the batch's sums. loss_bpd is the objective's own
 * value when this process saw the whole batch, else it is rebuilt from the
 * sums as the objective defines it. */
void model_step_stats(const agave_model *m, const double sums[REDUCE_EXTRA], double loss,
                      double grad_norm, agave_step_stats *s)
{
    const agave_config *c = &m->cfg;
    double D = (double)c->C * c->H * c->W, Dy = D / (c->s * c->s);
    double images = sums[REDUCE_IMAGES];
    s->pixelcnn_nll = sums[REDUCE_NLL_X] / images;
    s->aux_nll = sums[REDUCE_NLL_Y] / images;
    s->kl = sums[REDUCE_KL] / images;
    if (m->reduce_fn || m->slice.total > 0)
        loss = s->pixelcnn_nll + s->aux_nll + c->lambda * s->kl;
    s->loss_bpd = agave_nats_to_bpd(loss, D);
    s->pixelcnn_bpd = agave_nats_to_bpd(s->pixelcnn_nll, D);
    s->aux_bpd = agave_nats_to_bpd(s->aux_nll, Dy);
    s->kl_bpd = agave_nats_to_bpd(s->kl, D);
    s->grad_norm = grad_norm;
}
