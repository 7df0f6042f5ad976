/* Collective dispatch: algorithm names, the "auto" choice, blocking and nonblocking allreduce. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "schedule.h"

static const char *algo_names[PT_ALLREDUCE_NALGOS] = {
    "auto", "mpi", "ring", "recursive_doubling", "rabenseifner", "binomial"};

pt_status pt_comm_init(pt_comm *c, MPI_Comm comm)
{
    memset(c, 0, sizeof *c);
    c->comm = comm;
    c->coll = MPI_COMM_NULL;
    PT_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    PT_MPI_CHECK(MPI_Comm_rank(comm, &c->rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &c->size));
    PT_MPI_CHECK(MPI_Comm_dup(comm, &c->coll));
    PT_MPI_CHECK(MPI_Comm_set_errhandler(c->coll, MPI_ERRORS_RETURN));
    c->algo = PT_ALLREDUCE_AUTO;
    return PT_OK;
}

void pt_comm_free(pt_comm *c)
{
    if (c->coll != MPI_COMM_NULL) MPI_Comm_free(&c->coll);
    c->coll = MPI_COMM_NULL;
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

pt_allreduce_algo pt_allreduce_auto_choice(int size, size_t bytes)
{
    (void)size, (void)bytes;
    /* Until pt-bench-allreduce --tune has measured a table on this code, "auto" is the MPI
     * library's own choice. */
    return PT_ALLREDUCE_MPI;
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
    pt_sched_free(&(*req)->sched);
    free(*req);
    *req = NULL;
}

pt_status pt_iallreduce(pt_comm *c, const void *send, void *recv, int64_t count, pt_dtype dtype,
                        pt_reduce_op op, pt_coll_request **req)
{
    *req = NULL;
    if (count < 0) return PT_ERR(PT_ERR_ARG, NULL, "negative allreduce count %lld", (long long)count);
    if (op == PT_AVG && dtype != PT_F32 && dtype != PT_F64)
        return PT_ERR(PT_ERR_ARG, NULL, "average is defined for float32 and float64 only");
    struct pt_coll_request *r = calloc(1, sizeof *r);
    if (!r) return PT_ERR(PT_ERR_NOMEM, NULL, "cannot allocate a collective request");
    r->recv = recv, r->count = count, r->dtype = dtype, r->op = op, r->size = c->size;
    const size_t es = pt_dtype_size(dtype);
    pt_allreduce_algo algo = c->algo;
    if (algo == PT_ALLREDUCE_AUTO) algo = pt_allreduce_auto_choice(c->size, es * (size_t)count);
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
        int rc = MPI_Wait(&r->mpi, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) st = PT_ERR(PT_ERR_MPI, NULL, "MPI_Wait failed (%d)", rc);
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
