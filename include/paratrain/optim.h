/* Optimizers over the flat parameter buffer, learning-rate schedules, gradient clipping and
 * early stopping. Each optimizer state (momentum, Adam's m and v, ...) is one more flat buffer
 * with the parameters' layout, so it checkpoints and shards like the parameters do. */
#ifndef PARATRAIN_OPTIM_H
#define PARATRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "paratrain/backend.h"
#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PT_OPT_SGD = 0, PT_OPT_ADAGRAD, PT_OPT_ADAM, PT_OPT_ADAMW } pt_opt_kind;

typedef struct {
    pt_opt_kind kind;
    float lr, momentum, weight_decay, beta1, beta2, eps;
    bool nesterov;
} pt_optim_config;

#define PT_OPTIM_MAX_STATES 2

typedef struct {
    pt_optim_config cfg;
    const pt_backend *be;
    int64_t n;
    int64_t offset; /* the state covers elements [offset, offset + n) of the flat parameters:
                       0 and all of them, unless sharded (ZeRO-1) */
    int nstates;
    const char *state_names[PT_OPTIM_MAX_STATES]; /* "momentum", "sum_sq", "exp_avg", ... */
    float *state[PT_OPTIM_MAX_STATES];
    int64_t t; /* updates taken */
} pt_optimizer;

/* Parses "sgd", "momentum", "nesterov", "adagrad", "adam", "adamw" and fills defaults
 * (PyTorch's: betas 0.9/0.999, eps 1e-8 for Adam, 1e-10 for AdaGrad, momentum 0.9). */
pt_status pt_optim_config_parse(pt_optim_config *cfg, const char *name);
const char *pt_optim_name(const pt_optim_config *cfg);

pt_status pt_optim_create(pt_optimizer *o, const pt_optim_config *cfg, const pt_backend *be,
                          int64_t n);
void pt_optim_destroy(pt_optimizer *o);
/* One update of w (n elements) with gradient g at learning rate lr. */
void pt_optim_step(pt_optimizer *o, float *w, const float *g, float lr);
/* The same update in parts, for a caller that fuses it with another pass over the elements
 * (ZeRO-1's shared-memory reduce-scatter): pt_optim_advance once per update, then
 * pt_optim_apply on any partition of [0, n) -- w and g point at element lo. The elements are
 * independent, so the bits are pt_optim_step's. */
void pt_optim_advance(pt_optimizer *o);
void pt_optim_apply(const pt_optimizer *o, float *w, const float *g, float lr, int64_t lo,
                    int64_t n);

/* Global-norm clipping as torch.nn.utils.clip_grad_norm_: scales g by
 * min(1, max_norm / (norm + 1e-6)). Returns the norm before clipping. max_norm <= 0 disables. */
double pt_clip_grad_norm(const pt_backend *be, float *g, int64_t n, double max_norm);
/* Its scaling step alone, for a norm computed elsewhere (over ZeRO-1 shards, say): g (n elements,
 * possibly one shard of the whole gradient) times min(1, max_norm / (norm + 1e-6)). */
void pt_clip_grad_scale(const pt_backend *be, float *g, int64_t n, double norm, double max_norm);

/* Learning-rate schedules, a pure function of the step (so resuming needs no schedule state). */
typedef enum { PT_SCHED_CONSTANT = 0, PT_SCHED_STEP, PT_SCHED_COSINE } pt_sched_kind;
typedef struct {
    pt_sched_kind kind;
    float base_lr, min_lr;
    int64_t warmup_steps; /* linear warm-up from 0 to base_lr over these steps (any kind) */
    int64_t total_steps;  /* cosine: decays to min_lr at this step */
    int64_t step_size;    /* step: multiply by gamma every step_size steps */
    float gamma;
} pt_schedule;

pt_status pt_schedule_parse(pt_schedule *s, const char *name);
const char *pt_schedule_name(pt_sched_kind k);
/* Learning rate for the update with 0-based index `step`. */
float pt_schedule_lr(const pt_schedule *s, int64_t step);

/* Early stopping on a validation metric that should decrease (loss) or increase (accuracy). */
typedef struct {
    int patience; /* evaluations without improvement before stopping; 0 disables */
    bool higher_is_better;
    double best;
    int64_t best_step;
    int bad_evals;
} pt_early_stop;

void pt_early_stop_init(pt_early_stop *e, int patience, bool higher_is_better);
/* Records one evaluation; returns true when training should stop. */
bool pt_early_stop_update(pt_early_stop *e, double metric, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
