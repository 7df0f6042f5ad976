/* The process grid (include/paratrain/grid.h) at the process count of mpirun (tests/test_grid.sh
 * runs 1..8): for every (tp, pp) whose product divides it and every axis order, each rank's
 * coordinates and each axis group's members against a direct mixed-radix computation, and an
 * allreduce on each group (paratrain's algorithms) against MPI_Allreduce on an MPI_Comm_split by
 * the same colour. Then the grids that must be refused. */
#include <mpi.h>
#include <string.h>

#include "paratrain/comm.h"
#include "paratrain/grid.h"
#include "paratrain/mpi_init.h"
#include "testutil.h"

static const char *orders[] = {"pp,dp,tp", "pp,tp,dp", "dp,pp,tp", "dp,tp,pp",
                               "tp,pp,dp", "tp,dp,pp", "pp,dp,ep,tp", "ep,tp,dp,pp"};

/* The axes of an order, outermost first, computed here independently of grid.c: ep, when not
 * named, sits just outside tp (size 1: it changes no rank). */
static int expected_order(const char *text, int ord[PT_NAXES])
{
    static const char *names[PT_NAXES] = {"pp", "dp", "ep", "tp"};
    int n = 0, has_ep = strstr(text, "ep") != NULL;
    for (const char *p = text; *p; p += p[2] ? 3 : 2) {
        for (int a = 0; a < PT_NAXES; a++)
            if (!strncmp(p, names[a], 2)) {
                if (a == PT_AXIS_TP && !has_ep) ord[n++] = PT_AXIS_EP;
                ord[n++] = a;
            }
        if (!p[2]) break;
    }
    return n;
}

/* Coordinates of world rank r: digits of r in the mixed radix of the sizes, outermost first. */
static void coords_of(int r, const int size[PT_NAXES], const int ord[PT_NAXES], int c[PT_NAXES])
{
    for (int i = PT_NAXES - 1; i >= 0; i--) {
        c[ord[i]] = r % size[ord[i]];
        r /= size[ord[i]];
    }
}

static void check_grid(int rank, int np, int tp, int pp, const char *order)
{
    pt_grid g;
    REQUIRE_OK(pt_grid_create(&g, MPI_COMM_WORLD, tp, pp, order));
    int ord[PT_NAXES], size[PT_NAXES] = {0}, mine[PT_NAXES];
    CHECK(expected_order(order, ord) == PT_NAXES, "order %s", order);
    size[PT_AXIS_TP] = tp, size[PT_AXIS_PP] = pp, size[PT_AXIS_EP] = 1, size[PT_AXIS_DP] = np / (tp * pp);
    coords_of(rank, size, ord, mine);
    for (int a = 0; a < PT_NAXES; a++) {
        CHECK(g.order[a] == ord[a], "np %d tp %d pp %d %s: order[%d] %d, want %d", np, tp, pp,
              order, a, g.order[a], ord[a]);
        CHECK(g.size[a] == size[a], "%s: size of %s %d, want %d", order, pt_axis_name(a), g.size[a], size[a]);
        CHECK(g.coord[a] == mine[a], "np %d tp %d pp %d %s rank %d: %s coordinate %d, want %d", np,
              tp, pp, order, rank, pt_axis_name(a), g.coord[a], mine[a]);
    }
    CHECK(pt_grid_rank_of(g.size, g.order, g.coord) == rank, "rank formula");
    int cart_rank = -1, cc[PT_NAXES];
    for (int i = 0; i < PT_NAXES; i++) cc[i] = mine[ord[i]];
    MPI_Cart_rank(g.cart, cc, &cart_rank);
    CHECK(cart_rank == rank, "MPI_Cart_rank %d, world rank %d", cart_rank, rank);
    for (int a = 0; a < PT_NAXES; a++) {
        pt_comm *pc = &g.group[a];
        CHECK(pc->size == size[a] && pc->rank == mine[a], "%s %s group: rank %d of %d, want %d of %d",
              order, pt_axis_name(a), pc->rank, pc->size, mine[a], size[a]);
        if (pc->size != size[a]) continue;
        /* members: the world ranks that differ from this one only along axis a, by coordinate */
        int members[64];
        MPI_Allgather(&rank, 1, MPI_INT, members, 1, MPI_INT, pc->comm);
        for (int k = 0; k < size[a]; k++) {
            int c[PT_NAXES];
            memcpy(c, mine, sizeof c);
            c[a] = k;
            const int want = pt_grid_rank_of(size, ord, c);
            CHECK(members[k] == want, "%s %s group member %d is world rank %d, want %d", order,
                  pt_axis_name(a), k, members[k], want);
        }
        /* allreduce on the group == MPI_Allreduce on MPI_Comm_split by the other coordinates */
        int colour = 0;
        for (int i = 0; i < PT_NAXES; i++)
            if (ord[i] != a) colour = colour * size[ord[i]] + mine[ord[i]];
        MPI_Comm split;
        MPI_Comm_split(MPI_COMM_WORLD, colour, mine[a], &split);
        static const pt_allreduce_algo algos[] = {PT_ALLREDUCE_AUTO, PT_ALLREDUCE_RING,
                                                  PT_ALLREDUCE_RECURSIVE_DOUBLING,
                                                  PT_ALLREDUCE_RABENSEIFNER};
        const int64_t n = 1003; /* odd, and not a multiple of any group size here */
        float x[1003], ref[1003];
        for (size_t k = 0; k < sizeof algos / sizeof *algos; k++) {
            for (int64_t i = 0; i < n; i++) x[i] = (float)(rank * 7 + i % 13); /* exact sums */
            MPI_Allreduce(x, ref, (int)n, MPI_FLOAT, MPI_SUM, split);
            pc->algo = algos[k];
            REQUIRE_OK(pt_allreduce(pc, PT_IN_PLACE, x, n, PT_F32, PT_SUM));
            CHECK(!memcmp(x, ref, sizeof x), "%s %s group, %s: allreduce differs from MPI_Allreduce",
                  order, pt_axis_name(a), pt_allreduce_algo_name(algos[k]));
        }
        MPI_Comm_free(&split);
    }
    CHECK(g.all.size == np && g.all.rank == rank, "world group: rank %d of %d", g.all.rank, g.all.size);
    float one = 1.0f;
    REQUIRE_OK(pt_allreduce(&g.all, PT_IN_PLACE, &one, 1, PT_F32, PT_SUM));
    CHECK(one == (float)np, "allreduce over the world group: %g", one);
    REQUIRE_OK(pt_grid_free(&g));
}

