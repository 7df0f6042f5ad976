/* The bounded waits of include/paratrain/watchdog.h: the last rank never joins an operation, and
 * every other rank must get PT_ERR_MPI within PT_COLL_TIMEOUT (+ a margin), with a message naming
 * the operation and, where it can be known, the missing rank. One case per bounded wrapper and
 * per layer built on them (the schedule engine, the "mpi" algorithm, the sparse collectives,
 * pt_agree, pt_comm_free). Run under mpirun at np 2 and 3 (tests/test_hang.sh).
 *
 * `t_watchdog --armed`: the armed thread instead. The other ranks block in a plain MPI_Barrier
 * under pt_watchdog_arm; the thread must print the message and end the job with MPI_Abort(69). */
#include <mpi.h>
#include <string.h>
#include <unistd.h>

#include "paratrain/agree.h"
#include "paratrain/comm.h"
#include "paratrain/compress.h"
#include "paratrain/watchdog.h"
#include "testutil.h"

static int rank, size, last;
static const double T = 1.0; /* the limit under test, in seconds */

typedef pt_status (*case_fn)(MPI_Comm comm);

static pt_status c_barrier(MPI_Comm comm) { return pt_mpi_barrier(comm, "test"); }
static pt_status c_allreduce(MPI_Comm comm)
{
    double x[4] = {1, 2, 3, 4}; /* on the stack: the wrapper must stage it on the heap */
    return pt_mpi_allreduce(MPI_IN_PLACE, x, 4, MPI_DOUBLE, MPI_SUM, comm, "test");
}
static pt_status c_bcast(MPI_Comm comm)
{
    int x[2] = {0, 0};
    return pt_mpi_bcast(x, 2, MPI_INT, last, comm, "test");
}
static pt_status c_allgather(MPI_Comm comm)
{
    int x = rank, all[64];
    return pt_mpi_allgather(&x, 1, MPI_INT, all, comm, "test");
}
static pt_status c_recv(MPI_Comm comm)
{
    int x;
    return pt_mpi_recv(&x, 1, MPI_INT, last, 5, comm, "test");
}
static pt_status c_send(MPI_Comm comm)
{
    /* beyond the eager limit, so the send needs the receiver */
    static float big[1 << 22];
    return pt_mpi_send(big, 1 << 22, MPI_FLOAT, last, 5, comm, "test");
}
static pt_status c_probe(MPI_Comm comm)
{
    MPI_Status s;
    return pt_mpi_probe(last, 5, comm, &s, "test");
}
static pt_status c_alive(MPI_Comm comm) { return pt_peers_alive(comm, "test"); }
static pt_status c_agree(MPI_Comm comm) { return pt_agree(comm, PT_OK, NULL); }

static pt_comm pcs[8]; /* one pt_comm per case that needs one, made by every rank */
static int npc = 0;
static pt_status c_ring(MPI_Comm comm)
{
    (void)comm;
    pt_comm *c = &pcs[0];
    c->algo = PT_ALLREDUCE_RING;
    float x[64] = {0};
    return pt_allreduce(c, PT_IN_PLACE, x, 64, PT_F32, PT_SUM);
}
static pt_status c_mpi_algo(MPI_Comm comm)
{
    (void)comm;
    pt_comm *c = &pcs[1];
    c->algo = PT_ALLREDUCE_MPI;
    static float x[64];
    return pt_allreduce(c, PT_IN_PLACE, x, 64, PT_F32, PT_SUM);
}
static pt_status c_sparse(MPI_Comm comm)
{
    (void)comm;
    const uint32_t idx[2] = {1, 5};
    const float val[2] = {1, 2};
    static float dense[16];
    return pt_sparse_allreduce(&pcs[2], PT_SPARSE_ALLGATHER, idx, val, 2, 16, 0, 0, dense, NULL, NULL);
}
static pt_status c_sparcml(MPI_Comm comm)
{
    (void)comm;
    const uint32_t idx[2] = {1, 5};
    const float val[2] = {1, 2};
    static float dense[16];
    return pt_sparse_allreduce(&pcs[3], PT_SPARSE_SPARCML, idx, val, 2, 16, 0, 0.5, dense, NULL, NULL);
}
static pt_status c_comm_free(MPI_Comm comm)
{
    (void)comm;
    return pt_comm_free(&pcs[4]);
}

