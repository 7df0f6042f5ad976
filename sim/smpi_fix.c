/* A workaround for SimGrid 3.32 (Debian 12's libsimgrid-dev), linked into the SMPI build only:
 * its MPI_Win_shared_query ignores the rank and returns the caller's node segment start (rank 0's
 * memory) for every rank, so src/comm's hierarchical allreduce, which reads each node peer's
 * region through it, summed rank 0's region L times (measured: 64 ranks, 4 per host, wrong sums;
 * /tmp test in docs/SCALE.md). These wrappers record every rank's base, size and disp_unit with
 * an allgather when the window is made, and answer MPI_Win_shared_query from that record; the
 * executable's definitions take precedence over libsimgrid's, so src/comm is unchanged. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#define MAXWIN 64
struct rec { MPI_Win win; int n; void **base; MPI_Aint *size; int *disp; };
static struct rec recs[MAXWIN]; /* SMPI privatizes this per rank */

int MPI_Win_allocate_shared(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm,
                            void *baseptr, MPI_Win *win)
{
    int rc = PMPI_Win_allocate_shared(size, disp_unit, info, comm, baseptr, win);
    if (rc != MPI_SUCCESS) return rc;
    int n = 0;
    PMPI_Comm_size(comm, &n);
    struct rec *r = NULL;
    for (int i = 0; i < MAXWIN && !r; i++)
        if (recs[i].n == 0) r = &recs[i];
    if (!r) return rc; /* table full: fall back to SimGrid's answer */
    struct { void *base; long long size; long long disp; } mine, *all = malloc(sizeof mine * (size_t)n);
    mine.base = *(void **)baseptr, mine.size = (long long)size, mine.disp = disp_unit;
    PMPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm);
    r->win = *win, r->n = n;
    r->base = malloc(sizeof(void *) * (size_t)n);
    r->size = malloc(sizeof(MPI_Aint) * (size_t)n);
    r->disp = malloc(sizeof(int) * (size_t)n);
    for (int j = 0; j < n; j++)
        r->base[j] = all[j].base, r->size[j] = (MPI_Aint)all[j].size, r->disp[j] = (int)all[j].disp;
    free(all);
    return rc;
}

int MPI_Win_shared_query(MPI_Win win, int rank, MPI_Aint *size, int *disp_unit, void *baseptr)
{
    for (int i = 0; i < MAXWIN; i++)
        if (recs[i].n > 0 && recs[i].win == win && rank >= 0 && rank < recs[i].n) {
            *size = recs[i].size[rank], *disp_unit = recs[i].disp[rank];
            *(void **)baseptr = recs[i].base[rank];
            return MPI_SUCCESS;
        }
    return PMPI_Win_shared_query(win, rank, size, disp_unit, baseptr);
}

int MPI_Win_free(MPI_Win *win)
{
    for (int i = 0; i < MAXWIN; i++)
        if (recs[i].n > 0 && recs[i].win == *win) {
            free(recs[i].base), free(recs[i].size), free(recs[i].disp);
            memset(&recs[i], 0, sizeof recs[i]);
        }
    return PMPI_Win_free(win);
}
