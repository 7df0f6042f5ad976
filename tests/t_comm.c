/* Every allreduce algorithm against MPI_Allreduce: all types and operations, element counts
 * {0, 1, p-1, p, p+1, p'-1 (below the largest power of two), 1009}, plus 1000003 (prime) and
 * 4194311 for some type/operation pairs, in place and out of place, blocking and nonblocking
 * (two collectives in flight, progressed between pieces of computation); plus pt_agree.
 * Run under mpirun at process counts 1, 2, 3, 4, 5, 7, 8 (tests/test_comm.sh).
 *
 * Inputs are small integers (|x| <= 15), so every partial sum is exact in every type, fp16 and
 * bf16 included, whatever the summation order: results must match the reference exactly.
 *
 * With PT_FAKE_NODE_SIZE=k the ranks form "nodes" of k, so the hierarchical algorithm's
 * cross-node part runs too (and must refuse nodes of different sizes).
 *
 * `t_comm --watchdog` instead checks PT_COLL_TIMEOUT: the last rank never joins, and the others
 * must report a timeout naming the peer they wait for. */
#include <mpi.h>
#include <string.h>
#include <unistd.h>

#include "paratrain/agree.h"
#include "paratrain/comm.h"
#include "testutil.h"

static int rank, size;

static int value(int64_t i, int r) { return (int)((i * 7 + r * 13) % 31) - 15; }

static float bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t float_to_bf16(float f) /* exact for the small integers used here */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}
static float f16_to_float(uint16_t h)
{
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}
static uint16_t float_to_f16(float f)
{
    _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
}

/* Element i of a typed buffer as a double, and back. */
static double get(const void *b, pt_dtype t, int64_t i)
{
    switch (t) {
    case PT_F32: return ((const float *)b)[i];
    case PT_F64: return ((const double *)b)[i];
    case PT_I32: return ((const int32_t *)b)[i];
    case PT_I64: return (double)((const int64_t *)b)[i];
    case PT_BF16: return bf16_to_float(((const uint16_t *)b)[i]);
    case PT_F16: return f16_to_float(((const uint16_t *)b)[i]);
    case PT_I128: return (double)((const __int128 *)b)[i];
    default: return 0;
    }
}
static void set(void *b, pt_dtype t, int64_t i, double v)
{
    switch (t) {
    case PT_F32: ((float *)b)[i] = (float)v; break;
    case PT_F64: ((double *)b)[i] = v; break;
    case PT_I32: ((int32_t *)b)[i] = (int32_t)v; break;
    case PT_I64: ((int64_t *)b)[i] = (int64_t)v; break;
    case PT_BF16: ((uint16_t *)b)[i] = float_to_bf16((float)v); break;
    case PT_F16: ((uint16_t *)b)[i] = float_to_f16((float)v); break;
    case PT_I128: ((__int128 *)b)[i] = (__int128)v; break;
    default: break;
    }
}

/* Reference: MPI_Allreduce in double of the same values. */
static double *reference(int64_t n, pt_reduce_op op)
{
    double *in = malloc(sizeof(double) * (size_t)(n + 1)), *out = malloc(sizeof(double) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) in[i] = value(i, rank);
    MPI_Op mo = op == PT_MAX ? MPI_MAX : op == PT_MIN ? MPI_MIN : MPI_SUM;
    MPI_Allreduce(in, out, (int)n, MPI_DOUBLE, mo, MPI_COMM_WORLD);
    if (op == PT_AVG)
        for (int64_t i = 0; i < n; i++) out[i] /= size;
    free(in);
    return out;
}

static int mismatches(const void *got, pt_dtype t, const double *want, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = get(got, t, i), w = want[i];
        if (t == PT_F32 || t == PT_BF16 || t == PT_F16) w = (double)(float)w; /* avg of /size */
        double tol = t == PT_BF16 ? 1e-2 * fabs(w) : t == PT_F16 ? 1e-3 * fabs(w) : 1e-6 * fabs(w);
        bad += fabs(g - w) > tol;
    }
    return bad;
}

