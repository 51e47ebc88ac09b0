/* The learning rate a model's next training step uses. */
#include "model.h"

double agave_model_learning_rate(const agave_model *m)
{
    if (!m)
        return 0;
    const agave_config *c = &m->cfg;
    return lr_schedule(c->lr, c->lr_warmup, c->lr_decay, m->step + 1);
}
