/* Adamax and Adam over spans of parameters (one per tensor, or a model's
 * whole parameter block), with global-norm clipping and rejection of
 * non-finite gradients; the parameter average over a block. */
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
    free(o->spans);
    free(o->m);
    free(o->u);
    free(o);
}

agave_status optim_add_span(agave_optimizer *o, float *data, float *grad, size_t n)
{
    if (o->m)
        return ctx_error(o->ctx, AGAVE_ERR_STATE,
                         "parameters must be registered before the first optimizer step");
    optim_span *s = realloc(o->spans, (size_t)(o->n_spans + 1) * sizeof *s);
    if (!s)
        return ctx_error(o->ctx, AGAVE_ERR_NOMEM, "cannot grow the optimizer's list");
    o->spans = s;
    s[o->n_spans++] = (optim_span){data, grad, n};
    o->total += n;
    return AGAVE_OK;
}

agave_status optim_add_tensor(agave_optimizer *o, agave_tensor *t)
{
    float *grad = tensor_grad_buffer(t);
    if (!grad)
        return AGAVE_ERR_NOMEM;
    return optim_add_span(o, t->data, grad, t->numel);
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
    for (int i = 0; i < o->n_spans; i++) {
        const float *g = o->spans[i].grad;
        for (size_t j = 0; j < o->spans[i].n; j++)
            s += (double)g[j] * g[j];
    }
    return sqrt(s);
}

void optim_zero_grads(agave_optimizer *o)
{
    for (int i = 0; i < o->n_spans; i++)
        floats_zero(o->ctx, o->spans[i].grad, o->spans[i].n);
}

/* Adamax: m = b1 m + (1-b1) g; u = max(b2 u, |g|); p -= lr/(1-b1^t) m/(u+eps).
 * Adam:   m as above; u = b2 u + (1-b2) g^2;
 *         p -= lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(u)+eps).
 * p, g, m, u are (n); g is scaled by `scale` (clipping) first. */
static void update_span(agave_optimizer *o, const optim_span *p, float *m, float *u, float scale)
{
    const float b1 = o->beta1, b2 = o->beta2;
    double c1 = 1.0 - pow(b1, (double)o->t);
    double c2 = 1.0 - pow(b2, (double)o->t);
    float step = (float)(o->kind == AGAVE_OPTIM_ADAM ? o->lr * sqrt(c2) / c1 : o->lr / c1);
    const float *g = p->grad;
    float *data = p->data;
    // element-wise, so any split gives the same numbers; large spans on the threads
    const long n = (long)p->n;
#pragma omp parallel for num_threads(ctx_region_threads(o->ctx)) if (n > 65536) schedule(static)
    for (long j = 0; j < n; j++) {
        float gj = g[j] * scale;
        m[j] = b1 * m[j] + (1 - b1) * gj;
        if (o->kind == AGAVE_OPTIM_ADAM) {
            u[j] = b2 * u[j] + (1 - b2) * gj * gj;
            data[j] -= step * m[j] / (sqrtf(u[j]) + o->eps);
        } else {
            u[j] = fmaxf(b2 * u[j], fabsf(gj));
            data[j] -= step * m[j] / (u[j] + o->eps);
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
    for (int i = 0; i < o->n_spans; i++) {
        update_span(o, &o->spans[i], o->m + off, o->u + off, scale);
        off += o->spans[i].n;
    }
    optim_zero_grads(o);
    return AGAVE_OK;
}

/* ---- parameter averaging ---------------------------------------------------------- */
agave_status average_init(param_average *a, const float *params, size_t total)
{
    memset(a, 0, sizeof *a);
    a->total = total;
    a->avg = malloc((total ? total : 1) * sizeof(float));
    if (!a->avg)
        return AGAVE_ERR_NOMEM;
    memcpy(a->avg, params, total * sizeof(float));
    return AGAVE_OK;
}

float average_decay(int64_t t, float ema)
{
    double warm = (1.0 + (double)t) / (10.0 + (double)t);
    return warm < ema ? (float)warm : ema;
}

void average_update(param_average *a, const float *params, float ema)
{
    const float d = average_decay(a->t, ema);
    float *avg = a->avg;
    for (size_t j = 0; j < a->total; j++)
        avg[j] = d * avg[j] + (1 - d) * params[j];
    a->t++;
}

/* params <-> avg, value by value: applying and restoring are the same swap,
 * and the live values wait in avg's place instead of a third copy. */
static void swap_floats(float *p, float *q, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        float v = p[j];
        p[j] = q[j];
        q[j] = v;
    }
}

void average_apply(param_average *a, float *params)
{
    if (!a->avg || a->applied)
        return;
    swap_floats(params, a->avg, a->total);
    a->applied = 1;
}

void average_restore(param_average *a, float *params)
{
    if (!a->applied)
        return;
    swap_floats(params, a->avg, a->total);
    a->applied = 0;
}

void average_free(param_average *a)
{
    free(a->avg);
    memset(a, 0, sizeof *a);
}