/* 128-bit sums that overflow 64 bits, against a serial sum of every rank's values. */
static void run_i128_wide(pt_comm *c)
{
    const int64_t n = 2003;
    __int128 *x = malloc(sizeof(__int128) * n), *want = calloc(n, sizeof(__int128));
    for (int r = 0; r < size; r++)
        for (int64_t i = 0; i < n; i++) {
            /* multiply, not shift: a left shift of a negative value is undefined (UBSan) */
            __int128 v = (__int128)((i * 7 + r * 13) % 101 - 50) * ((__int128)1 << 90) +
                         (i * 31 + r) % 1000;
            if (r == rank) x[i] = v;
            want[i] += v;
        }
    pt_status st = pt_allreduce(c, PT_IN_PLACE, x, n, PT_I128, PT_SUM);
    CHECK(st == PT_OK && !memcmp(x, want, sizeof(__int128) * n), "np=%d %s i128 wide sums wrong",
          size, pt_allreduce_algo_name(c->algo));
    free(x), free(want);
}

static void run_case(pt_comm *c, pt_dtype t, pt_reduce_op op, int64_t n, int in_place)
{
    const size_t es = pt_dtype_size(t);
    char *send = malloc(es * (size_t)(n + 1)), *recv = malloc(es * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) set(send, t, i, value(i, rank));
    double *want = reference(n, op);
    pt_status st;
    if (c->algo == PT_ALLREDUCE_HIERARCHICAL && !c->uniform && n > 0 && size > 1) {
        st = pt_allreduce(c, send, recv, n, t, op);
        CHECK(st == PT_ERR_ARG, "hierarchical accepted nodes of different sizes");
        free(send), free(recv), free(want);
        return;
    }
    if (in_place) {
        memcpy(recv, send, es * (size_t)n);
        st = pt_allreduce(c, PT_IN_PLACE, recv, n, t, op);
    } else {
        st = pt_allreduce(c, send, recv, n, t, op);
    }
    CHECK(st == PT_OK, "np=%d %s %s op %d n=%lld: %s", size, pt_allreduce_algo_name(c->algo),
          pt_dtype_name(t), op, (long long)n, pt_error_message());
    int bad = st == PT_OK ? mismatches(recv, t, want, n) : 0;
    CHECK(bad == 0, "np=%d %s %s op %d n=%lld %s: %d elements wrong", size,
          pt_allreduce_algo_name(c->algo), pt_dtype_name(t), op, (long long)n,
          in_place ? "in place" : "out of place", bad);
    if (!in_place) { /* the send buffer is left alone */
        int changed = 0;
        for (int64_t i = 0; i < n; i++) changed += get(send, t, i) != value(i, rank);
        CHECK(changed == 0, "%s changed the send buffer", pt_allreduce_algo_name(c->algo));
    }
    free(send), free(recv), free(want);
}

