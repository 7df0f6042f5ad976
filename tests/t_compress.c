/* Compressed collectives (include/paratrain/compress.h) against straightforward serial
 * references that every rank computes for itself from every rank's input (each input is a pure
 * function of its rank, so no communication is needed to know it):
 *   top-k selection   a qsort by (|x| descending, index ascending)
 *   sparse allreduce  dense sums; allgather bitwise (rank order); sparcml and gtopk with k = n
 *                     bitwise equal to the dense recursive-doubling allreduce; gtopk bitwise
 *                     against a dense simulation of its rounds; k = 0 sends 0 bytes; every
 *                     rank holds the same bits; byte counts as the algorithm says
 *   sign              pack/unpack round trip; scaled and majority allreduce bitwise
 *   fp16 / bf16       bitwise against round-sum-round in fp32, and near MPI_Allreduce
 * Run at np 1, 2, 3, 4, 5 and 8 by tests/test_compress.sh. */
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#include "paratrain/compress.h"
#include "paratrain/rng.h"
#include "testutil.h"

static int rank, size;

/* A value from a small set (many ties) or a wide range, a pure function of (seed, i). */
static float gen(uint64_t seed, int64_t i, int ties)
{
    uint32_t u = (uint32_t)((seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull) >> 29);
    u ^= u >> 13, u *= 0x5bd1e995u, u ^= u >> 15;
    if (ties) return (float)((int)(u % 9) - 4) * 0.25f;
    return ((float)(u % 2000001) - 1000000.0f) * 1e-6f * (1.0f + (float)(u % 7));
}

/* --- top-k ------------------------------------------------------------------------------- */

static const float *ref_x;
static int by_mag(const void *a, const void *b)
{
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    const float x = fabsf(ref_x[i]), y = fabsf(ref_x[j]);
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : 1;
}
static int by_index(const void *a, const void *b)
{
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return i < j ? -1 : i > j;
}

/* the reference top-k indices of x, sorted by index */
static void ref_topk(const float *x, int64_t n, int64_t k, int64_t *out)
{
    int64_t *o = malloc(sizeof *o * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) o[i] = i;
    ref_x = x;
    qsort(o, (size_t)n, sizeof *o, by_mag);
    if (k > n) k = n;
    memcpy(out, o, sizeof *o * (size_t)k);
    qsort(out, (size_t)k, sizeof *out, by_index);
    free(o);
}

static void test_topk(void)
{
    const int64_t ns[] = {0, 1, 33, 1000, 200003};
    for (int a = 0; a < 5; a++)
        for (int ties = 0; ties < 2; ties++) {
            const int64_t n = ns[a];
            float *x = malloc(sizeof(float) * (size_t)(n + 1));
            for (int64_t i = 0; i < n; i++) x[i] = gen(7 + (uint64_t)ties, i, ties);
            if (n > 3) x[2] = -0.0f, x[3] = 0.0f;
            const int64_t ks[] = {0, 1, n / 100, n / 3, n - 1, n};
            for (int b = 0; b < 6; b++) {
                const int64_t k = ks[b] < 0 ? 0 : ks[b] > n ? n : ks[b];
                uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)(k + 1));
                float *val = malloc(sizeof(float) * (size_t)(k + 1));
                int64_t *want = malloc(sizeof(int64_t) * (size_t)(k + 1));
                REQUIRE_OK(pt_topk_select(x, n, k, idx, val));
                ref_topk(x, n, k, want);
                int bad = 0;
                for (int64_t e = 0; e < k; e++)
                    bad += idx[e] != (uint32_t)want[e] || memcmp(&val[e], &x[want[e]], 4) != 0;
                CHECK(!bad, "top-k n %lld k %lld ties %d: %d entries differ from the sorted reference",
                      (long long)n, (long long)k, ties, bad);
                free(idx), free(val), free(want);
            }
            free(x);
        }
}

/* --- sparse allreduce --------------------------------------------------------------------- */

/* rank q's sparse input: the top-k (k = density * n) of a dense pseudo-random vector */
static int64_t sparse_input(int q, int64_t n, double density, int ties, uint32_t *idx, float *val)
{
    float *x = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) x[i] = gen(100 + (uint64_t)q, i, ties);
    int64_t k = (int64_t)(density * (double)n + 0.5);
    if (k > n) k = n;
    pt_topk_select(x, n, k, idx, val);
    free(x);
    return k;
}

