/* shard_read_bench: what checksum verification costs the shard reader
 * (benchmarks/bench_shard_read.sh). One process:
 *   shard_read_bench DIR BATCH PASSES
 * For each pass, alternately with verification on and off: opens the train split with the start
 * scan (--validate-data), timed, then reads the whole split in batches of BATCH samples in the
 * sampler's epoch order, timed. Prints one CSV line per pass:
 *   verify,open_validate_s,read_s,samples */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "paratrain/data.h"
#include "paratrain/log.h"

static int fail(void)
{
    fprintf(stderr, "shard_read_bench: %s\n", pt_error_message());
    MPI_Finalize();
    return 1;
}

int main(int argc, char **argv)
{
    int provided;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS || provided < MPI_THREAD_FUNNELED)
        return fprintf(stderr, "shard_read_bench: MPI_Init_thread failed\n"), 1;
    if (argc != 4) {
        fprintf(stderr, "usage: shard_read_bench DIR BATCH PASSES\n");
        MPI_Finalize();
        return 2;
    }
    const int B = atoi(argv[2]), passes = atoi(argv[3]);
    pt_dataset d;
    pt_sampler s;
    float *x = NULL;
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
    for (int p = 0; p < 2 * passes; p++) {
        const int verify = p % 2 == 0;
        setenv("PT_SHARD_VERIFY", verify ? "1" : "0", 1);
        double t0 = pt_now();
        if (pt_dataset_open(&d, argv[1], "train", MPI_COMM_WORLD, true) != PT_OK) return fail();
        double t1 = pt_now();
        if (!x) {
            x = malloc(sizeof(float) * (size_t)B * (size_t)d.sample_size);
            if (!x || !y || pt_sampler_init(&s, d.count, 1, true) != PT_OK)
                return fprintf(stderr, "shard_read_bench: no memory\n"), 1;
        }
        pt_sampler_set_epoch(&s, p / 2);
        const int64_t n = d.count / B * B;
        double t2 = pt_now();
        for (int64_t a = 0; a < n; a += B)
            if (pt_dataset_read(&d, s.perm + a, B, x, y) != PT_OK) return fail();
        double t3 = pt_now();
        printf("%d,%.6f,%.6f,%lld\n", verify, t1 - t0, t3 - t2, (long long)n);
        fflush(stdout);
        pt_dataset_close(&d);
    }
    pt_sampler_free(&s);
    free(x), free(y);
    MPI_Finalize();
    return 0;
}
