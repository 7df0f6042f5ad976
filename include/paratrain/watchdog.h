/* No hang anywhere: every wait for a peer rank is bounded.
 *
 * PT_COLL_TIMEOUT=SECONDS (default 600, 0: off) is the longest a rank waits without progress for
 * its peers. Two mechanisms enforce it:
 *
 *  - Bounded waits. The pt_mpi_* wrappers run the nonblocking form of an MPI call and test it in
 *    a loop; when nothing completes for the timeout they record one message naming the operation,
 *    the rank and (when known) the peer, mark the peer as lost, and return PT_ERR_MPI. The
 *    schedule engine (src/comm/schedule.c) and the sparse collectives use pt_wait_bounded.
 *  - An armed watchdog thread, for the calls MPI and HDF5 offer no nonblocking form of
 *    (MPI_Win_free, MPI_Win_allocate_shared, communicator creation, collective HDF5 file I/O,
 *    MPI_Finalize): pt_watchdog_arm() before, pt_watchdog_disarm() after. If the call makes no
 *    progress for the timeout, the thread prints the message and, when the program asked for it
 *    (pt_watchdog_set_abort), ends every rank with MPI_Abort(code). Library code never exits on
 *    its own: without pt_watchdog_set_abort the thread only prints.
 *
 * After a peer is lost the process must not communicate again: pending requests may still point
 * at buffers of the failed call (the wrappers keep theirs on the heap and never free them then),
 * and a stopped peer would block the next call anyway. Every pt_mpi_* wrapper fails at once when
 * pt_watchdog_peer_lost() is set; the caller skips collective clean-up and exits
 * (src/cli/paratrain.c: PT_EXIT_PEER_LOST). */
#ifndef PARATRAIN_WATCHDOG_H
#define PARATRAIN_WATCHDOG_H

#include <mpi.h>

#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The exit code of a run that ended because a peer stopped responding (README, --help). */
#define PT_EXIT_PEER_LOST 69
#define PT_WATCHDOG_DEFAULT_TIMEOUT 600.0

/* Reads PT_COLL_TIMEOUT (PT_ERR_ARG for a value that is not a number of seconds >= 0). Called
 * lazily by everything below; a program calls it first to refuse a bad value as a usage error. */
pt_status pt_watchdog_init(void);
/* The limit in seconds (0: off). */
double pt_watchdog_timeout(void);
/* Overrides the limit (tests; negative: read PT_COLL_TIMEOUT again). */
void pt_watchdog_set_timeout(double seconds);
/* When the armed thread fires: print "program: message", then MPI_Abort(MPI_COMM_WORLD, code)
 * (code 0: print only, the default). */
void pt_watchdog_set_abort(const char *program, int code);

/* Whether a wait of this process ran out of time; the first such message ("rank R: no progress
 * for T s in OP (...), waiting on rank P: ..."), or "" when none. */
int pt_watchdog_peer_lost(void);
const char *pt_watchdog_message(void);
/* Tests only: forget a lost peer, so one process can check several timeouts in a row (each on
 * its own communicator: the failed calls' requests stay pending on theirs). */
void pt_watchdog_forget(void);
/* Records a lost peer (the message of the failed wait) and returns PT_ERR_MPI with it as the
 * error message. `peers` lists npeers ranks of comm waited on (entries -1 are skipped; none:
 * unknown, though on a communicator of 2 ranks the other one is named). Used by the schedule
 * engine, which knows the peers of its rounds. */
pt_status pt_watchdog_fail(const char *file, int line, MPI_Comm comm, const char *op,
                           const char *what, const int *peers, int npeers);

/* Waits for n requests with the bound: each completion counts as progress. peers[i] (may be NULL)
 * is the rank of comm that request i waits on, -1 when not one rank. `op` names the MPI call,
 * `what` the purpose ("the loss of a step"); comm is used to name ranks. With the timeout off
 * this is MPI_Waitall. On failure the requests stay pending (see above). */
