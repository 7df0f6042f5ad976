/* Collective dispatch: algorithm names, the "auto" choice, blocking and nonblocking allreduce. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "paratrain/watchdog.h"
#include "schedule.h"

static const char *algo_names[PT_ALLREDUCE_NALGOS] = {
    "auto", "mpi", "ring", "recursive_doubling", "rabenseifner", "binomial", "hierarchical"};

/* Communicator creation is collective and has no nonblocking form: the armed watchdog bounds it. */
static pt_status comm_setup(pt_comm *c, MPI_Comm comm)
{
    PT_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    PT_MPI_CHECK(MPI_Comm_rank(comm, &c->rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &c->size));
    PT_MPI_CHECK(MPI_Comm_dup(comm, &c->coll));
    PT_MPI_CHECK(MPI_Comm_set_errhandler(c->coll, MPI_ERRORS_RETURN));
    /* PT_FAKE_NODE_SIZE=k groups consecutive ranks into "nodes" of k (all really on one machine),
     * so tests and benchmarks exercise the cross-node part of node-aware algorithms here. */
    const char *fake = getenv("PT_FAKE_NODE_SIZE");
    if (fake && atoi(fake) > 0)
        PT_MPI_CHECK(MPI_Comm_split(c->coll, c->rank / atoi(fake), c->rank, &c->node));
    else
        PT_MPI_CHECK(MPI_Comm_split_type(c->coll, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL,
                                         &c->node));
    PT_MPI_CHECK(MPI_Comm_rank(c->node, &c->node_rank));
    PT_MPI_CHECK(MPI_Comm_size(c->node, &c->node_size));
    for (int i = 0; i < 2; i++) PT_MPI_CHECK(MPI_Comm_dup(c->node, &c->node_region[i]));
    PT_MPI_CHECK(MPI_Comm_split(c->coll, c->node_rank, c->rank, &c->cross));
    PT_MPI_CHECK(MPI_Comm_size(c->cross, &c->nnodes));
    return PT_OK;
}

pt_status pt_comm_init(pt_comm *c, MPI_Comm comm)
{
    memset(c, 0, sizeof *c);
    c->comm = comm;
    c->coll = MPI_COMM_NULL;
    c->algo = PT_ALLREDUCE_AUTO;
    c->node = c->cross = c->node_region[0] = c->node_region[1] = MPI_COMM_NULL;
    c->win = c->user_win = MPI_WIN_NULL;
    if (pt_watchdog_peer_lost())
        return PT_ERR(PT_ERR_MPI, NULL, "pt_comm_init skipped: a peer was lost earlier (%s)",
                      pt_watchdog_message());
    pt_watchdog_arm("MPI_Comm_dup/MPI_Comm_split", "creating the communicators of pt_comm_init", -1);
    pt_status st = comm_setup(c, comm);
    pt_watchdog_disarm();
    PT_TRY(st);
    int mm[2] = {-c->node_size, c->node_size};
    PT_TRY(pt_mpi_allreduce(MPI_IN_PLACE, mm, 2, MPI_INT, MPI_MAX, c->coll,
                            "comparing the ranks per node in pt_comm_init"));
    c->uniform = -mm[0] == mm[1];
    /* Allocating the window is a blocking collective over the node: do a first one here, so small
     * hierarchical collectives never block in it (and their watchdog can fire). */
    return pt_comm_shm_reserve(c, 1 << 20);
}

/* A shared-memory window of `bytes` per rank of the node, with every rank's base pointer and a
 * passive-target epoch open for its lifetime (collective over the node; MPI has no nonblocking
 * form, so the armed watchdog bounds it). */
