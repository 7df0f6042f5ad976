/* Collective dispatch. Large counts are split into chunks of at most INT_MAX elements because the
 * MPI-3 interface counts in int. */
#include <limits.h>
#include <string.h>

#include "paratrain/comm.h"

pt_status pt_comm_init(pt_comm *c, MPI_Comm comm)
{
    memset(c, 0, sizeof *c);
    c->comm = comm;
    PT_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    PT_MPI_CHECK(MPI_Comm_rank(comm, &c->rank));
    PT_MPI_CHECK(MPI_Comm_size(comm, &c->size));
    c->algo = PT_ALLREDUCE_AUTO;
    return PT_OK;
}

pt_status pt_allreduce_algo_parse(const char *name, pt_allreduce_algo *algo)
{
    if (!strcmp(name, "auto")) *algo = PT_ALLREDUCE_AUTO;
    else if (!strcmp(name, "mpi")) *algo = PT_ALLREDUCE_MPI;
    else
        return PT_ERR(PT_ERR_ARG, "available algorithms: auto, mpi",
                      "unknown allreduce algorithm '%s'", name);
    return PT_OK;
}

const char *pt_allreduce_algo_name(pt_allreduce_algo algo)
{
    return algo == PT_ALLREDUCE_MPI ? "mpi" : "auto";
}

static pt_status mpi_types(pt_dtype dtype, pt_reduce_op op, MPI_Datatype *t, MPI_Op *o)
{
    switch (dtype) {
    case PT_F32: *t = MPI_FLOAT; break;
    case PT_F64: *t = MPI_DOUBLE; break;
    case PT_I32: *t = MPI_INT32_T; break;
    case PT_I64: *t = MPI_INT64_T; break;
    default:
        return PT_ERR(PT_ERR_ARG, "16-bit types arrive with the [collectives] issue",
                      "allreduce of dtype %s is not supported yet", pt_dtype_name(dtype));
    }
    switch (op) {
    case PT_SUM: case PT_AVG: *o = MPI_SUM; break;
    case PT_MAX: *o = MPI_MAX; break;
    case PT_MIN: *o = MPI_MIN; break;
    }
    if (op == PT_AVG && (dtype == PT_I32 || dtype == PT_I64))
        return PT_ERR(PT_ERR_ARG, NULL, "average is defined for floating types only");
    return PT_OK;
}

static pt_status allreduce_mpi(const pt_comm *c, const void *send, void *recv, int64_t count,
                               MPI_Datatype t, MPI_Op o, size_t esize)
{
    for (int64_t off = 0; off < count; off += INT_MAX) {
        int n = (int)(count - off < INT_MAX ? count - off : INT_MAX);
        char *r = (char *)recv + (size_t)off * esize;
        const void *s = send == PT_IN_PLACE ? MPI_IN_PLACE : (const char *)send + (size_t)off * esize;
        PT_MPI_CHECK(MPI_Allreduce(s, r, n, t, o, c->comm));
    }
    return PT_OK;
}

pt_status pt_allreduce(const pt_comm *c, const void *send, void *recv, int64_t count,
                       pt_dtype dtype, pt_reduce_op op)
{
    MPI_Datatype t = MPI_DATATYPE_NULL;
    MPI_Op o = MPI_OP_NULL;
    PT_TRY(mpi_types(dtype, op, &t, &o));
    if (count < 0) return PT_ERR(PT_ERR_ARG, NULL, "negative allreduce count %lld", (long long)count);
    const size_t esize = pt_dtype_size(dtype);
    /* Both current choices run MPI_Allreduce; "auto" will consult the measured table. */
    PT_TRY(allreduce_mpi(c, send, recv, count, t, o, esize));
    if (op == PT_AVG && c->size > 1) {
        if (dtype == PT_F32) {
            float *r = recv, inv = 1.0f / (float)c->size;
            for (int64_t i = 0; i < count; i++) r[i] *= inv;
        } else {
            double *r = recv, inv = 1.0 / (double)c->size;
            for (int64_t i = 0; i < count; i++) r[i] *= inv;
        }
    }
    return PT_OK;
}