static int same_on_all_ranks(const float *v, int64_t n)
{
    uint64_t h = 1469598103934665603ull;
    const unsigned char *b = (const unsigned char *)v;
    for (int64_t i = 0; i < 4 * n; i++) h = (h ^ b[i]) * 1099511628211ull;
    uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

/* gTop-k simulated on dense vectors with presence masks: the same fold and rounds. */
static void keep_topk_dense(float *v, char *m, int64_t n, int64_t k)
{
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++) cnt += m[i];
    if (cnt <= k) return;
    int64_t *o = malloc(sizeof *o * (size_t)cnt), j = 0;
    for (int64_t i = 0; i < n; i++)
        if (m[i]) o[j++] = i;
    ref_x = v;
    qsort(o, (size_t)cnt, sizeof *o, by_mag);
    for (int64_t e = k; e < cnt; e++) m[o[e]] = 0, v[o[e]] = 0.0f;
    free(o);
}
static void merge_dense(float *a, char *ma, const float *b, const char *mb, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (mb[i]) a[i] = ma[i] ? a[i] + b[i] : b[i], ma[i] = 1;
}
static void ref_gtopk(int64_t n, int64_t k, double density, int ties, float *out, char *mask)
{
    float **v = malloc(sizeof *v * (size_t)size);
    char **m = malloc(sizeof *m * (size_t)size);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)(n + 1));
    float *val = malloc(sizeof(float) * (size_t)(n + 1));
    for (int q = 0; q < size; q++) {
        v[q] = calloc((size_t)n + 1, sizeof(float)), m[q] = calloc((size_t)n + 1, 1);
        int64_t nz = sparse_input(q, n, density, ties, idx, val);
        for (int64_t e = 0; e < nz; e++) v[q][idx[e]] = val[e], m[q][idx[e]] = 1;
        keep_topk_dense(v[q], m[q], n, k);
    }
    int pof2 = 1;
    while (2 * pof2 <= size) pof2 *= 2;
    const int rem = size - pof2;
    int real[64];
    for (int q = 0; q < rem; q++) { /* fold: odd 2q+1 takes even 2q */
        merge_dense(v[2 * q + 1], m[2 * q + 1], v[2 * q], m[2 * q], n);
        keep_topk_dense(v[2 * q + 1], m[2 * q + 1], n, k);
    }
    for (int nr = 0; nr < pof2; nr++) real[nr] = nr < rem ? 2 * nr + 1 : nr + rem;
    float *t = malloc(sizeof(float) * (size_t)(n + 1));
    char *tm = malloc((size_t)n + 1);
    for (int mask = 1; mask < pof2; mask <<= 1)
        for (int nr = 0; nr < pof2; nr++) {
            const int pn = nr ^ mask;
            if (pn < nr) continue;
            const int a = real[nr], b = real[pn];
            memcpy(t, v[a], sizeof(float) * (size_t)n), memcpy(tm, m[a], (size_t)n);
            merge_dense(t, tm, v[b], m[b], n);
            keep_topk_dense(t, tm, n, k);
            memcpy(v[a], t, sizeof(float) * (size_t)n), memcpy(m[a], tm, (size_t)n);
            memcpy(v[b], t, sizeof(float) * (size_t)n), memcpy(m[b], tm, (size_t)n);
        }
    memcpy(out, v[real[0]], sizeof(float) * (size_t)n), memcpy(mask, m[real[0]], (size_t)n);
    for (int q = 0; q < size; q++) free(v[q]), free(m[q]);
    free(v), free(m), free(idx), free(val), free(t), free(tm);
}

