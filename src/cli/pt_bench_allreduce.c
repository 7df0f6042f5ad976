/* pt-bench-allreduce: allreduce latency and bandwidth of every algorithm next to MPI_Allreduce.
 *
 * Measurement follows OSU's osu_allreduce: for each size, warm-up iterations, then timed
 * iterations between barriers; each rank's mean latency is reduced to avg/min/max over ranks.
 * Bandwidth follows nccl-tests: algbw = bytes / time, busbw = algbw * 2(p-1)/p (what each link
 * carries in a bandwidth-optimal algorithm, comparable across p). Algorithms of one size are
 * measured back to back, so their comparison shares the machine's state.
 *
 *   mpirun -np 2 pt-bench-allreduce [--algos ring,mpi,...] [--min-bytes B] [--max-bytes B]
 *                                  [--csv FILE] [--write-table FILE] [--check]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "paratrain/mpi_init.h"
#include "paratrain/comm.h"
#include "paratrain/log.h"

static long long parse_bytes(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end == 'K' || *end == 'k') v *= 1024;
    else if (*end == 'M' || *end == 'm') v *= 1024 * 1024;
    else if (*end == 'G' || *end == 'g') v *= 1024.0 * 1024 * 1024;
    return (long long)v;
}

static int iterations(size_t bytes)
{
    return bytes <= 65536 ? 1000 : bytes <= (4u << 20) ? 100 : bytes <= (32u << 20) ? 20 : 8;
}

int main(int argc, char **argv)
{
    int rank = 0, size = 1;
    if (pt_mpi_init(&argc, &argv, MPI_THREAD_FUNNELED, &rank, &size) != PT_OK) {
        pt_log_error_last("pt-bench-allreduce");
        int init = 0;
        MPI_Initialized(&init);
        if (init) MPI_Finalize();
        return 1;
    }
    pt_log_set_rank(rank, size);
    long long min_bytes = 4, max_bytes = 256LL << 20;
    const char *csv = NULL, *tune = NULL, *algos = "mpi,ring,recursive_doubling,rabenseifner,binomial";
    int check = 0, shared = 0, repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            if (rank == 0)
                puts("usage: mpirun -np P pt-bench-allreduce [--algos LIST] [--min-bytes B]\n"
                     "         [--max-bytes B] [--csv FILE] [--write-table FILE] [--check] [--shared]\n"
                     "         [--repeat R]\n"
                     "  sizes double from min to max (suffixes K, M, G); default 4 B to 256 MiB\n"
                     "  --write-table FILE writes the fastest algorithm per size, the table PT_ALLREDUCE_TUNING reads\n"
                     "  --check verifies every result against MPI_Allreduce\n"
                     "  --repeat R times each timed loop R times and keeps the median (steadier tables)\n"
                     "  --shared runs in place on a buffer from pt_comm_buffer_alloc (the zero-copy\n"
                     "           path of the hierarchical algorithm), as a training run's gradients would");
            MPI_Finalize();
            return 0;
        } else if (!strcmp(a, "--check")) {
            check = 1;
        } else if (!strcmp(a, "--shared")) {
            shared = 1;
        } else if (v && !strcmp(a, "--algos")) algos = v, i++;
        else if (v && !strcmp(a, "--min-bytes")) min_bytes = parse_bytes(v), i++;
        else if (v && !strcmp(a, "--max-bytes")) max_bytes = parse_bytes(v), i++;
        else if (v && !strcmp(a, "--csv")) csv = v, i++;
        else if (v && !strcmp(a, "--repeat")) repeat = atoi(v) > 0 ? atoi(v) : 1, i++;
        else if (v && !strcmp(a, "--write-table")) tune = v, i++;
        else {
            if (rank == 0) fprintf(stderr, "pt-bench-allreduce: error: bad argument '%s' (see --help)\n", a);
            MPI_Finalize();
            return 2;
        }
    }
    if (min_bytes < 4 || max_bytes < min_bytes) {
        if (rank == 0) fprintf(stderr, "pt-bench-allreduce: error: need 4 <= --min-bytes <= --max-bytes\n");
        MPI_Finalize();
        return 2;
    }
    pt_allreduce_algo list[PT_ALLREDUCE_NALGOS];
    int nalgo = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", algos);
    for (char *tok = strtok(buf, ","); tok && nalgo < PT_ALLREDUCE_NALGOS; tok = strtok(NULL, ",")) {
        if (pt_allreduce_algo_parse(tok, &list[nalgo]) != PT_OK) {
            if (rank == 0) fprintf(stderr, "pt-bench-allreduce: error: %s\n", pt_error_message());
            MPI_Finalize();
            return 2;
        }
        nalgo++;
    }
    pt_comm c;
    if (pt_comm_init(&c, MPI_COMM_WORLD) != PT_OK) MPI_Abort(MPI_COMM_WORLD, 1);
    float *send = malloc((size_t)max_bytes), *recv = NULL,
          *ref = check ? malloc((size_t)max_bytes) : NULL;
    if (shared) {
        if (pt_comm_buffer_alloc(&c, (size_t)max_bytes, (void **)&recv) != PT_OK) {
            fprintf(stderr, "pt-bench-allreduce: error: %s\n", pt_error_message());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    } else {
        recv = malloc((size_t)max_bytes);
    }
    if (!send || !recv || (check && !ref)) {
        fprintf(stderr, "pt-bench-allreduce: error: cannot allocate 2 x %lld bytes\n", max_bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long long i = 0; i < max_bytes / 4; i++) send[i] = (float)((i + rank) % 7);
    FILE *fcsv = rank == 0 && csv ? fopen(csv, "w") : NULL;
    FILE *ftune = rank == 0 && tune ? fopen(tune, "w") : NULL;
    if (fcsv) fprintf(fcsv, "np,bytes,algorithm,iterations,avg_us,min_us,max_us,algbw_GBps,busbw_GBps\n");
    if (ftune) fprintf(ftune, "# pt-bench-allreduce --write-table: np max_bytes algorithm (fastest avg latency; MPI unless another is >= 5%% faster)\n");
    /* The memory-bandwidth bound, for context: one thread copying the largest buffer. */
    double membw = 0.0;
    if (rank == 0) {
        memcpy(recv, send, (size_t)max_bytes);
        double t0 = MPI_Wtime();
        for (int i = 0; i < 3; i++) memcpy(recv, send, (size_t)max_bytes);
        membw = 3.0 * (double)max_bytes / (MPI_Wtime() - t0) / 1e9;
    }
    if (rank == 0) {
        printf("# memcpy of %lld bytes on one thread: %.1f GB/s (while the other ranks wait)\n", max_bytes, membw);
        printf("# pt-bench-allreduce, np=%d, float32 sum, %s; latency avg over ranks in us, busbw in GB/s\n",
               size, shared ? "in place on a shared-memory buffer" : "out of place");
        printf("%12s", "bytes");
        for (int a = 0; a < nalgo; a++) printf(" %18s", pt_allreduce_algo_name(list[a]));
        printf("\n%12s", "");
        for (int a = 0; a < nalgo; a++) printf(" %9s %8s", "avg_us", "busbw");
        printf("\n");
    }
    const double bus = size > 1 ? 2.0 * (size - 1) / size : 1.0;
    int failures = 0;
    for (long long bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
        const int64_t n = bytes / 4;
        const int iters = iterations((size_t)bytes), warm = iters / 10 > 2 ? iters / 10 : 2;
        double best = 1e30, mpi_lat = -1;
        int best_a = 0;
        if (rank == 0) printf("%12lld", bytes);
        if (check) MPI_Allreduce(send, ref, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        for (int a = 0; a < nalgo; a++) {
            c.algo = list[a];
            pt_status st = PT_OK;
            /* --shared: in place on zeros (sums stay zero: no overflow, no denormals) */
            const void *src = shared ? PT_IN_PLACE : (const void *)send;
            if (shared) memset(recv, 0, (size_t)bytes);
            for (int i = 0; i < warm && st == PT_OK; i++) st = pt_allreduce(&c, src, recv, n, PT_F32, PT_SUM);
            double lats[16], lat, mn, mx, sum;
            const int reps = repeat < 16 ? repeat : 16;
            for (int rep = 0; rep < reps; rep++) {
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = MPI_Wtime();
                for (int i = 0; i < iters && st == PT_OK; i++)
                    st = pt_allreduce(&c, src, recv, n, PT_F32, PT_SUM);
                lats[rep] = (MPI_Wtime() - t0) / iters * 1e6;
            }
            for (int x = 1; x < reps; x++) /* insertion sort; the median */
                for (int y = x; y > 0 && lats[y] < lats[y - 1]; y--) {
                    double tmpv = lats[y];
                    lats[y] = lats[y - 1], lats[y - 1] = tmpv;
                }
            lat = lats[reps / 2];
            if (check && shared) { /* one more, in place from the real input */
                memcpy(recv, send, (size_t)bytes);
                if (st == PT_OK) st = pt_allreduce(&c, PT_IN_PLACE, recv, n, PT_F32, PT_SUM);
            }
            if (st != PT_OK) {
                fprintf(stderr, "pt-bench-allreduce: error: %s\n", pt_error_message());
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            if (check)
                for (int64_t i = 0; i < n; i++) failures += recv[i] != ref[i];
            MPI_Reduce(&lat, &mn, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
            MPI_Reduce(&lat, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
            MPI_Reduce(&lat, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
            if (rank == 0) {
                double avg = sum / size, algbw = (double)bytes / (avg * 1e-6) / 1e9;
                printf(" %9.1f %8.2f", avg, algbw * bus);
                if (fcsv)
                    fprintf(fcsv, "%d,%lld,%s,%d,%.3f,%.3f,%.3f,%.4f,%.4f\n", size, bytes,
                            pt_allreduce_algo_name(list[a]), iters, avg, mn, mx, algbw, algbw * bus);
                if (avg < best) best = avg, best_a = a;
                if (list[a] == PT_ALLREDUCE_MPI) mpi_lat = avg;
            }
        }
        if (rank == 0) {
            printf("\n");
            fflush(stdout);
            /* Hysteresis: a point-to-point algorithm replaces MPI_Allreduce only where it was at
             * least 5% faster; near-ties go to MPI, so run-to-run noise cannot make "auto" pick a
             * loser at sizes where all algorithms are equal. */
            pt_allreduce_algo pick = list[best_a];
            if (mpi_lat > 0 && best > 0.95 * mpi_lat) pick = PT_ALLREDUCE_MPI;
            if (ftune) fprintf(ftune, "%d %lld %s\n", size, bytes, pt_allreduce_algo_name(pick));
        }
    }
    int total;
    MPI_Reduce(&failures, &total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0 && check) printf("# check: %d wrong elements\n", total);
    if (fcsv) fclose(fcsv);
    if (ftune) fclose(ftune);
    free(send), free(ref);
    if (!shared) free(recv);
    pt_comm_free(&c);
    MPI_Finalize();
    return rank == 0 && check && total ? 1 : 0;
}
