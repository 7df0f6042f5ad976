/* Reduce-scatter, allgather, broadcast and all-to-all(v) against MPI_Reduce_scatter,
 * MPI_Allgatherv, MPI_Bcast and MPI_Alltoallv: uneven per-rank counts (zeros included), every
 * root, several types, blocking and nonblocking (two in flight). Integer-valued data: exact.
 * Run at np 1..8 by tests/test_comm.sh. */
#include <mpi.h>
#include <string.h>

#include "paratrain/comm.h"
#include "testutil.h"

static int rank, size;

static int64_t cnt(int r, int salt) { return (r * 7 + salt * 3) % 5 == 0 ? 0 : (r * 13 + salt) % 37 + 1; }
static double val(int64_t i, int r) { return (double)((i * 5 + r * 11) % 19) - 9.0; }

static MPI_Datatype mpitype(pt_dtype t)
{
    return t == PT_F32 ? MPI_FLOAT : t == PT_F64 ? MPI_DOUBLE : t == PT_I32 ? MPI_INT32_T : MPI_INT64_T;
}
static void put(void *b, pt_dtype t, int64_t i, double v)
{
    if (t == PT_F32) ((float *)b)[i] = (float)v;
    else if (t == PT_F64) ((double *)b)[i] = v;
    else if (t == PT_I32) ((int32_t *)b)[i] = (int32_t)v;
    else ((int64_t *)b)[i] = (int64_t)v;
}

static void test_reduce_scatter_allgather(pt_comm *c, pt_dtype t, int salt)
{
    const size_t es = pt_dtype_size(t);
    int64_t counts[size], total = 0;
    int icounts[size], displs[size];
    for (int r = 0; r < size; r++) counts[r] = cnt(r, salt), icounts[r] = (int)counts[r], displs[r] = (int)total, total += counts[r];
    char *send = malloc(es * (size_t)(total + 1)), *got = malloc(es * (size_t)(total + 1)), *want = malloc(es * (size_t)(total + 1));
    for (int64_t i = 0; i < total; i++) put(send, t, i, val(i, rank));
    MPI_Reduce_scatter(send, want, icounts, mpitype(t), MPI_SUM, MPI_COMM_WORLD);
    pt_status st = pt_reduce_scatter(c, send, got, counts, t, PT_SUM);
    CHECK(st == PT_OK && !memcmp(got, want, es * (size_t)counts[rank]),
          "reduce_scatter %s salt %d np %d: %s", pt_dtype_name(t), salt, size, st ? pt_error_message() : "wrong values");
    /* allgather of each rank's block */
    char *mine = malloc(es * (size_t)(counts[rank] + 1));
    for (int64_t i = 0; i < counts[rank]; i++) put(mine, t, i, val(i + 3, rank));
    MPI_Allgatherv(mine, icounts[rank], mpitype(t), want, icounts, displs, mpitype(t), MPI_COMM_WORLD);
    st = pt_allgather(c, mine, got, counts, t);
    CHECK(st == PT_OK && !memcmp(got, want, es * (size_t)total), "allgather %s salt %d np %d: %s",
          pt_dtype_name(t), salt, size, st ? pt_error_message() : "wrong values");
    free(send), free(got), free(want), free(mine);
}

static void test_bcast(pt_comm *c, pt_dtype t, int64_t n)
{
    const size_t es = pt_dtype_size(t);
    for (int root = 0; root < size; root++) {
        char *buf = malloc(es * (size_t)(n + 1)), *want = malloc(es * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) put(buf, t, i, val(i, rank)), put(want, t, i, val(i, root));
        pt_status st = pt_bcast(c, buf, n, t, root);
        CHECK(st == PT_OK && !memcmp(buf, want, es * (size_t)n), "bcast %s n %lld root %d np %d", pt_dtype_name(t),
              (long long)n, root, size);
        free(buf), free(want);
    }
}