static void test_sparse(pt_comm *c, pt_sparse_algo algo, int64_t n, double density, int ties)
{
    const char *name = pt_sparse_algo_name(algo);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)(n + 1)), *oidx = malloc(sizeof(uint32_t) * (size_t)(n + 1));
    float *val = malloc(sizeof(float) * (size_t)(n + 1));
    float *got = malloc(sizeof(float) * (size_t)(n + 1)), *want = calloc((size_t)n + 1, sizeof(float));
    int64_t nnz_all = 0, nnz_right = 0, mine = 0;
    for (int q = 0; q < size; q++) { /* every rank's input, summed in rank order */
        const int64_t nz = sparse_input(q, n, density, ties, idx, val);
        for (int64_t e = 0; e < nz; e++) want[idx[e]] += val[e];
        nnz_all += nz;
        if (q == (rank + 1) % size) nnz_right = nz;
    }
    mine = sparse_input(rank, n, density, ties, idx, val);
    const int64_t k = mine;
    const uint64_t sent0 = c->bytes_sent;
    int64_t onnz = -2;
    pt_status st = pt_sparse_allreduce(c, algo, idx, val, mine, n, k, 0, got, oidx, &onnz);
    const uint64_t sent = c->bytes_sent - sent0;
    CHECK(st == PT_OK, "%s n %lld density %g np %d: %s", name, (long long)n, density, size,
          st ? pt_error_message() : "");
    CHECK(same_on_all_ranks(got, n), "%s n %lld density %g np %d: ranks hold different results",
          name, (long long)n, density, size);
    if (algo == PT_SPARSE_GTOPK) {
        float *rv = malloc(sizeof(float) * (size_t)(n + 1));
        char *rm = malloc((size_t)n + 1);
        ref_gtopk(n, k, density, ties, rv, rm);
        int64_t cnt = 0, badidx = 0;
        for (int64_t i = 0; i < n; i++) cnt += rm[i];
        for (int64_t e = 0; e < onnz && e < n; e++) badidx += !rm[oidx[e]];
        CHECK(!memcmp(got, rv, sizeof(float) * (size_t)n) && onnz == cnt && !badidx,
              "gtopk n %lld density %g ties %d np %d: differs from the dense simulation (%lld vs %lld "
              "entries)", (long long)n, density, ties, size, (long long)onnz, (long long)cnt);
        int pof2 = 1, rounds = 0;
        while (2 * pof2 <= size) pof2 *= 2, rounds++;
        CHECK(sent <= (uint64_t)(8 * k * (rounds + 1)), "gtopk np %d: sent %llu bytes, more than "
              "8k per round", size, (unsigned long long)sent);
        free(rv), free(rm);
    } else {
        double err = max_rel_err(got, want, (long)n, 1e-30);
        CHECK(err < 1e-5, "%s n %lld density %g ties %d np %d: error %g against the dense sum", name,
              (long long)n, density, ties, size, err);
        if (algo == PT_SPARSE_ALLGATHER) {
            CHECK(!memcmp(got, want, sizeof(float) * (size_t)n), "allgather n %lld: not the rank-order sum bit for bit",
                  (long long)n);
            CHECK(sent == (uint64_t)(8 * (nnz_all - (size > 1 ? nnz_right : nnz_all))),
                  "allgather np %d: sent %llu bytes, expected 8 x %lld pairs", size,
                  (unsigned long long)sent, (long long)(nnz_all - nnz_right));
        }
    }
    if (density >= 1.0) { /* k = n: exactly the dense allreduce */
        float *x = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) x[i] = gen(100 + (uint64_t)rank, i, ties);
        pt_allreduce_algo save = c->algo;
        c->algo = PT_ALLREDUCE_RECURSIVE_DOUBLING;
        REQUIRE_OK(pt_allreduce(c, PT_IN_PLACE, x, n, PT_F32, PT_SUM));
        c->algo = save;
        const float *dense_ref = algo == PT_SPARSE_ALLGATHER ? want : x;
        CHECK(!memcmp(got, dense_ref, sizeof(float) * (size_t)n),
              "%s with k = n, n %lld np %d: not bitwise the dense %s result", name, (long long)n, size,
              algo == PT_SPARSE_ALLGATHER ? "rank-order" : "recursive-doubling");
        free(x);
    }
    if (density == 0.0) {
        int nz = 0;
        for (int64_t i = 0; i < n; i++) nz += got[i] != 0.0f;
        CHECK(!nz && sent == 0, "%s with k = 0, np %d: %d nonzeros, %llu bytes sent", name, size, nz,
              (unsigned long long)sent);
    }
    free(idx), free(oidx), free(val), free(got), free(want);
}

/* --- sign ----------------------------------------------------------------------------------- */

