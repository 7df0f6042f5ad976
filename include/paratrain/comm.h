/* The project's collective interface. Training code calls pt_allreduce(); which algorithm runs is
 * chosen at run time by name (--allreduce, PT_ALLREDUCE). This layer depends on MPI alone.
 *
 * Algorithms present: "mpi" (MPI_Allreduce, the baseline every other algorithm is checked and
 * benchmarked against) and "auto" (chooses among the present algorithms). The point-to-point
 * algorithms of design.md (ring, recursive doubling, Rabenseifner, hierarchical) are added here as
 * one file each by the [collectives] issue. */
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

typedef enum { PT_ALLREDUCE_AUTO = 0, PT_ALLREDUCE_MPI } pt_allreduce_algo;

typedef struct {
    MPI_Comm comm;
    int rank, size;
    pt_allreduce_algo algo;
} pt_comm;

/* Wraps `comm` (not duplicated; the caller keeps it alive) and sets MPI_ERRORS_RETURN on it, so
 * failures come back as codes through PT_MPI_CHECK instead of aborting inside MPI. */
pt_status pt_comm_init(pt_comm *c, MPI_Comm comm);
pt_status pt_allreduce_algo_parse(const char *name, pt_allreduce_algo *algo);
const char *pt_allreduce_algo_name(pt_allreduce_algo algo);

#define PT_IN_PLACE ((const void *)1)

/* recv = op over ranks of send (send == PT_IN_PLACE: recv is both). PT_AVG divides the sum by
 * the number of ranks (floating types only). */
pt_status pt_allreduce(const pt_comm *c, const void *send, void *recv, int64_t count,
                       pt_dtype dtype, pt_reduce_op op);

#ifdef __cplusplus
}
#endif
#endif
