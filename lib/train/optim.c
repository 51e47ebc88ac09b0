/* Adamax and Adam over a list of parameter tensors, with global-norm
 * clipping and rejection of non-finite gradients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/nn.h"
#include "train.h"

agave_status agave_optimizer_create(agave_context *ctx, agave_optimizer_kind kind, float lr,
                                    agave_optimizer **out)
{
    if (!ctx)
        return AGAVE_ERR_NULL;
    ctx_clear_error(ctx);
    if (!out)
        return ctx_error(ctx, AGAVE_ERR_NULL, "agave_optimizer_create: out is NULL");
    *out = NULL;
    if (kind != AGAVE_OPTIM_ADAMAX && kind != AGAVE_OPTIM_ADAM)
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "optimizer kind %d is unknown", (int)kind);
    if (!(lr > 0) || !isfinite(lr))
        return ctx_error(ctx, AGAVE_ERR_INVALID_ARG, "learning rate %g must be > 0",
                         (double)lr);
    agave_optimizer *o = calloc(1, sizeof *o);
    if (!o)
        return ctx_error(ctx, AGAVE_ERR_NOMEM, "cannot allocate an optimizer");
    o->ctx = ctx;
    o->kind = kind;
    o->lr = lr;
    o->beta1 = 0.95f;
    o->beta2 = 0.9995f;
    o->eps = 1e-8f;
    *out = o;
    return AGAVE_OK;
}

void agave_optimizer_free(agave_optimizer *o)
{
    if (!o)
        return;
    free(o->params);
    free(o->m);
    free(o->u);
    free(o);
}

agave_status optim_add_tensor(agave_optimizer *o, agave_tensor *t)
{
    if (o->m)
        return ctx_error(o->ctx, AGAVE_ERR_STATE,
                         "parameters must be registered before the first optimizer step");
    agave_tensor **p = realloc(o->params, (size_t)(o->n_params + 1) * sizeof *p);
    if (!p)
        return ctx_error(o->ctx, AGAVE_ERR_NOMEM, "cannot grow the optimizer's list");
    o->params = p;
    p[o->n_params++] = t;
    o->total += t->numel;
    return AGAVE_OK;
}

agave_status agave_optimizer_add_layer(agave_optimizer *o, agave_layer *layer)
{
    if (!o || !layer)
        return o ? ctx_error(o->ctx, AGAVE_ERR_NULL, "agave_optimizer_add_layer: layer is NULL")
                 : AGAVE_ERR_NULL;
    if (layer->ctx != o->ctx)
        return ctx_error(o->ctx, AGAVE_ERR_CONTEXT,
                         "agave_optimizer_add_layer: the layer belongs to another context");
    for (int i = 0; i < layer->n_params; i++) {
        agave_status st = optim_add_tensor(o, layer->params[i]);
        if (st != AGAVE_OK)
            return st;
    }
    return AGAVE_OK;
}

double optim_grad_norm(const agave_optimizer *o)
{
    double s = 0;
    for (int i = 0; i < o->n_params; i++) {
        const agave_tensor *t = o->params[i];
        for (size_t j = 0; t->grad && j < t->numel; j++)
            s += (double)t->grad[j] * t->grad[j];
    }
    return sqrt(s);
}

void optim_zero_grads(agave_optimizer *o)
{
    for (int i = 0; i < o->n_params; i++)
        agave_tensor_zero_grad(o->params[i]);
}

/* Adamax: m = b1 m + (1-b1) g; u = max(b2 u, |g|); p -= lr/(1-b1^t) m/(u+eps).
 * Adam:   m as above; u = b2 u + (1-b2) g^2;
 *         p -= lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(u)+eps). */