static pt_status window_alloc(pt_comm *c, size_t bytes, MPI_Win *win, char ***slots)
{
    if (pt_watchdog_peer_lost())
        return PT_ERR(PT_ERR_MPI, NULL, "MPI_Win_allocate_shared skipped: a peer was lost earlier (%s)",
                      pt_watchdog_message());
    MPI_Info info;
    PT_MPI_CHECK(MPI_Info_create(&info));
    PT_MPI_CHECK(MPI_Info_set(info, "alloc_shared_noncontig", "true")); /* each rank's part on its own NUMA node */
    char *base = NULL;
    /* Each rank's part is padded to a multiple of 64 bytes plus 64, and its start rounded up to
     * 64 below: MPI guarantees no alignment (Open MPI places the parts back to back, so rank 1's
     * could start 8 bytes into a line), and the reductions load __int128 (16-byte alignment;
     * UBSan found the misaligned load) and SIMD vectors from it. The segments are mapped page
     * aligned in every process, so every rank rounds a part to the same bytes. */
    const size_t padded = ((bytes ? bytes : 64) + 63) / 64 * 64 + 64;
    pt_watchdog_arm("MPI_Win_allocate_shared", "the shared-memory window of the node's ranks", -1);
    int rc = MPI_Win_allocate_shared((MPI_Aint)padded, 1, info, c->node, &base, win);
    pt_watchdog_disarm();
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS)
        return PT_ERR(PT_ERR_NOMEM, "check the size of /dev/shm, or use another --allreduce algorithm",
                      "cannot allocate a %zu-byte shared-memory window", bytes);
    *slots = malloc(sizeof(char *) * (size_t)c->node_size);
    if (!*slots) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate window pointers");
    for (int j = 0; j < c->node_size; j++) {
        MPI_Aint sz;
        int du;
        PT_MPI_CHECK(MPI_Win_shared_query(*win, j, &sz, &du, &(*slots)[j]));
        (*slots)[j] += (64 - (uintptr_t)(*slots)[j] % 64) % 64;
    }
    PT_MPI_CHECK(MPI_Win_lock_all(MPI_MODE_NOCHECK, *win));
    return PT_OK;
}

/* MPI_Win_free is collective over the node and cannot be bounded: first every rank of the node
 * shows it is alive (bounded, naming the ranks that are not), then the free runs under the armed
 * watchdog. A window whose peers are gone is left allocated: the process is about to end. */
static pt_status window_free(pt_comm *c, MPI_Win *win, char ***slots, const char *what)
{
    if (*win == MPI_WIN_NULL) return PT_OK;
    PT_TRY(pt_peers_alive(c->node, what));
    pt_status st = PT_OK;
    pt_watchdog_arm("MPI_Win_free", what, -1);
    int rc = MPI_Win_unlock_all(*win);
    if (rc == MPI_SUCCESS) rc = MPI_Win_free(win);
    pt_watchdog_disarm();
    if (rc != MPI_SUCCESS)
        st = PT_ERR(PT_ERR_MPI, NULL, "MPI_Win_free of %s failed (%d)", what, rc);
    free(*slots);
    *slots = NULL, *win = MPI_WIN_NULL;
    return st;
}

pt_status pt_comm_shm_reserve(pt_comm *c, size_t bytes)
{
    if (bytes <= c->region_bytes) return PT_OK;
    size_t cap = c->region_bytes ? 2 * c->region_bytes : 1 << 20;
    while (cap < bytes) cap *= 2;
    PT_TRY(window_free(c, &c->win, &c->slots, "the window of the hierarchical allreduce, to grow it"));
    c->region_bytes = 0;
    PT_TRY(window_alloc(c, 2 * cap, &c->win, &c->slots)); /* two regions per rank */
    c->region_bytes = cap;
    return PT_OK;
}

pt_status pt_comm_buffer_alloc(pt_comm *c, size_t bytes, void **ptr)
{
    *ptr = NULL;
    if (c->user_win != MPI_WIN_NULL)
        return PT_ERR(PT_ERR_ARG, NULL, "pt_comm_buffer_alloc: one shared buffer per communicator");
    PT_TRY(window_alloc(c, bytes, &c->user_win, &c->user_slots));
    c->user_bytes = bytes;
    *ptr = c->user_slots[c->node_rank];
    return PT_OK;
}

pt_status pt_comm_free(pt_comm *c)
{
    pt_status st = PT_OK;
    if (pt_watchdog_peer_lost()) /* nothing collective after a lost peer: leave it all */
        return PT_ERR(PT_ERR_MPI, NULL, "pt_comm_free skipped: a peer was lost earlier (%s)",
                      pt_watchdog_message());
    st = window_free(c, &c->user_win, &c->user_slots, "the window of the shared gradient buffer");
    if (st == PT_OK) st = window_free(c, &c->win, &c->slots, "the window of the hierarchical allreduce");
    if (st != PT_OK) return st; /* a peer is gone: the communicators stay too */
    c->region_bytes = 0;
    /* MPI_Comm_free is collective in the standard (local in Open MPI): bounded like the rest */
    pt_watchdog_arm("MPI_Comm_free", "the communicators of pt_comm_free", -1);
    for (int i = 0; i < 2; i++)
        if (c->node_region[i] != MPI_COMM_NULL) MPI_Comm_free(&c->node_region[i]);
    if (c->node != MPI_COMM_NULL) MPI_Comm_free(&c->node);
    if (c->cross != MPI_COMM_NULL) MPI_Comm_free(&c->cross);
    if (c->coll != MPI_COMM_NULL) MPI_Comm_free(&c->coll);
    pt_watchdog_disarm();
    c->coll = c->node = c->cross = MPI_COMM_NULL;
    return PT_OK;
}

