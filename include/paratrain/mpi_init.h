/* MPI start-up for the programs: MPI_Init_thread with its result and its thread level checked. */
#ifndef PARATRAIN_MPI_INIT_H
#define PARATRAIN_MPI_INIT_H

#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MPI_Init_thread(required), then rank and size of MPI_COMM_WORLD and the log's rank prefix.
 * Fails with PT_ERR_MPI when the call fails or MPI provides a thread level below `required`
 * (then MPI is initialized, the same on every rank, and rank 0 alone reports: the caller prints
 * with pt_log_error_last, calls MPI_Finalize when MPI_Initialized, and exits 1). For the tests,
 * PT_FAULT_INJECT=mpi-thread-level makes MPI look as if it provided MPI_THREAD_SINGLE. */
pt_status pt_mpi_init(int *argc, char ***argv, int required, int *rank, int *size);

#ifdef __cplusplus
}
#endif
#endif