/* Two nonblocking allreduces in flight at once, progressed between slices of computation. */
static void run_nonblocking(pt_comm *c)
{
    if (c->algo == PT_ALLREDUCE_HIERARCHICAL && !c->uniform) return;
    const int64_t n1 = 100003, n2 = 777;
    float *a = malloc(sizeof(float) * n1), *b = malloc(sizeof(float) * n2);
    for (int64_t i = 0; i < n1; i++) a[i] = (float)value(i, rank);
    for (int64_t i = 0; i < n2; i++) b[i] = (float)value(i + 5, rank);
    pt_coll_request *ra, *rb;
    REQUIRE_OK(pt_iallreduce(c, PT_IN_PLACE, a, n1, PT_F32, PT_SUM, &ra));
    REQUIRE_OK(pt_iallreduce(c, PT_IN_PLACE, b, n2, PT_F32, PT_MAX, &rb));
    int da = 0, db = 0, polls = 0;
    volatile double work = 0;
    while (!da || !db) {
        for (int k = 0; k < 20000; k++) work += k * 1e-9; /* stand-in for a backward layer */
        if (!da) REQUIRE_OK(pt_coll_test(&ra, &da));
        if (!db) REQUIRE_OK(pt_coll_test(&rb, &db));
        polls++;
    }
    CHECK(ra == NULL && rb == NULL, "completed requests not released");
    double *wa = reference(n1, PT_SUM), *wb = malloc(sizeof(double) * n2);
    {
        double *in = malloc(sizeof(double) * n2);
        for (int64_t i = 0; i < n2; i++) in[i] = value(i + 5, rank);
        MPI_Allreduce(in, wb, (int)n2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        free(in);
    }
    CHECK(mismatches(a, PT_F32, wa, n1) == 0, "nonblocking %s sum wrong", pt_allreduce_algo_name(c->algo));
    CHECK(mismatches(b, PT_F32, wb, n2) == 0, "nonblocking %s max wrong", pt_allreduce_algo_name(c->algo));
    free(a), free(b), free(wa), free(wb);
}

/* The hierarchical algorithm's zero-copy path: in place on a buffer from pt_comm_buffer_alloc,
 * at several offsets and counts; and a buffer outside it (the copying path) in the same run. */
static void run_zero_copy(void)
{
    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    c.algo = PT_ALLREDUCE_HIERARCHICAL;
    if (!c.uniform) {
        pt_comm_free(&c);
        return;
    }
    const int64_t cap = 300000;
    float *shm;
    REQUIRE_OK(pt_comm_buffer_alloc(&c, sizeof(float) * cap, (void **)&shm));
    const int64_t cases[][2] = {{0, 1}, {0, 5}, {3, size + 1}, {17, 1009}, {1000, 250001}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int64_t off = cases[k][0], n = cases[k][1];
        for (int64_t i = 0; i < n; i++) shm[off + i] = (float)value(i, rank);
        double *want = reference(n, PT_SUM);
        pt_status st = pt_allreduce(&c, PT_IN_PLACE, shm + off, n, PT_F32, PT_SUM);
        CHECK(st == PT_OK, "zero-copy n=%lld: %s", (long long)n, pt_error_message());
        CHECK(mismatches(shm + off, PT_F32, want, n) == 0, "zero-copy n=%lld off=%lld wrong",
              (long long)n, (long long)off);
        free(want);
    }
    pt_comm_free(&c);
}

static int watchdog(void)
{
    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    REQUIRE_OK(pt_allreduce_algo_parse(getenv("ALGO") ? getenv("ALGO") : "ring", &c.algo));
    if (rank == size - 1) { /* never joins: sleeps until the others abort the job */
        sleep(60);
        return 0;
    }
    float x[64] = {0};
    double t0 = MPI_Wtime();
    pt_status st = pt_allreduce(&c, PT_IN_PLACE, x, 64, PT_F32, PT_SUM);
    printf("rank %d: status %d after %.1f s: %s\n", rank, st, MPI_Wtime() - t0, pt_error_message());
    fflush(stdout);
    /* Let the other waiting ranks reach their own limit before the abort kills them: the rank
     * that waits on the missing one directly may time out after one that waits on it only
     * indirectly (on a loaded machine, by a second), and the test wants its message. */
    sleep(5);
    MPI_Abort(MPI_COMM_WORLD, st == PT_ERR_MPI ? 3 : 1);
    return 1;
}

/* T_COMM_PROGRESS=1: rank 0 says on stderr how long each part took (tells a slow run from a hung
 * one, e.g. the 64-byte segmented ring at np 3 under MPICH on 2 cores: docs/TESTING.md). */
static void progress(const pt_comm *c, const char *what)
{
    static double t0 = -1.0;
    if (rank != 0 || !getenv("T_COMM_PROGRESS")) return;
    const double t = MPI_Wtime();
    if (t0 < 0) t0 = t;
    fprintf(stderr, "t_comm: %s: %s done at %.1f s\n", pt_allreduce_algo_name(c->algo), what, t - t0);
    fflush(stderr);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 1 && !strcmp(argv[1], "--watchdog")) return watchdog();

    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    int pof2 = 1;
    while (2 * pof2 <= size) pof2 *= 2;
    const int64_t counts[] = {0, 1, size - 1, size, size + 1, pof2 - 1, 1009};
    const pt_dtype types[] = {PT_F32, PT_F64, PT_I32, PT_I64, PT_F16, PT_BF16, PT_I128};
    const pt_reduce_op ops[] = {PT_SUM, PT_MAX, PT_MIN, PT_AVG};
    progress(&c, "start");
    for (int a = 0; a < PT_ALLREDUCE_NALGOS; a++) {
        c.algo = (pt_allreduce_algo)a;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            const pt_dtype t = types[ti];
            const int p2p_only = t == PT_F16 || t == PT_BF16 || t == PT_I128;
            if (p2p_only && c.algo == PT_ALLREDUCE_MPI) {
                char x[64] = {0};
                CHECK(pt_allreduce(&c, PT_IN_PLACE, x, 4, t, PT_SUM) == PT_ERR_ARG,
                      "MPI_Allreduce accepted %s", pt_dtype_name(t));
                continue;
            }
            for (size_t oi = 0; oi < 4; oi++) {
                if (ops[oi] == PT_AVG && t != PT_F32 && t != PT_F64) {
                    char x[16];
                    CHECK(pt_allreduce(&c, x, x, 1, t, PT_AVG) == PT_ERR_ARG,
                          "average of %s accepted", pt_dtype_name(t));
                    continue;
                }
                for (size_t ni = 0; ni < sizeof counts / sizeof *counts; ni++)
                    for (int ip = 0; ip < 2; ip++) run_case(&c, t, ops[oi], counts[ni], ip);
            }
        }
        progress(&c, "small cases");
        run_case(&c, PT_F32, PT_SUM, (1 << 22) + 7, 1); /* ~4M elements, odd */
        progress(&c, "f32 sum n=4194311");
        run_case(&c, PT_F32, PT_SUM, 1000003, 0);       /* a large prime */
        run_case(&c, PT_I64, PT_MAX, 1000003, 1);
        progress(&c, "n=1000003 f32 and i64");
        run_nonblocking(&c);
        if (c.algo != PT_ALLREDUCE_MPI && (c.algo != PT_ALLREDUCE_HIERARCHICAL || c.uniform))
            run_i128_wide(&c);
    }
    run_zero_copy();
    pt_allreduce_algo dummy;
    CHECK(pt_allreduce_algo_parse("bogus", &dummy) == PT_ERR_ARG, "unknown algorithm accepted");

    /* pt_agree: the lowest failing rank's status reaches everyone; only it keeps its message. */
    int who = -2;
    CHECK(pt_agree(MPI_COMM_WORLD, PT_OK, &who) == PT_OK && who == -1, "agree on success");
    int failer = size - 1;
    pt_status mine = rank == failer ? PT_ERR(PT_ERR_DATA, NULL, "rank %d failed", rank) : PT_OK;
    pt_status all = pt_agree(MPI_COMM_WORLD, mine, &who);
    CHECK(all == PT_ERR_DATA && who == failer, "agree: status %d from rank %d", all, who);
    CHECK((pt_error_remote_rank() < 0) == (rank == failer), "rank %d: remote mark %d", rank,
          pt_error_remote_rank());
    all = pt_agree(MPI_COMM_WORLD, all, &who); /* agreeing again keeps the same single reporter */
    CHECK(all == PT_ERR_DATA && who == failer, "second agree: status %d from rank %d", all, who);

    pt_comm_free(&c);
    int local_fail = test_failures, total_fail;
    MPI_Allreduce(&local_fail, &total_fail, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("np=%d: ", size);
    int code = rank == 0 ? test_exit_code("t_comm") : 0;
    MPI_Finalize();
    return total_fail ? 1 : code;
}
