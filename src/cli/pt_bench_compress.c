/* pt-bench-compress: time per allreduce of one gradient (default 25 MB) for every compression
 * method, next to the dense allreduce, with the compute it costs and the bytes it sends.
 *
 * Each repetition is timed between barriers and counts the slowest rank. "compress" is the local
 * work before the collective (top-k selection, sign packing with its scales, fp32 -> 16-bit is
 * inside the low-precision allreduce and counted in "total"); "total" is compress plus the
 * collective, which includes decoding into the dense result. Sent bytes are this rank's payload
 * (pt_comm's counters; the MPI algorithm's are not visible and show as -). Reported: the median
 * of --reps repetitions after 2 warm-ups, and the ratio to the dense MPI_Allreduce measured in
 * the same run.
 *
 *   mpirun -np P pt-bench-compress [--bytes 25M] [--reps 10] [--csv FILE]
 *   mpirun -np P pt-bench-compress --switch-sweep [--bytes 25M] [--reps 5]
 *     SparCML's dense switch: time of the sparse allreduce alone (selection excluded) for input
 *     densities 0.1% .. 20% and switch densities 1/64 .. 1/2, to choose --sparcml-switch
 *   pt-bench-compress --select [--bytes 25M] [--reps 9] [--csv FILE]   (one process)
 *     top-k selection alone at densities 0.1% and 1%: the radix select and the sampled one
 *     (src/comm/topk.c), beside a memcpy of the gradient and a sum of |x| (one read), each
 *     repetition running all four in turn; medians, min and max (benchmarks/bench_topk.sh)
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/mpi_init.h"
#include "paratrain/compress.h"
#include "paratrain/cpu.h"
#include "paratrain/log.h"
#include "../comm/sparse.h"

typedef enum { M_DENSE, M_TOPK, M_SIGN, M_SIGNSGD, M_LOWP } mkind;
typedef struct {
    const char *name;
    mkind kind;
    pt_allreduce_algo algo; /* dense */
    double density;         /* top-k */
    pt_sparse_algo sparse;
    pt_dtype wire; /* low precision */
} method;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One read of x: sum of |x| in 8 independent lanes (so it vectorizes without -ffast-math). */
static float sum_abs(const float *x, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += fabsf(x[i + l]);
    for (; i < n; i++) acc[0] += fabsf(x[i]);
    float s = 0.0f;
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* --select: the selection alone; rank 0 only (the others wait at the final barrier). */
static int bench_select(const float *g, float *x, int64_t n, int reps, const char *csv,
                        uint32_t *idx, float *val)
{
    const double dens[] = {0.001, 0.01};
    enum { NW = 4 };
    const char *what[NW] = {"memcpy", "sum|x|", "radix", "sample"};
    FILE *fcsv = csv ? fopen(csv, "w") : NULL;
    if (csv && !fcsv) {
        fprintf(stderr, "pt-bench-compress: error: cannot write %s\n", csv);
        return 1;
    }
    if (fcsv) fprintf(fcsv, "n,bytes,density,k,what,reps,median_ms,min_ms,max_ms\n");
    double *t = malloc(sizeof(double) * (size_t)reps * NW);
    if (!t) return 1;
    volatile float sink = 0.0f;
    (void)pt_cpu_isa(); /* its log line before the table */
    memcpy(x, g, sizeof(float) * (size_t)n); /* fault the destination in */
    printf("# top-k selection alone, %lld floats (%.1f MB), median [min, max] of %d, ms\n"
           "%-8s %8s %20s %20s %20s %20s %9s %9s %9s\n", (long long)n, 4.0 * (double)n / 1e6, reps,
           "density", "k", "radix", "sample", "memcpy", "sum|x|", "radix/s", "s/memcpy", "s/sum");
    for (int a = 0; a < 2; a++) {
        const int64_t k = (int64_t)ceil(dens[a] * (double)n);
        int64_t cand = 0;
        int path = 0;
        for (int r = -2; r < reps; r++)
            for (int w = 0; w < NW; w++) {
                pt_topk_stats st;
                const double t0 = MPI_Wtime();
                pt_status s = PT_OK;
                if (w == 0) memcpy(x, g, sizeof(float) * (size_t)n);
                else if (w == 1) sink += sum_abs(g, n);
                else s = pt_topk_select_with(g, n, k, w == 2 ? PT_TOPK_RADIX : PT_TOPK_SAMPLE, NULL,
                                             idx, val, &st);
                const double d = MPI_Wtime() - t0;
                if (s != PT_OK) {
                    fprintf(stderr, "pt-bench-compress: error: %s\n", pt_error_message());
                    free(t);
                    return 1;
                }
                if (w == 3) cand = st.candidates, path = st.path;
                if (r >= 0) t[(size_t)w * reps + r] = d;
            }
        double med[NW], lo[NW], hi[NW];
        for (int w = 0; w < NW; w++) {
            double *v = t + (size_t)w * reps;
            qsort(v, (size_t)reps, sizeof *v, cmp);
            med[w] = 1e3 * v[reps / 2], lo[w] = 1e3 * v[0], hi[w] = 1e3 * v[reps - 1];
            if (fcsv)
                fprintf(fcsv, "%lld,%lld,%g,%lld,%s,%d,%.4f,%.4f,%.4f\n", (long long)n,
                        (long long)(4 * n), dens[a], (long long)k, what[w], reps, med[w], lo[w], hi[w]);
        }
        char cell[NW][40];
        for (int w = 0; w < NW; w++) snprintf(cell[w], sizeof cell[w], "%.2f [%.2f, %.2f]", med[w], lo[w], hi[w]);
        printf("%-8g %8lld %20s %20s %20s %20s %8.2fx %8.2fx %8.2fx\n", dens[a], (long long)k,
               cell[2], cell[3], cell[0], cell[1], med[2] / med[3], med[3] / med[0], med[3] / med[1]);
        printf("#   sample path %s, %lld candidates (%.2f k)\n", path == 1 ? "selected" : "fell back to radix",
               (long long)cand, (double)cand / (double)k);
    }
    if (fcsv) fclose(fcsv);
    free(t);
    (void)sink;
    return 0;
}

int main(int argc, char **argv)
{
    int rank = 0, size = 1;
    if (pt_mpi_init(&argc, &argv, MPI_THREAD_FUNNELED, &rank, &size) != PT_OK) {
        pt_log_error_last("pt-bench-compress");
        int init = 0;
        MPI_Initialized(&init);
        if (init) MPI_Finalize();
        return 1;
    }
    double mb = 25.0;
    int reps = 10;
    const char *csv = NULL;
    int sweep = 0, select = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            if (rank == 0)
                puts("usage: mpirun -np P pt-bench-compress [--bytes MB] [--reps R] [--csv FILE]\n"
                     "       pt-bench-compress --select [--bytes MB] [--reps R] [--csv FILE]\n"
                     "         (top-k selection alone: radix and sampled, beside memcpy and sum|x|)\n"
                     "  times one allreduce of an fp32 gradient of MB megabytes (default 25) for the\n"
                     "  dense algorithms and every compression method; medians of R repetitions");
            MPI_Finalize();
            return 0;
        } else if (!strcmp(a, "--switch-sweep")) sweep = 1;
        else if (!strcmp(a, "--select")) select = 1;
        else if (v && !strcmp(a, "--bytes")) mb = atof(v), i++;
        else if (v && !strcmp(a, "--reps")) reps = atoi(v), i++;
        else if (v && !strcmp(a, "--csv")) csv = v, i++;
        else {
            if (rank == 0) fprintf(stderr, "pt-bench-compress: error: bad argument '%s' (see --help)\n", a);
            MPI_Finalize();
            return 2;
        }
    }
    if (!(mb > 0) || reps < 1) {
        if (rank == 0) fprintf(stderr, "pt-bench-compress: error: --bytes and --reps must be positive\n");
        MPI_Finalize();
        return 2;
    }
    const int64_t n = (int64_t)(mb * 1e6 / 4.0);
    const method methods[] = {
        {"dense mpi", M_DENSE, PT_ALLREDUCE_MPI, 0, 0, 0},
        {"dense ring", M_DENSE, PT_ALLREDUCE_RING, 0, 0, 0},
        {"dense auto", M_DENSE, PT_ALLREDUCE_AUTO, 0, 0, 0},
        {"topk 1% allgather", M_TOPK, 0, 0.01, PT_SPARSE_ALLGATHER, 0},
        {"topk 1% sparcml", M_TOPK, 0, 0.01, PT_SPARSE_SPARCML, 0},
        {"topk 1% gtopk", M_TOPK, 0, 0.01, PT_SPARSE_GTOPK, 0},
        {"topk 0.1% allgather", M_TOPK, 0, 0.001, PT_SPARSE_ALLGATHER, 0},
        {"topk 0.1% sparcml", M_TOPK, 0, 0.001, PT_SPARSE_SPARCML, 0},
        {"topk 0.1% gtopk", M_TOPK, 0, 0.001, PT_SPARSE_GTOPK, 0},
        {"sign (scaled)", M_SIGN, 0, 0, 0, 0},
        {"signsgd (majority)", M_SIGNSGD, 0, 0, 0, 0},
        {"fp16", M_LOWP, 0, 0, 0, PT_F16},
        {"bf16", M_LOWP, 0, 0, 0, PT_BF16},
    };
    const int nm = (int)(sizeof methods / sizeof *methods);
    pt_comm c;
    if (pt_comm_init(&c, MPI_COMM_WORLD) != PT_OK) {
        fprintf(stderr, "pt-bench-compress: error: %s\n", pt_error_message());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    float *g = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n);
    float *val = malloc(sizeof(float) * (size_t)n);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)n);
    uint32_t *bits = malloc(sizeof(uint32_t) * (size_t)(pt_sign_words(n) + 1));
    if (!g || !x || !val || !idx || !bits) {
        fprintf(stderr, "pt-bench-compress: error: no memory for %lld floats\n", (long long)n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* gradient-like data: heavy-tailed, different on every rank */
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(((uint64_t)i * 2654435761u) ^ ((uint64_t)rank * 0x9E3779B9u));
        u ^= u >> 15, u *= 0x2c1b3c6du, u ^= u >> 12;
        const double r = ((double)(u % 1000000) + 0.5) / 1e6;
        g[i] = (float)((u & 1 ? 1 : -1) * 1e-3 * pow(r, -0.7));
    }
    const int64_t segs[2] = {0, n};
    if (select) {
        int rc = rank == 0 ? bench_select(g, x, n, reps, csv, idx, val) : 0;
        MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        free(g), free(x), free(val), free(idx), free(bits);
        pt_comm_free(&c);
        MPI_Finalize();
        return rc;
    }
    if (sweep) {
        const double dens[] = {0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2};
        const double sw[] = {1.0 / 64, 1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2};
        if (rank == 0) {
            printf("# SparCML dense switch: ms per sparse allreduce (median of %d, slowest rank), np %d, "
                   "%lld floats\n%-10s", reps, size, (long long)n, "density");
            for (int j = 0; j < 6; j++) {
                char lab[24];
                snprintf(lab, sizeof lab, "switch %.4g", sw[j]);
                printf(" %12s", lab);
            }
            printf("\n");
        }
        double *tt = malloc(sizeof(double) * (size_t)reps);
        for (int a = 0; a < 7; a++) {
            const int64_t k = (int64_t)ceil(dens[a] * (double)n);
            pt_topk_select(g, n, k, idx, val);
            if (rank == 0) printf("%-10g", dens[a]);
            for (int j = 0; j < 6; j++) {
                for (int r = -1; r < reps; r++) {
                    MPI_Barrier(MPI_COMM_WORLD);
                    double t0 = MPI_Wtime();
                    if (pt_sparse_allreduce(&c, PT_SPARSE_SPARCML, idx, val, k, n, k, sw[j], x, NULL,
                                            NULL) != PT_OK)
                        MPI_Abort(MPI_COMM_WORLD, 1);
                    double d = MPI_Wtime() - t0;
                    MPI_Allreduce(MPI_IN_PLACE, &d, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                    if (r >= 0) tt[r] = d;
                }
                qsort(tt, (size_t)reps, sizeof *tt, cmp);
                if (rank == 0) printf(" %12.2f", 1e3 * tt[reps / 2]);
            }
            if (rank == 0) printf("\n");
        }
        free(tt);
        free(g), free(x), free(val), free(idx), free(bits);
        pt_comm_free(&c);
        MPI_Finalize();
        return 0;
    }
    FILE *fcsv = rank == 0 && csv ? fopen(csv, "w") : NULL;
    if (fcsv) fprintf(fcsv, "np,bytes,method,reps,total_ms,compress_ms,sent_MB,vs_dense_mpi\n");
    if (rank == 0)
        printf("# pt-bench-compress: np %d, gradient %.1f MB (%lld floats), median of %d (slowest rank)\n"
               "%-22s %10s %12s %10s %14s\n", size, 4.0 * (double)n / 1e6, (long long)n, reps,
               "method", "total ms", "compress ms", "sent MB", "vs dense mpi");
    double dense_mpi = NAN;
    for (int mi = 0; mi < nm; mi++) {
        const method *m = &methods[mi];
        double *tt = malloc(sizeof(double) * (size_t)reps), *tc = malloc(sizeof(double) * (size_t)reps);
        uint64_t sent = 0;
        int err = 0;
        for (int r = -2; r < reps && !err; r++) {
            memcpy(x, g, sizeof(float) * (size_t)n);
            const uint64_t s0 = c.bytes_sent;
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime(), t1 = t0;
            pt_status st = PT_OK;
            switch (m->kind) {
            case M_DENSE:
                c.algo = m->algo;
                t1 = MPI_Wtime();
                st = pt_allreduce(&c, PT_IN_PLACE, x, n, PT_F32, PT_SUM);
                break;
            case M_TOPK: {
                const int64_t k = (int64_t)ceil(m->density * (double)n);
                st = pt_topk_select(x, n, k, idx, val);
                t1 = MPI_Wtime();
                if (st == PT_OK)
                    st = pt_sparse_allreduce(&c, m->sparse, idx, val, k, n, k, 0, x, NULL, NULL);
                break;
            }
            case M_SIGN:
            case M_SIGNSGD: {
                double l1 = 0.0;
                if (m->kind == M_SIGN)
                    for (int64_t i = 0; i < n; i++) l1 += fabsf(x[i]);
                const float scale = (float)(l1 / (double)n);
                pt_sign_pack(x, n, bits);
                t1 = MPI_Wtime();
                st = pt_sign_allreduce(&c, bits, &scale, n, segs, 1, m->kind == M_SIGNSGD, x);
                break;
            }
            case M_LOWP:
                t1 = MPI_Wtime();
                st = pt_allreduce_lowp(&c, x, n, m->wire);
                break;
            }
            double t2 = MPI_Wtime();
            if (st != PT_OK) {
                fprintf(stderr, "pt-bench-compress: error: %s: %s\n", m->name, pt_error_message());
                err = 1;
            }
            double d[2] = {t2 - t0, t1 - t0};
            MPI_Allreduce(MPI_IN_PLACE, d, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (r >= 0) tt[r] = d[0], tc[r] = d[1], sent = c.bytes_sent - s0;
        }
        MPI_Allreduce(MPI_IN_PLACE, &err, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (err) MPI_Abort(MPI_COMM_WORLD, 1);
        qsort(tt, (size_t)reps, sizeof *tt, cmp);
        qsort(tc, (size_t)reps, sizeof *tc, cmp);
        const double tot = 1e3 * tt[reps / 2], comp = 1e3 * tc[reps / 2];
        if (mi == 0) dense_mpi = tot;
        double sent_mb = (double)sent / 1e6;
        MPI_Allreduce(MPI_IN_PLACE, &sent_mb, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        const int hidden = m->kind == M_DENSE && m->algo == PT_ALLREDUCE_MPI;
        if (rank == 0) {
            char s[32];
            snprintf(s, sizeof s, hidden ? "-" : "%.3f", sent_mb);
            printf("%-22s %10.2f %12.2f %10s %13.2fx\n", m->name, tot, comp, s, dense_mpi / tot);
            if (fcsv)
                fprintf(fcsv, "%d,%lld,%s,%d,%.3f,%.3f,%s,%.3f\n", size, (long long)(4 * n), m->name,
                        reps, tot, comp, hidden ? "" : s, dense_mpi / tot);
        }
        free(tt), free(tc);
    }
    if (fcsv) fclose(fcsv);
    free(g), free(x), free(val), free(idx), free(bits);
    pt_comm_free(&c);
    MPI_Finalize();
    return 0;
}
