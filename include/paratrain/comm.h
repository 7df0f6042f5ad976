/* The project's collective interface. Training code calls pt_allreduce() or, to overlap it with
 * computation, pt_iallreduce() and then pt_coll_test() between other work. Which algorithm runs
 * is chosen at run time by name (--allreduce, PT_ALLREDUCE). This layer depends on MPI alone.
 *
 * Algorithms (one file each in src/comm/, each stating its alpha-beta-gamma cost):
 *   ring                 reduce-scatter + allgather around a ring     large vectors
 *   recursive_doubling   log p whole-vector exchanges                  short vectors
 *   rabenseifner         recursive halving + recursive doubling        medium/large vectors
 *   binomial             binomial reduce to 0 + binomial broadcast     baseline
 *   hierarchical         node-aware: shared-memory reduction in a node, ring across nodes
 *   mpi                  MPI_Allreduce / MPI_Iallreduce               the reference
 *   auto                 chosen by process count and message size
 * All are built on MPI point-to-point as schedules (src/comm/schedule.h) and work for any process
 * count and any element count, 0 included. */
#ifndef PARATRAIN_COMM_H
#define PARATRAIN_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "paratrain/error.h"
#include "paratrain/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PT_SUM = 0, PT_MAX, PT_MIN, PT_AVG } pt_reduce_op;

typedef enum {
    PT_ALLREDUCE_AUTO = 0,
    PT_ALLREDUCE_MPI,
    PT_ALLREDUCE_RING,
    PT_ALLREDUCE_RECURSIVE_DOUBLING,
    PT_ALLREDUCE_RABENSEIFNER,
    PT_ALLREDUCE_BINOMIAL,
    PT_ALLREDUCE_HIERARCHICAL,
    PT_ALLREDUCE_NALGOS
} pt_allreduce_algo;

typedef struct pt_comm {
    MPI_Comm comm; /* the caller's communicator */
    MPI_Comm coll; /* a duplicate that carries paratrain's collective traffic */
    int rank, size;
    pt_allreduce_algo algo;
    uint64_t seq; /* collectives started on this communicator: tags concurrent ones apart */
    /* node-aware layout (MPI_Comm_split_type SHARED) */
    MPI_Comm node;  /* the ranks of this node */
    MPI_Comm node_region[2]; /* duplicates of node, one per window region: nonblocking barriers
                                are matched by call order, so concurrent collectives need their
                                own communicators */
    MPI_Comm cross; /* one rank per node: those with this rank's node rank */
    int node_rank, node_size, nnodes;
    int uniform; /* every node has the same number of ranks (hierarchical needs it) */
    /* the hierarchical algorithm's MPI-3 shared-memory window: 2 regions per rank, used by
     * alternate hierarchical collectives, so two may be in flight at once */
    MPI_Win win;
    size_t region_bytes;
    char **slots; /* node_size pointers to each rank's window memory */
    uint64_t hier_started;
    int region_busy[2];
    /* buffers placed in shared memory by pt_comm_buffer_alloc (zero-copy allreduce) */
    MPI_Win user_win;
    char **user_slots;
    size_t user_bytes, user_used;
    /* payload bytes of the point-to-point messages paratrain's own collectives posted on this
     * communicator (the 'mpi' algorithm's traffic is inside MPI and not counted) */
    uint64_t bytes_sent, bytes_recv;
} pt_comm;

/* Collective over comm: duplicates it for collective traffic (so it never matches the caller's
 * own messages) and sets MPI_ERRORS_RETURN on both, so failures come back as codes through
 * PT_MPI_CHECK instead of aborting inside MPI. Every wait for a peer in this layer is bounded by
 * PT_COLL_TIMEOUT (include/paratrain/watchdog.h). */
pt_status pt_comm_init(pt_comm *c, MPI_Comm comm);
/* Collective: checks (bounded) that every rank of the node is alive, then frees the windows and
 * communicators. When a peer is gone (or was lost earlier) it returns PT_ERR_MPI naming it and
 * leaves the windows allocated, since freeing them would wait for that peer forever. */
pt_status pt_comm_free(pt_comm *c);
pt_status pt_allreduce_algo_parse(const char *name, pt_allreduce_algo *algo);
const char *pt_allreduce_algo_name(pt_allreduce_algo algo);

#define PT_IN_PLACE ((const void *)1)

/* recv = op over ranks of send (send == PT_IN_PLACE: recv is both). PT_AVG divides the sum by
 * the number of ranks (floating types only). */
