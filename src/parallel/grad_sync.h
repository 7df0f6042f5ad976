/* Gradient synchronization of data-parallel training (internal to src/parallel/).
 *
 * Three independent choices, all made at run time:
 *   buckets   (--bucket-mb B > 0) the flat gradient is cut into buckets of about B MiB at
 *             parameter boundaries, from the end of the buffer (the first gradients backward
 *             produces); a bucket's collective starts from the model's grad_ready hook as soon
 *             as backward has filled it, and every hook call progresses the ones in flight.
 *             B = 0: one collective after backward.
 *   ZeRO-1    (--zero 1) the optimizer state of rank r covers only its shard pt_shard_range(r)
 *             of the flat buffers: each bucket is REDUCE-SCATTERED so that rank r receives the
 *             reduced gradient of its shard, r updates its shard, and an allgather brings every
 *             rank the new parameters. Same bytes on the wire as an allreduce (reduce-scatter +
 *             allgather), 1/p of the optimizer state and of the update work per rank.
 *             On one node, with gradients and parameters in the node's shared window (the
 *             trainer puts them there), both collectives become direct reads of the peers'
 *             buffers between two node barriers, and buckets are not used.
 *   exact     (--reproducible) per-chunk gradients are accumulated in 128-bit fixed point and
 *             summed over ranks as integers (reduce-scatter, each rank rounds its shard to
 *             float, allgather): the sum is independent of the order, so of the rank count
 *             (docs/ARCHITECTURE.md, "Reproducible mode").
 */
#ifndef PT_PARALLEL_GRAD_SYNC_H
#define PT_PARALLEL_GRAD_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "paratrain/comm.h"
#include "paratrain/cpu.h"
#include "paratrain/model.h"
#include "paratrain/optim.h"
#include "compress.h"

typedef struct {
    int64_t off, count; /* range of the flat gradient buffer */
    int done;
    pt_coll_request *req;
} pt_bucket;

typedef struct {
    pt_comm *pc;
    pt_model *m;
    int rank, size;
    bool zero, exact;
    int64_t shard_off, shard_count; /* this rank's ZeRO-1 shard (the whole buffer without ZeRO) */
    int64_t *shard_offs, *shard_counts; /* every rank's */
    float *gshard; /* ZeRO-1: the reduced gradient of the shard (own buffer when size > 1) */
    /* ZeRO-1 on one node with gradients and parameters in the node's shared window: the peers'
     * buffers, read directly (no messages) */
    float **peer_g, **peer_w;
    bool rs_pending; /* that reduce-scatter is still to do: pt_grad_sync_update fuses it with the
                        update block by block, anything reading the shard before does it whole */
    int nbuckets;
    pt_bucket *buckets; /* buckets[0] ends the flat buffer: the first one backward fills */
    int next;           /* next bucket to start */
    int64_t ready_low;  /* backward has finished gradients [ready_low, numel) */
    pt_status err;      /* first failure inside the hook, reported by pt_grad_sync_finish */
    /* --reproducible: 128-bit fixed point (value * 2^PT_EXACT_FRAC_BITS), one per element */
    __int128 *acc;
    __int128 *acc_shard; /* size > 1: this rank's shard of the sum over ranks */
    /* --reproducible on one node, accumulator and gradient in the node's shared window (the
     * trainer puts them there, pt_grad_sync_acc_bytes): every rank's, read directly */
    __int128 **peer_acc;
    float **peer_gx;
    bool acc_shared; /* acc is the window's, not ours to free */
    int64_t exact_overflow; /* elements out of the accumulator's range (or not finite) */
    /* --compress: the compressed collective replaces the allreduce (no buckets, no ZeRO) */
    pt_compressor *z;
    double epoch; /* of the current step, for the density warm-up */
    /* A backend other than the CPU (device memory) with this Open MPI, which is not CUDA-aware:
     * every collective runs on a host copy. hg: the gradient's host copy, numel floats (pinned,
     * be->host_alloc), each bucket copied down as backward finishes it and back up when its
     * collective completes; under ZeRO-1 it then stages the allgather of the parameters. hshard:
     * ZeRO-1's reduced shard as received, copied up into gshard. NULL on the CPU. */
    bool staged;
    float *hg, *hshard;
    /* timing of the current step */
    double t_calls;      /* seconds inside collective calls while backward runs */
    double t_first, t_last_done; /* first bucket started, last bucket seen complete */
    int started_early; /* buckets started while backward still had layers to run: the overlap */
} pt_grad_sync;

/* Fraction bits of the exact accumulator: elements down to 2^-73 are converted exactly and
 * gradients up to 2^(127-96) / chunks per step in magnitude fit. */
#define PT_EXACT_FRAC_BITS 96

pt_status pt_grad_sync_init(pt_grad_sync *gs, pt_comm *pc, pt_model *m, bool zero, bool exact,
                            double bucket_mib);
void pt_grad_sync_free(pt_grad_sync *gs);

/* Before the backward pass of a step: arms the buckets (installs the model's hook). */
void pt_grad_sync_begin(pt_grad_sync *gs);
/* After backward: starts what is left, waits for every bucket. *wait_s: time spent waiting. */
pt_status pt_grad_sync_finish(pt_grad_sync *gs, double *wait_s);

/* --reproducible: adds the model's current gradient (one chunk) to the exact accumulator
 * (first = start from zero); then pt_grad_sync_exact_reduce sums over ranks and writes the
 * rounded result into the model's gradient buffer, on every rank. */
void pt_grad_sync_exact_add(pt_grad_sync *gs, bool first);
/* The exact accumulation's kernel: acc[0, n) = (first) or += the 128-bit fixed-point values
 * (PT_EXACT_FRAC_BITS fraction bits) of g[0, n); returns how many elements were out of range or
 * not finite (they add 0). isa picks the code (PT_ISA_AVX512: 8 elements at a time, PT_ISA_AVX2:
 * 4, baseline: 1): the same integers at every level (tests/t_exact). */
int64_t pt_exact_to_fixed(__int128 *acc, const float *g, int64_t n, bool first, pt_cpu_isa_t isa);
/* The exact sum's rounding: g[0, n) = (float)((double)(sum over q < p of acc[q][0, n)) * 2^-96),
 * each rounding to nearest even; isa PT_ISA_AVX512 (with AVX-512DQ) 8 elements at a time, the
 * same floats as the scalar loop (tests/t_exact). */
void pt_exact_to_float(float *g, const __int128 *const *acc, int p, int64_t n, pt_cpu_isa_t isa);
/* Bytes of the exact accumulator as placed ahead of the gradient in one shared allocation
 * (a multiple of 64): a trainer that puts both in the node's window makes the exact sum over
 * ranks direct reads of the peers' accumulators. */
size_t pt_grad_sync_acc_bytes(const pt_model *m);
pt_status pt_grad_sync_exact_reduce(pt_grad_sync *gs);

/* The reduced gradient this rank updates with, and its length and offset in the flat buffer:
 * the shard under ZeRO-1, else the whole buffer. */
float *pt_grad_sync_grad(pt_grad_sync *gs, int64_t *off, int64_t *n);

/* Sum of squares of the reduced gradient over all ranks' shards (collective under ZeRO-1
 * without --reproducible; local otherwise). */
pt_status pt_grad_sync_sum_squares(pt_grad_sync *gs, double *ss);

/* The optimizer update, then (ZeRO-1) the allgather of the updated parameters. */
pt_status pt_grad_sync_update(pt_grad_sync *gs, pt_optimizer *opt, float lr);

#endif
