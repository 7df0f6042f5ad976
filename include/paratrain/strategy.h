/* A step strategy: how one training step's work is spread over the grid (design.md #10). The
 * training loop (src/train/loop.c) knows no parallelism; per step it calls
 *
 *   forward_backward  forward and backward over this rank's rows (the loop read them); the
 *                     strategy may start gradient communication while backward runs
 *   sync              completes the gradient reduction (the gradient of the global batch)
 *   grad_sum_squares  the squared global gradient norm, each parameter counted once
 *   clip              scales the reduced gradient by max_norm / norm when above it
 *   update            the optimizer step on what this rank owns, then whatever makes the
 *                     parameters whole again (ZeRO-1's allgather)
 *
 * Data parallelism (src/parallel/strategy_dp.c) is one strategy; tensor x data parallelism is
 * the same one on a grid with tp > 1; pipeline schedules and the parameter server's roles are
 * to be others (docs/ARCHITECTURE.md). */
#ifndef PARATRAIN_STRATEGY_H
#define PARATRAIN_STRATEGY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "paratrain/error.h"
#include "paratrain/train_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one step did, for the loop's agreement and the reports. */
typedef struct {
    double loss_sum;        /* summed loss over this rank's rows (0 on ranks that do not own it) */
    pt_status status;       /* an op's failure during forward/backward (sync batch norm) */
    double overflow;        /* elements beyond the exact accumulator (--reproducible) */
    double comm_calls_s;    /* seconds inside collective calls while backward ran */
    double comm_wait_s;     /* seconds waiting for the gradient collectives after backward */
    double comm_span_s;     /* first collective start to last completion */
    int started_early;      /* buckets started while backward still had layers to run */
    uint64_t bytes_sent, bytes_recv; /* paratrain's own gradient messages */
    double sent_elems;      /* gradient elements this rank sent (top-k's k; numel if dense) */
} pt_step_report;

/* Bytes per rank of the model's state, for the memory log and metrics. */
typedef struct {
    double param, grad, optim, exact_acc, activation;
    int sharded_optim; /* ZeRO-1 */
} pt_memory_bytes;

typedef struct pt_step_strategy {
    const char *name;
    /* After the model is built: communication buffers, the optimizer (pt_train_make_optimizer
     * over the part this rank updates), compression. Collective; the loop agrees on it. */
    pt_status (*setup)(pt_train_state *s);
    /* have_rows: this rank read its rows (else it contributes a zero gradient) */
    pt_status (*forward_backward)(pt_train_state *s, bool have_rows, pt_step_report *r);
    pt_status (*sync)(pt_train_state *s, pt_step_report *r);
    pt_status (*grad_sum_squares)(pt_train_state *s, double *ss);
    void (*clip)(pt_train_state *s, double norm, double max_norm);
    pt_status (*update)(pt_train_state *s, float lr);
    void (*memory)(const pt_train_state *s, pt_memory_bytes *mb);
    int (*buckets)(const pt_train_state *s);
    /* per-rank state a bitwise resume needs (compression residuals): names and host buffers of
     * model.numel floats; reset zeroes it (a checkpoint without it) */
    int (*rank_states)(pt_train_state *s, const char **names, float **data, int max);
    void (*reset_rank_states)(pt_train_state *s);
    /* largest difference between replicas of the parameters (0 when they agree bitwise) */
    pt_status (*replica_spread)(pt_train_state *s, double *spread);
    /* Optional (NULL: checkpoints hold s->opt). A strategy whose optimizer state is not laid out
     * as checkpoints expect (the parameter server's key ranges) hands out a stand-in in
     * pt_shard_range(numel, world, rank) layout: ckpt_state fills it from the owners when
     * `save`; after a load into it, ckpt_loaded gives it back to the owners. Collective. */
    pt_status (*ckpt_state)(pt_train_state *s, bool save, pt_optimizer **opt);
    pt_status (*ckpt_loaded)(pt_train_state *s);
    /* Optional (NULL: the loop's own lockstep steps). A strategy whose ranks must not step in
     * lockstep (the parameter server's ASP and SSP: no per-step agreement, servers serving
     * pushes as they come) runs steps [s->step, end) itself and returns on every rank together,
     * the parameters whole again, for the loop's final evaluation and checkpoint. *preempted:
     * a rank saw `preempt` set (SIGTERM/SIGUSR1) and the run stopped early (the same on every
     * rank). p: the run's counters for the end record. */
    pt_status (*run_steps)(pt_train_state *s, int64_t end, volatile const sig_atomic_t *preempt,
                           bool *preempted, pt_train_progress *p);
    void (*teardown)(pt_train_state *s);
    /* Optional (NULL: every rank holds every parameter current). A pipeline stage updates only
     * the parameters its nodes own: gather makes every rank's whole model current (before an
     * evaluation); owns says whether this rank's stage owns parameter tensor i (it alone then
     * writes it to a checkpoint and counts it in a fingerprint). Collective / local. */
    pt_status (*gather)(pt_train_state *s);
    int (*owns)(const pt_train_state *s, int param);
} pt_step_strategy;

extern const pt_step_strategy pt_strategy_data_parallel;
/* --ps-servers S (src/parallel/strategy_ps.c) */
extern const pt_step_strategy pt_strategy_param_server;
/* Parameter server: checks S against the world and sets this rank's share of the global batch
 * (a worker's share over W = world - S; none on a server). Before the model is built. */
pt_status pt_ps_batch_share(pt_train_state *s);
/* The parameter-server strategy of c->ps_sync: BSP steps in the loop's lockstep, ASP and SSP run
 * their own steps (run_steps). */
extern const pt_step_strategy pt_strategy_param_server_async;
extern const pt_step_strategy pt_strategy_pipeline; /* strategy_pipeline.c, --pp > 1 */

#ifdef __cplusplus
}
#endif
#endif
