/* pt-sim-allreduce: paratrain's collectives under SimGrid SMPI (or any MPI), built by sim/build.sh
 * from src/comm alone.
 *
 *   smpirun -np P -platform PLAT -hostfile HOSTS pt-sim-allreduce --check [--algos LIST] [--counts LIST]
 *       every algorithm of LIST on every count of LIST, each rank's result compared element by
 *       element with the serial sum of all ranks' inputs (computed locally: small integers, so
 *       every summation order gives the same float). Prints "ok ALGO n=N" or "FAIL ..." and
 *       exits 1 on any mismatch.
 *   smpirun ... pt-sim-allreduce --bench [--algos LIST] [--sizes LIST] [--iters N] [--shared]
 *       simulated time (MPI_Wtime) of each algorithm at each size in bytes (fp32): one warm-up,
 *       then N timed calls between barriers; the slowest rank's mean. CSV lines on rank 0:
 *       "p,algo,bytes,time_s". --shared puts the buffers in SMPI_SHARED_MALLOC memory (contents
 *       garbage, timing faithful) so thousands of ranks fit. --warmup 0 leaves out the warm-up
 *       call (simulated time does not warm up).
 *
 * Algorithms: ring ring_pipelined recursive_doubling rabenseifner binomial hierarchical mpi
 *             sparse_allgather sparcml gtopk sign fp16
 * (ring_pipelined = ring with PT_RING_PIPELINE_MIN=0 and PT_RING_SEGMENT=SEG bytes (--segment,
 * default 256 KiB), so the pipelined schedule runs at sizes the default threshold would not
 * pipeline; sparse/gtopk send --density of the elements (default 0.001), at least 1.)
 * mpi is the MPI library's own MPI_Allreduce (under SMPI, SimGrid's; its ompi selector dies for
 * counts below p and in place it is wrong for large counts: machine-notes.md). */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/comm.h"
#include "paratrain/compress.h"

#ifndef SMPI_SHARED_MALLOC
#define SMPI_SHARED_MALLOC(n) malloc(n)
#define SMPI_SHARED_FREE(p) free(p)
#endif

static int rank, size;
static double density = 0.001;
static long long segment = 256 * 1024;
static int warmup = 1;

/* rank r's element i: a small integer, so any order of summation gives the exact sum */
static float input(int r, int64_t i) { return (float)((r * 7 + i * 13) % 17) - 8.0f; }

/* rank r's sparse entries: every stride-th index from an offset that depends on r */
static int64_t sparse_make(int r, int64_t n, int64_t k, uint32_t *idx, float *val)
{
    if (n == 0) return 0;
    if (k > n) k = n;
    if (k < 1) k = 1;
    const int64_t stride = n / k;
    const int64_t off = (int64_t)(r * 31) % stride;
    for (int64_t j = 0; j < k; j++) {
        idx[j] = (uint32_t)(off + j * stride);
        val[j] = input(r, idx[j]) + (input(r, idx[j]) == 0 ? 1.0f : 0.0f);
    }
    return k;
}

static int64_t nnz_for(int64_t n)
{
    int64_t k = (int64_t)(density * (double)n);
    return k < 1 ? 1 : k > n ? n : k;
}

/* One call of ALGO on x[n] (in place; idx/val/bits scratch for the compressed ones). */
static pt_status run_algo(pt_comm *c, const char *algo, float *x, int64_t n, uint32_t *idx,
                          float *val, uint32_t *bits, float *out)
{
    pt_allreduce_algo a;
    pt_sparse_algo sa;
    if (!strcmp(algo, "ring_pipelined")) {
        char seg[32];
        snprintf(seg, sizeof seg, "%lld", segment);
        setenv("PT_RING_SEGMENT", seg, 1);
        setenv("PT_RING_PIPELINE_MIN", "0", 1);
        c->algo = PT_ALLREDUCE_RING;
        pt_status st = pt_allreduce(c, PT_IN_PLACE, x, n, PT_F32, PT_SUM);
        unsetenv("PT_RING_SEGMENT");
        unsetenv("PT_RING_PIPELINE_MIN");
        return st;
    }
    if (!strcmp(algo, "sparse_allgather") || !strcmp(algo, "sparcml") || !strcmp(algo, "gtopk")) {
        PT_TRY(pt_sparse_algo_parse(!strcmp(algo, "sparse_allgather") ? "allgather" : algo, &sa));
        const int64_t k = nnz_for(n);
        const int64_t nnz = sparse_make(rank, n, k, idx, val);
        return pt_sparse_allreduce(c, sa, idx, val, nnz, n, k, 0.0, out, NULL, NULL);
    }
    if (!strcmp(algo, "sign")) {
        pt_sign_pack(x, n, bits);
        const float scale = (float)(rank + 1);
        const int64_t off[2] = {0, n};
        return pt_sign_allreduce(c, bits, &scale, n, off, 1, 0, out);
    }
    if (!strcmp(algo, "fp16")) return pt_allreduce_lowp(c, x, n, PT_F16);
    PT_TRY(pt_allreduce_algo_parse(algo, &a));
    c->algo = a;
    if (a == PT_ALLREDUCE_MPI) { /* out of place: SimGrid's in-place MPI_Allreduce is wrong at large n */
        memcpy(out, x, sizeof(float) * (size_t)n);
        return pt_allreduce(c, out, x, n, PT_F32, PT_SUM);
    }
    return pt_allreduce(c, PT_IN_PLACE, x, n, PT_F32, PT_SUM);
}