#define pt_wait_bounded(...) pt_wait_bounded_at(__FILE__, __LINE__, __VA_ARGS__)
pt_status pt_wait_bounded_at(const char *file, int line, int n, MPI_Request *reqs, const int *peers,
                             MPI_Comm comm, const char *op, const char *what);

/* Bounded forms of the blocking MPI collectives and point-to-point calls. Their buffers are
 * staged through heap copies, so a request left pending by a timeout never points at the
 * caller's (possibly stack) memory. sendbuf may be MPI_IN_PLACE where MPI allows it. */
#define pt_mpi_barrier(...) pt_mpi_barrier_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_mpi_allreduce(...) pt_mpi_allreduce_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_mpi_bcast(...) pt_mpi_bcast_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_mpi_allgather(...) pt_mpi_allgather_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_mpi_send(...) pt_mpi_send_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_mpi_recv(...) pt_mpi_recv_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_mpi_probe(...) pt_mpi_probe_at(__FILE__, __LINE__, __VA_ARGS__)
#define pt_peers_alive(...) pt_peers_alive_at(__FILE__, __LINE__, __VA_ARGS__)
pt_status pt_mpi_barrier_at(const char *file, int line, MPI_Comm comm, const char *what);
pt_status pt_mpi_allreduce_at(const char *file, int line, const void *sendbuf, void *recvbuf,
                              int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                              const char *what);
pt_status pt_mpi_bcast_at(const char *file, int line, void *buf, int count, MPI_Datatype type,
                          int root, MPI_Comm comm, const char *what);
/* recvbuf: count elements from each rank, in rank order. */
pt_status pt_mpi_allgather_at(const char *file, int line, const void *sendbuf, int count,
                              MPI_Datatype type, void *recvbuf, MPI_Comm comm, const char *what);
pt_status pt_mpi_send_at(const char *file, int line, const void *buf, int count, MPI_Datatype type,
                         int dest, int tag, MPI_Comm comm, const char *what);
pt_status pt_mpi_recv_at(const char *file, int line, void *buf, int count, MPI_Datatype type,
                         int source, int tag, MPI_Comm comm, const char *what);
/* MPI_Probe, bounded (for messages whose length the receiver learns by probing). */
pt_status pt_mpi_probe_at(const char *file, int line, int source, int tag, MPI_Comm comm,
                          MPI_Status *status, const char *what);
/* Every rank of comm reached this point: a token from each peer (tag PT_WATCHDOG_TAG), so the
 * ranks that did not arrive are named. Before calls that cannot be bounded, e.g. freeing a
 * window. p(p-1) one-byte messages: for node communicators and small groups. */
#define PT_WATCHDOG_TAG 32001
pt_status pt_peers_alive_at(const char *file, int line, MPI_Comm comm, const char *what);

/* The armed thread. Arms nest (the innermost label is reported); every bounded wait that
 * completes counts as progress, and the thread holds off while one is running (it fires itself,
 * with the better message). peer: a rank of MPI_COMM_WORLD, or -1. */
#define pt_watchdog_arm(...) pt_watchdog_arm_at(__FILE__, __LINE__, __VA_ARGS__)
void pt_watchdog_arm_at(const char *file, int line, const char *op, const char *what, int peer);
void pt_watchdog_disarm(void);

/* Test-only fault hook: PT_FAULT_STOP=RANK:STEP:WHERE makes world rank RANK raise SIGSTOP on
 * itself at point WHERE ('step': before training step STEP; 'ckpt-save': in the middle of the
 * checkpoint written at step STEP; 'comm-free': when the run frees its communicator, after step
 * STEP; 'finalize': before MPI_Finalize) -- a peer that stops at a known place, for
 * tests/test_hang.sh. STEP may be '*' (the first time WHERE is reached). Does nothing unset. */
void pt_fault_stop_point(const char *where, long long step);

#ifdef __cplusplus
}
#endif
#endif