/* `named`: which rank must name the missing one (-1: every rank; -2: none can tell). */
static void run_case(const char *name, case_fn fn, const char *op, int named)
{
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    if (rank != last) {
        const double t0 = MPI_Wtime();
        pt_status st = fn(comm);
        const double dt = MPI_Wtime() - t0;
        char msg[2048], want[128], peer[64];
        snprintf(msg, sizeof msg, "%s", pt_error_message());
        snprintf(want, sizeof want, "no progress for 1 s in %s", op);
        snprintf(peer, sizeof peer, "waiting on rank %d", last);
        CHECK(st == PT_ERR_MPI, "%s: rank %d: status %d (%s)", name, rank, st, msg);
        CHECK(dt >= 0.9 * T && dt < T + 3.0, "%s: rank %d returned after %.2f s (limit %.0f s)",
              name, rank, dt, T);
        CHECK(strstr(msg, want) != NULL, "%s: rank %d: message lacks '%s': %s", name, rank, want, msg);
        if (named == -1 || named == rank || size == 2)
            CHECK(strstr(msg, peer) != NULL, "%s: rank %d: message does not name rank %d: %s", name,
                  rank, last, msg);
        CHECK(pt_watchdog_peer_lost(), "%s: rank %d: the lost peer was not recorded", name, rank);
        /* after a lost peer every wrapper refuses at once */
        const double t1 = MPI_Wtime();
        CHECK(pt_mpi_barrier(MPI_COMM_SELF, "after") == PT_ERR_MPI && MPI_Wtime() - t1 < 0.5,
              "%s: rank %d: a wrapper still communicates after a lost peer", name, rank);
        if (rank == 0) printf("%-12s %.2f s: %s\n", name, dt, msg);
        fflush(stdout);
        pt_watchdog_forget();
    }
    MPI_Barrier(MPI_COMM_WORLD); /* the missing rank was alive all along */
}

static int armed(void)
{
    pt_watchdog_set_abort("t_watchdog", PT_EXIT_PEER_LOST);
    if (rank == last) {
        sleep(30); /* never joins; MPI_Abort of the others ends it */
        return 1;
    }
    pt_watchdog_arm("MPI_Barrier", "the armed thread's test", -1);
    MPI_Barrier(MPI_COMM_WORLD); /* blocks: only the thread can end it */
    pt_watchdog_disarm();
    fprintf(stderr, "FAIL: rank %d passed a barrier the last rank never entered\n", rank);
    return 1;
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    last = size - 1;
    pt_watchdog_set_timeout(T);
    if (argc > 1 && !strcmp(argv[1], "--armed")) return armed();
    if (size < 2) {
        printf("t_watchdog: needs 2 or more ranks\n");
        MPI_Finalize();
        return 77;
    }
    for (npc = 0; npc < 5; npc++) REQUIRE_OK(pt_comm_init(&pcs[npc], MPI_COMM_WORLD));
    run_case("barrier", c_barrier, "MPI_Barrier", -2);
    run_case("allreduce", c_allreduce, "MPI_Allreduce", -2);
    run_case("bcast", c_bcast, "MPI_Bcast", -1);
    run_case("allgather", c_allgather, "MPI_Allgather", -2);
    run_case("recv", c_recv, "MPI_Recv", -1);
    run_case("send", c_send, "MPI_Send", -1);
    run_case("probe", c_probe, "MPI_Probe", -1);
    run_case("alive", c_alive, "the check that every peer is alive", -1);
    run_case("agree", c_agree, "MPI_Allreduce (the agreement on an error", -2);
    run_case("ring", c_ring, "collective 'ring'", 0);
    run_case("mpi-algo", c_mpi_algo, "MPI_Iallreduce", -2);
    run_case("sparse", c_sparse, "MPI_Probe (the length of a sparse message", 0);
    run_case("sparcml", c_sparcml, "MPI_Probe (the length of a sparse message", -2);
    run_case("comm_free", c_comm_free, "the check that every peer is alive", -1);
    const int code = rank == 0 ? test_exit_code("t_watchdog") : test_failures != 0;
    int all = code;
    MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    /* requests of the failed calls are still pending by design: end without MPI_Finalize's
     * synchronization on them */
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, all ? 1 : 0);
    return all;
}
