#include "paratrain/agree.h"

#include <limits.h>

pt_status pt_agree(MPI_Comm comm, pt_status local, int *who)
{
    int rank, first;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    /* An error that an earlier agreement attributed to another rank keeps pointing there, so
     * agreeing twice still leaves exactly one reporter. */
    int mine = local == PT_OK ? INT_MAX : pt_error_remote_rank() >= 0 ? pt_error_remote_rank() : rank;
    PT_MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
    if (who) *who = first == INT_MAX ? -1 : first;
    if (first == INT_MAX) return PT_OK;
    int code = (int)local;
    PT_MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, first, comm));
    if (rank != first) pt_error_mark_remote(first);
    return (pt_status)code;
}
