#include "paratrain/agree.h"

#include "paratrain/watchdog.h"

#include <limits.h>

pt_status pt_agree(MPI_Comm comm, pt_status local, int *who)
{
    int rank, first;
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
    /* An error that an earlier agreement attributed to another rank keeps pointing there, so
     * agreeing twice still leaves exactly one reporter. */
    int mine = local == PT_OK ? INT_MAX : pt_error_remote_rank() >= 0 ? pt_error_remote_rank() : rank;
    /* bounded: a peer that never arrives ends the agreement with a named error, not a hang */
    PT_TRY(pt_mpi_allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm, "the agreement on an error"));
    if (who) *who = first == INT_MAX ? -1 : first;
    if (first == INT_MAX) return PT_OK;
    int code = (int)local;
    PT_TRY(pt_mpi_bcast(&code, 1, MPI_INT, first, comm, "the agreed error code"));
    if (rank != first) pt_error_mark_remote(first);
    return (pt_status)code;
}
