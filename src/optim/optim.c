/* Optimizers on flat buffers. The arithmetic is in the backend (one fused loop per rule); this
 * file owns the state buffers and the hyper-parameters. */
#include "paratrain/optim.h"

#include <math.h>
#include <string.h>

pt_status pt_optim_config_parse(pt_optim_config *c, const char *name)
{
    memset(c, 0, sizeof *c);
    c->lr = 0.01f;
    c->beta1 = 0.9f, c->beta2 = 0.999f, c->eps = 1e-8f;
    if (!strcmp(name, "sgd")) {
        c->kind = PT_OPT_SGD;
    } else if (!strcmp(name, "momentum")) {
        c->kind = PT_OPT_SGD, c->momentum = 0.9f;
    } else if (!strcmp(name, "nesterov")) {
        c->kind = PT_OPT_SGD, c->momentum = 0.9f, c->nesterov = true;
    } else if (!strcmp(name, "adagrad")) {
        c->kind = PT_OPT_ADAGRAD, c->eps = 1e-10f;
    } else if (!strcmp(name, "adam")) {
        c->kind = PT_OPT_ADAM, c->lr = 1e-3f;
    } else if (!strcmp(name, "adamw")) {
        c->kind = PT_OPT_ADAMW, c->lr = 1e-3f, c->weight_decay = 0.01f;
    } else {
        return PT_ERR(PT_ERR_ARG, "choose sgd, momentum, nesterov, adagrad, adam or adamw",
                      "unknown optimizer '%s'", name);
    }
    return PT_OK;
}

const char *pt_optim_name(const pt_optim_config *c)
{
    switch (c->kind) {
    case PT_OPT_SGD: return c->nesterov ? "nesterov" : c->momentum != 0.0f ? "momentum" : "sgd";
    case PT_OPT_ADAGRAD: return "adagrad";
    case PT_OPT_ADAM: return "adam";
    case PT_OPT_ADAMW: return "adamw";
    }
    return "?";
}

pt_status pt_optim_create(pt_optimizer *o, const pt_optim_config *cfg, const pt_backend *be,
                          int64_t n)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg, o->be = be, o->n = n;
    if (cfg->nesterov && cfg->momentum <= 0.0f)
        return PT_ERR(PT_ERR_ARG, "give --momentum > 0", "Nesterov momentum needs momentum > 0");
    switch (cfg->kind) {
    case PT_OPT_SGD:
        if (cfg->momentum != 0.0f) o->state_names[o->nstates++] = "momentum";
        break;
    case PT_OPT_ADAGRAD: o->state_names[o->nstates++] = "sum_sq"; break;
    case PT_OPT_ADAM:
    case PT_OPT_ADAMW:
        o->state_names[o->nstates++] = "exp_avg";
        o->state_names[o->nstates++] = "exp_avg_sq";
        break;
    }
    for (int i = 0; i < o->nstates; i++) {
        size_t bytes = sizeof(float) * (size_t)n;
        o->state[i] = be->alloc(bytes);
        PT_ALLOC_CHECK(o->state[i], bytes);
        be->zero(o->state[i], bytes);
    }
    return PT_OK;
}

void pt_optim_destroy(pt_optimizer *o)
{
    for (int i = 0; i < o->nstates; i++)
        if (o->be) o->be->free(o->state[i]);
    memset(o, 0, sizeof *o);
}

void pt_optim_advance(pt_optimizer *o) { o->t++; }

void pt_optim_apply(const pt_optimizer *o, float *w, const float *g, float lr, int64_t lo,
                    int64_t n)
{
    const pt_optim_config *c = &o->cfg;
    pt_update_params p = {.lr = lr,
                          .momentum = c->momentum,
                          .weight_decay = c->weight_decay,
                          .beta1 = c->beta1,
                          .beta2 = c->beta2,
                          .eps = c->eps,
                          .nesterov = c->nesterov,
                          .decoupled_wd = c->kind == PT_OPT_ADAMW,
                          .t = o->t};
    float *s0 = o->nstates > 0 ? o->state[0] + lo : NULL, *s1 = o->nstates > 1 ? o->state[1] + lo : NULL;
    switch (c->kind) {
    case PT_OPT_SGD: o->be->sgd_update(w, g, s0, n, &p); break;
    case PT_OPT_ADAGRAD: o->be->adagrad_update(w, g, s0, n, &p); break;
    case PT_OPT_ADAM:
    case PT_OPT_ADAMW: o->be->adam_update(w, g, s0, s1, n, &p); break;
    }
}

void pt_optim_step(pt_optimizer *o, float *w, const float *g, float lr)
{
    pt_optim_advance(o);
    pt_optim_apply(o, w, g, lr, 0, o->n);
}

void pt_clip_grad_scale(const pt_backend *be, float *g, int64_t n, double norm, double max_norm)
{
    if (max_norm > 0.0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) be->scale(g, n, (float)coef);
    }
}

double pt_clip_grad_norm(const pt_backend *be, float *g, int64_t n, double max_norm)
{
    double norm = sqrt(be->sum_squares(g, n));
    pt_clip_grad_scale(be, g, n, norm, max_norm);
    return norm;
}
