/* Learning-rate schedules and early stopping. */
#include <math.h>
#include <string.h>

#include "paratrain/optim.h"

pt_status pt_schedule_parse(pt_schedule *s, const char *name)
{
    if (!strcmp(name, "constant")) s->kind = PT_SCHED_CONSTANT;
    else if (!strcmp(name, "step")) s->kind = PT_SCHED_STEP;
    else if (!strcmp(name, "cosine")) s->kind = PT_SCHED_COSINE;
    else
        return PT_ERR(PT_ERR_ARG, "choose constant, step or cosine", "unknown schedule '%s'",
                      name);
    return PT_OK;
}

const char *pt_schedule_name(pt_sched_kind k)
{
    return k == PT_SCHED_STEP ? "step" : k == PT_SCHED_COSINE ? "cosine" : "constant";
}

float pt_schedule_lr(const pt_schedule *s, int64_t step)
{
    if (step < s->warmup_steps) return s->base_lr * (float)(step + 1) / (float)s->warmup_steps;
    switch (s->kind) {
    case PT_SCHED_CONSTANT: return s->base_lr;
    case PT_SCHED_STEP: {
        int64_t k = s->step_size > 0 ? (step - s->warmup_steps) / s->step_size : 0;
        return s->base_lr * powf(s->gamma, (float)k);
    }
    case PT_SCHED_COSINE: {
        int64_t span = s->total_steps - s->warmup_steps;
        if (span <= 0) return s->min_lr;
        double t = (double)(step - s->warmup_steps) / (double)span;
        if (t > 1.0) t = 1.0;
        return s->min_lr + (s->base_lr - s->min_lr) * 0.5f * (float)(1.0 + cos(M_PI * t));
    }
    }
    return s->base_lr;
}

void pt_early_stop_init(pt_early_stop *e, int patience, bool higher_is_better)
{
    memset(e, 0, sizeof *e);
    e->patience = patience;
    e->higher_is_better = higher_is_better;
    e->best = higher_is_better ? -INFINITY : INFINITY;
    e->best_step = -1;
}

bool pt_early_stop_update(pt_early_stop *e, double metric, int64_t step)
{
    bool better = e->higher_is_better ? metric > e->best : metric < e->best;
    if (better) {
        e->best = metric, e->best_step = step, e->bad_evals = 0;
        return false;
    }
    e->bad_evals++;
    return e->patience > 0 && e->bad_evals >= e->patience;
}
