/* The training state: what the training loop (src/train/loop.c), the step strategies
 * (include/paratrain/strategy.h), evaluation, the checkpoint policy, the metrics reports and the
 * data pipeline share. Each takes a pt_train_state and none includes another (design.md #10).
 *
 * Axes (grid.h): the global batch is split over dp (every rank of a tp group sees the same
 * rows); gradients are reduced over dp; agreement on errors, preemption and progress use the
 * world; rank-0 logging is world rank 0. */
#ifndef PARATRAIN_TRAIN_STATE_H
#define PARATRAIN_TRAIN_STATE_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "paratrain/data.h"
#include "paratrain/grid.h"
#include "paratrain/metrics.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"
#include "paratrain/train.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pt_step_strategy;

/* What a strategy's gradients go over the wire as, for the progress line's byte counts. */
typedef enum { PT_WIRE_DENSE = 0, PT_WIRE_TOPK, PT_WIRE_COMPRESSED } pt_wire_kind;

/* The data pipeline: this rank's rows of a step, read and augmented. */
typedef struct {
    bool aug_flip;
    int aug_crop; /* --augment: flip, and shifts of up to aug_crop pixels */
    float *aug_tmp;
    int64_t row_offset, rows; /* this rank's contiguous share of the global batch (over dp) */
    float *x;
    int32_t *y;
    int64_t *idx;
} pt_train_batch;

typedef struct pt_train_state {
    const pt_train_config *cfg;
    /* ranks: the world for agreement, preemption, progress and logging; the grid's groups for
     * the work (dp: batch split and gradient reduction; tp: the model's layers) */
    MPI_Comm world;
    int world_rank, world_size;
    pt_grid grid;
    bool have_grid;
    pt_comm *dp, *tp;
    int dp_rank, dp_size;
    /* data */
    pt_dataset train, val, test;
    bool have_val, have_test;
    pt_sampler sampler;
    pt_train_batch batch;
    /* model, optimizer */
    pt_model model;
    pt_optimizer opt;
    pt_schedule sched;
    float dgc_momentum; /* --dgc: the optimizer's momentum, applied by the compressor instead */
    /* the step strategy and its private state */
    const struct pt_step_strategy *strategy;
    void *strategy_state;
    pt_wire_kind wire;
    /* policies beside the loop */
    pt_early_stop es;
    pt_metrics metrics;
    /* counters */
    int64_t step, steps_per_epoch, total_steps;
} pt_train_state;

/* ---- model and optimizer (src/train/model_setup.c) */
/* Builds the model of c for data d (the tp group in options when tp > 1) and checks that its
 * input and output sizes fit the data. Local. */
pt_status pt_train_build_model(pt_model *m, const pt_train_config *c, const pt_dataset *d,
                               int max_batch, struct pt_comm *tp);
/* The same, forward_only: for evaluation alone (paratrain eval), no activation gradients. */
pt_status pt_train_build_model_ex(pt_model *m, const pt_train_config *c, const pt_dataset *d,
                                  int max_batch, struct pt_comm *tp, bool forward_only);
/* Builds and initializes s->model on every rank, with synchronized batch norm over dp. */
pt_status pt_train_setup_model(pt_train_state *s, int max_batch);
/* The optimizer and schedule, with state for [offset, offset + count) of the flat buffers
 * (a strategy's shard under ZeRO-1). */
pt_status pt_train_make_optimizer(pt_train_state *s, int64_t offset, int64_t count);

/* ---- options that need the grid or the data (src/train/options.c) */
pt_status pt_train_check_grid_options(pt_train_state *s);
pt_status pt_train_check_data_options(pt_train_state *s);

/* ---- data pipeline (src/train/data_pipeline.c) */
pt_status pt_train_open_data(pt_train_state *s);
pt_status pt_train_parse_augment(pt_train_state *s);
pt_status pt_train_batch_alloc(pt_train_state *s);
/* Reads (and augments) this rank's rows of step s->step. Local; the caller agrees on failures. */
pt_status pt_train_read_batch(pt_train_state *s);
void pt_train_data_free(pt_train_state *s);

/* ---- evaluation (src/train/evaluate.c) */
/* Batch-norm running statistics averaged over dp (evaluation and checkpoints use one model). */
pt_status pt_train_average_buffers(pt_train_state *s);
/* Loss and accuracy on d: the samples split over dp, errors agreed over the world. */
pt_status pt_train_evaluate(pt_train_state *s, pt_dataset *d, double *loss, double *accuracy);
/* Host bytes one evaluation chunk of training's evaluation allocates (samples, labels, indices):
 * the memory evaluation adds to training's (its activations are the training buffers). */
int64_t pt_train_eval_bytes(const pt_train_state *s);
/* Validation and early stopping: *stop when training should end. */
pt_status pt_train_validate(pt_train_state *s, bool *stop, double *loss_out, double *acc_out);

/* ---- checkpoint policy (src/train/checkpoint_policy.c) */
pt_status pt_train_check_paths(pt_train_state *s);
pt_status pt_train_resume(pt_train_state *s);
pt_status pt_train_save_checkpoint(pt_train_state *s, char *path_out);

/* ---- reports (src/train/progress.c) */
/* Counters of the training loop: the run's totals, and the interval since the last progress
 * line (int_*). Throughput counts step time only (read, compute, communication, update). */
typedef struct {
    double t_start, train_time, grad_norm;
    double phase[4]; /* seconds in: data, compute, communication, update */
    double comm_span, comm_exposed, tot_sent;
    int64_t start_step;
    double int_time, int_loss, int_span, int_exposed, int_early, int_sent, int_recv, int_k;
    int64_t int_steps;
} pt_train_progress;

void pt_train_report_memory(pt_train_state *s);
pt_status pt_train_report_start(pt_train_state *s);
/* The progress line and "train" record of the interval; resets the interval. Collective. */
pt_status pt_train_report_progress(pt_train_state *s, pt_train_progress *p, float lr);
/* The "end" record (with the replicas' spread). Collective. */
pt_status pt_train_report_end(pt_train_state *s, pt_train_progress *p, const pt_train_result *res);

#ifdef __cplusplus
}
#endif
#endif