pt_status pt_allreduce_algo_parse(const char *name, pt_allreduce_algo *algo)
{
    for (int i = 0; i < PT_ALLREDUCE_NALGOS; i++)
        if (!strcmp(name, algo_names[i])) {
            *algo = (pt_allreduce_algo)i;
            return PT_OK;
        }
    return PT_ERR(PT_ERR_ARG,
                  "available: auto, mpi, ring, recursive_doubling, rabenseifner, binomial",
                  "unknown allreduce algorithm '%s'", name);
}

const char *pt_allreduce_algo_name(pt_allreduce_algo algo)
{
    return (unsigned)algo < PT_ALLREDUCE_NALGOS ? algo_names[algo] : "?";
}

static pt_status mpi_types(pt_dtype dtype, pt_reduce_op op, MPI_Datatype *t, MPI_Op *o)
{
    switch (dtype) {
    case PT_F32: *t = MPI_FLOAT; break;
    case PT_F64: *t = MPI_DOUBLE; break;
    case PT_I32: *t = MPI_INT32_T; break;
    case PT_I64: *t = MPI_INT64_T; break;
    default:
        return PT_ERR(PT_ERR_ARG, "use a point-to-point algorithm (e.g. --allreduce ring)",
                      "MPI_Allreduce has no %s type", pt_dtype_name(dtype));
    }
    *o = op == PT_MAX ? MPI_MAX : op == PT_MIN ? MPI_MIN : MPI_SUM;
    return PT_OK;
}

struct pt_coll_request {
    pt_sched sched; /* point-to-point algorithms */
    MPI_Request mpi; /* "mpi" */
    int is_mpi;
    pt_comm *comm;
    void *recv;
    int64_t count;
    pt_dtype dtype;
    pt_reduce_op op;
    int size;
};

static void finish_avg(struct pt_coll_request *r)
{
    if (r->op != PT_AVG || r->size == 1) return;
    if (r->dtype == PT_F32) {
        float *x = r->recv, inv = 1.0f / (float)r->size;
        for (int64_t i = 0; i < r->count; i++) x[i] *= inv;
    } else if (r->dtype == PT_F64) {
        double *x = r->recv, inv = 1.0 / (double)r->size;
        for (int64_t i = 0; i < r->count; i++) x[i] *= inv;
    }
}

static void free_request(pt_coll_request **req)
{
    if (!*req) return;
    if ((*req)->sched.shm_region >= 0) (*req)->comm->region_busy[(*req)->sched.shm_region] = 0;
    pt_sched_free(&(*req)->sched);
    free(*req);
    *req = NULL;
}