static int is_sparse(const char *a) { return !strcmp(a, "sparse_allgather") || !strcmp(a, "sparcml") || !strcmp(a, "gtopk"); }

/* The serial reference of ALGO's result at element i. */
static float reference(const char *algo, int64_t i, int64_t n, uint32_t *idx, float *val)
{
    (void)idx, (void)val;
    float s = 0;
    if (!strcmp(algo, "sign")) {
        for (int r = 0; r < size; r++) s += input(r, i) < 0 ? -(float)(r + 1) : (float)(r + 1);
        return s;
    }
    for (int r = 0; r < size; r++) s += input(r, i);
    return s;
}

static int check(pt_comm *c, const char *algo, int64_t n)
{
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *out = malloc(sizeof(float) * (size_t)(n + 1));
    float *ref = malloc(sizeof(float) * (size_t)(n + 1)), *val = malloc(sizeof(float) * (size_t)(n + 1));
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)(n + 1)), *bits = malloc(sizeof(uint32_t) * (size_t)(n / 32 + 2));
    for (int64_t i = 0; i < n; i++) x[i] = input(rank, i);
    int bad = 0;
    pt_status st = run_algo(c, algo, x, n, idx, val, bits, out);
    if (st != PT_OK) {
        printf("FAIL %s n=%lld rank %d: error %d\n", algo, (long long)n, rank, (int)st);
        bad = 1;
    } else {
        const float *res = (is_sparse(algo) || !strcmp(algo, "sign")) ? out : x;
        if (is_sparse(algo)) { /* the dense sum of every rank's sparse list */
            memset(ref, 0, sizeof(float) * (size_t)n);
            for (int r = 0; r < size; r++) {
                const int64_t k = sparse_make(r, n, nnz_for(n), idx, val);
                for (int64_t j = 0; j < k; j++) ref[idx[j]] += val[j];
            }
        } else
            for (int64_t i = 0; i < n; i++) ref[i] = reference(algo, i, n, idx, val);
        if (!strcmp(algo, "gtopk")) {
            /* an approximation of the sum's top-k: every entry it keeps must be a partial sum of
             * the true one's terms; checked here only for agreement across ranks (below) and
             * that it holds at most k entries */
            int64_t nz = 0;
            for (int64_t i = 0; i < n; i++) nz += res[i] != 0;
            if (nz > nnz_for(n)) {
                printf("FAIL gtopk n=%lld rank %d: %lld entries > k=%lld\n", (long long)n, rank,
                       (long long)nz, (long long)nnz_for(n));
                bad = 1;
            }
        } else
            for (int64_t i = 0; i < n && !bad; i++)
                if (res[i] != ref[i]) {
                    printf("FAIL %s p=%d n=%lld rank %d: element %lld is %g, serial sum %g\n", algo,
                           size, (long long)n, rank, (long long)i, res[i], ref[i]);
                    bad = 1;
                }
        /* every rank must hold the same bits: compare a checksum's min and max over ranks */
        double sum[2] = {0, 0};
        for (int64_t i = 0; i < n; i++) sum[0] += res[i] * (double)((i % 7) + 1);
        sum[1] = -sum[0];
        c->algo = PT_ALLREDUCE_RING;
        pt_allreduce(c, PT_IN_PLACE, sum, 2, PT_F64, PT_MAX);
        if (sum[0] != -sum[1]) {
            if (rank == 0) printf("FAIL %s n=%lld: ranks disagree\n", algo, (long long)n);
            bad = 1;
        }
    }
    int anybad = bad;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0 && !anybad) printf("ok %s p=%d n=%lld\n", algo, size, (long long)n);
    free(x), free(out), free(ref), free(val), free(idx), free(bits);
    return anybad;
}

