/* The schedule engine (internal to src/comm). A collective is a list of rounds; a round is a set
 * of sends and receives, all posted at once, followed by local operations (reductions, copies)
 * that run once the round's transfers are complete. The same schedule runs blocking
 * (pt_sched_wait) or progressed by the caller (pt_sched_test, e.g. between backward layers), as
 * Open MPI's libnbc does; no communication thread is needed.
 *
 * Every algorithm file builds a schedule for any process count and element count, including 0 and
 * counts below the number of processes: zero-length transfers are left out on both sides. */
#ifndef PT_COMM_SCHEDULE_H
#define PT_COMM_SCHEDULE_H

#include <mpi.h>
#include <stdint.h>

#include "paratrain/comm.h"

typedef enum {
    PT_SOP_SEND,
    PT_SOP_RECV,
    PT_SOP_BARRIER,
    PT_SOP_REDUCE,
    PT_SOP_COPY,
    PT_SOP_REDUCE_ALL /* shared memory: blocks[0..k) all := op over all of them (one pass) */
} pt_sop_kind;

/* The ranks an algorithm runs among: all of them, the ranks of one node, or one rank per node. */
typedef struct {
    MPI_Comm comm;
    int rank, size;
} pt_group;

typedef struct {
    pt_sop_kind kind;
    MPI_Comm comm;   /* SEND, RECV, BARRIER */
    int peer;        /* SEND, RECV: rank in comm */
    void *dst;       /* RECV: where data lands; REDUCE: dst = dst op src; COPY: dst = src */
    const void *src; /* SEND: what is sent */
    int64_t count;   /* elements */
    void **blocks;   /* REDUCE_ALL: k pointers (owned by the schedule's scratch) */
    int nblocks;
} pt_sop;

typedef struct pt_sched {
    pt_comm *comm;
    pt_group group; /* where pt_sched_send/recv/barrier go; builders read rank and size here */
    pt_dtype dtype;
    pt_reduce_op op;
    size_t esize;
    int tag;
    pt_sop *ops;
    int nops, ops_cap;
    int *round_end; /* ops of round k are [round_end[k-1], round_end[k]) */
    int nrounds, rounds_cap;
    void *scratch[8]; /* owned temporary buffers, freed with the schedule */
    int nscratch;
    int shm_region;   /* hierarchical: the window region in use, -1 if none */
    /* progress */
    int round;
    int posted;
    MPI_Request *reqs;
    int *req_peer; /* the peer of each request (-1: a barrier), for the watchdog's message */
    int nreqs, reqs_cap;
    const char *algo_name;
    double started; /* for the watchdog: when the current round was posted */
    double timeout; /* PT_COLL_TIMEOUT in seconds (pt_watchdog_timeout); 0: no watchdog */
    int abandoned;  /* timed out with requests pending: pt_sched_free leaves their memory */
} pt_sched;

/* The tag of the next collective on c. Every rank runs collectives on a communicator in the
 * same order, so a per-communicator sequence number gives each collective its own tag:
 * concurrent nonblocking collectives (several gradient buckets in flight) never match each
 * other's messages. */
static inline int pt_coll_next_tag(pt_comm *c) { return (int)(c->seq++ % 30000) + 100; }

pt_status pt_sched_init(pt_sched *s, pt_comm *c, pt_dtype t, pt_reduce_op op,
                        const char *algo_name);
void pt_sched_free(pt_sched *s);
/* A new scratch buffer of `bytes`, owned by the schedule (at most 8 per schedule). */
void *pt_sched_scratch(pt_sched *s, size_t bytes);
/* Appending operations to the current round; count == 0 adds nothing. */
pt_status pt_sched_send(pt_sched *s, int peer, const void *src, int64_t count);
pt_status pt_sched_recv(pt_sched *s, int peer, void *dst, int64_t count);
pt_status pt_sched_reduce(pt_sched *s, void *dst, const void *src, int64_t count);
pt_status pt_sched_copy(pt_sched *s, void *dst, const void *src, int64_t count);
/* blocks[0..k) := op over all of them, element by element, in one pass (blocks is copied). */
pt_status pt_sched_reduce_all(pt_sched *s, void **blocks, int k, int64_t count);
/* A barrier among s->group (MPI_Ibarrier), with memory fences around it: the rounds of the
 * shared-memory algorithm synchronize through it. */
pt_status pt_sched_barrier(pt_sched *s);
/* Closes the current round (an empty round is dropped). */
pt_status pt_sched_end_round(pt_sched *s);

/* Posts the first round. */
pt_status pt_sched_start(pt_sched *s);
/* Progresses without blocking; *done = 1 when the whole schedule has completed. */
pt_status pt_sched_test(pt_sched *s, int *done);
/* Waits for one request while building a schedule, under the PT_COLL_TIMEOUT watchdog. The
 * request's buffers must be schedule scratch (left to the request if it times out). */
pt_status pt_sched_wait_request(pt_sched *s, MPI_Request *req);
/* Runs the schedule to completion. */
pt_status pt_sched_wait(pt_sched *s);

/* dst[i] = dst[i] op src[i] for n elements of type t (16-bit floats computed in fp32). */
void pt_reduce_local(void *dst, const void *src, int64_t n, pt_dtype t, pt_reduce_op op);

/* Element ranges: block b of p over n elements (balanced, first n % p blocks one longer). */
static inline void pt_block_range(int64_t n, int p, int b, int64_t *off, int64_t *len)
{
    int64_t base = n / p, extra = n % p;
    *len = base + (b < extra ? 1 : 0);
    *off = b * base + (b < extra ? b : extra);
}

/* Builders: one per algorithm file. `buf` holds the input (already copied from send) and
 * receives the result. */
pt_status pt_allreduce_ring_build(pt_sched *s, void *buf, int64_t n);
pt_status pt_allreduce_recursive_doubling_build(pt_sched *s, void *buf, int64_t n);
pt_status pt_allreduce_rabenseifner_build(pt_sched *s, void *buf, int64_t n);
pt_status pt_allreduce_binomial_build(pt_sched *s, void *buf, int64_t n);
pt_status pt_allreduce_hierarchical_build(pt_sched *s, void *buf, int64_t n);
pt_status pt_reduce_scatter_ring_build(pt_sched *s, const void *send, void *recv,
                                       const int64_t *counts);
pt_status pt_allgather_ring_build(pt_sched *s, const void *send, void *recv, const int64_t *counts);
pt_status pt_bcast_binomial_build(pt_sched *s, void *buf, int64_t n, int root);
pt_status pt_alltoallv_pairwise_build(pt_sched *s, const void *send, const int64_t *scounts,
                                      const int64_t *sdispls, void *recv, const int64_t *rcounts,
                                      const int64_t *rdispls);

#endif
