/* Agreeing on an error across ranks, so that a failure seen by some ranks makes every rank return
 * instead of leaving the others waiting in a collective. */
#ifndef PARATRAIN_AGREE_H
#define PARATRAIN_AGREE_H

#include <mpi.h>

#include "paratrain/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every rank passes its own status; all return the status of the lowest-ranked failing rank (PT_OK
 * when none failed) and *who is that rank (-1 when none). The message stays in the failing rank's
 * last-error record, so exactly one rank reports it. Collective over comm. */
pt_status pt_agree(MPI_Comm comm, pt_status local, int *who);

#ifdef __cplusplus
}
#endif
#endif