static void test_alltoallv(pt_comm *c, pt_dtype t)
{
    const size_t es = pt_dtype_size(t);
    int64_t sc[size], sd[size], rc[size], rd[size], st_ = 0, rt = 0;
    int isc[size], isd[size], irc[size], ird[size];
    for (int r = 0; r < size; r++) { /* rank a sends (a + 2b) % 4 + (a == b) elements to b */
        sc[r] = (rank + 2 * r) % 4 + (rank == r), rc[r] = (r + 2 * rank) % 4 + (r == rank);
        sd[r] = st_ + r, rd[r] = rt + 2 * r; /* gaps between blocks */
        st_ += sc[r], rt += rc[r];
        isc[r] = (int)sc[r], isd[r] = (int)sd[r], irc[r] = (int)rc[r], ird[r] = (int)rd[r];
    }
    const int64_t sn = st_ + size, rn = rt + 2 * size;
    char *send = malloc(es * (size_t)sn), *got = calloc((size_t)rn, es), *want = calloc((size_t)rn, es);
    for (int64_t i = 0; i < sn; i++) put(send, t, i, val(i, rank));
    MPI_Alltoallv(send, isc, isd, mpitype(t), want, irc, ird, mpitype(t), MPI_COMM_WORLD);
    pt_status st = pt_alltoallv(c, send, sc, sd, got, rc, rd, t);
    CHECK(st == PT_OK && !memcmp(got, want, es * (size_t)rn), "alltoallv %s np %d: %s", pt_dtype_name(t), size,
          st ? pt_error_message() : "wrong values");
    free(send), free(got), free(want);
}

static void test_nonblocking(pt_comm *c)
{
    /* a reduce-scatter and a broadcast in flight together */
    int64_t counts[size], total = 0;
    int icounts[size];
    for (int r = 0; r < size; r++) counts[r] = 1000 + r, icounts[r] = (int)counts[r], total += counts[r];
    float *send = malloc(sizeof(float) * total), *got = malloc(sizeof(float) * total), *want = malloc(sizeof(float) * total);
    for (int64_t i = 0; i < total; i++) send[i] = (float)val(i, rank);
    double b[777];
    for (int i = 0; i < 777; i++) b[i] = rank == 0 ? val(i, 42) : -1;
    pt_coll_request *r1, *r2;
    REQUIRE_OK(pt_ireduce_scatter(c, send, got, counts, PT_F32, PT_AVG, &r1));
    REQUIRE_OK(pt_ibcast(c, b, 777, PT_F64, 0, &r2));
    int d1 = 0, d2 = 0;
    while (!d1 || !d2) {
        if (!d1) REQUIRE_OK(pt_coll_test(&r1, &d1));
        if (!d2) REQUIRE_OK(pt_coll_test(&r2, &d2));
    }
    MPI_Reduce_scatter(send, want, icounts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    int bad = 0;
    for (int64_t i = 0; i < counts[rank]; i++) bad += fabsf(got[i] - want[i] / (float)size) > 1e-6f * fabsf(want[i]);
    for (int i = 0; i < 777; i++) bad += b[i] != val(i, 42);
    CHECK(bad == 0, "nonblocking reduce_scatter(avg) + bcast: %d wrong", bad);
    free(send), free(got), free(want);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    const pt_dtype types[] = {PT_F32, PT_F64, PT_I32, PT_I64};
    for (int ti = 0; ti < 4; ti++) {
        for (int salt = 0; salt < 4; salt++) test_reduce_scatter_allgather(&c, types[ti], salt);
        test_bcast(&c, types[ti], 0);
        test_bcast(&c, types[ti], 1);
        test_bcast(&c, types[ti], 100003);
        test_alltoallv(&c, types[ti]);
    }
    test_nonblocking(&c);
    CHECK(pt_bcast(&c, NULL, 1, PT_F32, size) == PT_ERR_ARG, "bad root accepted");
    pt_comm_free(&c);
    int lf = test_failures, tf;
    MPI_Allreduce(&lf, &tf, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("np=%d: ", size);
    int code = rank == 0 ? test_exit_code("t_collectives") : 0;
    MPI_Finalize();
    return tf ? 1 : code;
}