pt_status pt_iallreduce(pt_comm *c, const void *send, void *recv, int64_t count, pt_dtype dtype,
                        pt_reduce_op op, pt_coll_request **req)
{
    *req = NULL;
    if (pt_watchdog_peer_lost())
        return PT_ERR(PT_ERR_MPI, NULL, "allreduce not started: a peer was lost earlier (%s)",
                      pt_watchdog_message());
    if (count < 0) return PT_ERR(PT_ERR_ARG, NULL, "negative allreduce count %lld", (long long)count);
    if (op == PT_AVG && dtype != PT_F32 && dtype != PT_F64)
        return PT_ERR(PT_ERR_ARG, NULL, "average is defined for float32 and float64 only");
    struct pt_coll_request *r = calloc(1, sizeof *r);
    if (!r) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a collective request");
    r->recv = recv, r->count = count, r->dtype = dtype, r->op = op, r->size = c->size;
    r->comm = c;
    const size_t es = pt_dtype_size(dtype);
    pt_allreduce_algo algo = c->algo;
    if (algo == PT_ALLREDUCE_AUTO) algo = pt_allreduce_auto_choice_comm(c, es * (size_t)count);
    if (algo == PT_ALLREDUCE_MPI && (dtype == PT_F16 || dtype == PT_BF16 || dtype == PT_I128))
        algo = c->algo == PT_ALLREDUCE_AUTO ? PT_ALLREDUCE_RING : algo; /* types MPI lacks */
    pt_status st = PT_OK;
    if (algo == PT_ALLREDUCE_MPI) {
        MPI_Datatype t = MPI_DATATYPE_NULL;
        MPI_Op o = MPI_OP_NULL;
        st = mpi_types(dtype, op, &t, &o);
        if (st == PT_OK && count > INT_MAX)
            st = PT_ERR(PT_ERR_ARG, "use a point-to-point algorithm", "count %lld exceeds MPI's int",
                        (long long)count);
        if (st == PT_OK) {
            const void *s = send == PT_IN_PLACE ? MPI_IN_PLACE : send;
            int rc = MPI_Iallreduce(s, recv, (int)count, t, o, c->coll, &r->mpi);
            if (rc != MPI_SUCCESS) st = PT_ERR(PT_ERR_MPI, NULL, "MPI_Iallreduce failed (%d)", rc);
            r->is_mpi = 1;
        }
    } else {
        if (send != PT_IN_PLACE && send != recv && count > 0) memcpy(recv, send, es * (size_t)count);
        st = pt_sched_init(&r->sched, c, dtype, op, pt_allreduce_algo_name(algo));
        if (st == PT_OK) switch (algo) {
            case PT_ALLREDUCE_RING: st = pt_allreduce_ring_build(&r->sched, recv, count); break;
            case PT_ALLREDUCE_RECURSIVE_DOUBLING:
                st = pt_allreduce_recursive_doubling_build(&r->sched, recv, count);
                break;
            case PT_ALLREDUCE_RABENSEIFNER:
                st = pt_allreduce_rabenseifner_build(&r->sched, recv, count);
                break;
            case PT_ALLREDUCE_BINOMIAL: st = pt_allreduce_binomial_build(&r->sched, recv, count); break;
            case PT_ALLREDUCE_HIERARCHICAL:
                st = pt_allreduce_hierarchical_build(&r->sched, recv, count);
                break;
            default: st = PT_ERR(PT_ERR_INTERNAL, NULL, "no builder for algorithm %d", algo);
            }
        if (st == PT_OK) st = pt_sched_start(&r->sched);
    }
    if (st != PT_OK) {
        free_request(&r);
        return st;
    }
    *req = r;
    return PT_OK;
}

pt_status pt_coll_test(pt_coll_request **req, int *done)
{
    *done = 0;
    struct pt_coll_request *r = *req;
    if (!r) {
        *done = 1;
        return PT_OK;
    }
    if (r->is_mpi) PT_MPI_CHECK(MPI_Test(&r->mpi, done, MPI_STATUS_IGNORE));
    else PT_TRY(pt_sched_test(&r->sched, done));
    if (*done) {
        finish_avg(r);
        free_request(req);
    }
    return PT_OK;
}

pt_status pt_coll_wait(pt_coll_request **req)
{
    struct pt_coll_request *r = *req;
    if (!r) return PT_OK;
    pt_status st = PT_OK;
    if (r->is_mpi) {
        st = pt_wait_bounded(1, &r->mpi, NULL, r->comm->coll, "MPI_Iallreduce",
                             "the 'mpi' allreduce algorithm");
        if (st != PT_OK) { /* the request stays pending on recv: the request is left with it */
            *req = NULL;
            return st;
        }
    } else {
        st = pt_sched_wait(&r->sched);
    }
    if (st == PT_OK) finish_avg(r);
    free_request(req);
    return st;
}

pt_status pt_allreduce(pt_comm *c, const void *send, void *recv, int64_t count, pt_dtype dtype,
                       pt_reduce_op op)
{
    pt_coll_request *req;
    PT_TRY(pt_iallreduce(c, send, recv, count, dtype, op, &req));
    return pt_coll_wait(&req);
}

/* ------------------------------------------------------------ the other collectives */

typedef enum { K_REDUCE_SCATTER, K_ALLGATHER, K_BCAST, K_ALLTOALLV } coll_kind;

typedef struct {
    coll_kind kind;
    const void *send;
    void *recv;
    const int64_t *counts, *sdispls, *rcounts, *rdispls;
    int64_t count;
    int root;
} coll_args;