static void update_tensor(agave_optimizer *o, agave_tensor *t, float *m, float *u, float scale)
{
    const float b1 = o->beta1, b2 = o->beta2;
    double c1 = 1.0 - pow(b1, (double)o->t);
    double c2 = 1.0 - pow(b2, (double)o->t);
    float step = (float)(o->kind == AGAVE_OPTIM_ADAM ? o->lr * sqrt(c2) / c1 : o->lr / c1);
    const float *g = t->grad;
    if (!g)
        return;
    // element-wise, so any split gives the same numbers; large tensors on the threads
    const long n = (long)t->numel;
#pragma omp parallel for num_threads(ctx_region_threads(o->ctx)) if (n > 65536) schedule(static)
    for (long j = 0; j < n; j++) {
        float gj = g[j] * scale;
        m[j] = b1 * m[j] + (1 - b1) * gj;
        if (o->kind == AGAVE_OPTIM_ADAM) {
            u[j] = b2 * u[j] + (1 - b2) * gj * gj;
            t->data[j] -= step * m[j] / (sqrtf(u[j]) + o->eps);
        } else {
            u[j] = fmaxf(b2 * u[j], fabsf(gj));
            t->data[j] -= step * m[j] / (u[j] + o->eps);
        }
    }
}

agave_status agave_optimizer_step(agave_optimizer *o, float max_grad_norm)
{
    if (!o)
        return AGAVE_ERR_NULL;
    ctx_clear_error(o->ctx);
    if (!o->m) {
        o->m = calloc(o->total ? o->total : 1, sizeof(float));
        o->u = calloc(o->total ? o->total : 1, sizeof(float));
        if (!o->m || !o->u) {
            free(o->m), free(o->u);
            o->m = o->u = NULL;
            return ctx_error(o->ctx, AGAVE_ERR_NOMEM,
                             "cannot allocate optimizer state for %zu parameters", o->total);
        }
    }
    double norm = optim_grad_norm(o);
    if (!isfinite(norm)) {
        optim_zero_grads(o);
        return ctx_error(o->ctx, AGAVE_ERR_NUMERIC,
                         "the gradient is not finite: the update was skipped");
    }
    float scale = max_grad_norm > 0 && norm > max_grad_norm ? (float)(max_grad_norm / norm) : 1;
    o->t++;
    size_t off = 0;
    for (int i = 0; i < o->n_params; i++) {
        update_tensor(o, o->params[i], o->m + off, o->u + off, scale);
        off += o->params[i]->numel;
    }
    optim_zero_grads(o);
    return AGAVE_OK;
}

/* ---- parameter averaging ---------------------------------------------------------- */
agave_status average_init(param_average *a, agave_tensor *const *params, int n)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < n; i++)
        a->total += params[i]->numel;
    a->avg = malloc((a->total ? a->total : 1) * sizeof(float));
    a->backup = malloc((a->total ? a->total : 1) * sizeof(float));
    if (!a->avg || !a->backup) {
        average_free(a);
        return AGAVE_ERR_NOMEM;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(a->avg + off, params[i]->data, params[i]->numel * sizeof(float));
        off += params[i]->numel;
    }
    return AGAVE_OK;
}

float average_decay(int64_t t, float ema)
{
    double warm = (1.0 + (double)t) / (10.0 + (double)t);
    return warm < ema ? (float)warm : ema;
}

void average_update(param_average *a, agave_tensor *const *params, int n, float ema)
{
    const float d = average_decay(a->t, ema);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const float *p = params[i]->data;
        float *avg = a->avg + off;
        for (size_t j = 0; j < params[i]->numel; j++)
            avg[j] = d * avg[j] + (1 - d) * p[j];
        off += params[i]->numel;
    }
    a->t++;
}

void average_apply(param_average *a, agave_tensor *const *params, int n)
{
    if (!a->avg || a->applied)
        return;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        float *p = params[i]->data;
        memcpy(a->backup + off, p, params[i]->numel * sizeof(float));
        memcpy(p, a->avg + off, params[i]->numel * sizeof(float));
        off += params[i]->numel;
    }
    a->applied = 1;
}

void average_restore(param_average *a, agave_tensor *const *params, int n)
{
    if (!a->applied)
        return;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(params[i]->data, a->backup + off, params[i]->numel * sizeof(float));
        off += params[i]->numel;
    }
    a->applied = 0;
}

void average_free(param_average *a)
{
    free(a->avg);
    free(a->backup);
    memset(a, 0, sizeof *a);
}
