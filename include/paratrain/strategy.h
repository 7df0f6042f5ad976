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
    void (*teardown)(pt_train_state *s);
    /* Optional (NULL: every rank holds every parameter current). A pipeline stage updates only
     * the parameters its nodes own: gather makes every rank's whole model current (before an
     * evaluation); owns says whether this rank's stage owns parameter tensor i (it alone then
     * writes it to a checkpoint and counts it in a fingerprint). Collective / local. */
    pt_status (*gather)(pt_train_state *s);
    int (*owns)(const pt_train_state *s, int param);
} pt_step_strategy;

extern const pt_step_strategy pt_strategy_data_parallel;
extern const pt_step_strategy pt_strategy_pipeline; /* strategy_pipeline.c, --pp > 1 */

#ifdef __cplusplus
}
#endif
#endif