static void test_sign(pt_comm *c, int64_t n)
{
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *u = malloc(sizeof(float) * (size_t)(n + 1));
    uint32_t *bits = malloc(sizeof(uint32_t) * (size_t)(pt_sign_words(n) + 1));
    for (int64_t i = 0; i < n; i++) x[i] = gen(300 + (uint64_t)rank, i, 1);
    pt_sign_pack(x, n, bits);
    pt_sign_unpack(bits, n, 0.5f, u);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += u[i] != (signbit(x[i]) ? -0.5f : 0.5f);
    if (n % 32) bad += (bits[n / 32] >> (n % 32)) != 0;
    CHECK(!bad, "sign pack/unpack n %lld: %d elements wrong", (long long)n, bad);
    /* segments: thirds */
    int64_t seg[4] = {0, n / 3, 2 * n / 3, n};
    float sc[3];
    for (int s = 0; s < 3; s++) sc[s] = 0.125f * (float)(rank + 1) + (float)s;
    for (int majority = 0; majority < 2; majority++) {
        float *got = malloc(sizeof(float) * (size_t)(n + 1)), *want = calloc((size_t)n + 1, sizeof(float));
        int *votes = calloc((size_t)n + 1, sizeof(int));
        for (int q = 0; q < size; q++)
            for (int s = 0; s < 3; s++)
                for (int64_t i = seg[s]; i < seg[s + 1]; i++) {
                    const float xs = gen(300 + (uint64_t)q, i, 1), scale = 0.125f * (float)(q + 1) + (float)s;
                    want[i] += signbit(xs) ? -scale : scale;
                    votes[i] += signbit(xs) ? -1 : 1;
                }
        if (majority)
            for (int64_t i = 0; i < n; i++) want[i] = votes[i] > 0 ? 1.0f : votes[i] < 0 ? -1.0f : 0.0f;
        const uint64_t sent0 = c->bytes_sent;
        pt_status st = pt_sign_allreduce(c, bits, sc, n, seg, 3, majority, got);
        const uint64_t sent = c->bytes_sent - sent0;
        CHECK(st == PT_OK && !memcmp(got, want, sizeof(float) * (size_t)n),
              "sign allreduce (%s) n %lld np %d: differs from the serial sum", majority ? "majority" : "scaled",
              (long long)n, size);
        const uint64_t per = 4 * (uint64_t)(pt_sign_words(n) + (majority ? 0 : 3));
        CHECK(sent == per * (uint64_t)(size - 1), "sign allreduce np %d: sent %llu bytes, expected %llu",
              size, (unsigned long long)sent, (unsigned long long)(per * (uint64_t)(size - 1)));
        free(got), free(want), free(votes);
    }
    free(x), free(u), free(bits);
}

/* --- fp16 / bf16 ---------------------------------------------------------------------------- */

static float round_bf16(float f) /* the test's own round-to-nearest-even */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}
static float round_wire(float f, pt_dtype w) { return w == PT_F16 ? (float)(_Float16)f : round_bf16(f); }

static void test_lowp(pt_comm *c, int64_t n, pt_dtype w)
{
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *want = malloc(sizeof(float) * (size_t)(n + 1));
    float *exact = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int q = 0; q < size; q++) acc += round_wire(gen(500 + (uint64_t)q, i, 0), w);
        want[i] = round_wire(acc, w);
        x[i] = exact[i] = gen(500 + (uint64_t)rank, i, 0);
    }
    MPI_Allreduce(MPI_IN_PLACE, exact, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const uint64_t sent0 = c->bytes_sent;
    pt_status st = pt_allreduce_lowp(c, x, n, w);
    const uint64_t sent = c->bytes_sent - sent0;
    CHECK(st == PT_OK && !memcmp(x, want, sizeof(float) * (size_t)n), "%s allreduce n %lld np %d: not round-sum-round",
          pt_dtype_name(w), (long long)n, size);
    double err = max_rel_err(x, exact, (long)n, 1e-30);
    CHECK(err < (w == PT_F16 ? 2e-3 : 1.6e-2), "%s allreduce n %lld np %d: error %g against fp32 MPI_Allreduce",
          pt_dtype_name(w), (long long)n, size, err);
    /* all-to-all: my copy of every other rank's block; ring allgather: every block but the right
     * neighbour's (2 bytes each) */
    const int64_t mylen = n / size + (rank < n % size), right = (rank + 1) % size;
    const int64_t rlen = n / size + (right < n % size);
    const uint64_t expect = size == 1 ? 0 : 2 * (uint64_t)((n - mylen) + (n - rlen));
    CHECK(sent == expect, "%s allreduce np %d: sent %llu bytes, expected %llu", pt_dtype_name(w), size,
          (unsigned long long)sent, (unsigned long long)expect);
    free(x), free(want), free(exact);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    pt_comm c;
    REQUIRE_OK(pt_comm_init(&c, MPI_COMM_WORLD));
    if (rank == 0) test_topk();
    const int64_t ns[] = {0, 1, 5, 1009, 100003};
    const double dens[] = {0.0, 0.001, 0.01, 0.2, 0.6, 1.0};
    for (int a = 0; a < PT_SPARSE_NALGOS; a++)
        for (int i = 0; i < 5; i++)
            for (int d = 0; d < 6; d++)
                for (int ties = 0; ties < 2; ties++) test_sparse(&c, (pt_sparse_algo)a, ns[i], dens[d], ties);
    for (int i = 0; i < 5; i++) {
        test_sign(&c, ns[i]);
        test_lowp(&c, ns[i], PT_F16);
        test_lowp(&c, ns[i], PT_BF16);
    }
    pt_comm_free(&c);
    int fails = test_failures;
    MPI_Allreduce(MPI_IN_PLACE, &fails, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int rc = rank == 0 ? test_exit_code("t_compress") : (fails ? 1 : 0);
    if (fails) rc = 1;
    MPI_Finalize();
    return rc;
}
