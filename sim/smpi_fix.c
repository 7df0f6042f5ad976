/* A workaround for SimGrid 3.32 (Debian 12's libsimgrid-dev), linked into the SMPI build only:
 * its MPI_Win_shared_query ignores the rank and returns the caller's node segment start (rank 0's
 * memory) for every rank, so src/comm's hierarchical allreduce, which reads each node peer's
 * region through it, summed rank 0's region L times (measured: 64 ranks, 4 per host, wrong sums;
 * /tmp test in docs/SCALE.md). These wrappers record every rank's base, size and disp_unit with
 * an allgather when the window is made, and answer MPI_Win_shared_query from that record; the
 * executable's definitions take precedence over libsimgrid's, so src/comm is unchanged.
 *
 * PT_SIM_SHARED_WIN=1 (timing runs only): the window's memory comes from SMPI_SHARED_MALLOC
 * instead (every rank's region aliases the same few physical pages; contents garbage), so the
 * hierarchical algorithm's 2 regions of n bytes per rank do not take p * 2n bytes of real memory
 * at 1024-4096 simulated ranks. Correctness runs (tests/test_sim.sh) leave it unset. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#define MAXWIN 64
struct rec { MPI_Win win; int n; void **base; MPI_Aint *size; int *disp; void *fake; };
static struct rec recs[MAXWIN]; /* SMPI privatizes this per rank */

int MPI_Win_allocate_shared(MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm,
                            void *baseptr, MPI_Win *win)
{
    const char *sh = getenv("PT_SIM_SHARED_WIN");
    const int fake = sh && atoi(sh) > 0;
    int rc = PMPI_Win_allocate_shared(fake ? 0 : size, disp_unit, info, comm, baseptr, win);
    if (rc != MPI_SUCCESS) return rc;
    if (fake) *(void **)baseptr = size > 0 ? SMPI_SHARED_MALLOC((size_t)size) : NULL;
    int n = 0;
    PMPI_Comm_size(comm, &n);
    struct rec *r = NULL;
    for (int i = 0; i < MAXWIN && !r; i++)
        if (recs[i].n == 0) r = &recs[i];
    if (!r) return rc; /* table full: fall back to SimGrid's answer */
    struct { void *base; long long size; long long disp; } mine, *all = malloc(sizeof mine * (size_t)n);
    mine.base = *(void **)baseptr, mine.size = (long long)size, mine.disp = disp_unit;
    PMPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm);
    r->win = *win, r->n = n, r->fake = fake ? *(void **)baseptr : NULL;
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
            if (recs[i].fake) SMPI_SHARED_FREE(recs[i].fake);
            free(recs[i].base), free(recs[i].size), free(recs[i].disp);
            memset(&recs[i], 0, sizeof recs[i]);
        }
    return PMPI_Win_free(win);
}

/* SimGrid 3.32's nonblocking collectives make a request per peer and complete them in
 * Request::waitall/finish_nbc_requests, whose cost explodes with p: pt_comm_init's 2-int
 * MPI_Iallreduce (through pt_mpi_allreduce, src/core/watchdog.c) took 3 s of wall time at 64
 * ranks and did not finish in 120 s at 128. Every caller in src/core and src/comm waits for these
 * right after posting them (the bounded-wait helpers), so here they run as the blocking
 * collective and return a completed request (MPI_REQUEST_NULL, which MPI_Wait and MPI_Test
 * accept). Not for code that overlaps them with other communication. MPI_Ibarrier, which the
 * hierarchical algorithm posts inside its schedule on a node's few ranks, is below. */
int MPI_Iallreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype type, MPI_Op op,
                   MPI_Comm comm, MPI_Request *request)
{
    *request = MPI_REQUEST_NULL;
    return PMPI_Allreduce(sendbuf, recvbuf, count, type, op, comm);
}

int MPI_Ibcast(void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm, MPI_Request *request)
{
    *request = MPI_REQUEST_NULL;
    return PMPI_Bcast(buf, count, type, root, comm);
}

int MPI_Iallgather(const void *sendbuf, int scount, MPI_Datatype stype, void *recvbuf, int rcount,
                   MPI_Datatype rtype, MPI_Comm comm, MPI_Request *request)
{
    *request = MPI_REQUEST_NULL;
    return PMPI_Allgather(sendbuf, scount, stype, recvbuf, rcount, rtype, comm);
}

/* SimGrid 3.32's MPI_Ibarrier lets a rank out before the last one arrives: 4 ranks of one host
 * entering at 0, 1, 2 and 3 ms of simulated time left it at 3.5, 1.5, 2.6 and 3.3 ms (a
 * test program, docs/SCALE.md). The hierarchical allreduce's node barriers (src/comm/schedule.c)
 * then let a rank read its peers' window regions before they are written: wrong sums as soon as
 * the ranks of a node drift apart (pt-sim-step with compute between the buckets), while the
 * lockstep calls of pt-sim-allreduce happened to pass. SimGrid's own nonblocking allreduce waits
 * correctly, so the barrier is a one-int MPI_Iallreduce (PMPI_: SimGrid's, not the wrapper
 * above; the value is never read). */
int MPI_Ibarrier(MPI_Comm comm, MPI_Request *request)
{
    static const int one = 1;
    static int sink; /* SMPI privatizes it per rank */
    return PMPI_Iallreduce(&one, &sink, 1, MPI_INT, MPI_SUM, comm, request);
}