static pt_status start_coll(pt_comm *c, const coll_args *a, pt_dtype dtype, pt_reduce_op op,
                            pt_coll_request **req)
{
    static const char *names[] = {"reduce_scatter_ring", "allgather_ring", "bcast_binomial",
                                  "alltoallv_pairwise"};
    *req = NULL;
    if (op == PT_AVG && dtype != PT_F32 && dtype != PT_F64)
        return PT_ERR(PT_ERR_ARG, NULL, "average is defined for float32 and float64 only");
    const int64_t *lists[] = {a->counts, a->rcounts};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l] && i < c->size; i++)
            if (lists[l][i] < 0) return PT_ERR(PT_ERR_ARG, NULL, "negative count for rank %d", i);
    if (a->kind == K_BCAST && (a->root < 0 || a->root >= c->size))
        return PT_ERR(PT_ERR_ARG, NULL, "broadcast root %d outside [0, %d)", a->root, c->size);
    struct pt_coll_request *r = calloc(1, sizeof *r);
    if (!r) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a collective request");
    r->comm = c, r->dtype = dtype, r->op = op, r->size = c->size, r->recv = a->recv;
    r->count = a->kind == K_REDUCE_SCATTER ? a->counts[c->rank] : 0;
    pt_status st = pt_sched_init(&r->sched, c, dtype, op, names[a->kind]);
    if (st == PT_OK) switch (a->kind) {
        case K_REDUCE_SCATTER: st = pt_reduce_scatter_ring_build(&r->sched, a->send, a->recv, a->counts); break;
        case K_ALLGATHER: st = pt_allgather_ring_build(&r->sched, a->send, a->recv, a->counts); break;
        case K_BCAST: st = pt_bcast_binomial_build(&r->sched, a->recv, a->count, a->root); break;
        case K_ALLTOALLV:
            st = pt_alltoallv_pairwise_build(&r->sched, a->send, a->counts, a->sdispls, a->recv,
                                             a->rcounts, a->rdispls);
            break;
        }
    if (st == PT_OK) st = pt_sched_start(&r->sched);
    if (st != PT_OK) {
        free_request(&r);
        return st;
    }
    *req = r;
    return PT_OK;
}

static pt_status finish(pt_status st, pt_coll_request **req)
{
    return st == PT_OK ? pt_coll_wait(req) : st;
}

pt_status pt_ireduce_scatter(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                             pt_dtype dtype, pt_reduce_op op, pt_coll_request **req)
{
    coll_args a = {.kind = K_REDUCE_SCATTER, .send = send, .recv = recv, .counts = counts};
    return start_coll(c, &a, dtype, op, req);
}
pt_status pt_reduce_scatter(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                            pt_dtype dtype, pt_reduce_op op)
{
    pt_coll_request *r;
    return finish(pt_ireduce_scatter(c, send, recv, counts, dtype, op, &r), &r);
}
pt_status pt_iallgather(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                        pt_dtype dtype, pt_coll_request **req)
{
    coll_args a = {.kind = K_ALLGATHER, .send = send, .recv = recv, .counts = counts};
    return start_coll(c, &a, dtype, PT_SUM, req);
}
pt_status pt_allgather(pt_comm *c, const void *send, void *recv, const int64_t *counts,
                       pt_dtype dtype)
{
    pt_coll_request *r;
    return finish(pt_iallgather(c, send, recv, counts, dtype, &r), &r);
}
pt_status pt_ibcast(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int root,
                    pt_coll_request **req)
{
    if (count < 0) return PT_ERR(PT_ERR_ARG, NULL, "negative broadcast count");
    coll_args a = {.kind = K_BCAST, .recv = buf, .count = count, .root = root};
    return start_coll(c, &a, dtype, PT_SUM, req);
}
pt_status pt_bcast(pt_comm *c, void *buf, int64_t count, pt_dtype dtype, int root)
{
    pt_coll_request *r;
    return finish(pt_ibcast(c, buf, count, dtype, root, &r), &r);
}
pt_status pt_ialltoallv(pt_comm *c, const void *send, const int64_t *scounts,
                        const int64_t *sdispls, void *recv, const int64_t *rcounts,
                        const int64_t *rdispls, pt_dtype dtype, pt_coll_request **req)
{
    coll_args a = {.kind = K_ALLTOALLV, .send = send, .recv = recv, .counts = scounts,
                   .sdispls = sdispls, .rcounts = rcounts, .rdispls = rdispls};
    return start_coll(c, &a, dtype, PT_SUM, req);
}
pt_status pt_alltoallv(pt_comm *c, const void *send, const int64_t *scounts,
                       const int64_t *sdispls, void *recv, const int64_t *rcounts,
                       const int64_t *rdispls, pt_dtype dtype)
{
    pt_coll_request *r;
    return finish(pt_ialltoallv(c, send, scounts, sdispls, recv, rcounts, rdispls, dtype, &r), &r);
}
