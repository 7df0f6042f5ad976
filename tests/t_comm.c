/* pt_allreduce against MPI_Allreduce for every algorithm, type and operation, counts
 * {0, 1, p-1, p, p+1, 1009, 1<<20}, in place and out of place; and pt_agree. Run under mpirun at
 * several process counts (tests/test_comm.sh). Integers must match exactly; floats within 1e-6
 * normalized error (the algorithms may sum in another order). */
#include <mpi.h>
#include <string.h>

#include "paratrain/agree.h"
#include "paratrain/comm.h"
#include "testutil.h"

static int rank, size;

static double value(int64_t i, int r) { return (double)((i * 7 + r * 13) % 101) - 50.0 + 0.25 * r; }

static void fill(void *buf, pt_dtype t, int64_t n, int r)
{
    for (int64_t i = 0; i < n; i++) switch (t) {
        case PT_F32: ((float *)buf)[i] = (float)value(i, r); break;
        case PT_F64: ((double *)buf)[i] = value(i, r); break;
        case PT_I32: ((int32_t *)buf)[i] = (int32_t)(value(i, r) * 4); break;
        case PT_I64: ((int64_t *)buf)[i] = (int64_t)(value(i, r) * 4) << 33; break;
        default: break;
        }
}

static void run_case(pt_comm *c, pt_dtype t, pt_reduce_op op, int64_t n, int in_place)
{
    const size_t es = pt_dtype_size(t);
    char *send = malloc(es * (size_t)(n + 1)), *got = malloc(es * (size_t)(n + 1)),
         *want = malloc(es * (size_t)(n + 1));
    fill(send, t, n, rank);
    MPI_Datatype mt = t == PT_F32 ? MPI_FLOAT : t == PT_F64 ? MPI_DOUBLE : t == PT_I32 ? MPI_INT32_T : MPI_INT64_T;
    MPI_Op mo = op == PT_MAX ? MPI_MAX : op == PT_MIN ? MPI_MIN : MPI_SUM;
    MPI_Allreduce(send, want, (int)n, mt, mo, MPI_COMM_WORLD);
    if (op == PT_AVG)
        for (int64_t i = 0; i < n; i++) {
            if (t == PT_F32) ((float *)want)[i] /= (float)size;
            else ((double *)want)[i] /= size;
        }
    pt_status st;
    if (in_place) {
        memcpy(got, send, es * (size_t)n);
        st = pt_allreduce(c, PT_IN_PLACE, got, n, t, op);
    } else {
        st = pt_allreduce(c, send, got, n, t, op);
    }
    CHECK(st == PT_OK, "%s %s n=%lld: %s", pt_allreduce_algo_name(c->algo), pt_dtype_name(t),
          (long long)n, pt_error_message());
    int bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (t == PT_I32) bad += ((int32_t *)got)[i] != ((int32_t *)want)[i];
        else if (t == PT_I64) bad += ((int64_t *)got)[i] != ((int64_t *)want)[i];
        else {
            double g = t == PT_F32 ? ((float *)got)[i] : ((double *)got)[i];
            double w = t == PT_F32 ? ((float *)want)[i] : ((double *)want)[i];
            double e = fabs(g - w) / (fabs(w) > 1 ? fabs(w) : 1);
            worst = e > worst ? e : worst;
        }
    }
    CHECK(bad == 0 && worst < 1e-6, "%s %s op %d n=%lld %s: %d wrong, worst %.3g",
          pt_allreduce_algo_name(c->algo), pt_dtype_name(t), op, (long long)n,
          in_place ? "in place" : "out of place", bad, worst);
    free(send), free(got), free(want);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    const char *algos[] = {"mpi", "auto"};
    const int64_t counts[] = {0, 1, size - 1, size, size + 1, 1009, 1 << 20};
    const pt_dtype types[] = {PT_F32, PT_F64, PT_I32, PT_I64};
    const pt_reduce_op ops[] = {PT_SUM, PT_MAX, PT_MIN, PT_AVG};
    for (size_t a = 0; a < 2; a++) {
        REQUIRE_OK(pt_allreduce_algo_parse(algos[a], &c.algo));
        for (size_t ti = 0; ti < 4; ti++)
            for (size_t oi = 0; oi < 4; oi++) {
                if (ops[oi] == PT_AVG && (types[ti] == PT_I32 || types[ti] == PT_I64)) {
                    char x[8];
                    CHECK(pt_allreduce(&c, x, x, 1, types[ti], PT_AVG) == PT_ERR_ARG,
                          "integer average accepted");
                    continue;
                }
                for (size_t ni = 0; ni < sizeof counts / sizeof *counts; ni++)
                    for (int ip = 0; ip < 2; ip++) run_case(&c, types[ti], ops[oi], counts[ni], ip);
            }
    }
    CHECK(pt_allreduce_algo_parse("bogus", &c.algo) == PT_ERR_ARG, "unknown algorithm accepted");

    /* pt_agree: the lowest failing rank's status reaches everyone; only it keeps its message. */
    int who = -2;
    CHECK(pt_agree(MPI_COMM_WORLD, PT_OK, &who) == PT_OK && who == -1, "agree on success");
    int failer = size - 1;
    pt_status mine = rank == failer ? PT_ERR(PT_ERR_DATA, NULL, "rank %d failed", rank) : PT_OK;
    pt_status all = pt_agree(MPI_COMM_WORLD, mine, &who);
    CHECK(all == PT_ERR_DATA && who == failer, "agree: status %d from rank %d", all, who);
    CHECK((pt_error_remote_rank() < 0) == (rank == failer), "rank %d: remote mark %d", rank,
          pt_error_remote_rank());
    /* Agreeing again on the already-agreed error keeps the same single reporter. */
    all = pt_agree(MPI_COMM_WORLD, all, &who);
    CHECK(all == PT_ERR_DATA && who == failer, "second agree: status %d from rank %d", all, who);

    int local_fail = test_failures, total_fail;
    MPI_Allreduce(&local_fail, &total_fail, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("np=%d: ", size);
    int code = rank == 0 ? test_exit_code("t_comm") : 0;
    MPI_Finalize();
    return total_fail ? 1 : code;
}