static void bench(pt_comm *c, const char *algo, long long bytes, int iters, int shared)
{
    const int64_t n = bytes / 4;
    const size_t nb = sizeof(float) * (size_t)(n + 1);
    float *x = shared ? SMPI_SHARED_MALLOC(nb) : malloc(nb);
    float *out = shared ? SMPI_SHARED_MALLOC(nb) : malloc(nb);
    /* the sparse lists stay private (each rank's own sorted indices), sized for k entries */
    const size_t kb = sizeof(float) * (size_t)(nnz_for(n) + 1);
    float *val = malloc(kb);
    uint32_t *idx = malloc(kb);
    uint32_t *bits = malloc(sizeof(uint32_t) * (size_t)(n / 32 + 2));
    if (!shared)
        for (int64_t i = 0; i < n; i++) x[i] = input(rank, i);
    pt_status st = PT_OK;
    if (warmup) st = run_algo(c, algo, x, n, idx, val, bits, out); /* warm-up (simulated time is
                                                                    deterministic: --warmup 0) */
    MPI_Barrier(MPI_COMM_WORLD);
    /* from the moment the last rank leaves the barrier (the collective cannot end before it
     * starts there) to the moment the last rank finishes: no barrier skew in the time */
    const double t0 = MPI_Wtime();
    for (int it = 0; it < iters && st == PT_OK; it++) st = run_algo(c, algo, x, n, idx, val, bits, out);
    double t[3] = {MPI_Wtime(), t0, st != PT_OK};
    c->algo = PT_ALLREDUCE_RING;
    pt_allreduce(c, PT_IN_PLACE, t, 3, PT_F64, PT_MAX);
    if (rank == 0) {
        if (t[2] != 0) printf("# %s %lld B failed\n", algo, bytes);
        else printf("%d,%s,%lld,%.9e\n", size, algo, bytes, (t[0] - t[1]) / iters);
        fflush(stdout);
    }
    if (shared) SMPI_SHARED_FREE(x), SMPI_SHARED_FREE(out);
    else free(x), free(out);
    free(val), free(idx);
    free(bits);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *algos = "ring,ring_pipelined,recursive_doubling,rabenseifner,binomial,hierarchical,"
                        "sparse_allgather,sparcml,gtopk,sign,fp16";
    const char *counts = "0,1,63,64,1000,65537";
    const char *sizes = "4096,262144,4194304";
    int do_check = 0, do_bench = 0, iters = 2, shared = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--check")) do_check = 1;
        else if (!strcmp(a, "--bench")) do_bench = 1;
        else if (!strcmp(a, "--shared")) shared = 1;
        else if (!strcmp(a, "--algos")) algos = v, i++;
        else if (!strcmp(a, "--counts")) counts = v, i++;
        else if (!strcmp(a, "--sizes")) sizes = v, i++;
        else if (!strcmp(a, "--iters")) iters = atoi(v), i++;
        else if (!strcmp(a, "--warmup")) warmup = atoi(v), i++;
        else if (!strcmp(a, "--density")) density = atof(v), i++;
        else if (!strcmp(a, "--segment")) segment = atoll(v), i++;
        else {
            if (rank == 0) fprintf(stderr, "pt-sim-allreduce: unknown option %s\n", a);
            MPI_Finalize();
            return 2;
        }
    }
    if (iters < 1) iters = 1;
    pt_comm c;
    if (pt_comm_init(&c, MPI_COMM_WORLD) != PT_OK) {
        fprintf(stderr, "pt-sim-allreduce: pt_comm_init failed\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank == 0)
        printf("# p=%d nodes=%d ranks/node=%d%s\n", size, c.nnodes, c.node_size,
               c.uniform ? "" : " (not uniform)");
    int bad = 0;
    char *list = strdup(algos), *asave = NULL;
    /* strtok_r only: under SMPI the ranks share libc, so strtok's hidden state would be shared */
    for (char *al = strtok_r(list, ",", &asave); al; al = strtok_r(NULL, ",", &asave)) {
        char *al_copy = strdup(al);
        if (do_check) {
            char *cl = strdup(counts), *save = NULL;
            for (char *cs = strtok_r(cl, ",", &save); cs; cs = strtok_r(NULL, ",", &save))
                bad |= check(&c, al_copy, atoll(cs));
            free(cl);
        }
        if (do_bench) {
            char *sl = strdup(sizes), *save = NULL;
            for (char *ss = strtok_r(sl, ",", &save); ss; ss = strtok_r(NULL, ",", &save))
                bench(&c, al_copy, atoll(ss), iters, shared);
            free(sl);
        }
        free(al_copy);
    }
    free(list);
    pt_comm_free(&c);
    MPI_Finalize();
    return bad;
}