pt_status pt_allreduce(pt_comm *c, const void *send, void *recv, int64_t count, pt_dtype dtype,
                       pt_reduce_op op);

/* Nonblocking allreduce: starts it and returns a request that the caller progresses with
 * pt_coll_test (between pieces of computation) or completes with pt_coll_wait. Both free the
 * request when it completes and set *req to NULL. recv must stay untouched until then. */
typedef struct pt_coll_request pt_coll_request;
pt_status pt_iallreduce(pt_comm *c, const void *send, void *recv, int64_t count, pt_dtype dtype,
                        pt_reduce_op op, pt_coll_request **req);
pt_status pt_coll_test(pt_coll_request **req, int *done);
pt_status pt_coll_wait(pt_coll_request **req);

/* Allocates `bytes` for this rank inside a shared-memory window of the node (collective over
 * comm; every rank asks for the same size, and gets the same offset in its own part). An in-place
 * allreduce with the hierarchical algorithm on such a buffer (recv == the buffer, send ==
 * PT_IN_PLACE, the same offset on every rank) reads and writes the peers' buffers directly: no
 * copy in or out of the window. Freed with pt_comm_free. One such allocation per communicator. */
pt_status pt_comm_buffer_alloc(pt_comm *c, size_t bytes, void **ptr);

/* Makes every rank's window region at least `bytes` (collective over the node). */
pt_status pt_comm_shm_reserve(pt_comm *c, size_t bytes);

/* The other collectives, from the same schedule engine (one algorithm each for now; counts and
 * displacements in elements, one entry per rank). Each has a nonblocking form completed with
 * pt_coll_test / pt_coll_wait; buffers must stay untouched until then.
 *
 * reduce-scatter (ring): recv (counts[rank] elements) = op over ranks of block `rank` of send,
 *   where send holds every rank's block in rank order. PT_AVG divides by the number of ranks.
 * allgather (ring): recv = the concatenation, in rank order, of counts[r] elements from each r.
 * broadcast (binomial tree): buf of root to every rank.
 * all-to-all(v) (pairwise exchange): block r of send (scounts[r] at sdispls[r]) goes to rank r,
 *   and the block from rank r lands at rdispls[r]. */
pt_status pt_ireduce_scatter(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                             pt_dtype dtype, pt_reduce_op op, pt_coll_request **req);
pt_status pt_reduce_scatter(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                            pt_dtype dtype, pt_reduce_op op);
pt_status pt_iallgather(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                        pt_dtype dtype, pt_coll_request **req);
pt_status pt_allgather(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                       pt_dtype dtype);
pt_status pt_ibcast(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int root,
                    pt_coll_request **req);
pt_status pt_bcast(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int root);
pt_status pt_ialltoallv(pt_comm *c, const void *send, const int64_t *scounts,
                        const int64_t *sdispls, void *recv, const int64_t *rcounts,
                        const int64_t *rdispls, pt_dtype dtype, pt_coll_request **req);
pt_status pt_alltoallv(pt_comm *c, const void *send, const int64_t *scounts,
                       const int64_t *sdispls, void *recv, const int64_t *rcounts,
                       const int64_t *rdispls, pt_dtype dtype);

/* The algorithm "auto" picks for a message of `bytes` on `size` processes (the measured table,
 * or PT_ALLREDUCE_TUNING=FILE), and on communicator c (hierarchical when c has a shared buffer). */
pt_allreduce_algo pt_allreduce_auto_choice(int size, size_t bytes);
pt_allreduce_algo pt_allreduce_auto_choice_comm(const pt_comm *c, size_t bytes);

/* Tagged point-to-point on c's own communicator (never matched by the collectives, which run on
 * c->coll): a pipeline's activations and gradients. Nonblocking; complete with pt_p2p_wait,
 * which is bounded by PT_COLL_TIMEOUT and names the peer that sent or received nothing (a dead
 * stage). The buffer must stay untouched until the wait returns. count < 2^31 bytes. */
typedef struct {
    MPI_Request req;
    int peer;
    MPI_Comm comm;
} pt_p2p_request;
pt_status pt_isend(pt_comm *c, const void *buf, int64_t count, pt_dtype dtype, int peer, int tag,
                   pt_p2p_request *r);
pt_status pt_irecv(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int peer, int tag,
                   pt_p2p_request *r);
/* Waits for n requests (all on one communicator); `what` says what they carry. An already
 * completed request (MPI_REQUEST_NULL) is skipped. */
pt_status pt_p2p_wait(pt_p2p_request *r, int n, const char *what);

#ifdef __cplusplus
}
#endif
#endif
