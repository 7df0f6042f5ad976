#include "paratrain/fault.h"
#include "paratrain/mpi_init.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/log.h"

static const char *level_name(int level)
{
    return level == MPI_THREAD_SINGLE       ? "MPI_THREAD_SINGLE"
           : level == MPI_THREAD_FUNNELED   ? "MPI_THREAD_FUNNELED"
           : level == MPI_THREAD_SERIALIZED ? "MPI_THREAD_SERIALIZED"
           : level == MPI_THREAD_MULTIPLE   ? "MPI_THREAD_MULTIPLE"
                                            : "an unknown level";
}

pt_status pt_mpi_init(int *argc, char ***argv, int required, int *rank, int *size)
{
    int provided = MPI_THREAD_SINGLE;
    *rank = 0, *size = 1;
    int rc = MPI_Init_thread(argc, argv, required, &provided);
    if (rc != MPI_SUCCESS)
        return PT_ERR(PT_ERR_MPI, "start the program with the mpirun of the MPI it was built with",
                      "MPI_Init_thread failed (error code %d)", rc);
    PT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, rank));
    PT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, size));
    pt_log_set_rank(*rank, *size);
    if (pt_fault_everywhere("mpi-thread-level")) provided = MPI_THREAD_SINGLE;
    if (provided < required) {
        /* the level is the same on every rank: one of them reports */
        pt_status st = PT_ERR(PT_ERR_MPI,
                              "use an MPI built with thread support (Open MPI is); OpenMP threads "
                              "run inside every rank and only the main thread calls MPI",
                              "MPI provides %s, paratrain needs %s", level_name(provided),
                              level_name(required));
        if (*rank != 0) pt_error_mark_remote(0);
        return st;
    }
    return PT_OK;
}
