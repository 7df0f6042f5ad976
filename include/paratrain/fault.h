/* Test-only fault hooks, driven by the environment variable PT_FAULT_INJECT (docs/FAULTS.md).
 *
 * PT_FAULT_INJECT is a comma-separated list of items NAME[:N][@RANK]:
 *   ckpt-save[:STEP]        the checkpoint save of STEP (any save without it) fails half-way
 *                           with an I/O error on every rank
 *   ckpt-crash[:STEP]       rank RANK (default 0) is killed (SIGKILL) half-way through writing
 *                           the checkpoint of STEP, as a node failure would
 *   no-space[:STEP]         the free-space check before the save of STEP sees a full file
 *                           system (ENOSPC), for machines where no small tmpfs can be mounted
 *   skip-space-check        no statvfs check before the save: a full disk is then found by the
 *                           allocation of the new file (posix_fallocate) before it is written
 *   model-init-alloc        pt_model_init's allocation fails on every rank
 *   mpi-thread-level        MPI looks as if it provided only MPI_THREAD_SINGLE
 *   signal-in-save[:STEP]   rank RANK raises SIGTERM half-way through the save of STEP
 *   signal-in-eval[:STEP]   rank RANK raises SIGTERM in the evaluation after STEP
 *   slow:RANK:MS[:PERIOD:PHASE]
 *                           world rank RANK sleeps MS milliseconds in every training step (a
 *                           straggler: the parameter server's tests and benchmarks); with
 *                           PERIOD:PHASE only in the steps with step % PERIOD == PHASE (an
 *                           intermittent straggler: slow:1:50:3:0,slow:2:50:3:1,slow:3:50:3:2
 *                           makes one of three workers slow in turn)
 *   slow-save:MS, slow-eval:MS, step-delay:MS
 *                           rank RANK (all ranks without @RANK) sleeps MS milliseconds half-way
 *                           through each save, in each evaluation, in each training step: wider
 *                           windows for signals sent from outside
 * Unset (the normal case) every hook is a no-op costing one getenv. Never for production. */
#ifndef PARATRAIN_FAULT_H
#define PARATRAIN_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* True when PT_FAULT_INJECT has an item `name` that applies to `step` (the item has no step, or
 * exactly this one; step < 0 matches an item with a step only when it has none) on `rank`
 * (the item's @RANK, default 0). */
bool pt_fault_at(const char *name, int64_t step, int rank);

/* The N of item `name` for `rank` (an item without @RANK applies to every rank), or 0. */
long pt_fault_value(const char *name, int rank);

/* True when PT_FAULT_INJECT has item `name` with neither a step nor a rank (hooks that act on
 * every rank at once). */
bool pt_fault_everywhere(const char *name);

/* Sleeps pt_fault_value(name, rank) milliseconds (none when 0). */
void pt_fault_delay(const char *name, int rank);

/* Item slow:RANK:MS[:PERIOD:PHASE] (any number of them; the first for a rank counts): world rank
 * RANK sleeps MS milliseconds in training step `step` (every step, or those with step % PERIOD
 * == PHASE), a straggler. The MS of `rank` at `step` (step < 0: regardless of the step), or 0. */
long pt_fault_slow_ms(int rank, int64_t step);
/* Sleeps pt_fault_slow_ms(rank, step) milliseconds. */
void pt_fault_slow(int rank, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