int main(int argc, char **argv)
{
    int rank, np;
    if (pt_mpi_init(&argc, &argv, MPI_THREAD_FUNNELED, &rank, &np) != PT_OK) return 1;
    int grids = 0;
    for (int tp = 1; tp <= np; tp++)
        for (int pp = 1; tp * pp <= np; pp++) {
            if (np % (tp * pp)) continue;
            for (size_t o = 0; o < sizeof orders / sizeof *orders; o++) {
                check_grid(rank, np, tp, pp, orders[o]);
                grids++;
            }
        }
    /* refused, alike on every rank, before anything collective */
    static const char *bad_orders[] = {"", "pp,dp", "pp,dp,tp,tp", "xx,dp,tp", "pp,,dp,tp",
                                       "pp,dp,tp,", "PP,DP,TP", "pp dp tp"};
    for (size_t o = 0; o < sizeof bad_orders / sizeof *bad_orders; o++) {
        int ord[PT_NAXES];
        CHECK(pt_grid_parse_order(bad_orders[o], ord, NULL, 0) == PT_ERR_ARG, "order '%s' accepted",
              bad_orders[o]);
        pt_grid g;
        CHECK(pt_grid_create(&g, MPI_COMM_WORLD, 1, 1, bad_orders[o]) == PT_ERR_ARG,
              "grid with order '%s' created", bad_orders[o]);
    }
    pt_grid g;
    CHECK(pt_grid_create(&g, MPI_COMM_WORLD, np + 1, 1, "pp,dp,tp") == PT_ERR_ARG, "tp > ranks");
    CHECK(strstr(pt_error_message(), "divisible") != NULL, "message: %s", pt_error_message());
    CHECK(pt_grid_create(&g, MPI_COMM_WORLD, 1, 0, "pp,dp,tp") == PT_ERR_ARG, "pp 0");
    CHECK(pt_grid_create(&g, MPI_COMM_WORLD, 0, 1, "pp,dp,tp") == PT_ERR_ARG, "tp 0");
    if (np > 1) {
        CHECK(pt_grid_check(np, np + 1, 1, "pp,dp,tp") == PT_ERR_ARG, "tp not dividing");
        if (np % 2) CHECK(pt_grid_check(np, 2, 1, "pp,dp,tp") == PT_ERR_ARG, "tp 2 at odd np");
    }
    char norm[32];
    int ord[PT_NAXES];
    REQUIRE_OK(pt_grid_parse_order("tp,dp,pp", ord, norm, sizeof norm));
    CHECK(!strcmp(norm, "tp,dp,pp"), "normalized '%s'", norm);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) printf("np %d: %d grids\n", np, grids);
    int code = test_exit_code("t_grid"), worst = code;
    MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return worst;
}
